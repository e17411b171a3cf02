//! The `scalehost` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use scalehost::cmd::cli::{Cli, Command};

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
    match scalehost::cmd::run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", scalehost::domain::display_chain(&error));
            ExitCode::FAILURE
        }
    }
}
