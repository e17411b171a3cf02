//! Operations that do not run to their end: resumed after a restart, cancelled, or settled
//! (what they left handed to the backend's `abandon_power`, retried, kept until it succeeds).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{
    LAST_ID, NAMESPACE, Operation, Operations, Running, SETTLE_ATTEMPTS, SETTLE_BACKOFF, VmKey,
};
use crate::backends::Cluster;
use crate::store::StateError;

impl Operations {
    /// Runs again every operation a previous run of the host left in flight, through the
    /// cluster `cluster_of` gives for it; `cluster_of` answers why not when its binding no
    /// longer owns the pool (or is gone). Such an operation, and one that was cancelled, is
    /// not run again: what it left is settled through the backend `backend_of` gives for it
    /// (its own backend), and it is recorded as failed (or cancelled). Of two records for one
    /// VM, the newer is resumed. Returns how many were resumed.
    pub fn resume(
        self: &Arc<Self>,
        cluster_of: impl Fn(&Operation) -> Result<Arc<dyn Cluster>, String>,
        backend_of: impl Fn(&Operation) -> Option<Arc<dyn Cluster>>,
    ) -> Result<usize, StateError> {
        let mut newest: HashMap<VmKey, Operation> = HashMap::new();
        let mut superseded = Vec::new();
        for (key, value) in self.state.list(NAMESPACE)? {
            if key == LAST_ID {
                continue;
            }
            let Ok(operation) = serde_json::from_slice::<Operation>(&value) else {
                tracing::error!(%key, "a persisted power operation does not decode; dropped");
                self.state.apply(NAMESPACE, BTreeMap::from([(key, None)]))?;
                continue;
            };
            match newest.remove(&operation.key()) {
                Some(other) if other.id > operation.id => {
                    superseded.push(operation);
                    newest.insert(other.key(), other);
                }
                Some(other) => {
                    superseded.push(other);
                    newest.insert(operation.key(), operation);
                }
                None => {
                    newest.insert(operation.key(), operation);
                }
            }
        }
        // Ids continue after every persisted one, whatever the last-id record says.
        let highest = newest
            .values()
            .chain(&superseded)
            .map(|o| o.id)
            .max()
            .unwrap_or(0);
        self.last_id
            .fetch_max(highest, std::sync::atomic::Ordering::Relaxed);
        for operation in superseded {
            self.end(
                &operation,
                "failed",
                Some("superseded by a newer operation on the VM".into()),
            );
        }
        let mut resumed = 0;
        for operation in newest.into_values() {
            let why = if operation.cancelled {
                Err(("cancelled".to_owned(), "cancelled"))
            } else {
                cluster_of(&operation).map_err(|why| (format!("not resumed: {why}"), "failed"))
            };
            match why {
                Ok(cluster) => {
                    self.record("resumed", &operation, None);
                    self.launch(&mut self.running(), cluster, operation);
                    resumed += 1;
                }
                Err((why, outcome)) => {
                    tracing::warn!(id = operation.id, %why, "an interrupted power operation is settled, not resumed");
                    match backend_of(&operation) {
                        Some(cluster) => self.settle(cluster, operation, outcome, Some(why)),
                        None => self.end_keeping(
                            &operation,
                            outcome,
                            Some(format!(
                                "{why}; its backend is gone, so what it left cannot be settled"
                            )),
                            true,
                        ),
                    }
                }
            }
        }
        Ok(resumed)
    }

    /// Cancels an operation of `tenant/binding` (the binding need not exist any more); false if
    /// it is not in flight. See the module's rules.
    pub fn cancel(self: &Arc<Self>, tenant: &str, binding: &str, id: u64) -> bool {
        self.cancel_where(|o| o.id == id && o.tenant == tenant && o.binding == binding) > 0
    }

    /// Cancels every operation of `tenant/binding` that `pool` picks (all: `None`); returns how
    /// many.
    pub fn cancel_binding(
        self: &Arc<Self>,
        tenant: &str,
        binding: &str,
        pool: Option<&str>,
    ) -> usize {
        self.cancel_where(|o| {
            o.tenant == tenant && o.binding == binding && pool.is_none_or(|p| o.pool == p)
        })
    }

    fn cancel_where(self: &Arc<Self>, pick: impl Fn(&Operation) -> bool) -> usize {
        let mut cancelled = Vec::new();
        for entry in self.running().values_mut() {
            if entry.cancelling || entry.ending || !pick(&entry.operation) {
                continue;
            }
            entry.cancelling = true;
            entry.operation.cancelled = true;
            let step = entry.task.take();
            if let Some(step) = &step {
                step.abort();
            }
            cancelled.push((entry.operation.clone(), entry.cluster.clone(), step));
        }
        let count = cancelled.len();
        for (operation, cluster, step) in cancelled {
            // Persisted before it is answered: a restart from here settles it, never resumes it.
            if let Err(error) = crate::tick::io::blocking_io(|| self.persist_record(&operation)) {
                tracing::error!(id = operation.id, %error, "cannot persist the cancel of a power operation");
            }
            let settling = self.spawn_settle(cluster, operation.clone(), "cancelled", None, step);
            if let Some(entry) = self.running().get_mut(&operation.key())
                && entry.operation.id == operation.id
            {
                entry.task = Some(settling);
            }
        }
        count
    }

    /// Registers `operation` as being settled and settles it: see [`spawn_settle`](Self::spawn_settle).
    fn settle(
        self: &Arc<Self>,
        cluster: Arc<dyn Cluster>,
        operation: Operation,
        outcome: &'static str,
        why: Option<String>,
    ) {
        let mut running = self.running();
        let task = self.spawn_settle(cluster.clone(), operation.clone(), outcome, why, None);
        running.insert(
            operation.key(),
            Running {
                operation,
                cluster,
                task: Some(task),
                cancelling: true,
                ending: false,
            },
        );
    }

    /// Waits for the aborted `step` to end (nothing of it in flight any more), lets the backend
    /// settle what `operation` left ([`Actuator::abandon_power`], a few attempts), then ends it
    /// as `outcome`; if settling keeps failing, its record stays persisted to be settled at the
    /// next start.
    ///
    /// [`Actuator::abandon_power`]: crate::backends::Actuator::abandon_power
    fn spawn_settle(
        self: &Arc<Self>,
        cluster: Arc<dyn Cluster>,
        operation: Operation,
        outcome: &'static str,
        why: Option<String>,
        step: Option<JoinHandle<()>>,
    ) -> JoinHandle<()> {
        let operations = self.clone();
        tokio::spawn(async move {
            if let Some(step) = step {
                // Aborted: this resolves once the step's task has stopped at its next await.
                let _ = step.await;
            }
            let (pool, vm_id, state) = (&operation.pool, &operation.vm_id, operation.state);
            let mut pause = SETTLE_BACKOFF;
            let mut settled = cluster.abandon_power(pool, vm_id, state).await;
            for _ in 1..SETTLE_ATTEMPTS {
                let Err(error) = &settled else { break };
                tracing::warn!(id = operation.id, %pool, vm = %vm_id, %error, "cannot settle what a power operation left yet");
                tokio::time::sleep(pause).await;
                pause *= 2;
                settled = cluster.abandon_power(pool, vm_id, state).await;
            }
            if !operations.take(&operation, true) {
                return;
            }
            let failed = settled.is_err();
            let error = match (why, settled) {
                (why, Err(e)) => Some(format!(
                    "{}settling what it left failed ({e}); kept to settle at the next start",
                    why.map(|w| format!("{w}; ")).unwrap_or_default()
                )),
                (Some(why), Ok(())) => Some(format!("{why}; what it left was settled")),
                (None, Ok(())) => None,
            };
            crate::tick::io::blocking_io(|| {
                operations.end_keeping(&operation, outcome, error, failed)
            });
        })
    }
}
