//! Pushed events (as Diamond collectors push to Riemann): kept per backend, service and source
//! host in a bounded window, each pusher within its quotas, served to policies by
//! `metrics.events`, expired by their ttl (on reads and on the host's timer).
//!
//! Start with [`EventStore::push`] (what `POST /v1/events` calls) and [`EventStore::series`]
//! (what `metrics.events` reads). [`WithPushedEvents`] adds the store to any [`Cluster`].

use std::collections::{BTreeMap, HashMap, VecDeque};
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
    /// Keeping the batch would take its pusher past a quota.
    #[error("{0}")]
    Quota(String),
}

/// What one push may use: the pusher's quotas and its backend's clock.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// The backend's time now (its clock: virtual on the simulated cluster).
    pub now: TimestampMs,
    /// How far in the future of `now` an event may be stamped.
    pub max_skew_ms: u64,
    /// The most (service, host) series the pusher may keep.
    pub max_series: usize,
    /// The most bytes the pusher's events may hold (see [`EVENT_BYTES`]).
    pub max_bytes: usize,
}

/// What one kept event costs a pusher's byte quota (its series' names are charged once).
pub const EVENT_BYTES: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Kept {
    at: TimestampMs,
    value: f64,
    expires: TimestampMs,
}

/// Where a series lives: (backend, service, host). The backend is the pusher's: events of one
/// cluster never answer another's policies.
type SeriesKey = (String, String, String);

struct Stream {
    owner: String,
    queue: VecDeque<Kept>,
}

impl Stream {
    fn bytes(key: &SeriesKey, len: usize) -> usize {
        key.1.len() + key.2.len() + len * EVENT_BYTES
    }
}

/// What one pusher keeps.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    series: usize,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<SeriesKey, Stream>,
    usage: HashMap<String, Usage>,
}

impl Inner {
    /// Drops `key`'s events that `expired` says are gone, and the series when empty.
    fn expire(&mut self, key: &SeriesKey, expired: impl Fn(&Kept) -> bool) {
        let Some(stream) = self.series.get_mut(key) else {
            return;
        };
        let before = stream.queue.len();
        while stream.queue.front().is_some_and(&expired) {
            stream.queue.pop_front();
        }
        let after = stream.queue.len();
        let usage = self.usage.entry(stream.owner.clone()).or_default();
        usage.bytes = usage.bytes.saturating_sub((before - after) * EVENT_BYTES);
        if after == 0 {
            usage.bytes = usage.bytes.saturating_sub(Stream::bytes(key, 0));
            usage.series = usage.series.saturating_sub(1);
            let owner = stream.owner.clone();
            self.series.remove(key);
            if self.usage.get(&owner).is_some_and(|u| u.series == 0) {
                self.usage.remove(&owner);
            }
        }
    }
}

/// The host's pushed events, per backend, service and source host; each pusher bounded by its
/// quotas (reads are scoped by service namespace).
#[derive(Default)]
pub struct EventStore {
    inner: Mutex<Inner>,
}

impl EventStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(EventStore::default())
    }

    /// Checks a whole batch that `owner` pushes for `backend`, then keeps all of it (or
    /// nothing). Returns how many were kept.
    pub fn push(
        &self,
        backend: &str,
        owner: &str,
        events: &[Event],
        limits: &PushLimits,
    ) -> Result<usize, EventError> {
        if events.is_empty() || events.len() > MAX_BATCH {
            return Err(EventError::BatchSize(events.len()));
        }
        let oldest = limits.now.saturating_sub(MAX_AGE_SECS as u64 * 1000);
        let newest = limits.now.saturating_add(limits.max_skew_ms);
        for (index, event) in events.iter().enumerate() {
            check(event).map_err(|message| EventError::Invalid { index, message })?;
            let at = stamp(event);
            if at <= oldest || at > newest {
                return Err(EventError::Invalid {
                    index,
                    message: format!(
                        "time {} is outside the backend's window: at most {} s old and {} s ahead of its clock ({})",
                        event.time,
                        MAX_AGE_SECS,
                        limits.max_skew_ms / 1000,
                        limits.now as f64 / 1000.0
                    ),
                });
            }
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // What the pusher would keep after the batch: series lengths capped as they will be.
        let mut added: BTreeMap<SeriesKey, usize> = BTreeMap::new();
        for event in events {
            *added
                .entry((
                    backend.to_owned(),
                    event.service.clone(),
                    event.host.clone(),
                ))
                .or_default() += 1;
        }
        let mut usage = inner.usage.get(owner).copied().unwrap_or_default();
        for (key, count) in &added {
            match inner.series.get(key) {
                Some(stream) => {
                    let len = stream.queue.len();
                    let grown = (len + count).min(MAX_EVENTS_PER_SERIES);
                    usage.bytes += (grown - len) * EVENT_BYTES;
                }
                None => {
                    usage.series += 1;
                    usage.bytes += Stream::bytes(key, (*count).min(MAX_EVENTS_PER_SERIES));
                }
            }
        }
        if usage.series > limits.max_series {
            return Err(EventError::Quota(format!(
                "{owner} would keep {} event series (service, host), over its {} (quotas.max_event_series)",
                usage.series, limits.max_series
            )));
        }
        if usage.bytes > limits.max_bytes {
            return Err(EventError::Quota(format!(
                "{owner} would keep {} bytes of events, over its {} (quotas.max_event_bytes)",
                usage.bytes, limits.max_bytes
            )));
        }
        for event in events {
            let at = stamp(event);
            let ttl = event.ttl.unwrap_or(MAX_AGE_SECS).min(MAX_AGE_SECS);
            let kept = Kept {
                at,
                value: event.metric,
                expires: at.saturating_add((ttl * 1000.0).round() as u64),
            };
            let stream = inner
                .series
                .entry((
                    backend.to_owned(),
                    event.service.clone(),
                    event.host.clone(),
                ))
                .or_insert_with(|| Stream {
                    owner: owner.to_owned(),
                    queue: VecDeque::new(),
                });
            // Keep each series in time order; late events are rare and short-travelled.
            let position = stream
                .queue
                .iter()
                .rposition(|k| k.at <= at)
                .map_or(0, |p| p + 1);
            stream.queue.insert(position, kept);
            while stream.queue.len() > MAX_EVENTS_PER_SERIES {
                stream.queue.pop_front();
            }
        }
        inner.usage.insert(owner.to_owned(), usage);
        Ok(events.len())
    }

    /// The events of `service` on `backend` in `(now - window_ms, now]` still valid at `now`,
    /// one series per host (label `host`), oldest first. Its expired events are dropped on the
    /// way.
    pub fn series(
        &self,
        backend: &str,
        service: &str,
        window_ms: u64,
        now: TimestampMs,
    ) -> Vec<Series> {
        let from = now.saturating_sub(window_ms);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<SeriesKey> = inner
            .series
            .range((backend.to_owned(), service.to_owned(), String::new())..)
            .take_while(|((b, s, _), _)| b == backend && s == service)
            .map(|(key, _)| key.clone())
            .collect();
        let mut out = Vec::new();
        for key in keys {
            inner.expire(&key, |k| gone(k, now));
            if let Some(stream) = inner.series.get(&key) {
                let samples: Vec<Sample> = stream
                    .queue
                    .iter()
                    .filter(|k| k.at > from && k.at <= now && k.expires > now)
                    .map(|k| Sample {
                        at: k.at,
                        value: k.value,
                    })
                    .collect();
                if !samples.is_empty() {
                    out.push(Series {
                        labels: vec![("host".to_owned(), key.2.clone())],
                        samples,
                    });
                }
            }
        }
        out
    }

    /// Drops every event of `backend` expired at `now` (its clock); returns how many series
    /// went with them. The host calls it on a timer, so that what nobody reads is freed too.
    pub fn expire(&self, backend: &str, now: TimestampMs) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<SeriesKey> = inner
            .series
            .range((backend.to_owned(), String::new(), String::new())..)
            .take_while(|((b, _, _), _)| b == backend)
            .map(|(key, _)| key.clone())
            .collect();
        let before = inner.series.len();
        for key in keys {
            inner.expire(&key, |k| gone(k, now));
        }
        before - inner.series.len()
    }

    /// The series and bytes `owner` keeps.
    pub fn usage_of(&self, owner: &str) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .usage
            .get(owner)
            .map_or((0, 0), |u| (u.series, u.bytes))
    }
}

/// An event's time, ms (checked finite and positive first; a huge one saturates).
fn stamp(event: &Event) -> TimestampMs {
    (event.time * 1000.0).round() as u64
}

/// Whether an event has expired at `now` (its ttl, or the longest age).
fn gone(k: &Kept, now: TimestampMs) -> bool {
    k.expires <= now || k.at.saturating_add(MAX_AGE_SECS as u64 * 1000) <= now
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
    backend: String,
}

impl WithPushedEvents {
    /// `inner`, plus the events of `store` pushed for `backend` (`""` for the host's own
    /// cluster).
    pub fn new(inner: Arc<dyn Cluster>, store: Arc<EventStore>, backend: &str) -> Self {
        WithPushedEvents {
            inner,
            store,
            backend: backend.to_owned(),
        }
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
        series.extend(self.store.series(&self.backend, service, window_ms, now));
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

    /// Generous limits on a clock at `now_s` seconds.
    fn at(now_s: f64) -> PushLimits {
        PushLimits {
            now: (now_s * 1000.0) as u64,
            max_skew_ms: 60_000,
            max_series: 1000,
            max_bytes: 1 << 30,
        }
    }

    fn push(store: &EventStore, events: &[Event]) -> Result<usize, EventError> {
        store.push("", "t", events, &at(200.0))
    }

    #[test]
    fn one_series_per_host_within_the_window_until_the_ttl() {
        let store = EventStore::default();
        push(
            &store,
            &[
                event("a", 1.0, 100.0, Some(30.0)),
                event("a", 2.0, 110.0, None),
                event("b", 5.0, 105.0, Some(1.0)),
            ],
        )
        .expect("accepted");
        let ms = |s: f64| (s * 1000.0) as u64;
        let series = store.series("", "web/api/requests", 60_000, ms(105.5));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, vec![("host".into(), "a".into())]);
        assert_eq!(series[0].samples.len(), 1, "the event at 110 s is not yet");
        // At 106 s b's event has expired (ttl 1 s); at 131 s a's first one (ttl 30 s).
        assert_eq!(
            store
                .series("", "web/api/requests", 60_000, ms(106.0))
                .len(),
            1
        );
        let later = store.series("", "web/api/requests", 60_000, ms(131.0));
        assert_eq!(
            later[0].samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            vec![2.0]
        );
        assert!(store.series("", "web/other", 60_000, ms(131.0)).is_empty());
    }

    #[test]
    fn a_bad_event_refuses_the_whole_batch() {
        let store = EventStore::default();
        let mut bad = event("a", f64::NAN, 100.0, None);
        let error = push(&store, &[event("a", 1.0, 100.0, None), bad.clone()]).unwrap_err();
        assert_eq!(
            error,
            EventError::Invalid {
                index: 1,
                message: "metric must be a finite number".into()
            }
        );
        assert!(
            store
                .series("", "web/api/requests", u64::MAX, 200_000)
                .is_empty()
        );
        bad.metric = 1.0;
        bad.service = "no-namespace".into();
        assert!(push(&store, &[bad]).is_err());
        assert_eq!(push(&store, &[]), Err(EventError::BatchSize(0)));
        assert_eq!(
            store.usage_of("t"),
            (0, 0),
            "nothing of a refused batch is kept"
        );
    }

    #[test]
    fn each_series_is_bounded_and_ordered() {
        let store = EventStore::default();
        let batch: Vec<Event> = (0..MAX_EVENTS_PER_SERIES + 10)
            .rev()
            .map(|i| event("a", i as f64, 1000.0 + i as f64 / 10.0, None))
            .collect();
        store.push("", "t", &batch, &at(2000.0)).expect("accepted");
        let series = store.series("", "web/api/requests", u64::MAX, 2_000_000);
        let samples = &series[0].samples;
        assert_eq!(samples.len(), MAX_EVENTS_PER_SERIES);
        assert!(samples.windows(2).all(|w| w[0].at <= w[1].at));
        let key_bytes = "web/api/requests".len() + 1;
        assert_eq!(
            store.usage_of("t"),
            (1, key_bytes + MAX_EVENTS_PER_SERIES * EVENT_BYTES),
            "evicted events free their bytes"
        );
    }

    #[test]
    fn timestamps_outside_the_backends_window_are_refused() {
        let store = EventStore::default();
        // 60 s of skew ahead of the clock at 5000 s; at most an hour behind.
        let on = |time: f64| store.push("", "t", &[event("a", 1.0, time, None)], &at(5000.0));
        assert!(on(5060.0).is_ok());
        assert!(on(5000.0 - MAX_AGE_SECS + 0.001).is_ok());
        for time in [5060.001, 1e300, 5000.0 - MAX_AGE_SECS] {
            match on(time) {
                Err(EventError::Invalid { message, .. }) => {
                    assert!(
                        message.contains("outside the backend's window"),
                        "{message}"
                    )
                }
                other => panic!("{time}: {other:?}"),
            }
        }
    }

    #[test]
    fn pushers_are_held_to_their_series_and_bytes() {
        let store = EventStore::default();
        let limits = PushLimits {
            max_series: 2,
            max_bytes: 200,
            ..at(200.0)
        };
        let hosts: Vec<Event> = ["a", "b", "c"]
            .iter()
            .map(|h| event(h, 1.0, 150.0, None))
            .collect();
        match store.push("", "t", &hosts, &limits) {
            Err(EventError::Quota(message)) => {
                assert!(message.contains("3 event series"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.usage_of("t"), (0, 0));
        store
            .push("", "t", &hosts[..2], &limits)
            .expect("two series fit");
        // Another pusher has its own quota.
        store.push("", "u", &hosts[2..], &limits).expect("u's own");
        let many: Vec<Event> = (0..10)
            .map(|i| event("a", 1.0, 150.0 + f64::from(i), None))
            .collect();
        assert!(matches!(
            store.push("", "t", &many, &limits),
            Err(EventError::Quota(m)) if m.contains("bytes")
        ));
        // Expiry on the timer frees the quota, series by series.
        assert_eq!(store.expire("", 150_000 + 3_600_001), 3);
        assert_eq!(store.usage_of("t"), (0, 0));
        let roomier = PushLimits {
            max_series: 3,
            ..limits
        };
        store.push("", "t", &hosts, &roomier).expect("room again");
    }

    #[test]
    fn backends_keep_their_events_apart() {
        let store = EventStore::default();
        store
            .push("prod", "t", &[event("a", 7.0, 150.0, None)], &at(200.0))
            .expect("accepted");
        assert!(
            store
                .series("", "web/api/requests", 60_000, 160_000)
                .is_empty()
        );
        assert!(
            store
                .series("staging", "web/api/requests", 60_000, 160_000)
                .is_empty()
        );
        assert_eq!(
            store
                .series("prod", "web/api/requests", 60_000, 160_000)
                .len(),
            1
        );
        // Another backend's clock expires nothing of prod's.
        assert_eq!(store.expire("staging", u64::MAX), 0);
        assert_eq!(store.usage_of("t").0, 1);
    }
}
