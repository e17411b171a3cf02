//! The commands of the `scalehost` binary: its command line and everything a command does
//! beside serving.
//!
//! - [`cli`]: the command line (clap), parsed by `main.rs` and dispatched by [`run`];
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

use std::process::ExitCode;

use crate::Host;
use crate::config::ConfigError;
use crate::host::HostError;
use crate::runtime::{EngineConfig, EngineError, PolicyEngine};
use cli::Command;

/// Why a command failed (a failed check or an invalid plugin is an exit code, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The config file was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host could not start or stopped with an error.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The wasm engine could not start.
    #[error("starting the wasm engine")]
    Engine(#[from] EngineError),
    /// The demo failed.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    /// The backtest failed.
    #[error(transparent)]
    Simulate(#[from] simulate::SimulateError),
    /// A blocking command's thread panicked.
    #[error("the command's thread panicked")]
    Panicked(#[source] tokio::task::JoinError),
}

/// Runs one command of the binary; its output goes to stdout, what went wrong to stderr.
pub async fn run(command: Command) -> Result<ExitCode, CommandError> {
    match command {
        Command::Serve(options) => {
            Host::from_config(options.host_config()?)
                .await?
                .run()
                .await?;
        }
        Command::Doctor { config } => {
            let config = crate::config::HostConfig::from_file(&config)?;
            let checks = doctor::run(&config).await;
            for check in &checks {
                println!("{check}");
            }
            if checks.iter().any(|c| !c.ok) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Client(command) => return Ok(client::run(command).await),
        Command::Demo(options) => {
            demo::run(options).await?;
        }
        // A backtest replays ticks flat out on a runtime of its own, off the async workers.
        Command::Simulate(options) => {
            tokio::task::spawn_blocking(move || {
                let engine = PolicyEngine::new(&EngineConfig::default())?;
                simulate::run(&options, &engine)?;
                Ok::<_, CommandError>(())
            })
            .await
            .map_err(CommandError::Panicked)??;
        }
        Command::Validate { plugin, config } => {
            let engine = PolicyEngine::new(&EngineConfig::default())?;
            match validate::validate_plugin(&engine, &plugin, config.as_deref()).await {
                Ok(found) => {
                    let checked = if found.config_checked {
                        "config accepted"
                    } else {
                        "no config given"
                    };
                    println!(
                        "ok: {} {} ({} bytes, {checked})",
                        plugin.display(),
                        found.digest,
                        found.size
                    );
                }
                Err(error) => {
                    eprintln!("invalid: {}", crate::domain::display_chain(&error));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
