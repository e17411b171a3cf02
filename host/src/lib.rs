//! scalehost: runs autoscaling policies as sandboxed WebAssembly components.
//!
//! Where to start:
//! - [`Host`] builds everything from a [`config::HostConfig`] and runs it (`main.rs` is only that);
//! - [`domain`] holds the plain types and rules (workloads, scope, traces) with no I/O;
//! - [`runtime`] compiles policies once and runs each invocation in a fresh sandbox;
//! - [`tick`] runs a tick (invoke, rails, apply, audit) and schedules ticks;
//! - [`backends`] answers metrics and carries out actuation (the simulated cluster by default);
//! - [`store`] keeps per-binding state across ticks and restarts;
//! - [`control`], [`registry`] and [`api`] manage tenants, plugins and bindings at run time over
//!   HTTP;
//! - [`backtest`] replays traces on the backtest model; [`cmd`] holds the binary's commands.
//!
//! The layers (which module may use which) are in `docs/architecture.md` and `host/layers.toml`,
//! which `cargo xtask layers` enforces.

pub mod api;
pub mod backends;
pub mod backtest;
pub mod cmd;
pub mod config;
pub mod control;
pub mod domain;
mod host;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod tick;

pub use domain::display_chain;
pub use host::{Host, HostError};

/// How many tasks a worker polls between two looks at timers and I/O. Tokio's default (61)
/// assumes short polls; a policy's guest code runs up to one 2 ms epoch per poll, so with the
/// workers full of guests (one tenant's bindings spinning) a timer would fire ~120 ms late and
/// every other binding's tick with it. At 8 a due tick starts within ~16 ms of guest time.
pub const RUNTIME_EVENT_INTERVAL: u32 = 8;

/// The tokio runtime the host runs on (`scalehost serve` and the rest of the binary, the
/// benches): multi-threaded, one worker per core, timers and I/O looked at every
/// [`RUNTIME_EVENT_INTERVAL`] polls.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(RUNTIME_EVENT_INTERVAL)
        .build()
}
