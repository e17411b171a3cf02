//! Power operations off the tick path: one at a time per VM, persisted until they end.
//!
//! Start with [`Operations::start`]: a tick hands a power intent here (after its scope and
//! ownership checks) and moves on; the operation (cordon → drain → shutdown, or start → Ready
//! → uncordon, each step bounded by the backend's own timeouts) runs as a task of its own. A
//! tick never waits for it:
//! - an intent for a VM whose operation to the same state is in flight **joins** it (the audit
//!   action names that operation);
//! - an intent for the opposite state **waits**: it is not started, and the audit action says
//!   which operation is in the way (the policy asks again at a later tick);
//! - an operation is written to the state store before it starts and removed when it ends, so
//!   that a host restarted in the middle **resumes** it ([`Operations::resume`]): every step is
//!   safe to repeat, and a node is never left cordoned and forgotten;
//! - `started`, `succeeded`, `failed`, `cancelled` and `resumed` are appended to the audit file,
//!   each with the operation's id (the sequence number of its `started` record).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use super::audit::AuditLog;
use crate::backends::{Clock, Cluster, SystemClock};
use crate::model::{PowerState, TimestampMs};
use crate::state::StateStore;

/// The state-store namespace of operations in flight (no binding's namespace has no `/`).
const NAMESPACE: &str = "#operations";

/// A VM, as one backend knows it: its tenant's backend (none for the simulated cluster),
/// pool and id.
type VmKey = (Option<String>, String, String);

/// An operation in flight, as the API shows it and the state store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Its id: the audit sequence number of its `started` record.
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
}

/// What became of a power intent handed to [`Operations::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new operation, with its id.
    New(u64),
    /// An operation to the same state was in flight: the intent joined it.
    Joined(u64),
    /// An operation to the other state is in flight: nothing started.
    Waiting(Operation),
}

/// One line of the audit file about an operation.
#[derive(Debug, Serialize)]
struct OperationRecord<'a> {
    seq: u64,
    at: TimestampMs,
    event: &'static str,
    operation: &'a Operation,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// An operation in flight: what it is, where it acts, how to stop it.
struct Running {
    operation: Operation,
    cluster: Arc<dyn Cluster>,
    abort: AbortHandle,
}

/// The power operations in flight, one per VM.
pub struct Operations {
    running: Mutex<HashMap<VmKey, Running>>,
    state: Arc<StateStore>,
    audit: Arc<AuditLog>,
    /// Signalled whenever an operation ends.
    ended: tokio::sync::Notify,
}

impl Operations {
    /// Operations persisted in `state`, recorded in `audit`.
    pub fn new(state: Arc<StateStore>, audit: Arc<AuditLog>) -> Arc<Self> {
        Arc::new(Operations {
            running: Mutex::default(),
            state,
            audit,
            ended: tokio::sync::Notify::new(),
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
        let key = (
            backend.map(str::to_owned),
            pool.to_owned(),
            vm_id.to_owned(),
        );
        let mut running = self.running();
        if let Some(Running { operation, .. }) = running.get(&key) {
            return if operation.state == state {
                Started::Joined(operation.id)
            } else {
                Started::Waiting(operation.clone())
            };
        }
        let mut operation = Operation {
            id: 0,
            tenant: tenant.to_owned(),
            binding: binding.to_owned(),
            backend: key.0.clone(),
            pool: key.1.clone(),
            vm_id: key.2.clone(),
            state,
            started_at: SystemClock.now_ms(),
        };
        operation.id = self.record("started", &operation, None);
        let id = operation.id;
        let abort = self.launch(cluster.clone(), operation.clone());
        running.insert(
            key,
            Running {
                operation,
                cluster,
                abort,
            },
        );
        Started::New(id)
    }

    /// Persists `operation` and runs it as a task; it removes itself when it ends. Called with
    /// the running set locked, so that the task is registered before it can finish.
    fn launch(self: &Arc<Self>, cluster: Arc<dyn Cluster>, operation: Operation) -> AbortHandle {
        if let Err(error) = self.persist(&operation) {
            // Runs all the same: losing the resume is better than not acting.
            tracing::error!(id = operation.id, %error, "cannot persist a power operation");
        }
        let operations = self.clone();
        tokio::spawn(async move {
            let (pool, vm_id, state) = (&operation.pool, &operation.vm_id, operation.state);
            let outcome = super::engine::retry(|| cluster.set_power(pool, vm_id, state)).await;
            match &outcome {
                Ok(()) => tracing::info!(id = operation.id, %pool, vm = %vm_id, ?state, "power operation done"),
                Err(error) => tracing::warn!(id = operation.id, %pool, vm = %vm_id, ?state, %error, "power operation failed"),
            }
            operations.finish(
                &operation,
                if outcome.is_ok() { "succeeded" } else { "failed" },
                outcome.err().map(|e| e.to_string()),
            );
        })
        .abort_handle()
    }

    /// Takes a finished (or cancelled) operation out of the running set, the store and the way.
    fn finish(&self, operation: &Operation, event: &'static str, error: Option<String>) {
        let key = (
            operation.backend.clone(),
            operation.pool.clone(),
            operation.vm_id.clone(),
        );
        {
            let mut running = self.running();
            if running
                .get(&key)
                .is_some_and(|r| r.operation.id == operation.id)
            {
                running.remove(&key);
            }
        }
        if let Err(error) = self.state.apply(
            NAMESPACE,
            [(operation.id.to_string(), None)].into_iter().collect(),
        ) {
            tracing::error!(id = operation.id, %error, "cannot forget a finished power operation");
        }
        self.record(event, operation, error);
        self.ended.notify_waiters();
    }

    fn persist(&self, operation: &Operation) -> Result<(), crate::state::StateError> {
        let value = serde_json::to_vec(operation).expect("an operation serializes");
        self.state.apply(
            NAMESPACE,
            [(operation.id.to_string(), Some(value))]
                .into_iter()
                .collect(),
        )
    }

    /// Appends an audit line about `operation`; returns its sequence number.
    fn record(&self, event: &'static str, operation: &Operation, error: Option<String>) -> u64 {
        self.audit.append_line(|seq| {
            serde_json::to_value(OperationRecord {
                seq,
                at: SystemClock.now_ms(),
                event,
                operation,
                error,
            })
            .expect("an operation record serializes")
        })
    }

    /// Runs again every operation a previous run of the host left in flight, through the
    /// cluster `cluster_of` gives for its tenant (none: the tenant is gone, the record is
    /// dropped with a warning).
    pub fn resume(
        self: &Arc<Self>,
        cluster_of: impl Fn(&Operation) -> Option<Arc<dyn Cluster>>,
    ) -> Result<usize, crate::state::StateError> {
        let mut resumed = 0;
        for (key, value) in self.state.list(NAMESPACE)? {
            let Ok(operation) = serde_json::from_slice::<Operation>(&value) else {
                tracing::error!(%key, "a persisted power operation does not decode; dropped");
                self.state
                    .apply(NAMESPACE, [(key, None)].into_iter().collect())?;
                continue;
            };
            let Some(cluster) = cluster_of(&operation) else {
                tracing::warn!(id = operation.id, tenant = %operation.tenant, "the tenant of an interrupted power operation is gone; dropped");
                self.finish(&operation, "failed", Some("its tenant is gone".into()));
                continue;
            };
            self.record("resumed", &operation, None);
            let key = (
                operation.backend.clone(),
                operation.pool.clone(),
                operation.vm_id.clone(),
            );
            // Under the lock, as in `start`: the task cannot finish before it is registered.
            let mut running = self.running();
            let abort = self.launch(cluster.clone(), operation.clone());
            running.insert(
                key,
                Running {
                    operation,
                    cluster,
                    abort,
                },
            );
            resumed += 1;
        }
        Ok(resumed)
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

    /// Cancels an operation of `tenant/binding`; false if it is not in flight. The step under
    /// way is dropped, then the backend settles what it left (a power-off whose guest still
    /// runs gives its node back to the scheduler).
    pub fn cancel(&self, tenant: &str, binding: &str, id: u64) -> bool {
        let found = self
            .running()
            .values()
            .find(|r| {
                r.operation.id == id
                    && r.operation.tenant == tenant
                    && r.operation.binding == binding
            })
            .map(|r| (r.operation.clone(), r.cluster.clone(), r.abort.clone()));
        let Some((operation, cluster, abort)) = found else {
            return false;
        };
        abort.abort();
        self.finish(&operation, "cancelled", None);
        tokio::spawn(async move {
            let (pool, vm_id, state) = (&operation.pool, &operation.vm_id, operation.state);
            if let Err(error) = cluster.abandon_power(pool, vm_id, state).await {
                tracing::error!(id = operation.id, %pool, vm = %vm_id, %error, "cannot settle a cancelled power operation");
            }
        });
        true
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
