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
