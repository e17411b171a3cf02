//! The commands of the `scalehost` binary: its command line and everything a command does
//! beside serving.
//!
//! - [`cli`]: the command line (clap), dispatched by `main.rs`;
//! - [`client`]: the HTTP API's client side (`scalehost tenants|bindings|plugins …`);
//! - [`demo`]: the finite demo on the simulated cluster;
//! - [`doctor`]: checks a config's backends and permissions;
//! - [`validate`]: checks a plugin and a config without a host;
//! - [`simulate`]: backtests from the command line.

pub mod cli;
pub mod client;
pub mod demo;
pub mod doctor;
pub mod simulate;
pub mod validate;
