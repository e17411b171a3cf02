//! Runs one tick of a binding: invoke, then commit state and apply intents through the rails, or
//! count the failure and fall back; always leave an audit record.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::audit::{Action, AuditLog, AuditRecord, Outcome, ShadowRecord};
use super::binding::{Binding, BindingSpec, FallbackAction, Shadow};
use super::scope::{Scope, TenantSpec};
use crate::backends::{Clock, Cluster};
use crate::model::{BackendError, TimestampMs, WorkloadRef};
use crate::runtime::{Access, CompiledPolicy, Intent, InvocationError, StagedState};
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
    max_memory_bytes: u64,
    tenants: RwLock<BTreeMap<String, TenantSpec>>,
    bindings: RwLock<BTreeMap<(String, String), Arc<Binding>>>,
    generations: AtomicU64,
    /// Named real backends (and their clocks); a tenant without one uses `cluster`.
    backends: RwLock<BTreeMap<String, (Arc<dyn Cluster>, Arc<dyn Clock>)>>,
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
/// The longest deadline of one invocation.
pub const MAX_DEADLINE: Duration = Duration::from_secs(30);

/// Attempts at an actuation call that the backend answers `unavailable`.
const ACTUATION_ATTEMPTS: u32 = 3;

impl TickEngine {
    /// An engine acting on `cluster`, reading time from `clock`.
    pub fn new(
        cluster: Arc<dyn Cluster>,
        clock: Arc<dyn Clock>,
        state: Arc<StateStore>,
        audit: Arc<AuditLog>,
        max_memory_bytes: u64,
    ) -> Self {
        TickEngine {
            cluster,
            clock,
            state,
            audit,
            max_memory_bytes,
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
    pub fn bind(
        &self,
        spec: BindingSpec,
        policy: Arc<CompiledPolicy>,
    ) -> Result<Arc<Binding>, BindError> {
        self.bind_with(spec, policy, BindOptions::default())
    }

    /// [`bind`](Self::bind) with a revision number, a shadow revision, and the pause switch.
    pub fn bind_with(
        &self,
        spec: BindingSpec,
        policy: Arc<CompiledPolicy>,
        options: BindOptions,
    ) -> Result<Arc<Binding>, BindError> {
        self.install_checked(spec, policy, options, true)
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
        self.install_checked(spec, policy, options, false)
    }

    fn install_checked(
        &self,
        spec: BindingSpec,
        policy: Arc<CompiledPolicy>,
        options: BindOptions,
        validate: bool,
    ) -> Result<Arc<Binding>, BindError> {
        let checked = self.check(&spec, &policy, validate)?;
        let shadow = match options.shadow {
            Some(shadow) => {
                if shadow.spec.tenant != spec.tenant || shadow.spec.name != spec.name {
                    return Err(BindError::Invalid {
                        binding: checked.id,
                        message: "a shadow belongs to its own binding".into(),
                    });
                }
                let scope = self.check(&shadow.spec, &shadow.policy, validate)?.scope;
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
        check_owners(&bindings, &key, &checked.scope, &checked.id)?;
        let (rails, health, paused, ticking, generation) = match bindings.get(&key) {
            Some(old) => (
                old.rails.clone(),
                old.health.clone(),
                old.paused.clone(),
                old.ticking.clone(),
                old.generation,
            ),
            None => (
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
            rails,
            health,
        });
        bindings.insert(key, binding.clone());
        Ok(binding)
    }

    /// Checks a binding without installing it (what [`bind`](Self::bind) checks first).
    pub fn check_binding(
        &self,
        spec: &BindingSpec,
        policy: &CompiledPolicy,
    ) -> Result<(), BindError> {
        self.check(spec, policy, true).map(|_| ())
    }

    /// [`check_binding`](Self::check_binding) without the policy's `validate-config`: scope,
    /// ownership, rails, limits.
    pub fn check_binding_quick(
        &self,
        spec: &BindingSpec,
        policy: &CompiledPolicy,
    ) -> Result<(), BindError> {
        self.check(spec, policy, false).map(|_| ())
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

    fn check(
        &self,
        spec: &BindingSpec,
        policy: &CompiledPolicy,
        validate: bool,
    ) -> Result<Checked, BindError> {
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
        if spec.interval < Duration::from_millis(10) || spec.interval > MAX_INTERVAL {
            return Err(invalid("interval must be from 10ms to 1d".into()));
        }
        if spec.limits.deadline > MAX_DEADLINE {
            return Err(invalid(format!(
                "limits.deadline must be at most {}s",
                MAX_DEADLINE.as_secs()
            )));
        }
        if spec.limits.memory_bytes > self.max_memory_bytes {
            return Err(invalid(format!(
                "limits.memory_bytes {} exceeds the engine's max_memory_bytes {}",
                spec.limits.memory_bytes, self.max_memory_bytes
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
        check_owners(
            &self.bindings.read().unwrap_or_else(|p| p.into_inner()),
            &key,
            &scope,
            &id,
        )?;
        if !validate {
            return Ok(Checked { id, scope });
        }
        let staged = StagedState::new(self.state.clone(), namespace(&spec.tenant, &spec.name));
        policy
            .validate_config(
                &spec.config.to_string(),
                spec.limits,
                spec.tenant.as_str().into(),
                spec.name.as_str().into(),
                self.clock_for(&scope.tenant).now_ms(),
                staged,
            )
            .map_err(|e| BindError::Config {
                binding: id.clone(),
                message: crate::display_chain(&e),
            })?;
        Ok(Checked { id, scope })
    }

    /// Removes a binding and waits for a tick in flight to end; its state stays in the store.
    pub fn unbind(&self, tenant: &str, name: &str) -> Option<Arc<Binding>> {
        let removed = self
            .bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), name.to_owned()));
        if let Some(binding) = &removed {
            drop(binding.ticking.lock().unwrap_or_else(|p| p.into_inner()));
        }
        removed
    }

    /// Runs `work` while no tick of `tenant/name` is in flight (e.g. clearing its state).
    pub fn between_ticks<T>(&self, tenant: &str, name: &str, work: impl FnOnce() -> T) -> T {
        match self.binding(tenant, name) {
            Some(binding) => {
                let _ticking = binding.ticking.lock().unwrap_or_else(|p| p.into_inner());
                work()
            }
            None => work(),
        }
    }

    /// Runs one tick of `binding` now, blocking: invoke the policy in a fresh sandbox; on Ok commit
    /// its state and apply its intents through the rails; on failure apply nothing, count it, and
    /// fall back once failures reach the threshold. Returns (and logs) the audit record.
    pub fn tick(&self, binding: &Binding) -> AuditRecord {
        // One tick of a binding at a time, across revisions: removing it waits for this one.
        let _ticking = binding.ticking.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock_for(&binding.scope.tenant).now_ms();
        let cluster = self.cluster_for(&binding.scope.tenant);
        let access = Access {
            cluster: cluster.clone(),
            scope: binding.scope.clone(),
        };
        let staged = StagedState::new(
            self.state.clone(),
            namespace(&binding.tenant, &binding.name),
        );
        let invocation = binding.policy.tick(
            &binding.config_json,
            binding.spec.limits,
            binding.tenant.clone(),
            binding.name.clone(),
            now,
            access,
            staged,
        );
        let mut record = AuditRecord {
            seq: 0,
            at: now,
            tenant: binding.tenant.to_string(),
            binding: binding.name.to_string(),
            plugin: binding.policy.digest().to_owned(),
            revision: binding.revision,
            shadow: binding
                .shadow
                .as_ref()
                .map(|shadow| self.tick_shadow(binding, shadow, now)),
            outcome: Outcome::Ok,
            intents: invocation.intents,
            actions: Vec::new(),
            fallback: None,
            state_writes: 0,
            host_calls: invocation.host_calls,
            elapsed_us: invocation.elapsed.as_micros() as u64,
            consecutive_failures: 0,
        };
        let state = invocation.state;
        let result = invocation.result.and_then(|()| {
            state
                .commit()
                .map_err(|e| InvocationError::State(crate::display_chain(&e)))
        });
        let mut health = binding.health.lock().unwrap_or_else(|p| p.into_inner());
        health.ticks += 1;
        health.last_tick_at = Some(now);
        match result {
            Ok(writes) => {
                record.state_writes = writes;
                health.consecutive_failures = 0;
                health.failing = false;
                drop(health);
                record.actions = self.apply_intents(binding, &record.intents, now);
            }
            Err(error) => {
                health.failed_ticks += 1;
                health.consecutive_failures += 1;
                health.last_error = Some(error.to_string());
                record.consecutive_failures = health.consecutive_failures;
                let fallback = binding.spec.fallback;
                if health.consecutive_failures >= fallback.after_failures {
                    health.failing = true;
                    drop(health);
                    tracing::warn!(tenant = %binding.tenant, binding = %binding.name, %error, "binding failing, fallback applies");
                    record.fallback = Some(match fallback.action {
                        FallbackAction::Hold => "hold".to_owned(),
                        FallbackAction::Fixed(n) => format!("fixed {n}"),
                    });
                    if let FallbackAction::Fixed(n) = fallback.action {
                        record.actions = self.apply_fallback(binding, n, now);
                    }
                } else {
                    drop(health);
                    tracing::info!(tenant = %binding.tenant, binding = %binding.name, %error, "tick failed, nothing applied");
                }
                record.outcome = Outcome::Failed { error };
            }
        }
        self.audit.append(&mut record);
        record
    }

    /// Runs the shadow revision on the same instant, dry: its state is committed under its own
    /// namespace, its intents only recorded.
    fn tick_shadow(&self, binding: &Binding, shadow: &Shadow, now: TimestampMs) -> ShadowRecord {
        let access = Access {
            cluster: self.cluster_for(&shadow.scope.tenant),
            scope: shadow.scope.clone(),
        };
        let staged = StagedState::new(
            self.state.clone(),
            shadow_namespace(&binding.tenant, &binding.name),
        );
        let invocation = shadow.policy.tick(
            &shadow.config_json,
            shadow.spec.limits,
            binding.tenant.clone(),
            binding.name.clone(),
            now,
            access,
            staged,
        );
        let result = invocation.result.and_then(|()| {
            invocation
                .state
                .commit()
                .map_err(|e| InvocationError::State(crate::display_chain(&e)))
        });
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

    fn apply_intents(
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
        let mut actions: Vec<Action> = requests
            .iter()
            .map(|&(target, requested)| self.scale(binding, target, requested, now, true))
            .collect();
        for intent in intents {
            if let Intent::Power {
                pool, vm_id, state, ..
            } = intent
            {
                let error = retry(|| cluster.set_power(pool, vm_id, *state))
                    .err()
                    .map(|e| e.to_string());
                actions.push(Action::Power {
                    pool: pool.clone(),
                    vm_id: vm_id.clone(),
                    state: *state,
                    error,
                });
            }
        }
        actions
    }

    fn apply_fallback(&self, binding: &Binding, replicas: u32, now: TimestampMs) -> Vec<Action> {
        binding
            .spec
            .targets
            .iter()
            .map(|t| self.scale(binding, &t.workload(), replicas, now, false))
            .collect()
    }

    /// Scales one target; `with_rails` applies every rail, otherwise only min/max.
    fn scale(
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
            return Action::Scale {
                target: target.clone(),
                current: 0,
                requested,
                applied: 0,
                adjustments: Vec::new(),
                error: Some("not a target of this binding".into()),
            };
        };
        let rails = if with_rails {
            spec.rails()
        } else {
            super::guard::Rails::bounds(spec.min_replicas, spec.max_replicas)
        };
        let cluster = self.cluster_for(&binding.scope.tenant);
        let current = match retry(|| cluster.workload(target)) {
            Ok(status) => status.replicas,
            Err(e) => {
                return Action::Scale {
                    target: target.clone(),
                    current: 0,
                    requested,
                    applied: 0,
                    adjustments: Vec::new(),
                    error: Some(e.to_string()),
                };
            }
        };
        let mut histories = binding.rails.lock().unwrap_or_else(|p| p.into_inner());
        let history = histories.entry(target.clone()).or_default();
        let verdict = rails.judge(history, current, requested, now);
        let bounded = requested.clamp(spec.min_replicas, spec.max_replicas);
        let error = if verdict.replicas != current {
            retry(|| cluster.scale(target, verdict.replicas))
                .err()
                .map(|e| e.to_string())
        } else {
            None
        };
        history.record(
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

/// One writer per target and per VM pool: refuses what another binding already owns.
fn check_owners(
    bindings: &BTreeMap<(String, String), Arc<Binding>>,
    key: &(String, String),
    scope: &Scope,
    id: &str,
) -> Result<(), BindError> {
    for (other_key, other) in bindings.iter().filter(|(k, _)| *k != key) {
        let owner = format!("{}/{}", other_key.0, other_key.1);
        if let Some(target) = scope
            .targets
            .iter()
            .find(|t| other.scope.targets.contains(t))
        {
            return Err(BindError::TargetTaken {
                binding: id.to_owned(),
                target: target.clone(),
                owner,
            });
        }
        if let Some(pool) = scope.pools.iter().find(|p| other.scope.pools.contains(p)) {
            return Err(BindError::Invalid {
                binding: id.to_owned(),
                message: format!("vm pool {pool} is already powered by binding {owner}"),
            });
        }
    }
    Ok(())
}

/// Retries a backend call that answered `unavailable`, with a short backoff.
fn retry<T>(mut call: impl FnMut() -> Result<T, BackendError>) -> Result<T, BackendError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(BackendError::Unavailable(_)) if attempt < ACTUATION_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}
