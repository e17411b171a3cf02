//! Power operations off the tick path: one at a time per VM, persisted until they end.
//!
//! Start with [`Operations::start`]: a tick hands a power intent here (after its scope and
//! ownership checks) and moves on; the operation (cordon → drain → shutdown, or start → Ready
//! → uncordon, each step bounded by the backend's own timeouts) runs as a task of its own. A
//! tick never waits for it:
//! - an intent for a VM whose operation to the same state is in flight **joins** it (the audit
//!   action names that operation);
//! - an intent for the opposite state, or for a VM whose operation is being cancelled,
//!   **waits**: it is not started, and the audit action says which operation is in the way (the
//!   policy asks again at a later tick);
//! - an operation is written to the state store before it starts (if it cannot be, it does not
//!   start) and removed when it ends, so that a host restarted in the middle **resumes** it
//!   ([`Operations::resume`]) if its binding still owns the pool: every step is safe to repeat,
//!   and a node is never left cordoned and forgotten;
//! - a **cancel** is persisted first (a restart settles, never resumes, a cancelled operation),
//!   then drops the step under way and lets the backend settle what it left
//!   ([`crate::backends::Actuator::abandon_power`], retried); new intents for the VM wait
//!   meanwhile. Removing a binding, or a revision that drops a pool, cancels its operations
//!   there. An operation a restart cannot resume (its binding is gone or no longer owns the
//!   pool) is settled the same way; one whose settling keeps failing stays persisted, to be
//!   settled again at the next start;
//! - `started`, `succeeded`, `failed`, `cancelled` and `resumed` lines go to the audit file, and
//!   the last [`MAX_FINISHED`] outcomes stay visible beside the operations in flight.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::audit::AuditLog;
use crate::backends::{Clock, Cluster, SystemClock};
use crate::domain::cluster::{PowerOperation, PowerProgress, PowerState, TimestampMs};
use crate::store::{StateError, StateStore};

mod settle;

/// The state-store namespace of operations in flight (a binding's namespace always has a `/`).
const NAMESPACE: &str = "#operations";
/// The key, in [`NAMESPACE`], of the last operation id given out.
const LAST_ID: &str = "last-id";
/// How many finished operations stay visible.
pub const MAX_FINISHED: usize = 256;
/// How many operations' endings stay known to the policies that asked for them (WIT 0.2.0
/// `outcomes`), newest ids kept.
const MAX_ENDINGS: usize = 16_384;

/// A VM, as one backend knows it: its tenant's backend (none for the simulated cluster),
/// pool and id.
type VmKey = (Option<String>, String, String);

/// An operation, as the API shows it and the state store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Its id, unique across restarts.
    pub id: u64,
    /// The tenant whose binding asked for it.
    pub tenant: String,
    /// That binding.
    pub binding: String,
    /// The tenant's backend (none: the simulated cluster).
    pub backend: Option<String>,
    /// The VM pool.
    pub pool: String,
    /// The VM.
    pub vm_id: String,
    /// Powering on or off.
    pub state: PowerState,
    /// Wall time it started, ms since the epoch.
    pub started_at: TimestampMs,
    /// Cancelled: what it left is to be settled, never resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

/// Attempts at settling what a cancelled or unresumable operation left, and the pause after
/// the first failed one (doubling).
const SETTLE_ATTEMPTS: u32 = 3;
const SETTLE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

impl Operation {
    fn key(&self) -> VmKey {
        (self.backend.clone(), self.pool.clone(), self.vm_id.clone())
    }

    fn store_key(&self) -> String {
        format!("op-{:020}", self.id)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finished {
    /// The operation.
    #[serde(flatten)]
    pub operation: Operation,
    /// `succeeded`, `failed` or `cancelled`.
    pub outcome: &'static str,
    /// Why it failed, or what settling a cancelled one met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time it ended, ms since the epoch.
    pub ended_at: TimestampMs,
}

/// What became of a power intent handed to [`Operations::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new operation, with its id.
    New(u64),
    /// An operation to the same state was in flight: the intent joined it.
    Joined(u64),
    /// Another operation on the VM is in flight (to the other state, or being cancelled):
    /// nothing started.
    Waiting {
        /// That operation.
        id: u64,
        /// What it does.
        state: PowerState,
    },
    /// It could not be persisted, so it did not start.
    Refused(String),
}

/// What an operation in flight does, in words.
fn doing(operation: &Operation, cancelling: bool) -> String {
    match (cancelling, operation.state) {
        (true, _) => "cancelling".into(),
        (false, PowerState::On) => "powering on".into(),
        (false, PowerState::Off) => "powering off".into(),
    }
}

/// One line of the audit file about an operation.
#[derive(Debug, Serialize)]
struct OperationRecord<'a> {
    seq: u64,
    at: TimestampMs,
    event: &'static str,
    operation: &'a Operation,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// An operation in flight: what it is, where it acts, how to stop it.
struct Running {
    operation: Operation,
    cluster: Arc<dyn Cluster>,
    /// Its task: the power step, or the settling. Taken (and aborted) by a cancel, which waits
    /// for it to end before settling, so that nothing of the step is still in flight then.
    task: Option<JoinHandle<()>>,
    /// Cancelled; the backend is settling what it left.
    cancelling: bool,
    /// Its ending is being recorded: it leaves the running set once recorded (so that
    /// [`Operations::idle`] and a new intent for the VM see it until then).
    ending: bool,
}

/// The power operations in flight, one per VM.
pub struct Operations {
    running: Mutex<HashMap<VmKey, Running>>,
    finished: Mutex<VecDeque<Finished>>,
    /// id → (outcome, error) of the last [`MAX_ENDINGS`] operations that ended.
    endings: Mutex<BTreeMap<u64, (&'static str, Option<String>)>>,
    last_id: AtomicU64,
    state: Arc<StateStore>,
    audit: Arc<AuditLog>,
    /// Signalled whenever an operation ends.
    ended: tokio::sync::Notify,
    /// Per `(tenant, binding)`: how many of its operations failed since its last tick took
    /// them ([`take_failures`](Self::take_failures)), and the last one's error. A failed
    /// power operation is a failed actuation of the binding's, counted at its next tick.
    failures: Mutex<HashMap<(String, String), (u32, String)>>,
}

impl Operations {
    /// Operations persisted in `state`, recorded in `audit`; ids continue from the last one
    /// `state` gave out.
    pub fn new(state: Arc<StateStore>, audit: Arc<AuditLog>) -> Arc<Self> {
        let last_id = match state.get(NAMESPACE, LAST_ID) {
            Ok(value) => value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            Err(error) => {
                tracing::error!(%error, "cannot read the last power operation id");
                0
            }
        };
        Arc::new(Operations {
            running: Mutex::default(),
            finished: Mutex::default(),
            endings: Mutex::default(),
            last_id: AtomicU64::new(last_id),
            state,
            audit,
            ended: tokio::sync::Notify::new(),
            failures: Mutex::default(),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<VmKey, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts powering a VM through `cluster` unless an operation on that VM is in flight (see
    /// the module's rules). Returns at once.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        self: &Arc<Self>,
        cluster: Arc<dyn Cluster>,
        tenant: &str,
        binding: &str,
        backend: Option<&str>,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Started {
        let mut operation = Operation {
            id: 0,
            tenant: tenant.to_owned(),
            binding: binding.to_owned(),
            backend: backend.map(str::to_owned),
            pool: pool.to_owned(),
            vm_id: vm_id.to_owned(),
            state,
            started_at: SystemClock.now_ms(),
            cancelled: false,
        };
        let mut running = self.running();
        if let Some(other) = running.get(&operation.key()) {
            return if other.operation.state == state && !other.cancelling {
                Started::Joined(other.operation.id)
            } else {
                Started::Waiting {
                    id: other.operation.id,
                    state: other.operation.state,
                }
            };
        }
        operation.id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(error) = self.persist(&operation) {
            return Started::Refused(format!("cannot persist the operation: {error}"));
        }
        self.record("started", &operation, None);
        self.launch(&mut running, cluster, operation.clone());
        Started::New(operation.id)
    }

    /// Runs `operation` as a task and registers it, under the lock of the running set so that
    /// the task cannot finish before it is registered.
    fn launch(
        self: &Arc<Self>,
        running: &mut HashMap<VmKey, Running>,
        cluster: Arc<dyn Cluster>,
        operation: Operation,
    ) {
        let operations = self.clone();
        let (task_cluster, task_operation) = (cluster.clone(), operation.clone());
        let task = tokio::spawn(async move {
            let operation = task_operation;
            let (pool, vm_id, state) = (&operation.pool, &operation.vm_id, operation.state);
            let outcome = super::io::retry(|| task_cluster.set_power(pool, vm_id, state)).await;
            match &outcome {
                Ok(()) => {
                    tracing::info!(id = operation.id, %pool, vm = %vm_id, ?state, "power operation done")
                }
                Err(error) => {
                    tracing::warn!(id = operation.id, %pool, vm = %vm_id, ?state, %error, "power operation failed")
                }
            }
            if let Err(error) = &outcome {
                let mut failures = operations
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let entry = failures
                    .entry((operation.tenant.clone(), operation.binding.clone()))
                    .or_insert((0, String::new()));
                entry.0 = entry.0.saturating_add(1);
                entry.1 = format!(
                    "power operation {} ({} {}) failed: {error}",
                    operation.id,
                    doing(&operation, false),
                    operation.vm_id
                );
            }
            // A cancel in the meantime owns the ending.
            if operations.take(&operation, false) {
                super::io::blocking_io(|| {
                    operations.end(
                        &operation,
                        if outcome.is_ok() {
                            "succeeded"
                        } else {
                            "failed"
                        },
                        outcome.err().map(|e| e.to_string()),
                    )
                });
            }
        });
        running.insert(
            operation.key(),
            Running {
                operation,
                cluster,
                task: Some(task),
                cancelling: false,
                ending: false,
            },
        );
    }

    /// Claims the ending of `operation` if it is running (and, unless `cancelled`, not being
    /// cancelled) and no one claimed it yet; true if this caller did. [`end`](Self::end) then
    /// records it and takes it out of the running set.
    fn take(&self, operation: &Operation, cancelled: bool) -> bool {
        let mut running = self.running();
        match running.get_mut(&operation.key()) {
            Some(r)
                if r.operation.id == operation.id && !r.ending && (cancelled || !r.cancelling) =>
            {
                r.ending = true;
                true
            }
            _ => false,
        }
    }

    /// Records the end of an operation (claimed with [`take`](Self::take), or a record never
    /// resumed), then takes it out of the running set.
    fn end(&self, operation: &Operation, outcome: &'static str, error: Option<String>) {
        self.end_keeping(operation, outcome, error, false)
    }

    /// [`end`](Self::end), but with `keep` the persisted record stays, to be settled again at
    /// the next start (its settling failed).
    fn end_keeping(
        &self,
        operation: &Operation,
        outcome: &'static str,
        error: Option<String>,
        keep: bool,
    ) {
        if keep {
            tracing::error!(id = operation.id, pool = %operation.pool, vm = %operation.vm_id, "what a power operation left could not be settled; kept to settle at the next start");
        } else if let Err(store) = self
            .state
            .apply(NAMESPACE, BTreeMap::from([(operation.store_key(), None)]))
        {
            // A record left behind is resumed at the next start only if its binding still owns
            // the pool then.
            tracing::error!(id = operation.id, %store, "cannot forget a finished power operation");
        }
        self.record(outcome, operation, error.as_deref());
        let error_copy = error.clone();
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        finished.push_back(Finished {
            operation: operation.clone(),
            outcome,
            error,
            ended_at: SystemClock.now_ms(),
        });
        while finished.len() > MAX_FINISHED {
            finished.pop_front();
        }
        drop(finished);
        {
            let mut running = self.running();
            if running
                .get(&operation.key())
                .is_some_and(|r| r.operation.id == operation.id)
            {
                running.remove(&operation.key());
            }
        }
        let mut endings = self.endings.lock().unwrap_or_else(|p| p.into_inner());
        endings.insert(operation.id, (outcome, error_copy));
        while endings.len() > MAX_ENDINGS {
            endings.pop_first();
        }
        drop(endings);
        self.ended.notify_waiters();
    }

    /// Persists a new operation with the last id given out.
    fn persist(&self, operation: &Operation) -> Result<(), StateError> {
        let value = serde_json::to_vec(operation).expect("an operation serializes");
        self.state.apply(
            NAMESPACE,
            BTreeMap::from([
                (operation.store_key(), Some(value)),
                (
                    LAST_ID.to_owned(),
                    Some(operation.id.to_string().into_bytes()),
                ),
            ]),
        )
    }

    /// Persists a change to an operation already persisted (a cancel): its record alone, never
    /// the last id (which newer operations moved on).
    fn persist_record(&self, operation: &Operation) -> Result<(), StateError> {
        let value = serde_json::to_vec(operation).expect("an operation serializes");
        self.state.apply(
            NAMESPACE,
            BTreeMap::from([(operation.store_key(), Some(value))]),
        )
    }

    /// Appends an audit line about `operation`.
    fn record(&self, event: &'static str, operation: &Operation, error: Option<&str>) {
        self.audit.append_line(|seq| {
            serde_json::to_value(OperationRecord {
                seq,
                at: SystemClock.now_ms(),
                event,
                operation,
                error,
            })
            .expect("an operation record serializes")
        });
    }

    /// The operations in flight for `tenant/binding`, oldest first.
    pub fn of_binding(&self, tenant: &str, binding: &str) -> Vec<Operation> {
        let mut found: Vec<Operation> = self
            .running()
            .values()
            .map(|r| &r.operation)
            .filter(|o| o.tenant == tenant && o.binding == binding)
            .cloned()
            .collect();
        found.sort_by_key(|o| o.id);
        found
    }

    /// Where operation `id` stands: running, or how it ended; `None` when it ended too long ago
    /// to be remembered.
    pub fn progress(&self, id: u64) -> Option<PowerProgress> {
        if let Some(running) = self.running().values().find(|r| r.operation.id == id) {
            return Some(PowerProgress::InProgress(doing(
                &running.operation,
                running.cancelling,
            )));
        }
        let endings = self.endings.lock().unwrap_or_else(|p| p.into_inner());
        endings.get(&id).map(|(outcome, error)| match *outcome {
            "succeeded" => PowerProgress::Done,
            "cancelled" => PowerProgress::Cancelled,
            _ => PowerProgress::Failed(error.clone().unwrap_or_else(|| "failed".into())),
        })
    }

    /// The operation in flight on VM `vm_id` of `pool` on `backend`.
    pub fn in_flight(
        &self,
        backend: Option<&str>,
        pool: &str,
        vm_id: &str,
    ) -> Option<PowerOperation> {
        let key = (
            backend.map(str::to_owned),
            pool.to_owned(),
            vm_id.to_owned(),
        );
        self.running().get(&key).map(|r| PowerOperation {
            id: r.operation.id,
            state: r.operation.state,
            step: doing(&r.operation, r.cancelling),
        })
    }

    /// The last operations of `tenant/binding` that ended, oldest first.
    pub fn finished_of_binding(&self, tenant: &str, binding: &str) -> Vec<Finished> {
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|f| f.operation.tenant == tenant && f.operation.binding == binding)
            .cloned()
            .collect()
    }

    /// How many of `tenant/binding`'s operations failed since the last call, and the last
    /// one's error; the count is reset.
    pub fn take_failures(&self, tenant: &str, binding: &str) -> Option<(u32, String)> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), binding.to_owned()))
    }

    /// Waits until no operation is in flight (tests, and a host shutting down).
    pub async fn idle(&self) {
        loop {
            let ended = self.ended.notified();
            if self.running().is_empty() {
                return;
            }
            ended.await;
        }
    }
}
