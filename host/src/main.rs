//! The `scalehost` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use scalehost::Host;
use scalehost::cmd::cli::{Cli, Command};
use scalehost::cmd::{demo, validate};
use scalehost::runtime::{EngineConfig, PolicyEngine};

fn main() -> ExitCode {
    match scalehost::runtime() {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = cli.log.clone().unwrap_or_else(|| default_filter.to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(options) => {
            Host::from_config(options.host_config()?)
                .await?
                .run()
                .await?;
        }
        Command::Doctor { config } => {
            let config = scalehost::config::HostConfig::from_file(&config)?;
            let checks = scalehost::cmd::doctor::run(&config).await;
            for check in &checks {
                println!("{check}");
            }
            if checks.iter().any(|c| !c.ok) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Client(command) => {
            return Ok(scalehost::cmd::client::run(command).await);
        }
        Command::Demo(options) => {
            demo::run(options).await?;
        }
        // A backtest replays ticks flat out on a runtime of its own, off the async workers.
        Command::Simulate(options) => {
            tokio::task::spawn_blocking(move || {
                let engine = PolicyEngine::new(&EngineConfig::default())
                    .context("starting the wasm engine")?;
                scalehost::cmd::simulate::run(&options, &engine)?;
                anyhow::Ok(())
            })
            .await??;
        }
        Command::Validate { plugin, config } => {
            let engine =
                PolicyEngine::new(&EngineConfig::default()).context("starting the wasm engine")?;
            let validated = validate::validate_plugin(&engine, &plugin, config.as_deref()).await;
            match validated {
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
                    eprintln!("invalid: {}", scalehost::domain::display_chain(&error));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
