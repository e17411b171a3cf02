//! The one `bindgen!` of the host: Rust bindings for the world `scalehost:policy/policy@0.1.0`.
//!
//! Imports are `async` (a host call awaits its backend, and the tick's deadline can drop it at
//! any await) and `trappable` (the host can end a tick that breaks a limit); exports are called
//! with `call_async`. The trait implementations live in [`super::host`], one file per interface.

wasmtime::component::bindgen!({
    path: "../wit/policy@0.1.0",
    world: "policy",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::scalehost::policy::{actuation, clock, log, metrics, state, types};
