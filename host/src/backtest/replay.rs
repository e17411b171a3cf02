//! Backtest model v1: one workload, demand from a trace, replicas Ready after a startup delay.
//!
//! The model (`docs/backtests.md`, "Backtest model v1"), exactly:
//! - demand in replica units `d(t) = requests(minute of t) / capacity_per_replica`, holding for
//!   the whole minute;
//! - a replica added at `t` is Ready at `t + startup_delay`; removing replicas removes
//!   not-yet-Ready ones first (newest first), and a removed replica stops counting at once;
//!   cost counts every existing replica, Ready or not;
//! - a minute is an **SLO-violation minute** when `d > ready` at any instant of it; dropped
//!   requests are `∫ max(0, d − ready) · capacity_per_replica dt`.
//!
//! Integration is exact: between two events (a tick, a replica becoming Ready, a minute
//! boundary) nothing changes. The model also serves the `metrics` interface for policies: the
//! workload `backtest/app` (see [`BacktestCluster`]).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::domain::promql::{
    self, Labels, Selector, SeriesSource, WORKLOAD_METRICS, workload_labels,
};
use async_trait::async_trait;

use crate::backends::{Actuator, Clock, MetricSource, VmInventory, WorkloadReader};
use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, Sample, Series, TimestampMs, Vm,
    WorkloadKind, WorkloadRef, WorkloadStatus,
};

pub(crate) use crate::domain::trace::MINUTE_MS;
/// CPU request of one replica: usage is reported relative to it.
pub const CPU_REQUEST_MILLIS: u64 = 1000;
use crate::backends::simulated::{CPU_BURST, EVENT_RETENTION_MS};

/// The workload every backtest scales.
pub fn workload() -> WorkloadRef {
    WorkloadRef {
        kind: WorkloadKind::Deployment,
        namespace: "backtest".into(),
        name: "app".into(),
    }
}

/// The running totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Minutes with demand above Ready replicas at some instant.
    pub violation_minutes: u64,
    /// Requests not served.
    pub dropped_requests: f64,
    /// Replica-milliseconds of existing replicas.
    pub replica_ms: u128,
    /// Ticks at which the replica count changed.
    pub scale_actions: u64,
    /// Most replicas at once.
    pub max_replicas: u32,
}

/// The model's state, advanced in virtual time.
pub(crate) struct Model {
    /// Requests per minute, the run's minutes only.
    requests: Vec<f64>,
    capacity_per_replica: f64,
    startup_delay_ms: u64,
    /// Virtual time of the run's first minute.
    start: TimestampMs,
    now: TimestampMs,
    replicas: u32,
    ready: u32,
    /// (Ready at, count), oldest first.
    starting: VecDeque<(TimestampMs, u32)>,
    violated_minute: Option<u64>,
    pub(crate) totals: Totals,
    /// Ready replicas at the end of each minute, for charts.
    pub(crate) ready_by_minute: Vec<u32>,
    /// (time, Ready replicas, requests per minute) at each observation, for pushed events.
    observations: VecDeque<(TimestampMs, u32, f64)>,
    event_interval_ms: u64,
}

impl Model {
    pub(crate) fn new(
        requests: Vec<f64>,
        capacity_per_replica: f64,
        startup_delay_ms: u64,
        start: TimestampMs,
        initial_replicas: u32,
        event_interval_ms: u64,
    ) -> Self {
        let minutes = requests.len();
        Model {
            requests,
            capacity_per_replica,
            startup_delay_ms,
            start,
            now: start,
            replicas: initial_replicas,
            ready: initial_replicas,
            starting: VecDeque::new(),
            violated_minute: None,
            totals: Totals {
                max_replicas: initial_replicas,
                ..Totals::default()
            },
            ready_by_minute: Vec::with_capacity(minutes),
            observations: VecDeque::new(),
            event_interval_ms,
        }
    }

    pub(crate) fn end(&self) -> TimestampMs {
        self.start + self.requests.len() as u64 * MINUTE_MS
    }

    pub(crate) fn now(&self) -> TimestampMs {
        self.now
    }

    fn minute_index(&self, t: TimestampMs) -> usize {
        (((t - self.start) / MINUTE_MS) as usize).min(self.requests.len().saturating_sub(1))
    }

    /// Requests per minute at `t`.
    pub(crate) fn requests_at(&self, t: TimestampMs) -> f64 {
        self.requests[self.minute_index(t.clamp(self.start, self.end().saturating_sub(1)))]
    }

    /// Demand at `t` in replica units.
    fn demand_at(&self, t: TimestampMs) -> f64 {
        self.requests_at(t) / self.capacity_per_replica
    }

    /// Integrates up to `t`: replicas becoming Ready, violations, dropped requests and cost.
    pub(crate) fn advance_to(&mut self, t: TimestampMs) {
        let t = t.min(self.end());
        while self.now < t {
            let next_minute =
                (self.now - self.start) / MINUTE_MS * MINUTE_MS + MINUTE_MS + self.start;
            let next_ready = self.starting.front().map_or(u64::MAX, |s| s.0);
            let until = t.min(next_minute).min(next_ready.max(self.now + 1));
            let demand = self.demand_at(self.now);
            let span = until - self.now;
            self.totals.replica_ms += u128::from(self.replicas) * u128::from(span);
            let ready = f64::from(self.ready);
            if demand > ready {
                let minute = (self.now - self.start) / MINUTE_MS;
                if self.violated_minute != Some(minute) {
                    self.violated_minute = Some(minute);
                    self.totals.violation_minutes += 1;
                }
                self.totals.dropped_requests +=
                    (demand - ready) * self.capacity_per_replica * span as f64 / MINUTE_MS as f64;
            }
            self.now = until;
            while self.starting.front().is_some_and(|s| s.0 <= self.now) {
                if let Some((_, count)) = self.starting.pop_front() {
                    self.ready += count;
                }
            }
            if self.now == next_minute {
                self.ready_by_minute.push(self.ready);
            }
        }
    }

    /// Sets the replica count now; returns whether it changed.
    pub(crate) fn scale(&mut self, replicas: u32) -> bool {
        if replicas == self.replicas {
            return false;
        }
        if replicas > self.replicas {
            self.starting
                .push_back((self.now + self.startup_delay_ms, replicas - self.replicas));
        } else {
            let mut remove = self.replicas - replicas;
            while remove > 0 {
                match self.starting.back_mut() {
                    Some(newest) if newest.1 > remove => {
                        newest.1 -= remove;
                        remove = 0;
                    }
                    Some(_) => {
                        if let Some((_, count)) = self.starting.pop_back() {
                            remove -= count;
                        }
                    }
                    None => {
                        self.ready -= remove;
                        remove = 0;
                    }
                }
            }
        }
        if self.startup_delay_ms == 0 {
            self.ready += self.starting.drain(..).map(|s| s.1).sum::<u32>();
        }
        self.replicas = replicas;
        self.totals.scale_actions += 1;
        self.totals.max_replicas = self.totals.max_replicas.max(replicas);
        true
    }

    /// What a policy reads of the workload now.
    pub(crate) fn status(&self) -> WorkloadStatus {
        let usage = (self.ready > 0).then(|| {
            let wanted = self.demand_at(self.now) * CPU_REQUEST_MILLIS as f64;
            wanted
                .min(f64::from(self.ready) * CPU_REQUEST_MILLIS as f64 * CPU_BURST)
                .round() as u64
        });
        WorkloadStatus {
            replicas: self.replicas,
            ready: self.ready,
            cpu_request_millis: CPU_REQUEST_MILLIS,
            cpu_usage_millis: usage,
        }
    }

    /// Notes the state at a tick, for pushed events.
    pub(crate) fn observe(&mut self) {
        let entry = (self.now, self.ready, self.requests_at(self.now));
        self.observations.push_back(entry);
        while self
            .observations
            .front()
            .is_some_and(|o| o.0 + EVENT_RETENTION_MS < self.now)
        {
            self.observations.pop_front();
        }
    }
}

/// The model behind a lock, serving the `metrics` interface and the clock to a policy.
///
/// It answers for the workload `backtest/app` only: `metrics.workload`; `metrics.capacity` (one
/// node with room for everything); `metrics.query` for `scalehost_requests_per_minute`,
/// `scalehost_replicas`, `scalehost_ready_replicas`, `scalehost_cpu_usage_millis`,
/// `scalehost_cpu_utilization` (labels `namespace="backtest"`, `workload="app"`);
/// `metrics.query-range` for `scalehost_requests_per_minute` (the past of the trace);
/// `metrics.events` for `backtest/app/requests` and `backtest/app/cpu`, one sample per Ready
/// replica at each tick (requests received since the previous tick, CPU percent).
pub struct BacktestCluster {
    model: Mutex<Model>,
}

impl BacktestCluster {
    pub(crate) fn new(model: Model) -> Self {
        BacktestCluster {
            model: Mutex::new(model),
        }
    }

    pub(crate) fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(target: &WorkloadRef) -> Result<(), BackendError> {
        if *target == workload() {
            Ok(())
        } else {
            Err(BackendError::NotFound(format!(
                "{target}: backtests have one workload, deployment/backtest/app"
            )))
        }
    }
}

// The model answers the workload metrics for `backtest/app` only; only demand has a past.
impl SeriesSource for Model {
    fn select(
        &self,
        selector: &Selector<'_>,
        at: TimestampMs,
    ) -> Result<Vec<(Labels, f64)>, BackendError> {
        let mut out = Vec::new();
        if at > self.now || at < self.start {
            return Ok(out);
        }
        let status = self.status();
        for metric in WORKLOAD_METRICS {
            let labels = workload_labels(metric, "backtest", "app");
            if !selector.matches(&labels) {
                continue;
            }
            let demand = metric == "scalehost_requests_per_minute";
            if at < self.now && !demand {
                return Err(BackendError::Invalid(format!(
                    "backtests keep no history of {metric}; only scalehost_requests_per_minute has a past"
                )));
            }
            let value = match metric {
                "scalehost_requests_per_minute" => Some(self.requests_at(at)),
                "scalehost_replicas" => Some(f64::from(status.replicas)),
                "scalehost_ready_replicas" => Some(f64::from(status.ready)),
                "scalehost_cpu_usage_millis" => status.cpu_usage_millis.map(|u| u as f64),
                _ => status
                    .cpu_usage_millis
                    .map(|u| u as f64 / (f64::from(status.ready) * CPU_REQUEST_MILLIS as f64)),
            };
            if let Some(value) = value {
                out.push((labels, value));
            }
        }
        Ok(out)
    }
}

impl Clock for BacktestCluster {
    fn now_ms(&self) -> TimestampMs {
        self.model().now
    }
}

#[async_trait]
impl MetricSource for BacktestCluster {
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        let model = self.model();
        promql::evaluate(promql, at.min(model.now), &*model)
    }

    async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        if step_ms == 0 || end < start || (end - start) / step_ms > 11_000 {
            return Err(BackendError::Invalid(
                "range query needs step > 0, end >= start, at most 11000 points".into(),
            ));
        }
        let model = self.model();
        // Before the trace there is nothing: the range starts with it.
        let from = start.max(model.start);
        let end = end.min(model.now);
        if from > end {
            return Ok(Vec::new());
        }
        promql::evaluate_range(promql, from, end, step_ms, &*model)
    }

    async fn events(
        &self,
        service: &str,
        window_ms: u64,
        now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError> {
        let metric = match service.strip_prefix("backtest/app/") {
            Some(metric @ ("requests" | "cpu")) => metric,
            _ => return Ok(Vec::new()),
        };
        let model = self.model();
        let from = now.saturating_sub(window_ms);
        let interval_minutes = model.event_interval_ms as f64 / MINUTE_MS as f64;
        let mut hosts: Vec<Series> = Vec::new();
        for &(at, ready, requests) in model
            .observations
            .iter()
            .filter(|o| o.0 > from && o.0 <= now)
        {
            if ready == 0 {
                continue;
            }
            let value = match metric {
                "requests" => requests * interval_minutes / f64::from(ready),
                _ => {
                    100.0
                        * (requests / model.capacity_per_replica).min(f64::from(ready) * CPU_BURST)
                        / f64::from(ready)
                }
            };
            while hosts.len() < ready as usize {
                let host = format!("app-{}", hosts.len());
                hosts.push(Series {
                    labels: vec![("host".into(), host)],
                    samples: Vec::new(),
                });
            }
            for host in hosts.iter_mut().take(ready as usize) {
                host.samples.push(Sample { at, value });
            }
        }
        Ok(hosts)
    }
}

#[async_trait]
impl WorkloadReader for BacktestCluster {
    async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        Self::check(target)?;
        Ok(self.model().status())
    }

    async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        let model = self.model();
        let counted = if exclude.contains(&workload()) {
            0
        } else {
            u64::from(model.replicas)
        };
        Ok(Capacity {
            nodes: 1,
            allocatable_cpu_millis: 1 << 40,
            requested_cpu_millis: counted * CPU_REQUEST_MILLIS,
            allocatable_memory_bytes: 1 << 50,
            requested_memory_bytes: counted << 28,
            pending_pods: 0,
        })
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        Err(BackendError::Unavailable("backtests model no nodes".into()))
    }

    async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl VmInventory for BacktestCluster {
    async fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError> {
        Err(BackendError::NotFound(format!(
            "vm pool {pool}: backtests have no VM pools"
        )))
    }
}

#[async_trait]
impl Actuator for BacktestCluster {
    async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError> {
        Self::check(target)?;
        self.model().scale(replicas);
        Ok(())
    }

    async fn set_power(
        &self,
        pool: &str,
        _vm_id: &str,
        _state: PowerState,
    ) -> Result<(), BackendError> {
        self.vms(pool).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 minutes at 150 rpm, then 2 at 350, capacity 100 per replica.
    fn model(delay_ms: u64) -> Model {
        Model::new(
            vec![150.0, 150.0, 350.0, 350.0],
            100.0,
            delay_ms,
            0,
            2,
            15_000,
        )
    }

    #[test]
    fn a_late_scale_up_violates_until_the_replicas_are_ready() {
        let mut m = model(60_000);
        m.advance_to(2 * MINUTE_MS);
        assert_eq!(m.totals.violation_minutes, 0);
        assert!(m.scale(4));
        m.advance_to(4 * MINUTE_MS);
        // Minute 2: 3.5 demanded, 2 ready all minute; minute 3: 4 ready from its start.
        assert_eq!(m.totals.violation_minutes, 1);
        assert!(
            (m.totals.dropped_requests - 150.0).abs() < 1e-9,
            "{}",
            m.totals.dropped_requests
        );
        // Cost: 2 replicas × 2 min + 4 × 2 min.
        assert_eq!(m.totals.replica_ms, u128::from(12 * MINUTE_MS));
        assert_eq!(m.ready_by_minute, [2, 2, 4, 4]);
    }

    #[test]
    fn scaling_down_removes_starting_replicas_first_and_stops_counting_at_once() {
        let mut m = model(60_000);
        m.scale(5);
        m.advance_to(30_000);
        m.scale(3);
        assert_eq!((m.replicas, m.ready), (3, 2));
        m.scale(1);
        assert_eq!((m.replicas, m.ready), (1, 1));
        m.advance_to(MINUTE_MS);
        assert_eq!(m.totals.replica_ms, 5 * 30_000 + 30_000_u128);
        assert_eq!(m.totals.scale_actions, 3);
        assert_eq!(m.totals.max_replicas, 5);
    }

    #[tokio::test]
    async fn serves_the_workload_and_events_to_policies() {
        let cluster = BacktestCluster::new(Model::new(vec![150.0], 100.0, 0, 600_000, 2, 15_000));
        cluster.model().observe();
        let status = cluster.workload(&workload()).await.expect("status");
        assert_eq!(
            (status.replicas, status.ready, status.cpu_usage_millis),
            (2, 2, Some(1500))
        );
        let rpm = cluster
            .query("scalehost_requests_per_minute{workload=\"app\"}", 600_000)
            .await
            .expect("query");
        assert_eq!(rpm[0].samples[0].value, 150.0);
        let events = cluster
            .events("backtest/app/requests", 60_000, 600_000)
            .await
            .expect("events");
        assert_eq!(events.len(), 2);
        assert!(
            (events[0].samples[0].value - 18.75).abs() < 1e-9,
            "150 rpm × 0.25 min / 2 hosts"
        );
        assert!(
            cluster
                .workload(&WorkloadRef::deployment("web", "api"))
                .await
                .is_err()
        );
    }
}
