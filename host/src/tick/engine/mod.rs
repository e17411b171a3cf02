//! Runs one tick of a binding: invoke, then commit state and apply intents through the rails, or
//! count the failure and fall back; always leave an audit record.
//!
//! Start with [`TickEngine::tick`] (async: the invocation, its host calls and the actuation are
//! awaited on the runtime, never on a thread of their own) and [`TickEngine::bind`]. A tenant's
//! invocations draw instances from its fair share of the pool (see [`InstanceShares`]).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use super::audit::{Action, AuditLog, AuditRecord, Outcome};
use super::binding::{Binding, FallbackAction};
use super::operations::Operations;
use super::outcomes::{BindingActuation, LastApplied};
use crate::backends::{Clock, Cluster};
use crate::domain::cluster::TimestampMs;
use crate::domain::promql::QueryRate;
use crate::domain::scope::{Scope, TenantSpec};
use crate::runtime::{
    Access, CompiledPolicy, EngineConfig, Invocation, InvocationError, StagedState,
};
use crate::store::{StateStore, namespace};

mod apply;
mod backends;
mod bind;
mod shadow;

pub use super::error::BindError;
pub(crate) use super::shares::InstanceShares;
use apply::{Refused, commit_gated};
use backends::NamedBackend;
pub use bind::{BindOptions, ShadowOptions};

/// `tenant`'s entry of a per-tenant map, made on first use (a read lock on the way there).
fn per_tenant<T: Default>(map: &RwLock<BTreeMap<String, Arc<T>>>, tenant: &str) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
        return found.clone();
    }
    map.write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(tenant.to_owned())
        .or_default()
        .clone()
}

/// The tenants and bindings of a host, and the one place a tick is run.
pub struct TickEngine {
    cluster: Arc<dyn Cluster>,
    clock: Arc<dyn Clock>,
    state: Arc<StateStore>,
    audit: Arc<AuditLog>,
    ceilings: EngineConfig,
    shares: InstanceShares,
    operations: Arc<Operations>,
    tenants: RwLock<BTreeMap<String, TenantSpec>>,
    bindings: RwLock<super::registry::Registry>,
    generations: AtomicU64,
    /// Named real backends; a tenant without one uses `cluster`.
    backends: RwLock<BTreeMap<String, NamedBackend>>,
    /// The node the host runs on, shown to policies in the node view.
    host_node: Option<Arc<str>>,
    /// How late the scheduler started ticks: all of them, and per tenant.
    lateness: super::lateness::Lateness,
    tenant_lateness: RwLock<BTreeMap<String, Arc<super::lateness::Lateness>>>,
    /// Each tenant's query rate, shared by its bindings.
    query_rates: RwLock<BTreeMap<String, Arc<Mutex<QueryRate>>>>,
}

impl TickEngine {
    /// An engine acting on `cluster`, reading time from `clock`, holding every binding to the
    /// operator's `ceilings` (limits, intervals, the instance pool and its per-tenant shares).
    pub fn new(
        cluster: Arc<dyn Cluster>,
        clock: Arc<dyn Clock>,
        state: Arc<StateStore>,
        audit: Arc<AuditLog>,
        ceilings: &EngineConfig,
    ) -> Self {
        TickEngine {
            operations: Operations::new(state.clone(), audit.clone()),
            cluster,
            clock,
            state,
            audit,
            shares: InstanceShares::new(ceilings),

            host_node: ceilings.node_name.as_deref().map(Arc::from),
            lateness: Default::default(),
            tenant_lateness: RwLock::default(),
            query_rates: RwLock::default(),
            ceilings: ceilings.clone(),
            tenants: RwLock::default(),
            bindings: RwLock::default(),
            generations: AtomicU64::new(0),
            backends: RwLock::default(),
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The state store.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// How late the scheduler started this engine's ticks (from when each was due).
    pub fn lateness(&self) -> &super::lateness::Lateness {
        &self.lateness
    }

    /// How late the scheduler started `tenant`'s ticks.
    pub fn lateness_of(&self, tenant: &str) -> Arc<super::lateness::Lateness> {
        per_tenant(&self.tenant_lateness, tenant)
    }

    /// `tenant`'s query rate.
    fn query_rate_of(&self, tenant: &str) -> Arc<Mutex<QueryRate>> {
        per_tenant(&self.query_rates, tenant)
    }

    /// The power operations in flight and their recent outcomes.
    pub fn operations(&self) -> &Arc<Operations> {
        &self.operations
    }

    /// Runs again the power operations a previous run left in flight, each through its
    /// tenant's backend; returns how many.
    pub fn resume_operations(&self) -> Result<usize, crate::store::StateError> {
        self.operations.resume(
            |operation| {
                let binding = self
                    .binding(&operation.tenant, &operation.binding)
                    .ok_or("its binding is gone")?;
                if !binding.scope.pools.contains(&operation.pool) {
                    return Err(format!(
                        "its binding no longer powers pool {}",
                        operation.pool
                    ));
                }
                // The backend it was started on, which must still be its tenant's.
                if binding.scope.tenant.backend != operation.backend {
                    return Err("its tenant moved to another backend".into());
                }
                Ok(self.cluster_for(&binding.scope.tenant))
            },
            |operation| match &operation.backend {
                // The backend the operation ran on, to settle what it left.
                Some(name) => self
                    .backends
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(name)
                    .map(|b| b.cluster.clone()),
                None => Some(self.cluster.clone()),
            },
        )
    }

    /// Adds or replaces a tenant (checked by the caller: [`TenantSpec::check`],
    /// [`Self::check_namespaces`]).
    pub fn add_tenant(&self, tenant: TenantSpec) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.name.clone(), tenant);
    }

    /// A tenant's grants.
    pub fn tenant(&self, name: &str) -> Option<TenantSpec> {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Removes a tenant (its bindings must be gone: a tick of one would find no grants).
    pub fn remove_tenant(&self, name: &str) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// The binding `tenant/name`.
    pub fn binding(&self, tenant: &str, name: &str) -> Option<Arc<Binding>> {
        let bindings = self.bindings.read().unwrap_or_else(|p| p.into_inner());
        bindings.get(&(tenant.to_owned(), name.to_owned())).cloned()
    }

    /// Every binding, by tenant and name.
    pub fn bindings(&self) -> Vec<Arc<Binding>> {
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Removes a binding at once, without waiting for a tick in flight: that tick (it ends by
    /// its deadline) finds its binding retired and applies nothing and writes no state. The
    /// binding's state stays in the store.
    pub fn unbind(&self, tenant: &str, name: &str) -> Option<Arc<Binding>> {
        let removed = self
            .bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), name.to_owned()));
        if let Some(binding) = &removed {
            binding
                .gate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retired = true;
            self.operations.cancel_binding(tenant, name, None);
            self.operations.take_failures(tenant, name);
        }
        removed
    }

    /// Runs `work` where no tick of `tenant/name` can commit (e.g. clearing its state); a tick
    /// in flight that started before it commits nothing.
    pub fn between_ticks<T>(&self, tenant: &str, name: &str, work: impl FnOnce() -> T) -> T {
        match self.binding(tenant, name) {
            Some(binding) => {
                let mut gate = binding.gate.lock().unwrap_or_else(|p| p.into_inner());
                gate.state_epoch += 1;
                work()
            }
            None => work(),
        }
    }

    /// Runs one tick of `binding` now: invoke the policy in a fresh sandbox; on Ok commit its
    /// state and apply its intents through the rails; on failure apply nothing, count it, and
    /// fall back once failures reach the threshold. Returns (and logs) the audit record.
    ///
    /// One tick of a binding runs at a time, across revisions. A tick whose binding was removed,
    /// or whose state was cleared, while it ran commits and applies nothing; a target that a
    /// newer revision dropped is not scaled.
    pub async fn tick(&self, binding: &Binding) -> AuditRecord {
        let _ticking = binding.ticking.lock().await;
        let state_epoch = binding
            .gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state_epoch;
        let now = self.clock_for(&binding.scope.tenant).now_ms();
        let previous = binding
            .last_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let invocation = self
            .invoke(
                binding,
                Revision {
                    policy: &binding.policy,
                    config_json: &binding.config_json,
                    limits: binding.spec.limits,
                    scope: &binding.scope,
                    state: namespace(&binding.tenant, &binding.name),
                    previous: previous.clone(),
                },
                now,
            )
            .await;
        let mut record = AuditRecord {
            seq: 0,
            at: now,
            tenant: binding.tenant.to_string(),
            binding: binding.name.to_string(),
            plugin: binding.policy.digest().to_owned(),
            revision: binding.revision,
            shadow: None,
            outcome: Outcome::Ok,
            intents: invocation.intents,
            actions: Vec::new(),
            fallback: None,
            state_writes: 0,
            host_calls: invocation.host_calls,
            elapsed_us: invocation.elapsed.as_micros() as u64,
            consecutive_failures: 0,
        };
        // A tick overtaken by a removal or a state clearing is discarded: it commits nothing,
        // applies nothing, and is no failure of the policy's (no fallback).
        let result = match invocation.result {
            Ok(()) => match commit_gated(binding, state_epoch, invocation.state).await {
                Ok(writes) => Ok(writes),
                Err(Refused::Failed(error)) => Err(error),
                Err(Refused::Discarded(error)) => {
                    record.outcome = Outcome::Failed { error };
                    self.audit.append(&mut record);
                    return record;
                }
            },
            Err(error) => Err(error),
        };
        let retired = binding
            .gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retired;
        {
            let mut health = binding.health.lock().unwrap_or_else(|p| p.into_inner());
            health.ticks += 1;
            health.last_tick_at = Some(now);
        }
        // What failed, if anything: the invocation (nothing applied), or the actuation of an
        // applied tick (a backend refused; a rail clamp is no failure). Both count toward the
        // fallback, except the host's own overload (its pool or its state store full with other
        // tenants' work): that fails the tick but is no fault of the binding's.
        let host_overload = matches!(&result, Err(e) if e.is_host_overload());
        let failure = match result {
            Ok(writes) => {
                record.state_writes = writes;
                // Power operations of the binding's that failed since its last applied tick
                // are failed actuations too: they ran off the tick path, so they count here.
                let operations_failed = self
                    .operations
                    .take_failures(&binding.tenant, &binding.name);
                record.actions = self.apply_intents(binding, &record.intents, now).await;
                let mut refused: Vec<String> =
                    record.actions.iter().filter_map(Action::failure).collect();
                if let Some((count, last)) = &operations_failed {
                    refused.push(if *count > 1 {
                        format!(
                            "{count} power operations failed since the last tick, the last: {last}"
                        )
                    } else {
                        last.clone()
                    });
                }
                (!refused.is_empty()).then(|| format!("actuation failed: {}", refused.join("; ")))
            }
            Err(error) => {
                let message = error.to_string();
                record.outcome = Outcome::Failed { error };
                Some(message)
            }
        };
        let applied = matches!(record.outcome, Outcome::Ok);
        if applied {
            *binding
                .last_applied
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(LastApplied {
                at: now,
                actions: record.actions.clone(),
            }));
        }
        let fallback = binding.spec.fallback;
        let fall_back = {
            let mut health = binding.health.lock().unwrap_or_else(|p| p.into_inner());
            match &failure {
                None => {
                    health.consecutive_failures = 0;
                    health.consecutive_overloaded = 0;
                    health.failing = false;
                }
                Some(error) => {
                    if applied {
                        health.failed_actuations += 1;
                    } else {
                        health.failed_ticks += 1;
                    }
                    if host_overload {
                        health.consecutive_overloaded =
                            health.consecutive_overloaded.saturating_add(1);
                    } else {
                        health.consecutive_overloaded = 0;
                        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                    }
                    health.last_error = Some(error.clone());
                    record.consecutive_failures = health.consecutive_failures;
                }
            }
            // A burst of the host's overload is no reason to fall back; an outage of it is, at
            // OVERLOAD_PATIENCE times the binding's own patience.
            let overloaded_too_long = health.consecutive_overloaded
                >= fallback.after_failures.saturating_mul(OVERLOAD_PATIENCE);
            let fall_back = failure.is_some()
                && (if host_overload {
                    overloaded_too_long
                } else {
                    health.consecutive_failures >= fallback.after_failures
                })
                && !retired;
            health.failing |= fall_back;
            fall_back
        };
        if let Some(error) = &failure {
            if fall_back {
                tracing::warn!(tenant = %binding.tenant, binding = %binding.name, %error, "binding failing, fallback applies");
                record.fallback = Some(match fallback.action {
                    FallbackAction::Hold => "hold".to_owned(),
                    FallbackAction::Fixed(n) => format!("fixed {n}"),
                });
                if let FallbackAction::Fixed(n) = fallback.action {
                    // An applied tick's own actions stay in the record before the fallback's.
                    let actions = self.apply_fallback(binding, n, now).await;
                    // The policy's next tick sees what the fallback did.
                    *binding
                        .last_applied
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(LastApplied {
                        at: now,
                        actions: actions.clone(),
                    }));
                    record.actions.extend(actions);
                }
            } else if applied {
                tracing::info!(tenant = %binding.tenant, binding = %binding.name, %error, "tick applied, its actuation failed");
            } else {
                tracing::info!(tenant = %binding.tenant, binding = %binding.name, %error, "tick failed, nothing applied");
            }
        }
        // The shadow runs after the active revision's intents were applied: it never delays
        // them.
        if let Some(shadow) = &binding.shadow
            && !retired
        {
            record.shadow = Some(
                self.tick_shadow(binding, shadow, now, state_epoch, previous)
                    .await,
            );
        }
        self.audit.append(&mut record);
        record
    }

    /// Invokes one revision of `binding` at `now` on its tenant's share of instances: with
    /// the tenant's backend and the revision's grants, its state staged over `revision.state`.
    async fn invoke(
        &self,
        binding: &Binding,
        revision: Revision<'_>,
        now: TimestampMs,
    ) -> Invocation {
        let staged = StagedState::new(self.state.clone(), revision.state);
        // One deadline from here: the wait for an instance spends it too.
        let waiting = std::time::Instant::now();
        let permits = self
            .shares
            .acquire(&binding.tenant, revision.limits.deadline)
            .await;
        let (_share, _pool, pool_kept_waiting) = match permits {
            Ok(permits) => permits,
            Err(busy) => {
                let why = if busy.host_wide() {
                    InvocationError::Overloaded(busy.to_string())
                } else {
                    InvocationError::Busy(busy.to_string())
                };
                return Invocation::refused(why, staged);
            }
        };
        let last = revision.previous;
        let access = Access {
            cluster: self.cluster_for(&revision.scope.tenant),
            scope: revision.scope.clone(),
            actuation: Arc::new(BindingActuation {
                last,
                operations: self.operations.clone(),
                backend: revision.scope.tenant.backend.clone(),
            }),
            host_node: self.host_node.clone(),
            query_rate: self.query_rate_of(&binding.tenant),
        };
        let waited = waiting.elapsed();
        let deadline = revision.limits.deadline;
        // An instance had only at the very end of the deadline leaves the tick no time to run:
        // it fails as the wait it was (for the tenant's share, or the host's pool), not as a
        // deadline a policy ran out of, and gives the instance back at once.
        let Some(left) = crate::tick::shares::time_left(waited, deadline) else {
            let why = format!(
                "waited {} of its {} deadline for a sandbox instance ({} in use); the tick did not run",
                crate::domain::duration::format(waited),
                crate::domain::duration::format(deadline),
                if pool_kept_waiting {
                    "the host's pool"
                } else {
                    "the tenant's share"
                }
            );
            return Invocation::refused(
                if pool_kept_waiting {
                    InvocationError::Overloaded(why)
                } else {
                    InvocationError::Busy(why)
                },
                staged,
            );
        };
        let limits = crate::runtime::Limits {
            deadline: left,
            ..revision.limits
        };
        let mut invocation = revision
            .policy
            .tick(
                revision.config_json,
                limits,
                binding.tenant.clone(),
                binding.name.clone(),
                now,
                access,
                staged,
            )
            .await;
        // Said as the binding's deadline, which is what ran out.
        if let Err(InvocationError::Deadline(deadline)) = &mut invocation.result {
            *deadline = crate::domain::duration::format(revision.limits.deadline);
        }
        invocation
    }
}

/// How many times its own `fallback.after_failures` a binding's ticks may fail in a row for
/// the host's overload before it falls back anyway.
const OVERLOAD_PATIENCE: u32 = 10;

/// What [`TickEngine::invoke`] runs: the active revision of a binding or its shadow.
struct Revision<'a> {
    policy: &'a CompiledPolicy,
    config_json: &'a str,
    limits: crate::runtime::Limits,
    scope: &'a Arc<Scope>,
    /// The state namespace its writes are staged over.
    state: String,
    /// What became of the binding's last applied tick, as of this tick's start: the active
    /// revision and its shadow see the same.
    previous: Option<Arc<LastApplied>>,
}
