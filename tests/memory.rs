//! Floods of every kind fail their own tick with a limit error, and the host's memory stays
//! bounded while they do: below its start + the binding's memory cap + 64 MiB, and back within
//! 64 MiB of its start once the binding is gone.
//!
//! One test in a binary of its own, so that no other test allocates beside the measurement.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use scalehost::runtime::InvocationError;
use scalehost::tick::Outcome;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// Resident memory of this process now, bytes (`/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// Samples the RSS every millisecond on a thread of its own until dropped; `peak` is the most
/// it saw.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler");
        }
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

fn failure(outcome: &Outcome) -> &InvocationError {
    match outcome {
        Outcome::Failed { error } => error,
        Outcome::Ok => panic!("the tick should have failed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_fail_their_own_tick_with_a_limit_and_memory_stays_bounded() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let healthy = engine
        .bind(
            fixture_binding("healthy", "counter", json!({}), vec![]),
            fixture(),
        )
        .await
        .expect("binds");
    // Warm: the component compiled, the pool's first slots used, the runtime's threads up.
    for _ in 0..3 {
        assert_eq!(engine.tick(&healthy).await.outcome, Outcome::Ok);
    }
    let limit = |needle: &'static str| move |e: &InvocationError| matches!(e, InvocationError::HostLimit(m) if m.contains(needle));
    let cases: Vec<(
        &str,
        serde_json::Value,
        Box<dyn Fn(&InvocationError) -> bool>,
    )> = vec![
        // 64 MiB of error message against the 16 MiB byte limit.
        (
            "error-flood",
            json!({ "bytes": 64u64 << 20 }),
            Box::new(limit("error message")),
        ),
        ("log-flood", json!({}), Box::new(limit("bytes passed"))),
        ("stdout-flood", json!({}), Box::new(limit("output limit"))),
        // 60 MiB of query string (the guest is given the memory to build it).
        (
            "huge-query",
            json!({ "bytes": 60u64 << 20 }),
            Box::new(limit("bytes passed")),
        ),
        (
            "state-keys",
            json!({ "bytes": 2_000_000 }),
            Box::new(limit("host-call limit")),
        ),
        (
            "power-flood",
            json!({ "bytes": 10_000 }),
            Box::new(limit("distinct VMs")),
        ),
    ];
    for (mode, extra, expected) in cases {
        let mut spec = fixture_binding(mode, mode, extra, vec![]);
        spec.limits.memory_bytes = 192 << 20;
        spec.limits.deadline = Duration::from_secs(5);
        let cap = spec.limits.memory_bytes;
        let start = rss();
        let binding = engine.bind(spec, fixture()).await.expect("binds");
        let sampler = PeakRss::start();
        let record = engine.tick(&binding).await;
        let peak = sampler.peak();
        let error = failure(&record.outcome);
        assert!(expected(error), "{mode}: unexpected failure {error:?}");
        assert!(record.intents.is_empty(), "{mode}: nothing is recorded");
        // Records stay small whatever the guest sent.
        let size = serde_json::to_string(&record).expect("serializes").len();
        assert!(size < 16 << 10, "{mode}: an audit record of {size} bytes");
        assert!(
            peak < start + cap + 64 * MIB,
            "{mode}: RSS peaked at {} MiB from {} MiB with a {} MiB cap",
            peak / MIB,
            start / MIB,
            cap / MIB
        );
        assert_eq!(
            engine.tick(&healthy).await.outcome,
            Outcome::Ok,
            "healthy binding after {mode}"
        );
        engine.unbind("t", mode);
        drop(binding);
        drop(record);
        let after = rss();
        eprintln!(
            "{mode}: start {} MiB, peak {} MiB, after {} MiB",
            start / MIB,
            peak / MIB,
            after / MIB
        );
        assert!(
            after < start + 64 * MIB,
            "{mode}: RSS {} MiB once the binding is gone, from {} MiB",
            after / MIB,
            start / MIB
        );
    }
}
