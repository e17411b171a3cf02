//! scalehost: runs autoscaling policies as sandboxed WebAssembly components.
//!
//! Where to start:
//! - [`Host`] builds everything from a [`config::HostConfig`] and runs it (`main.rs` is only that);
//! - [`runtime`] compiles policies once and runs each invocation in a fresh sandbox;
//! - [`tick`] runs a tick (invoke, rails, apply, audit) and schedules ticks;
//! - [`backends`] answers metrics and carries out actuation (the simulated cluster by default);
//! - [`state`] keeps per-binding state across ticks and restarts.
//!
//! The design and its invariants are in `docs/architecture.md`.

pub mod backends;
pub mod cli;
pub mod config;
pub mod demo;
pub mod duration;
mod host;
pub mod model;
pub mod runtime;
pub mod state;
pub mod tick;
pub mod trace;
pub mod validate;

pub use host::{Host, HostError, PluginError, load_plugin};
