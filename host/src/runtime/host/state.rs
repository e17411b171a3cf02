//! Host side of `state`: per-binding key/value, writes staged until the tick succeeds.

use tracing::instrument;

use super::super::Sandbox;
use super::super::bindings::state::Host;

impl Host for Sandbox {
    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.charge(key.len())?;
        // A store that cannot be read ends the tick: answering "absent" would let the policy
        // overwrite state it never saw.
        let value = self.state.get(&key).map_err(wasmtime::Error::new)?;
        self.charge_bytes(value.as_ref().map_or(0, Vec::len))?;
        Ok(value)
    }

    #[instrument(level = "trace", skip(self, value), fields(tenant = %self.tenant, binding = %self.binding, len = value.len()))]
    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.charge(key.len() + value.len())?;
        self.state.set(key, value);
        Ok(())
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.charge(key.len())?;
        self.state.delete(key);
        Ok(())
    }
}
