//! Runs one tick of a binding: invoke, then commit state and apply intents through the rails, or
//! count the failure and fall back; always leave an audit record.
//!
//! Start with [`TickEngine::tick`] (async: the invocation, its host calls and the actuation are
//! awaited on the runtime, never on a thread of their own) and [`TickEngine::bind`]. A tenant's
//! invocations draw instances from its fair share of the pool (see [`InstanceShares`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::audit::{Action, AuditLog, AuditRecord, Outcome, ShadowRecord};
use super::binding::{Binding, BindingSpec, FallbackAction, Shadow};
use super::operations::{Operations, Started};
use super::outcomes::{BindingActuation, LastApplied};
use super::scope::{Scope, TenantSpec};
use crate::backends::{Clock, Cluster};
use crate::model::{BackendError, PowerState, TimestampMs, WorkloadRef};
use crate::runtime::{
    Access, CompiledPolicy, EngineConfig, Intent, Invocation, InvocationError, StagedState,
};
use crate::state::{StateStore, namespace, shadow_namespace};

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// No such tenant.
    #[error("binding {binding}: unknown tenant {tenant:?}")]
    UnknownTenant {
        /// The binding.
        binding: String,
        /// The tenant named.
        tenant: String,
    },
    /// A target or pool outside the tenant's scope.
    #[error("binding {binding}: {message}")]
    OutOfScope {
        /// The binding.
        binding: String,
        /// What is outside.
        message: String,
    },
    /// Another binding already actuates the target.
    #[error(
        "binding {binding}: {target} is already a target of binding {owner} (one writer per target)"
    )]
    TargetTaken {
        /// The binding.
        binding: String,
        /// The target.
        target: WorkloadRef,
        /// The binding that owns it.
        owner: String,
    },
    /// Bad rails, interval or limits.
    #[error("binding {binding}: {message}")]
    Invalid {
        /// The binding.
        binding: String,
        /// What is wrong.
        message: String,
    },
    /// The policy's `validate-config` refused the config or failed.
    #[error("binding {binding}: config refused by the policy: {message}")]
    Config {
        /// The binding.
        binding: String,
        /// The policy's own message (or why its check failed).
        message: String,
    },
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
    /// Named real backends (and their clocks); a tenant without one uses `cluster`.
    backends: RwLock<BTreeMap<String, (Arc<dyn Cluster>, Arc<dyn Clock>)>>,
    /// The node the host runs on, shown to policies in the node view.
    host_node: Option<Arc<str>>,
    /// How late the scheduler started ticks: all of them, and per tenant.
    lateness: super::lateness::Lateness,
    tenant_lateness: RwLock<BTreeMap<String, Arc<super::lateness::Lateness>>>,
}

/// What [`TickEngine::bind_with`] installs beside the spec.
#[derive(Default)]
pub struct BindOptions {
    /// The control plane's revision number.
    pub revision: Option<u64>,
    /// A shadow revision to run dry on the same ticks.
    pub shadow: Option<ShadowOptions>,
    /// Pause (true) or resume (false); `None` keeps the current switch (new bindings run).
    pub paused: Option<bool>,
}

/// A shadow revision to check and install.
pub struct ShadowOptions {
    /// Its spec (same tenant and name as the binding).
    pub spec: BindingSpec,
    /// Its compiled plugin.
    pub policy: Arc<CompiledPolicy>,
    /// Its revision number.
    pub revision: Option<u64>,
}

/// What [`TickEngine::check`] found.
struct Checked {
    id: String,
    scope: Scope,
}

/// The longest interval between ticks.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Attempts at an actuation call that the backend answers `unavailable`.
const ACTUATION_ATTEMPTS: u32 = 3;

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
        if let Some(found) = self
            .tenant_lateness
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return found.clone();
        }
        self.tenant_lateness
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// The power operations in flight and their recent outcomes.
    pub fn operations(&self) -> &Arc<Operations> {
        &self.operations
    }

    /// Runs again the power operations a previous run left in flight, each through its
    /// tenant's backend; returns how many.
    pub fn resume_operations(&self) -> Result<usize, crate::state::StateError> {
        self.operations.resume(|operation| {
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
        })
    }

    /// Adds or replaces a tenant.
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

    /// Adds a named backend that tenants may choose (`TenantSpec::backend`). Its tenants' ticks
    /// run on the wall clock: real systems live in real time.
    pub fn add_backend(&self, name: &str, cluster: Arc<dyn Cluster>) {
        self.backends
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name.to_owned(),
                (cluster, Arc::new(crate::backends::SystemClock)),
            );
    }

    /// Whether a backend of that name exists.
    pub fn has_backend(&self, name: &str) -> bool {
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// The cluster a tenant's bindings read and act through.
    fn cluster_for(&self, tenant: &TenantSpec) -> Arc<dyn Cluster> {
        self.backend_of(tenant)
            .map_or_else(|| self.cluster.clone(), |(cluster, _)| cluster)
    }

    /// The clock of a tenant's ticks.
    fn clock_for(&self, tenant: &TenantSpec) -> Arc<dyn Clock> {
        self.backend_of(tenant)
            .map_or_else(|| self.clock.clone(), |(_, clock)| clock)
    }

    fn backend_of(&self, tenant: &TenantSpec) -> Option<(Arc<dyn Cluster>, Arc<dyn Clock>)> {
        let name = tenant.backend.as_ref()?;
        self.backends
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

    /// Checks a binding (scope, one writer per target, rails, limits, and the config through the
    /// policy's own `validate-config`) and, if all holds, installs it, replacing a binding of the
    /// same name. Its state and rail memory carry over a replacement.
    pub async fn bind(
        &self,
        spec: BindingSpec,
        policy: Arc<CompiledPolicy>,
    ) -> Result<Arc<Binding>, BindError> {
        self.bind_with(spec, policy, BindOptions::default()).await
    }

    /// [`bind`](Self::bind) with a revision number, a shadow revision, and the pause switch.
    pub async fn bind_with(
        &self,
        spec: BindingSpec,
        policy: Arc<CompiledPolicy>,
        options: BindOptions,
    ) -> Result<Arc<Binding>, BindError> {
        self.check_binding(&spec, &policy).await?;
        if let Some(shadow) = &options.shadow {
            self.check_binding(&shadow.spec, &shadow.policy).await?;
        }
        self.install(spec, policy, options)
    }

    /// Installs a binding whose config was already accepted by its policy (see
    /// [`check_binding`](Self::check_binding)): every other check runs again, not the policy's
    /// `validate-config`, so nothing slow or time-dependent can fail after a commit.
    pub fn install(
        &self,
        spec: BindingSpec,
        policy: Arc<CompiledPolicy>,
        options: BindOptions,
    ) -> Result<Arc<Binding>, BindError> {
        let checked = self.check(&spec)?;
        let shadow = match options.shadow {
            Some(shadow) => {
                if shadow.spec.tenant != spec.tenant || shadow.spec.name != spec.name {
                    return Err(BindError::Invalid {
                        binding: checked.id,
                        message: "a shadow belongs to its own binding".into(),
                    });
                }
                let scope = self.check(&shadow.spec)?.scope;
                Some(Shadow {
                    config_json: shadow.spec.config.to_string(),
                    spec: shadow.spec,
                    policy: shadow.policy,
                    revision: shadow.revision,
                    scope: Arc::new(scope),
                })
            }
            None => None,
        };
        let key = (spec.tenant.clone(), spec.name.clone());
        let mut bindings = self.bindings.write().unwrap_or_else(|p| p.into_inner());
        bindings.check_owners(&key, &checked.scope, &checked.id)?;
        if bindings.get(&key).is_none() {
            let max = self.ceilings.max_bindings_per_tenant as usize;
            let count = bindings.count_of(&spec.tenant);
            if count >= max {
                return Err(BindError::Invalid {
                    binding: checked.id,
                    message: format!(
                        "tenant {} has {count} bindings, the most the operator allows (max_bindings_per_tenant)",
                        spec.tenant
                    ),
                });
            }
        }
        let (rails, health, last_applied, paused, ticking, gate, generation) =
            match bindings.get(&key) {
                Some(old) => (
                    old.rails.clone(),
                    old.health.clone(),
                    old.last_applied.clone(),
                    old.paused.clone(),
                    old.ticking.clone(),
                    old.gate.clone(),
                    old.generation,
                ),
                None => (
                    Arc::default(),
                    Arc::default(),
                    Arc::default(),
                    Arc::default(),
                    Arc::default(),
                    Arc::default(),
                    self.generations.fetch_add(1, Ordering::Relaxed) + 1,
                ),
            };
        if let Some(pause) = options.paused {
            paused.store(pause, Ordering::Relaxed);
        }
        let binding = Arc::new(Binding {
            config_json: spec.config.to_string(),
            tenant: spec.tenant.as_str().into(),
            name: spec.name.as_str().into(),
            spec,
            policy,
            revision: options.revision,
            shadow,
            scope: Arc::new(checked.scope),
            generation,
            paused,
            ticking,
            gate,
            rails,
            health,
            last_applied,
        });
        if let Some(old) = bindings.get(&key) {
            for pool in old
                .scope
                .pools
                .iter()
                .filter(|p| !binding.scope.pools.contains(p))
            {
                self.operations
                    .cancel_binding(&binding.tenant, &binding.name, Some(pool));
            }
        }
        bindings.insert(key, binding.clone());
        Ok(binding)
    }

    /// Checks a binding without installing it (what [`bind`](Self::bind) checks first): scope,
    /// ownership, rails and limits, then the config through the policy's `validate-config`,
    /// which runs under the binding's deadline and limits on the tenant's share of instances.
    pub async fn check_binding(
        &self,
        spec: &BindingSpec,
        policy: &CompiledPolicy,
    ) -> Result<(), BindError> {
        let checked = self.check(spec)?;
        let refused = |message: String| BindError::Config {
            binding: checked.id.clone(),
            message,
        };
        let _permit = self
            .shares
            .acquire_for_check(spec.limits.deadline)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let staged = StagedState::new(self.state.clone(), namespace(&spec.tenant, &spec.name));
        policy
            .validate_config(
                &spec.config.to_string(),
                spec.limits,
                spec.tenant.as_str().into(),
                spec.name.as_str().into(),
                self.clock_for(&checked.scope.tenant).now_ms(),
                staged,
            )
            .await
            .map_err(|e| refused(crate::display_chain(&e)))
    }

    /// [`check_binding`](Self::check_binding) without the policy's `validate-config`: scope,
    /// ownership, rails, limits.
    pub fn check_binding_quick(&self, spec: &BindingSpec) -> Result<(), BindError> {
        self.check(spec).map(|_| ())
    }

    /// Pauses or resumes `tenant/name`; false if there is no such binding.
    pub fn set_paused(&self, tenant: &str, name: &str, paused: bool) -> bool {
        match self.binding(tenant, name) {
            Some(binding) => {
                binding.paused.store(paused, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn check(&self, spec: &BindingSpec) -> Result<Checked, BindError> {
        let id = format!("{}/{}", spec.tenant, spec.name);
        let invalid = |message: String| BindError::Invalid {
            binding: id.clone(),
            message,
        };
        let tenant = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&spec.tenant)
            .cloned()
            .ok_or_else(|| BindError::UnknownTenant {
                binding: id.clone(),
                tenant: spec.tenant.clone(),
            })?;
        let ceilings = &self.ceilings;
        let min_interval = ceilings.min_interval;
        if spec.interval < min_interval || spec.interval > MAX_INTERVAL {
            return Err(invalid(format!(
                "interval must be from {} (the operator's min_interval) to 1d",
                crate::duration::format(min_interval)
            )));
        }
        if spec.limits.deadline > ceilings.max_deadline {
            return Err(invalid(format!(
                "limits.deadline must be at most {} (the operator's max_deadline)",
                crate::duration::format(ceilings.max_deadline)
            )));
        }
        if spec.limits.memory_bytes > ceilings.max_memory_bytes {
            return Err(invalid(format!(
                "limits.memory_bytes {} exceeds the engine's max_memory_bytes {}",
                spec.limits.memory_bytes, ceilings.max_memory_bytes
            )));
        }
        if spec.limits.max_host_calls > ceilings.max_host_calls {
            return Err(invalid(format!(
                "limits.max_host_calls {} exceeds the engine's max_host_calls {}",
                spec.limits.max_host_calls, ceilings.max_host_calls
            )));
        }
        if spec.limits.max_bytes > ceilings.max_bytes {
            return Err(invalid(format!(
                "limits.max_bytes {} exceeds the engine's max_bytes {}",
                spec.limits.max_bytes, ceilings.max_bytes
            )));
        }
        if spec.fallback.after_failures == 0 {
            return Err(invalid("fallback.after_failures must be at least 1".into()));
        }
        if spec.limits.deadline.is_zero() {
            return Err(invalid("limits.deadline must be > 0".into()));
        }
        let scope = Scope {
            tenant: tenant.clone(),
            targets: spec.targets.iter().map(|t| t.workload()).collect(),
            pools: spec.vm_pools.clone(),
        };
        for (i, target) in spec.targets.iter().enumerate() {
            let workload = target.workload();
            scope
                .check_read(&workload)
                .map_err(|e| BindError::OutOfScope {
                    binding: id.clone(),
                    message: e.to_string(),
                })?;
            if target.min_replicas > target.max_replicas {
                return Err(invalid(format!(
                    "{workload}: min_replicas {} > max_replicas {}",
                    target.min_replicas, target.max_replicas
                )));
            }
            if spec.targets[..i].iter().any(|t| t.workload() == workload) {
                return Err(invalid(format!("{workload} is listed twice")));
            }
        }
        for pool in &spec.vm_pools {
            scope.check_pool(pool).map_err(|e| BindError::OutOfScope {
                binding: id.clone(),
                message: e.to_string(),
            })?;
        }
        let key = (spec.tenant.clone(), spec.name.clone());
        // Checked before the (slow) config validation, and again under the write lock.
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check_owners(&key, &scope, &id)?;
        Ok(Checked { id, scope })
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
        // fallback.
        let failure = match result {
            Ok(writes) => {
                record.state_writes = writes;
                record.actions = self.apply_intents(binding, &record.intents, now).await;
                let refused: Vec<String> =
                    record.actions.iter().filter_map(Action::failure).collect();
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
                    health.failing = false;
                }
                Some(error) => {
                    if applied {
                        health.failed_actuations += 1;
                    } else {
                        health.failed_ticks += 1;
                    }
                    health.consecutive_failures += 1;
                    health.last_error = Some(error.clone());
                    record.consecutive_failures = health.consecutive_failures;
                }
            }
            let fall_back = failure.is_some()
                && health.consecutive_failures >= fallback.after_failures
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

    /// Runs the shadow revision on the same instant, dry: its state is committed under its own
    /// namespace, its intents only recorded.
    async fn tick_shadow(
        &self,
        binding: &Binding,
        shadow: &Shadow,
        now: TimestampMs,
        state_epoch: u64,
        previous: Option<Arc<LastApplied>>,
    ) -> ShadowRecord {
        let invocation = self
            .invoke(
                binding,
                Revision {
                    policy: &shadow.policy,
                    config_json: &shadow.config_json,
                    limits: shadow.spec.limits,
                    scope: &shadow.scope,
                    state: shadow_namespace(&binding.tenant, &binding.name),
                    previous,
                },
                now,
            )
            .await;
        let result = match invocation.result {
            Ok(()) => commit_gated(binding, state_epoch, invocation.state)
                .await
                .map_err(Refused::into_error),
            Err(error) => Err(error),
        };
        ShadowRecord {
            plugin: shadow.policy.digest().to_owned(),
            revision: shadow.revision,
            outcome: match result {
                Ok(_) => Outcome::Ok,
                Err(error) => Outcome::Failed { error },
            },
            intents: invocation.intents,
        }
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
        let permits = self
            .shares
            .acquire(&binding.tenant, revision.limits.deadline)
            .await;
        let _permits = match permits {
            Ok(permits) => permits,
            Err(busy) => return Invocation::refused(busy, staged),
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
        };
        revision
            .policy
            .tick(
                revision.config_json,
                revision.limits,
                binding.tenant.clone(),
                binding.name.clone(),
                now,
                access,
                staged,
            )
            .await
    }

    async fn apply_intents(
        &self,
        binding: &Binding,
        intents: &[Intent],
        now: TimestampMs,
    ) -> Vec<Action> {
        let cluster = self.cluster_for(&binding.scope.tenant);
        // Per target, the last intent holds the composed request.
        let mut requests: Vec<(&WorkloadRef, u32)> = Vec::new();
        for intent in intents {
            if let Intent::Scale {
                target, requested, ..
            } = intent
            {
                match requests.iter_mut().find(|(t, _)| *t == target) {
                    Some(entry) => entry.1 = *requested,
                    None => requests.push((target, *requested)),
                }
            }
        }
        // The binding may be removed, or a newer revision may drop a target or pool, while
        // this tick acts: each action checks that the binding still owns what it touches.
        let mut actions = Vec::with_capacity(requests.len());
        for (target, requested) in requests {
            actions.push(
                if self.still_owns(binding, |s| s.targets.contains(target)) {
                    self.scale(binding, target, requested, now, true).await
                } else {
                    refused_scale(target, requested, super::audit::NO_LONGER_A_TARGET)
                },
            );
        }
        // Identical power intents of one tick are one operation.
        let mut seen: Vec<(&str, &str, PowerState)> = Vec::new();
        for intent in intents {
            if let Intent::Power {
                pool, vm_id, state, ..
            } = intent
            {
                if seen.contains(&(pool.as_str(), vm_id.as_str(), *state)) {
                    continue;
                }
                seen.push((pool, vm_id, *state));
                let (operation, error) = if self.still_owns(binding, |s| s.pools.contains(pool)) {
                    match blocking_io(|| {
                        self.operations.start(
                            cluster.clone(),
                            &binding.tenant,
                            &binding.name,
                            binding.scope.tenant.backend.as_deref(),
                            pool,
                            vm_id,
                            *state,
                        )
                    }) {
                        Started::New(id) | Started::Joined(id) => (Some(id), None),
                        Started::Waiting { id, state } => (
                            None,
                            Some(format!(
                                "{}operation {id} on {vm_id} (power {}) is in flight",
                                super::audit::WAITING,
                                power_word(state)
                            )),
                        ),
                        Started::Refused(why) => (None, Some(why)),
                    }
                } else {
                    (None, Some(super::audit::NO_LONGER_A_POOL.to_owned()))
                };
                actions.push(Action::Power {
                    pool: pool.clone(),
                    vm_id: vm_id.clone(),
                    state: *state,
                    operation,
                    error,
                });
            }
        }
        actions
    }

    async fn apply_fallback(
        &self,
        binding: &Binding,
        replicas: u32,
        now: TimestampMs,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for target in &binding.spec.targets {
            let workload = target.workload();
            actions.push(
                if self.still_owns(binding, |s| s.targets.contains(&workload)) {
                    self.scale(binding, &workload, replicas, now, false).await
                } else {
                    refused_scale(&workload, replicas, super::audit::NO_LONGER_A_TARGET)
                },
            );
        }
        actions
    }

    /// Whether `binding`'s tick may still act on what `owns` picks out of the current
    /// revision's scope: the binding is not removed (nor removed and created again).
    fn still_owns(&self, binding: &Binding, owns: impl Fn(&Scope) -> bool) -> bool {
        if binding
            .gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retired
        {
            return false;
        }
        self.binding(&binding.tenant, &binding.name)
            .is_some_and(|current| current.generation == binding.generation && owns(&current.scope))
    }

    /// Scales one target; `with_rails` applies every rail, otherwise only min/max.
    async fn scale(
        &self,
        binding: &Binding,
        target: &WorkloadRef,
        requested: u32,
        now: TimestampMs,
        with_rails: bool,
    ) -> Action {
        let Some(spec) = binding
            .spec
            .targets
            .iter()
            .find(|t| t.workload() == *target)
        else {
            // Scope checks at intent time make this unreachable; refuse rather than act.
            return refused_scale(target, requested, "not a target of this binding");
        };
        let rails = if with_rails {
            spec.rails()
        } else {
            super::guard::Rails::bounds(spec.min_replicas, spec.max_replicas)
        };
        let cluster = self.cluster_for(&binding.scope.tenant);
        let current = match retry(|| cluster.workload(target)).await {
            Ok(status) => status.replicas,
            Err(e) => return refused_scale(target, requested, &e.to_string()),
        };
        let verdict = {
            let mut histories = binding.rails.lock().unwrap_or_else(|p| p.into_inner());
            let history = histories.entry(target.clone()).or_default();
            rails.judge(history, current, requested, now)
        };
        let bounded = requested.clamp(spec.min_replicas, spec.max_replicas);
        let error = if verdict.replicas != current {
            retry(|| cluster.scale(target, verdict.replicas))
                .await
                .err()
                .map(|e| e.to_string())
        } else {
            None
        };
        binding
            .rails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.clone())
            .or_default()
            .record(
                now,
                bounded,
                error.is_none() && verdict.replicas != current,
                spec.stabilization_down,
            );
        Action::Scale {
            target: target.clone(),
            current,
            requested,
            applied: if error.is_none() {
                verdict.replicas
            } else {
                current
            },
            adjustments: verdict.adjustments,
            error,
        }
    }
}

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

/// Runs a tick's blocking store I/O (a redb commit): on a multi-threaded runtime the worker
/// hands its other tasks on meanwhile, so a slow disk or a big transaction stalls no other
/// tick; on a current-thread runtime (a backtest) it just runs.
pub(super) fn blocking_io<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Commits a tick's staged state unless the binding was removed or its state cleared while
/// the tick ran. The check and the queueing happen under the binding's commit gate, so a
/// removal or a clearing (which take the gate, then queue their own writes) is ordered after
/// a commit that passed it; the wait for durability happens outside it.
async fn commit_gated(
    binding: &Binding,
    state_epoch: u64,
    state: StagedState,
) -> Result<usize, Refused> {
    let durable = {
        let gate = binding.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.retired {
            return Err(Refused::Discarded(InvocationError::State(
                "the binding was removed while the tick ran; nothing applied".into(),
            )));
        }
        if gate.state_epoch != state_epoch {
            return Err(Refused::Discarded(InvocationError::State(
                "the binding's state was cleared while the tick ran; nothing applied".into(),
            )));
        }
        state.commit_async()
    };
    durable
        .await
        .map_err(|e| Refused::Failed(InvocationError::State(crate::display_chain(&e))))
}

/// Why a tick's state was not committed.
enum Refused {
    /// Overtaken by a removal or a state clearing: not the policy's failure.
    Discarded(InvocationError),
    /// The store failed.
    Failed(InvocationError),
}

impl Refused {
    fn into_error(self) -> InvocationError {
        match self {
            Refused::Discarded(error) | Refused::Failed(error) => error,
        }
    }
}

/// A scale action that was not attempted, and why.
fn refused_scale(target: &WorkloadRef, requested: u32, why: &str) -> Action {
    Action::Scale {
        target: target.clone(),
        current: 0,
        requested,
        applied: 0,
        adjustments: Vec::new(),
        error: Some(why.to_owned()),
    }
}

/// The instance pool shared fairly: every invocation holds a permit of the whole pool and one
/// of its tenant's share, so one tenant can hold at most `max_instances_per_tenant` instances
/// and never starve the others of the pool. A permit is awaited for at most the invocation's
/// deadline; a tenant whose share is exhausted fails only its own invocations.
pub(crate) struct InstanceShares {
    pool: Arc<Semaphore>,
    pool_size: usize,
    per_tenant: u32,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// No instance could be had within the deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "no sandbox instance free within {wait}: {which} ({held} of {size} in use); the tick did not run"
)]
pub(crate) struct Busy {
    wait: String,
    which: &'static str,
    held: usize,
    size: usize,
}

impl InstanceShares {
    fn new(config: &EngineConfig) -> Self {
        let pool = config.max_concurrent_instances.max(1);
        InstanceShares {
            pool: Arc::new(Semaphore::new(pool as usize)),
            pool_size: pool as usize,
            per_tenant: config.max_instances_per_tenant.clamp(1, pool),
            tenants: Mutex::default(),
        }
    }

    async fn acquire(
        &self,
        tenant: &str,
        wait: Duration,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), Busy> {
        let share = self
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant as usize)))
            .clone();
        let deadline = tokio::time::Instant::now() + wait;
        let busy = |which, semaphore: &Semaphore, size: usize| Busy {
            wait: crate::duration::format(wait),
            which,
            held: size.saturating_sub(semaphore.available_permits()),
            size,
        };
        let tenant_permit = tokio::time::timeout_at(deadline, share.clone().acquire_owned())
            .await
            .map_err(|_| {
                busy(
                    "the tenant's share is in use",
                    &share,
                    self.per_tenant as usize,
                )
            })?
            .expect("shares are never closed");
        let pool_permit = self.pool_permit(deadline, wait).await?;
        Ok((tenant_permit, pool_permit))
    }

    /// A permit of the host's pool alone, awaited until `deadline`.
    async fn pool_permit(
        &self,
        deadline: tokio::time::Instant,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Busy> {
        let permit = tokio::time::timeout_at(deadline, self.pool.clone().acquire_owned())
            .await
            .map_err(|_| Busy {
                wait: crate::duration::format(wait),
                which: "the host's pool is in use",
                held: self.pool_size.saturating_sub(self.pool.available_permits()),
                size: self.pool_size,
            })?
            .expect("the pool is never closed");
        Ok(permit)
    }

    /// A permit for a config check: the host's pool only, not the tenant's share, so that a
    /// tenant whose ticks fill its share (endless policies, say) can still be fixed by a PUT.
    async fn acquire_for_check(&self, wait: Duration) -> Result<OwnedSemaphorePermit, Busy> {
        self.pool_permit(tokio::time::Instant::now() + wait, wait)
            .await
    }
}

/// "on" or "off".
fn power_word(state: PowerState) -> &'static str {
    match state {
        PowerState::On => "on",
        PowerState::Off => "off",
    }
}

/// Retries a backend call that answered `unavailable`, with a short backoff.
pub(super) async fn retry<T, F, Fut>(mut call: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(BackendError::Unavailable(_)) if attempt < ACTUATION_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
