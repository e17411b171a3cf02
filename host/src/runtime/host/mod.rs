//! The host side of each `scalehost:policy` interface, one file each, plus the empty WASI.

mod actuation;
mod clock;
mod log;
mod metrics;
mod state;
mod types;

use wasmtime::component::{HasSelf, Linker};

use super::Sandbox;
use super::bindings::Policy;

/// Links the policy world's imports and an empty WASI, both async (see [`Sandbox::new`]).
pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    Policy::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |sandbox| sandbox)?;
    wasmtime_wasi::p2::add_to_linker_async(linker)
}
