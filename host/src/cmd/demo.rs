//! `scalehost demo`: a finite replay of a day of the NASA trace on the simulated cluster, with the
//! three seed policies bound for the `demo` tenant, printing decisions as they happen.
//!
//! The cluster and bindings are `demo.toml` beside this file, a complete config example. Time is
//! virtual: the demo advances the simulated cluster itself and calls [`TickEngine::tick`] for
//! each binding when it is due, paced to `--speed` virtual seconds per real second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::WorkloadReader;
use crate::backends::simulated::{LoadSpec, SimulatedCluster};
use crate::config::{ConfigError, HostConfig};
use crate::domain::cluster::{TimestampMs, WorkloadRef};
use crate::runtime::Intent;
use crate::tick::{Action, AuditRecord, Outcome, TickEngine};
use crate::{Host, HostError};

/// The demo's cluster, tenant and bindings.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// Where the NASA trace is, seen from the repository root.
pub const DEFAULT_TRACE: &str = "data/traces/nasa_http_1995/nasa_http_1995_per_minute.csv";

use crate::domain::trace::MINUTE_MS;
const DAY_MS: u64 = 86_400_000;
/// Virtual time between two looks at which bindings are due.
const STEP_MS: u64 = 1_000;

/// Options of `scalehost demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// The per-minute trace to replay.
    #[arg(long, default_value = DEFAULT_TRACE)]
    pub trace: PathBuf,
    /// Where the built plugins are (`cargo xtask plugins` puts them there).
    #[arg(long, default_value = "target/plugins")]
    pub plugins: PathBuf,
    /// Virtual seconds per real second; 0 runs as fast as the machine can.
    #[arg(long, default_value_t = 3600.0)]
    pub speed: f64,
    /// Days replayed silently first, so the forecast has history to learn from.
    #[arg(long, default_value_t = 1)]
    pub warmup_days: u32,
    /// Days replayed and shown.
    #[arg(long, default_value_t = 1)]
    pub days: u32,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The trace is not where it was looked for.
    #[error("trace {0} not found: pass --trace (the NASA trace is in data/traces/)")]
    TraceMissing(PathBuf),
    /// A plugin has not been built.
    #[error("plugin {0} not found: run `cargo xtask plugins` first")]
    PluginMissing(PathBuf),
    /// The embedded config is broken.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host did not start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// `--days` was 0.
    #[error("--days must be at least 1")]
    NoDays,
}

/// Per binding: what it did over the shown days.
#[derive(Debug, Clone, Default)]
pub struct BindingSummary {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks failed.
    pub failed: u64,
    /// Actions that changed the cluster.
    pub changes: u64,
}

/// Per workload: how well its replicas met its demand.
#[derive(Debug, Clone, Default)]
pub struct WorkloadSummary {
    /// Minutes with demand above what Ready replicas serve.
    pub violation_minutes: u64,
    /// Minutes observed.
    pub minutes: u64,
    /// Sum of replicas over the minutes.
    pub replica_minutes: u64,
    /// Highest replica count.
    pub max_replicas: u32,
}

/// The demo's result.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    /// By `tenant/binding`.
    pub bindings: BTreeMap<String, BindingSummary>,
    /// By workload.
    pub workloads: BTreeMap<String, WorkloadSummary>,
}

/// Runs the demo and prints its decisions and summary to stdout.
pub async fn run(options: DemoOptions) -> Result<DemoSummary, DemoError> {
    if options.days == 0 {
        return Err(DemoError::NoDays);
    }
    if !options.trace.is_file() {
        return Err(DemoError::TraceMissing(options.trace));
    }
    let data_dir = std::env::temp_dir().join(format!("scalehost-demo-{}", std::process::id()));
    let mut config = HostConfig::from_toml(DEMO_CONFIG, Path::new("demo.toml"), PathBuf::new())?;
    config.data_dir = data_dir.clone();
    for workload in &mut config.cluster.simulated.workloads {
        if let Some(LoadSpec::Trace { path, .. }) = &mut workload.load {
            *path = options.trace.clone();
        }
    }
    for binding in &mut config.bindings {
        let plugin = options.plugins.join(&binding.plugin);
        if !plugin.is_file() {
            return Err(DemoError::PluginMissing(plugin));
        }
        binding.plugin = plugin.to_string_lossy().into_owned();
    }
    println!(
        "scalehost demo: compiling {} policies…",
        config.bindings.len()
    );
    let host = Host::from_config(config).await?;
    let engine = host.engine().clone();
    let sim = host
        .simulated()
        .cloned()
        .expect("the demo config uses the simulated cluster");
    let summary = replay(&engine, &sim, &options).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    print_summary(&summary);
    Ok(summary)
}

async fn replay(
    engine: &Arc<TickEngine>,
    sim: &Arc<SimulatedCluster>,
    options: &DemoOptions,
) -> DemoSummary {
    let start = sim.now();
    let shown_from = start + u64::from(options.warmup_days) * DAY_MS;
    let end = shown_from + u64::from(options.days) * DAY_MS;
    let bindings = engine.bindings();
    let mut due: Vec<TimestampMs> = bindings.iter().map(|_| start).collect();
    let workloads: Vec<WorkloadRef> = sim.workloads();
    let mut summary = DemoSummary::default();
    if options.warmup_days > 0 {
        println!(
            "warming up: {} day(s) of history, not shown…",
            options.warmup_days
        );
    }
    let real_start = Instant::now();
    let mut t = start;
    while t < end {
        sim.advance_to(t);
        let shown = t >= shown_from;
        if shown && t % MINUTE_MS == 0 {
            observe_minute(sim, &workloads, &mut summary).await;
        }
        for (binding, due) in bindings.iter().zip(due.iter_mut()) {
            if t < *due {
                continue;
            }
            *due += binding.spec.interval.as_millis() as u64;
            let record = engine.tick(binding).await;
            if shown {
                report(&record, shown_from, &mut summary);
            }
        }
        t += STEP_MS;
        if shown && options.speed > 0.0 {
            let target = Duration::from_secs_f64((t - shown_from) as f64 / 1000.0 / options.speed);
            if let Some(wait) = target.checked_sub(real_start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    summary
}

async fn observe_minute(
    sim: &SimulatedCluster,
    workloads: &[WorkloadRef],
    summary: &mut DemoSummary,
) {
    for w in workloads {
        let (Ok((demand, per_replica)), Ok(status)) = (sim.load(w), sim.workload(w).await) else {
            continue;
        };
        let entry = summary.workloads.entry(w.to_string()).or_default();
        entry.minutes += 1;
        entry.replica_minutes += u64::from(status.replicas);
        entry.max_replicas = entry.max_replicas.max(status.replicas);
        if demand > f64::from(status.ready) * per_replica {
            entry.violation_minutes += 1;
        }
    }
}

fn report(record: &AuditRecord, day_start: TimestampMs, summary: &mut DemoSummary) {
    let key = format!("{}/{}", record.tenant, record.binding);
    let entry = summary.bindings.entry(key).or_default();
    entry.ticks += 1;
    let minutes = (record.at.saturating_sub(day_start)) / MINUTE_MS;
    let clock = format!(
        "day {} {:02}:{:02}",
        minutes / 1440 + 1,
        minutes / 60 % 24,
        minutes % 60
    );
    if let Outcome::Failed { error } = &record.outcome {
        entry.failed += 1;
        println!("{clock}  {:<18} tick failed: {error}", record.binding);
    }
    for action in record.actions.iter().filter(|a| a.changed()) {
        entry.changes += 1;
        if let Action::Scale {
            target,
            current,
            applied,
            adjustments,
            ..
        } = action
        {
            let reason = record
                .intents
                .iter()
                .rev()
                .find_map(|i| match i {
                    Intent::Scale {
                        target: t, reason, ..
                    } if t == target => Some(reason.as_str()),
                    _ => None,
                })
                .unwrap_or("fallback");
            let rails: Vec<&str> = adjustments.iter().map(|a| a.rail.as_str()).collect();
            let rails = if rails.is_empty() {
                String::new()
            } else {
                format!(" [rails: {}]", rails.join(", "))
            };
            let target = format!("{}/{}", target.namespace, target.name);
            println!(
                "{clock}  {:<18} {target:<14} {current:>3} → {applied:<3} {reason}{rails}",
                record.binding
            );
        }
    }
}

fn print_summary(summary: &DemoSummary) {
    println!();
    println!(
        "{:<28} {:>7} {:>7} {:>8}",
        "binding", "ticks", "failed", "changes"
    );
    for (name, b) in &summary.bindings {
        println!("{name:<28} {:>7} {:>7} {:>8}", b.ticks, b.failed, b.changes);
    }
    println!();
    println!(
        "{:<32} {:>16} {:>14} {:>13}",
        "workload", "SLO-miss minutes", "replica-hours", "max replicas"
    );
    for (name, w) in &summary.workloads {
        println!(
            "{name:<32} {:>9} of {:<4} {:>14.1} {:>13}",
            w.violation_minutes,
            w.minutes,
            w.replica_minutes as f64 / 60.0,
            w.max_replicas
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::DEMO_CONFIG;
    use crate::config::HostConfig;

    #[test]
    fn the_demo_config_parses() {
        let config = HostConfig::from_toml(DEMO_CONFIG, Path::new("demo.toml"), PathBuf::new())
            .expect("the embedded demo config is valid");
        assert_eq!(config.bindings.len(), 3);
        assert_eq!(config.tenants[0].name, "demo");
    }
}
