//! Schedules each binding's ticks on tokio: a phase spread over the interval, a fixed interval,
//! one tick at a time per binding; how late each tick starts goes to
//! [`TickEngine::lateness`]. A tick is a task on the runtime, not a thread: it is bounded by its
//! deadline, and its guest yields to the runtime every epoch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::engine::TickEngine;

/// Runs every binding's ticks until shut down; a tick in flight at shutdown finishes first.
pub struct Scheduler {
    engine: Arc<TickEngine>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Scheduler {
    /// A scheduler for the bindings of `engine`.
    pub fn new(engine: Arc<TickEngine>) -> Self {
        let (shutdown, _) = watch::channel(false);
        Scheduler {
            engine,
            shutdown,
            tasks: JoinSet::new(),
        }
    }

    /// Starts ticking `tenant/name`. The task looks the binding up before every tick, so a
    /// replaced binding (a new revision) runs from its next tick on, on the same rhythm: no
    /// tick is missed or run twice. A paused binding's ticks are skipped; a removed one's task
    /// ends, as does one whose binding was removed and created again (the new one has its own).
    pub fn start(&mut self, tenant: &str, name: &str) {
        self.start_generation(tenant, name, None);
    }

    /// [`start`](Self::start) for one generation of the binding: an announcement that arrives
    /// after the binding was removed and created again starts nothing (the newer one has its
    /// own announcement).
    pub fn start_generation(&mut self, tenant: &str, name: &str, expected: Option<u64>) {
        let engine = self.engine.clone();
        let mut shutdown = self.shutdown.subscribe();
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.tasks.spawn(async move {
            let Some(first) = engine.binding(&tenant, &name) else {
                return;
            };
            let generation = first.generation();
            if expected.is_some_and(|g| g != generation) {
                return;
            }
            let interval = first.spec.interval;
            let tenant_lateness = engine.lateness_of(&tenant);
            // Spread bindings over their interval (up to a minute) so they do not tick in bursts.
            let phase = jitter(&tenant, &name, interval);
            let mut ticker = tokio::time::interval_at(Instant::now() + phase, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let due = tokio::select! {
                    due = ticker.tick() => due,
                    _ = shutdown.changed() => break,
                };
                let late = Instant::now().saturating_duration_since(due);
                let Some(binding) = engine.binding(&tenant, &name) else {
                    break;
                };
                if binding.generation() != generation {
                    break;
                }
                if binding.spec.interval != ticker.period() {
                    ticker = tokio::time::interval_at(
                        Instant::now() + binding.spec.interval,
                        binding.spec.interval,
                    );
                    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                }
                if binding.is_paused() {
                    continue;
                }
                // Counted for the ticks that run: a paused binding's skipped ones are not late.
                // A binding whose last tick overran its interval starts this one late: that
                // is counted too (its own, in its tenant's histogram).
                engine.lateness().record(late);
                tenant_lateness.record(late);
                engine.tick(&binding).await;
            }
        });
    }

    /// Starts every binding of the engine.
    pub fn start_all(&mut self) {
        for binding in self.engine.bindings() {
            self.start(binding.tenant(), binding.name());
        }
    }

    /// Starts ticking each binding named on `added` as it arrives (bindings created at run time).
    pub async fn follow(
        &mut self,
        added: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String, u64)>,
    ) {
        while let Some((tenant, name, generation)) = added.recv().await {
            self.start_generation(&tenant, &name, Some(generation));
        }
    }

    /// Stops scheduling and waits for ticks in flight to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The most a binding's first tick waits for its phase: long intervals are spread over this
/// much, so that a new binding of a daily policy still ticks within a minute.
const MAX_PHASE: Duration = Duration::from_secs(60);

/// A phase in `[0, min(interval, MAX_PHASE))`, different per binding and the same in every
/// process (FNV-1a of tenant and name): many bindings of one interval start evenly over it,
/// not in a burst, and a restart keeps each binding's rhythm.
fn jitter(tenant: &str, name: &str, interval: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let span = u64::try_from(interval.min(MAX_PHASE).as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_micros(hash % span)
}
