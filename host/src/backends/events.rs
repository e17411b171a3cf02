//! Pushed events (as Diamond collectors push to Riemann): kept per service and source host in a
//! bounded window, served to policies by `metrics.events`, expired by their ttl.
//!
//! Start with [`EventStore::push`] (what `POST /v1/events` calls) and [`EventStore::series`]
//! (what `metrics.events` reads). [`WithPushedEvents`] adds the store to any [`Cluster`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use super::{Actuator, Cluster, MetricSource, VmInventory, WorkloadReader};
use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, Sample, Series, TimestampMs, Vm,
    WorkloadRef, WorkloadStatus,
};

/// Events kept per service and host at most; the oldest go first.
pub const MAX_EVENTS_PER_SERIES: usize = 4096;
/// How long an event without a ttl is kept, and the longest ttl honoured, seconds.
pub const MAX_AGE_SECS: f64 = 3600.0;
/// Events accepted in one batch at most.
pub const MAX_BATCH: usize = 10_000;

/// One pushed event, as Riemann's: `time` and `ttl` in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The source host.
    pub host: String,
    /// The service, `<namespace>/…` (the namespace scopes who may push and read it).
    pub service: String,
    /// The value.
    pub metric: f64,
    /// When it was measured, Unix seconds.
    pub time: f64,
    /// Seconds it stays valid (default and cap [`MAX_AGE_SECS`]).
    #[serde(default)]
    pub ttl: Option<f64>,
}

/// Why a batch was refused; nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Empty, or larger than [`MAX_BATCH`].
    #[error("a batch holds 1 to {MAX_BATCH} events, this one {0}")]
    BatchSize(usize),
    /// One event is malformed.
    #[error("event {index}: {message}")]
    Invalid {
        /// Its position in the batch.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Kept {
    at: TimestampMs,
    value: f64,
    expires: TimestampMs,
}

/// The host's pushed events, shared by every tenant (reads are scoped by service namespace).
#[derive(Default)]
pub struct EventStore {
    series: Mutex<BTreeMap<(String, String), VecDeque<Kept>>>,
}

impl EventStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(EventStore::default())
    }

    /// Checks a whole batch, then keeps all of it (or nothing). Returns how many were kept.
    pub fn push(&self, events: &[Event]) -> Result<usize, EventError> {
        if events.is_empty() || events.len() > MAX_BATCH {
            return Err(EventError::BatchSize(events.len()));
        }
        for (index, event) in events.iter().enumerate() {
            check(event).map_err(|message| EventError::Invalid { index, message })?;
        }
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for event in events {
            let at = (event.time * 1000.0).round() as u64;
            let ttl = event.ttl.unwrap_or(MAX_AGE_SECS).min(MAX_AGE_SECS);
            let kept = Kept {
                at,
                value: event.metric,
                expires: at + (ttl * 1000.0).round() as u64,
            };
            let queue = series
                .entry((event.service.clone(), event.host.clone()))
                .or_default();
            // Keep each series in time order; late events are rare and short-travelled.
            let position = queue.iter().rposition(|k| k.at <= at).map_or(0, |p| p + 1);
            queue.insert(position, kept);
            while queue.len() > MAX_EVENTS_PER_SERIES {
                queue.pop_front();
            }
        }
        Ok(events.len())
    }

    /// The events of `service` in `(now - window_ms, now]` still valid at `now`, one series per
    /// host (label `host`), oldest first. Expired events are dropped on the way.
    pub fn series(&self, service: &str, window_ms: u64, now: TimestampMs) -> Vec<Series> {
        let from = now.saturating_sub(window_ms);
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        all.retain(|(svc, host), queue| {
            while queue
                .front()
                .is_some_and(|k| k.expires <= now || k.at + (MAX_AGE_SECS as u64) * 1000 <= now)
            {
                queue.pop_front();
            }
            if svc == service {
                let samples: Vec<Sample> = queue
                    .iter()
                    .filter(|k| k.at > from && k.at <= now && k.expires > now)
                    .map(|k| Sample {
                        at: k.at,
                        value: k.value,
                    })
                    .collect();
                if !samples.is_empty() {
                    out.push(Series {
                        labels: vec![("host".to_owned(), host.clone())],
                        samples,
                    });
                }
            }
            !queue.is_empty()
        });
        out
    }
}

fn check(event: &Event) -> Result<(), String> {
    if event.host.trim().is_empty() || event.host.len() > 253 {
        return Err("host must be 1 to 253 characters".into());
    }
    let namespace = event.service.split('/').next().unwrap_or_default();
    if namespace.is_empty() || !event.service.contains('/') || event.service.len() > 512 {
        return Err(format!(
            "service {:?} must be <namespace>/<name> (at most 512 characters)",
            event.service
        ));
    }
    if !event.metric.is_finite() {
        return Err("metric must be a finite number".into());
    }
    if !event.time.is_finite() || event.time <= 0.0 {
        return Err("time must be Unix seconds".into());
    }
    if let Some(ttl) = event.ttl
        && (!ttl.is_finite() || ttl <= 0.0)
    {
        return Err("ttl must be a positive number of seconds".into());
    }
    Ok(())
}

/// A cluster whose `metrics.events` also serves the host's pushed events.
pub struct WithPushedEvents {
    inner: Arc<dyn Cluster>,
    store: Arc<EventStore>,
}

impl WithPushedEvents {
    /// `inner`, plus `store` for events.
    pub fn new(inner: Arc<dyn Cluster>, store: Arc<EventStore>) -> Self {
        WithPushedEvents { inner, store }
    }
}

#[async_trait]
impl MetricSource for WithPushedEvents {
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        self.inner.query(promql, at).await
    }

    async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        self.inner.query_range(promql, start, end, step_ms).await
    }

    async fn events(
        &self,
        service: &str,
        window_ms: u64,
        now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError> {
        let mut series = self.inner.events(service, window_ms, now).await?;
        series.extend(self.store.series(service, window_ms, now));
        Ok(series)
    }
}

#[async_trait]
impl WorkloadReader for WithPushedEvents {
    async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        self.inner.workload(target).await
    }

    async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        self.inner.capacity(exclude).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        self.inner.nodes().await
    }

    async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        self.inner.pending_pods().await
    }
}

#[async_trait]
impl VmInventory for WithPushedEvents {
    async fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError> {
        self.inner.vms(pool).await
    }
}

#[async_trait]
impl Actuator for WithPushedEvents {
    async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError> {
        self.inner.scale(target, replicas).await
    }

    async fn set_power(
        &self,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), BackendError> {
        self.inner.set_power(pool, vm_id, state).await
    }

    async fn abandon_power(
        &self,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), BackendError> {
        self.inner.abandon_power(pool, vm_id, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(host: &str, metric: f64, time: f64, ttl: Option<f64>) -> Event {
        Event {
            host: host.into(),
            service: "web/api/requests".into(),
            metric,
            time,
            ttl,
        }
    }

    #[test]
    fn one_series_per_host_within_the_window_until_the_ttl() {
        let store = EventStore::default();
        store
            .push(&[
                event("a", 1.0, 100.0, Some(30.0)),
                event("a", 2.0, 110.0, None),
                event("b", 5.0, 105.0, Some(1.0)),
            ])
            .expect("accepted");
        let at = |s: f64| (s * 1000.0) as u64;
        let series = store.series("web/api/requests", 60_000, at(105.5));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, vec![("host".into(), "a".into())]);
        assert_eq!(series[0].samples.len(), 1, "the event at 110 s is not yet");
        // At 106 s b's event has expired (ttl 1 s); at 131 s a's first one (ttl 30 s).
        assert_eq!(store.series("web/api/requests", 60_000, at(106.0)).len(), 1);
        let later = store.series("web/api/requests", 60_000, at(131.0));
        assert_eq!(
            later[0].samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            vec![2.0]
        );
        assert!(store.series("web/other", 60_000, at(131.0)).is_empty());
    }

    #[test]
    fn a_bad_event_refuses_the_whole_batch() {
        let store = EventStore::default();
        let mut bad = event("a", f64::NAN, 100.0, None);
        let error = store
            .push(&[event("a", 1.0, 100.0, None), bad.clone()])
            .unwrap_err();
        assert_eq!(
            error,
            EventError::Invalid {
                index: 1,
                message: "metric must be a finite number".into()
            }
        );
        assert!(
            store
                .series("web/api/requests", u64::MAX, 200_000)
                .is_empty()
        );
        bad.metric = 1.0;
        bad.service = "no-namespace".into();
        assert!(store.push(&[bad]).is_err());
        assert_eq!(store.push(&[]), Err(EventError::BatchSize(0)));
    }

    #[test]
    fn each_series_is_bounded_and_ordered() {
        let store = EventStore::default();
        let batch: Vec<Event> = (0..MAX_EVENTS_PER_SERIES + 10)
            .rev()
            .map(|i| event("a", i as f64, 1000.0 + i as f64 / 10.0, None))
            .collect();
        store.push(&batch).expect("accepted");
        let series = store.series("web/api/requests", u64::MAX, 2_000_000);
        let samples = &series[0].samples;
        assert_eq!(samples.len(), MAX_EVENTS_PER_SERIES);
        assert!(samples.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
