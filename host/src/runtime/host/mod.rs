//! The host side of each `scalehost:policy` interface, one file each, plus the empty WASI.
//!
//! The files are written against 0.1.0's traits; `unchanged.rs` answers 0.2.0's copies of
//! them with the same code, and `outcomes.rs` and `nodes.rs` are 0.2.0's own. `charged.rs`
//! links the imports with big arguments again, so that their size is checked before the host
//! copies them.

mod actuation;
mod charged;
mod clock;
mod log;
mod metrics;
mod nodes;
mod outcomes;
mod state;
mod types;
mod unchanged;

use wasmtime::component::{HasSelf, Linker};

use super::Sandbox;
use super::bindings::{v0_1, v0_2};

/// Links the imports of every world version and an empty WASI, all async (see
/// [`Sandbox::new`]).
pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    v0_1::Policy::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |sandbox| sandbox)?;
    v0_2::Policy::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |sandbox| sandbox)?;
    charged::add_to_linker(linker)?;
    wasmtime_wasi::p2::add_to_linker_async(linker)
}
