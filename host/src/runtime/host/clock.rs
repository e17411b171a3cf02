//! Host side of `clock`: the tick's instant, virtual in simulations.

use super::super::Sandbox;
use super::super::bindings::clock::Host;

impl Host for Sandbox {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.charge(8)?;
        Ok(self.now)
    }
}
