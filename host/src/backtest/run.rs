//! Runs policies and baselines over one trace on the v1 model and reports them beside the oracle.
//!
//! Start with [`Backtest::new`] (the window, the model's parameters), then
//! [`Backtest::run_policy`] / [`Backtest::run_baseline`] (one run each, independent of the others)
//! and [`Backtest::oracle`]. A policy runs through the same [`TickEngine::tick`] as in the host,
//! against [`BacktestCluster`] in virtual time; the report schema is documented in
//! `docs/backtests.md`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::baselines::{Baseline, Observation};
use super::replay::{BacktestCluster, MINUTE_MS, Model, Totals, workload};
use crate::domain::cluster::DEFAULT_STARTUP_DELAY;
use crate::domain::scope::TenantSpec;
use crate::domain::trace::Trace;
use crate::runtime::{CompiledPolicy, EngineConfig, Limits};
use crate::store::StateStore;
use crate::tick::{
    AuditLog, AuditRecord, BindError, BindingSpec, FallbackSpec, Outcome, TargetSpec, TickEngine,
};

/// Virtual time of minute 0 of every backtest: a Monday, 00:00 UTC.
const EPOCH_MS: u64 = 1_767_571_200_000;

/// How capacity per replica is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CapacityRule {
    /// Requests per minute one replica serves.
    PerReplica(f64),
    /// Such that the window's 99th-percentile minute needs this many replicas.
    P99Replicas(u32),
}

/// The model's parameters and the window of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestSpec {
    /// Time between ticks (default 15 s).
    pub tick: Duration,
    /// From scale-up to Ready (default 60 s).
    pub startup_delay: Duration,
    /// Capacity per replica (default: the p99 minute needs 20 replicas).
    pub capacity: CapacityRule,
    /// First minute of the trace's valid rows to replay.
    pub from_minute: usize,
    /// End minute (exclusive); default the trace's end.
    pub to_minute: Option<usize>,
}

impl Default for BacktestSpec {
    fn default() -> Self {
        BacktestSpec {
            tick: Duration::from_secs(15),
            startup_delay: DEFAULT_STARTUP_DELAY,
            capacity: CapacityRule::P99Replicas(20),
            from_minute: 0,
            to_minute: None,
        }
    }
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The window holds no minute.
    #[error("empty window: minutes {from}..{to} of a trace of {len} valid minutes")]
    EmptyWindow {
        /// First minute asked for.
        from: usize,
        /// End asked for.
        to: usize,
        /// Valid minutes in the trace.
        len: usize,
    },
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The policy refused its config or could not be bound.
    #[error("policy {name}")]
    Bind {
        /// The policy.
        name: String,
        /// Why.
        #[source]
        source: BindError,
    },
}

/// One policy's or baseline's result; the fields are documented in `docs/backtests.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Policy or baseline name.
    pub name: String,
    /// `policy` or `baseline`.
    pub kind: &'static str,
    /// Minutes with demand above Ready replicas at some instant.
    pub violation_minutes: u64,
    /// Dropped requests over all requests.
    pub dropped_share: f64,
    /// Hours of existing replicas.
    pub replica_hours: f64,
    /// `replica_hours` over the oracle's.
    pub cost_vs_oracle: f64,
    /// Ticks at which the replica count changed.
    pub scale_actions: u64,
    /// Most replicas at once.
    pub max_replicas: u32,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that failed (policies only; nothing applied on those).
    pub failed_ticks: u64,
}

/// The oracle: knows the future, `ceil(d)` Ready at every minute, started a startup delay early.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OracleReport {
    /// Always 0: the oracle never lacks capacity.
    pub violation_minutes: u64,
    /// Hours of existing replicas: the cost floor.
    pub replica_hours: f64,
    /// Most replicas at once.
    pub max_replicas: u32,
}

/// One run's report and its Ready replicas per minute (for charts).
#[derive(Debug, Clone)]
pub struct Run {
    /// The numbers.
    pub report: RunReport,
    /// Ready replicas at the end of each minute.
    pub ready_by_minute: Vec<u32>,
}

/// A trace window and the model's parameters, ready to replay.
pub struct Backtest {
    requests: Vec<f64>,
    capacity_per_replica: f64,
    tick_ms: u64,
    startup_delay_ms: u64,
    min_replicas: u32,
    max_replicas: u32,
    from_minute: usize,
    oracle: OracleReport,
}

impl Backtest {
    /// Cuts the window out of `trace` and fixes the model's parameters.
    pub fn new(trace: &Trace, spec: &BacktestSpec) -> Result<Self, BacktestError> {
        let len = trace.requests.len();
        let to = spec.to_minute.unwrap_or(len).min(len);
        if spec.from_minute >= to {
            return Err(BacktestError::EmptyWindow {
                from: spec.from_minute,
                to,
                len,
            });
        }
        let tick_ms = spec.tick.as_millis() as u64;
        if tick_ms == 0 {
            return Err(BacktestError::Invalid("--tick must be > 0".into()));
        }
        let requests = trace.requests[spec.from_minute..to].to_vec();
        let capacity_per_replica = match spec.capacity {
            CapacityRule::PerReplica(c) if c.is_finite() && c > 0.0 => c,
            CapacityRule::PerReplica(c) => {
                return Err(BacktestError::Invalid(format!(
                    "--capacity-per-replica must be > 0, got {c}"
                )));
            }
            CapacityRule::P99Replicas(0) => {
                return Err(BacktestError::Invalid("--p99-replicas must be > 0".into()));
            }
            CapacityRule::P99Replicas(n) => {
                let p99 = percentile(&requests, 0.99);
                if p99 <= 0.0 {
                    return Err(BacktestError::Invalid(
                        "the window's p99 minute has no requests".into(),
                    ));
                }
                p99 / f64::from(n)
            }
        };
        let peak = requests.iter().copied().fold(0.0, f64::max) / capacity_per_replica;
        let startup_delay_ms = spec.startup_delay.as_millis() as u64;
        let oracle = oracle(&requests, capacity_per_replica, startup_delay_ms);
        Ok(Backtest {
            requests,
            capacity_per_replica,
            tick_ms,
            startup_delay_ms,
            min_replicas: 1,
            // Room for any sane policy to overshoot the peak; bounds are the host's rails.
            max_replicas: (2.0 * peak.ceil()).max(10.0) as u32,
            from_minute: spec.from_minute,
            oracle,
        })
    }

    /// Requests per minute one replica serves.
    pub fn capacity_per_replica(&self) -> f64 {
        self.capacity_per_replica
    }

    /// Replicas the policies may use.
    pub fn bounds(&self) -> (u32, u32) {
        (self.min_replicas, self.max_replicas)
    }

    /// The startup delay.
    pub fn startup_delay(&self) -> Duration {
        Duration::from_millis(self.startup_delay_ms)
    }

    /// The window's requests per minute.
    pub fn requests(&self) -> &[f64] {
        &self.requests
    }

    /// The trace minute the replay starts at (`--from`).
    pub fn from_minute(&self) -> usize {
        self.from_minute
    }

    /// Ticks a run makes.
    pub fn ticks(&self) -> u64 {
        (self.requests.len() as u64 * MINUTE_MS).div_ceil(self.tick_ms)
    }

    /// Ceil of the window's peak demand, in replicas.
    pub fn peak_replicas(&self) -> u32 {
        (self.requests.iter().copied().fold(0.0, f64::max) / self.capacity_per_replica).ceil()
            as u32
    }

    /// The oracle's numbers.
    pub fn oracle(&self) -> &OracleReport {
        &self.oracle
    }

    fn model(&self) -> Model {
        let first = (self.requests[0] / self.capacity_per_replica).ceil() as u32;
        let start = EPOCH_MS + self.from_minute as u64 * MINUTE_MS;
        Model::new(
            self.requests.clone(),
            self.capacity_per_replica,
            self.startup_delay_ms,
            start,
            first.clamp(self.min_replicas, self.max_replicas),
            self.tick_ms,
        )
    }

    /// Replays the window with a policy component and its JSON config, bound as the host binds
    /// it (config checked first); `progress` is told the ticks done every so often.
    pub fn run_policy(
        &self,
        name: &str,
        policy: Arc<CompiledPolicy>,
        config: serde_json::Value,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Run, BacktestError> {
        self.run_policy_observed(name, policy, config, progress, &mut |_| {})
    }

    /// [`Backtest::run_policy`], handing every tick's audit record to `on_tick`: what the policy
    /// asked for and what the host did, tick by tick (to compare implementations of a policy).
    pub fn run_policy_observed(
        &self,
        name: &str,
        policy: Arc<CompiledPolicy>,
        config: serde_json::Value,
        progress: &mut dyn FnMut(u64),
        on_tick: &mut dyn FnMut(&AuditRecord),
    ) -> Result<Run, BacktestError> {
        let cluster = Arc::new(BacktestCluster::new(self.model()));
        let state =
            Arc::new(StateStore::in_memory().map_err(|e| BacktestError::Invalid(e.to_string()))?);
        let engine = TickEngine::new(
            cluster.clone(),
            cluster.clone(),
            state,
            Arc::new(AuditLog::in_memory(0)),
            &EngineConfig {
                max_memory_bytes: u64::MAX,
                ..EngineConfig::default()
            },
        );
        // Ticks replay one after another on a runtime of the backtest's own: the deadline and
        // the policy's host calls are awaited there, in this thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| BacktestError::Invalid(format!("cannot start a runtime: {e}")))?;
        engine.add_tenant(TenantSpec {
            name: "backtest".into(),
            namespaces: vec!["backtest".into()],
            workloads: vec![],
            vm_pools: vec![],
            backend: None,
            ..Default::default()
        });
        let app = workload();
        let spec = BindingSpec {
            tenant: "backtest".into(),
            name: name.into(),
            plugin: name.into(),
            interval: Duration::from_millis(self.tick_ms),
            config,
            targets: vec![TargetSpec {
                kind: app.kind,
                namespace: app.namespace.clone(),
                name: app.name.clone(),
                min_replicas: self.min_replicas,
                max_replicas: self.max_replicas,
                max_step_up: None,
                max_step_down: None,
                cooldown_up: Duration::ZERO,
                cooldown_down: Duration::ZERO,
                stabilization_down: Duration::ZERO,
            }],
            vm_pools: vec![],
            // Language runtimes (Python, JS) need more than a few hundred ms on a cold cache;
            // in a backtest a slow tick only costs time.
            limits: Limits {
                deadline: Duration::from_secs(2).max(crate::runtime::DEFAULT_DEADLINE),
                ..Limits::default()
            },
            fallback: FallbackSpec::default(),
        };
        let binding = runtime
            .block_on(engine.bind(spec, policy))
            .map_err(|source| BacktestError::Bind {
                name: name.into(),
                source,
            })?;
        let mut failed = 0;
        let ticks = self.replay(&cluster, progress, |_| {
            let record = runtime.block_on(engine.tick(&binding));
            if let Outcome::Failed { .. } = record.outcome {
                failed += 1;
            }
            on_tick(&record);
        });
        Ok(self.finish(name, "policy", &cluster, ticks, failed))
    }

    /// Replays the window with a native baseline.
    pub fn run_baseline(
        &self,
        mut baseline: Box<dyn Baseline>,
        progress: &mut dyn FnMut(u64),
    ) -> Run {
        let cluster = Arc::new(BacktestCluster::new(self.model()));
        let (min, max) = (self.min_replicas, self.max_replicas);
        let capacity_per_replica = self.capacity_per_replica;
        let ticks = self.replay(&cluster, progress, |cluster| {
            let observation = {
                let model = cluster.model();
                Observation {
                    now: model.now(),
                    status: model.status(),
                    demand_per_minute: model.requests_at(model.now()),
                    capacity_per_replica,
                }
            };
            let wanted = baseline.decide(&observation).clamp(min, max);
            cluster.model().scale(wanted);
        });
        let name = baseline.name().to_owned();
        self.finish(&name, "baseline", &cluster, ticks, 0)
    }

    fn replay(
        &self,
        cluster: &BacktestCluster,
        progress: &mut dyn FnMut(u64),
        mut decide: impl FnMut(&BacktestCluster),
    ) -> u64 {
        let (start, end) = {
            let model = cluster.model();
            (model.now(), model.end())
        };
        let mut ticks = 0;
        let mut t = start;
        while t < end {
            {
                let mut model = cluster.model();
                model.advance_to(t);
                model.observe();
            }
            decide(cluster);
            ticks += 1;
            if ticks % 4096 == 0 {
                progress(ticks);
            }
            t += self.tick_ms;
        }
        cluster.model().advance_to(end);
        progress(ticks);
        ticks
    }

    fn finish(
        &self,
        name: &str,
        kind: &'static str,
        cluster: &BacktestCluster,
        ticks: u64,
        failed_ticks: u64,
    ) -> Run {
        let model = cluster.model();
        let Totals {
            violation_minutes,
            dropped_requests,
            replica_ms,
            scale_actions,
            max_replicas,
        } = model.totals.clone();
        let total_requests: f64 = self.requests.iter().sum();
        let replica_hours = replica_ms as f64 / 3_600_000.0;
        Run {
            report: RunReport {
                name: name.to_owned(),
                kind,
                violation_minutes,
                dropped_share: if total_requests > 0.0 {
                    dropped_requests / total_requests
                } else {
                    0.0
                },
                replica_hours,
                cost_vs_oracle: replica_hours / self.oracle.replica_hours,
                scale_actions,
                max_replicas,
                ticks,
                failed_ticks,
            },
            ready_by_minute: model.ready_by_minute.clone(),
        }
    }
}

/// The `q` quantile (nearest rank) of `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The oracle's cost: at every second `s` it runs `max(ceil d(u))` for `u` in `[s, s + delay]`
/// (a replica needed at `u` exists from `u − delay`), so it is Ready whenever needed.
fn oracle(requests: &[f64], capacity_per_replica: f64, startup_delay_ms: u64) -> OracleReport {
    let need: Vec<u32> = requests
        .iter()
        .map(|r| (r / capacity_per_replica).ceil() as u32)
        .collect();
    let delay_s = startup_delay_ms.div_ceil(1000) as usize;
    let lookahead = (59 + delay_s) / 60;
    // ahead[k][m] = max(need[m..=m+k]).
    let mut ahead = vec![need.clone()];
    for k in 1..=lookahead {
        let prev = &ahead[k - 1];
        let next: Vec<u32> = (0..need.len())
            .map(|m| prev[m].max(need.get(m + k).copied().unwrap_or(0)))
            .collect();
        ahead.push(next);
    }
    let mut replica_seconds: u64 = 0;
    let mut max_replicas = 0;
    for m in 0..need.len() {
        for offset in 0..60 {
            let running = ahead[(offset + delay_s) / 60][m];
            replica_seconds += u64::from(running);
            max_replicas = max_replicas.max(running);
        }
    }
    OracleReport {
        violation_minutes: 0,
        replica_hours: replica_seconds as f64 / 3600.0,
        max_replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_starts_replicas_one_delay_early() {
        // Need 1, 3, 2 replicas; with a 60 s delay minute 0 already runs 3 and minute 1 runs 3.
        let oracle = oracle(&[100.0, 300.0, 200.0], 100.0, 60_000);
        assert_eq!(oracle.max_replicas, 3);
        assert!(
            (oracle.replica_hours - (3.0 + 3.0 + 2.0) / 60.0).abs() < 1e-12,
            "{}",
            oracle.replica_hours
        );
        let no_delay = super::oracle(&[100.0, 300.0, 200.0], 100.0, 0);
        assert!((no_delay.replica_hours - 6.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn p99_capacity_and_windows() {
        let trace = Trace {
            requests: (1..=100).map(f64::from).collect(),
        };
        let spec = BacktestSpec {
            capacity: CapacityRule::P99Replicas(20),
            ..BacktestSpec::default()
        };
        let backtest = Backtest::new(&trace, &spec).expect("builds");
        assert!((backtest.capacity_per_replica() - 99.0 / 20.0).abs() < 1e-12);
        let empty = BacktestSpec {
            from_minute: 100,
            ..BacktestSpec::default()
        };
        assert!(matches!(
            Backtest::new(&trace, &empty),
            Err(BacktestError::EmptyWindow { .. })
        ));
    }
}
