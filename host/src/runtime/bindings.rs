//! The one `bindgen!` of the host: Rust bindings for the world `scalehost:policy/policy@0.1.0`.
//!
//! Every import is `trappable` so the host can end a tick that breaks a limit; the trait
//! implementations live in [`super::host`], one file per interface.

wasmtime::component::bindgen!({
    path: "../wit/policy@0.1.0",
    world: "policy",
    imports: { default: trappable },
});

pub use self::scalehost::policy::{actuation, clock, log, metrics, state, types};
