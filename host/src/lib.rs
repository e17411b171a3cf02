//! scalehost: runs autoscaling policies as sandboxed WebAssembly components.
//!
//! Where to start:
//! - [`Host`] builds everything from a [`config::HostConfig`] and runs it (`main.rs` is only that);
//! - [`runtime`] compiles policies once and runs each invocation in a fresh sandbox;
//! - [`tick`] runs a tick (invoke, rails, apply, audit) and schedules ticks;
//! - [`backends`] answers metrics and carries out actuation (the simulated cluster by default);
//! - [`state`] keeps per-binding state across ticks and restarts;
//! - [`control`], [`registry`] and [`api`] manage tenants, plugins and bindings at run time over
//!   HTTP; [`client`] is the command line's side of that API.
//!
//! The design and its invariants are in `docs/architecture.md`.

pub mod api;
pub mod backends;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod demo;
pub mod doctor;
pub mod duration;
mod host;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod sim;
pub mod state;
pub mod tick;
pub mod trace;
pub mod validate;

pub use host::{Host, HostError, PluginError, load_plugin};

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

/// An error and its causes on one line: `outer: cause: root cause`.
pub fn display_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
