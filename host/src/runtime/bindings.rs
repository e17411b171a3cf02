//! The host's Rust bindings, one `bindgen!` per version of the world `scalehost:policy/policy`.
//!
//! Imports are `async` (a host call awaits its backend, and the tick's deadline can drop it at
//! any await) and `trappable` (the host can end a tick that breaks a limit); exports are called
//! with `call_async`. The trait implementations live in [`super::host`], one file per interface;
//! 0.2.0 keeps 0.1.0's `types` (mapped onto 0.1.0's Rust types, so both versions share one
//! model) and its five interfaces, answered by the same code.

/// `scalehost:policy@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/policy@0.1.0",
        world: "policy",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    pub use self::scalehost::policy::{actuation, clock, log, metrics, state, types};
}

/// `scalehost:policy@0.2.0`: 0.1.0 plus `outcomes` and `nodes`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/policy@0.2.0",
        world: "policy",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "scalehost:policy/types@0.2.0": super::v0_1::types },
    });

    pub use self::scalehost::policy::{actuation, clock, log, metrics, nodes, outcomes, state};
}

pub use v0_1::{actuation, clock, log, metrics, state, types};
