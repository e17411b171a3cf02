//! `scalehost simulate`: parse the command, load trace and policies, run everything, write reports.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::simulated::read_trace;
use crate::backtest::baselines::{self, BaselineBounds, UnknownBaseline};
use crate::backtest::report::{BacktestReport, ChartError, ModelReport};
use crate::backtest::run::{Backtest, BacktestError, BacktestSpec, CapacityRule, Run};
use crate::domain::trace::TraceError;
use crate::runtime::PolicyEngine;
use crate::runtime::{PluginError, load_plugin};

/// Shipped policies that run without a config (a generic default is derived from the model).
pub const POLICIES_WITH_DEFAULTS: &[&str] =
    &["predictive-forecast", "hpa-classic", "threshold-cooldown"];

/// Options of `scalehost simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// The per-minute trace (CSV with a `requests` column; rows with `valid=0` skipped).
    #[arg(long)]
    pub trace: PathBuf,
    /// A policy: a shipped NAME (target/plugins/NAME.wasm) or FILE.wasm, optionally
    /// `=CONFIG.json`; repeat for several.
    #[arg(long = "policy", value_name = "NAME|FILE.wasm[=CONFIG.json]")]
    pub policies: Vec<String>,
    /// Native baselines, comma-separated: hpa, kpa, static-peak.
    #[arg(long = "baseline", value_delimiter = ',')]
    pub baselines: Vec<String>,
    /// Time between ticks.
    #[arg(long, default_value = "15s", value_parser = crate::domain::duration::parse)]
    pub tick: Duration,
    /// From scale-up to Ready.
    #[arg(long, default_value = "60s", value_parser = crate::domain::duration::parse)]
    pub startup_delay: Duration,
    /// Requests per minute one replica serves.
    #[arg(long, conflicts_with = "p99_replicas")]
    pub capacity_per_replica: Option<f64>,
    /// Replicas the window's p99 minute needs (sets the capacity per replica; default 20).
    #[arg(long)]
    pub p99_replicas: Option<u32>,
    /// First minute (of the valid rows) to replay.
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    /// End minute (exclusive).
    #[arg(long)]
    pub to: Option<usize>,
    /// Writes the report as JSON (schema in docs/backtests.md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draws demand against Ready replicas (`.svg` or `.png`).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Zooms the chart into minutes FROM:TO of the trace (numbered as --from/--to); the
    /// whole window is still replayed and reported.
    #[arg(long, value_name = "FROM:TO")]
    pub chart_window: Option<crate::backtest::report::ChartWindow>,
    /// Where shipped policies are built (`cargo xtask plugins`).
    #[arg(long, default_value = "target/plugins")]
    pub plugins: PathBuf,
}

/// Why `simulate` failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Nothing to run.
    #[error("nothing to simulate: give at least one --policy or --baseline")]
    NothingToRun,
    /// A policy name that is neither shipped nor a file.
    #[error(
        "unknown policy {0:?}: expected FILE.wasm or a shipped policy built into {1} (run `cargo xtask plugins`)"
    )]
    UnknownPolicy(String, String),
    /// A policy without a default config was given none.
    #[error("policy {0:?} needs a config: --policy {0}=CONFIG.json")]
    NeedsConfig(String),
    /// A config file could not be read or parsed.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An unknown baseline.
    #[error(transparent)]
    Baseline(#[from] UnknownBaseline),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The backtest refused its parameters or a policy's config.
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    /// The JSON report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// A policy to run: its name in reports, its component, its config.
struct PolicyToRun {
    name: String,
    path: PathBuf,
    config: serde_json::Value,
}

/// Runs `simulate`: prints the table to stdout, writes JSON and chart if asked, returns the report.
pub fn run(
    options: &SimulateOptions,
    engine: &PolicyEngine,
) -> Result<BacktestReport, SimulateError> {
    if options.policies.is_empty() && options.baselines.is_empty() {
        return Err(SimulateError::NothingToRun);
    }
    let trace = read_trace(&options.trace)?;
    let capacity = match (options.capacity_per_replica, options.p99_replicas) {
        (Some(c), _) => CapacityRule::PerReplica(c),
        (None, Some(n)) => CapacityRule::P99Replicas(n),
        (None, None) => CapacityRule::P99Replicas(20),
    };
    let spec = BacktestSpec {
        tick: options.tick,
        startup_delay: options.startup_delay,
        capacity,
        from_minute: options.from,
        to_minute: options.to,
    };
    let backtest = Backtest::new(&trace, &spec)?;
    let (min_replicas, max_replicas) = backtest.bounds();
    let bounds = BaselineBounds {
        min_replicas,
        max_replicas,
    };
    // Check every argument before the long runs start.
    if let Some(path) = &options.chart {
        crate::backtest::report::check_chart_path(path)?;
    }
    if let Some(window) = options.chart_window {
        window.within(&backtest)?;
    }
    let mut baselines = Vec::new();
    for name in &options.baselines {
        baselines.push(baselines::by_name(
            name.trim(),
            bounds,
            backtest.peak_replicas(),
        )?);
    }
    let policies: Vec<PolicyToRun> = options
        .policies
        .iter()
        .map(|arg| resolve_policy(arg, &options.plugins, &backtest))
        .collect::<Result<_, _>>()?;
    let compiled = policies
        .iter()
        .map(|p| load_plugin(engine, &p.path).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;

    let total_ticks = backtest.ticks() * (policies.len() + baselines.len()) as u64;
    let mut progress = Progress::new(total_ticks);
    let mut runs: Vec<Run> = Vec::new();
    for (policy, component) in policies.iter().zip(compiled) {
        let done = progress.done;
        let run =
            backtest.run_policy(&policy.name, component, policy.config.clone(), &mut |t| {
                progress.set(done + t)
            })?;
        progress.done = done + backtest.ticks();
        runs.push(run);
    }
    for baseline in baselines {
        let done = progress.done;
        runs.push(backtest.run_baseline(baseline, &mut |t| progress.set(done + t)));
        progress.done = done + backtest.ticks();
    }
    progress.finish();

    let report = BacktestReport {
        trace: options.trace.display().to_string(),
        model: ModelReport {
            tick_secs: options.tick.as_secs_f64(),
            startup_delay_secs: options.startup_delay.as_secs_f64(),
            capacity_per_replica: backtest.capacity_per_replica(),
            from_minute: options.from,
            to_minute: options.from + backtest.requests().len(),
            minutes: backtest.requests().len(),
            min_replicas,
            max_replicas,
        },
        oracle: backtest.oracle().clone(),
        policies: runs.iter().map(|r| r.report.clone()).collect(),
    };
    print!("{}", report.table());
    if let Some(path) = &options.json {
        let mut json = serde_json::to_string_pretty(&report).unwrap_or_default();
        json.push('\n');
        std::fs::write(path, json).map_err(|source| SimulateError::Write {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &options.chart {
        crate::backtest::report::chart(path, &backtest, &runs, options.chart_window)?;
    }
    Ok(report)
}

/// `NAME|FILE.wasm[=CONFIG.json]` → what to run.
fn resolve_policy(
    arg: &str,
    plugins: &Path,
    backtest: &Backtest,
) -> Result<PolicyToRun, SimulateError> {
    let (what, config_path) = match arg.split_once('=') {
        Some((what, config)) => (what, Some(PathBuf::from(config))),
        None => (arg, None),
    };
    let (name, path) = if what.ends_with(".wasm") {
        let path = PathBuf::from(what);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| what.to_owned());
        (name, path)
    } else {
        let path = plugins.join(format!("{what}.wasm"));
        if !path.is_file() {
            return Err(SimulateError::UnknownPolicy(
                what.to_owned(),
                plugins.display().to_string(),
            ));
        }
        (what.to_owned(), path)
    };
    let config = match config_path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| SimulateError::Config {
                path: path.clone(),
                message: e.to_string(),
            })?;
            serde_json::from_str(&text).map_err(|e| SimulateError::Config {
                path,
                message: e.to_string(),
            })?
        }
        None => default_config(&name, backtest)
            .ok_or_else(|| SimulateError::NeedsConfig(name.clone()))?,
    };
    Ok(PolicyToRun { name, path, config })
}

/// Generic configs for the shipped policies, from the model's parameters only.
pub fn default_config(name: &str, backtest: &Backtest) -> Option<serde_json::Value> {
    let target =
        serde_json::json!({ "kind": "deployment", "namespace": "backtest", "name": "app" });
    let (min, max) = backtest.bounds();
    let capacity = backtest.capacity_per_replica();
    let horizon = backtest.startup_delay().as_secs();
    Some(match name {
        "predictive-forecast" => serde_json::json!({
            "target": target,
            "metric": "scalehost_requests_per_minute{namespace=\"backtest\",workload=\"app\"}",
            "capacity_per_replica": capacity,
            "horizon_secs": horizon,
            "min_replicas": min,
            "max_replicas": max,
        }),
        "hpa-classic" => serde_json::json!({
            "target": target,
            "min_replicas": min,
            "max_replicas": max,
        }),
        "threshold-cooldown" => {
            // Per-host requests over a 60 s window: scale up above 80% of what a replica serves,
            // down below 40%.
            serde_json::json!({
                "target": target,
                "source": { "events": { "service": "backtest/app/requests" } },
                "window_secs": 60,
                "cooldown_secs": 60,
                "rules": [
                    { "direction": "up", "threshold": 0.8 * capacity, "step": { "by": 2 }, "limit": max },
                    { "direction": "down", "threshold": 0.4 * capacity, "step": { "by": -1 }, "limit": min },
                ],
            })
        }
        _ => return None,
    })
}

/// A progress bar on stderr, shown only on a terminal and only once a run takes over a second.
struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            bar: None,
            enabled: std::io::stdout().is_terminal(),
        }
    }

    fn set(&mut self, ticks: u64) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() > Duration::from_secs(1) {
            let bar = indicatif::ProgressBar::new(self.total);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ticks ({eta} left)")
            {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(ticks);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
