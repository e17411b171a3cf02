//! The command line: `serve`, `demo`, `simulate`, `validate`, and the API client commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd::client::ClientCommand;
use crate::cmd::demo::DemoOptions;
use crate::cmd::simulate::SimulateOptions;
use crate::config::{ConfigError, HostConfig};

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
    /// Runs the host until SIGTERM; requests and ticks in flight finish before it exits.
    Serve(ServeOptions),
    /// Replays a day of the NASA trace on the simulated cluster with the seed policies.
    Demo(DemoOptions),
    /// Backtests policies and baselines on a recorded trace (model v1, virtual time).
    Simulate(SimulateOptions),
    /// Checks every configured backend (reachable, authenticated, Kubernetes permissions); one
    /// line per check, non-zero exit when any fails.
    Doctor {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Talks to a running host's API (plugins, tenants, bindings, decisions).
    #[command(flatten)]
    Client(ClientCommand),
    /// Checks that a file is a policy component this host runs, and optionally a config for it.
    Validate {
        /// The component (`.wasm`).
        plugin: PathBuf,
        /// A JSON config to run through the policy's `validate-config`.
        #[arg(long)]
        config: Option<String>,
    },
}

/// `scalehost serve`.
#[derive(Debug, Args)]
pub struct ServeOptions {
    /// The config file (TOML); without it, the embedded simulated cluster and no bindings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve the HTTP API here (overrides `api.listen`), e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where state, plugins and the audit log live (overrides `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A file holding the admin token (else SCALEHOST_ADMIN_TOKEN).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
}

impl ServeOptions {
    /// The config file (or the embedded default) with the flags applied; paths given on the
    /// command line are relative to the working directory.
    pub fn host_config(&self) -> Result<HostConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => HostConfig::from_file(path)?,
            None => HostConfig::embedded_default(),
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        if let Some(listen) = self.listen {
            config.api.listen = Some(listen);
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = cwd.join(dir);
        }
        if let Some(file) = &self.admin_token_file {
            config.api.admin_token_file = Some(cwd.join(file));
        }
        Ok(config)
    }
}
