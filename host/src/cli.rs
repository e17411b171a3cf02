//! The command line: `serve`, `demo`, `validate`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::demo::DemoOptions;
use crate::sim::simulate::SimulateOptions;

/// scalehost runs autoscaling policies as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "scalehost", version, about)]
pub struct Cli {
    /// Log filter (tracing's `EnvFilter` syntax); defaults to `info` for serve, `warn` otherwise.
    #[arg(long, global = true, env = "SCALEHOST_LOG")]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the host with a config file until SIGTERM; ticks in flight finish before it exits.
    Serve {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Replays a day of the NASA trace on the simulated cluster with the seed policies.
    Demo(DemoOptions),
    /// Backtests policies and baselines on a recorded trace (model v1, virtual time).
    Simulate(SimulateOptions),
    /// Checks that a file is a policy component this host runs, and optionally a config for it.
    Validate {
        /// The component (`.wasm`).
        plugin: PathBuf,
        /// A JSON config to run through the policy's `validate-config`.
        #[arg(long)]
        config: Option<String>,
    },
}
