//! Binding: a spec checked against its tenant, its targets' owners and the operator's ceilings,
//! its config validated by the policy itself, then installed as a new revision.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::TickEngine;
use crate::domain::scope::{Scope, TenantSpec, check_dns_label, check_dns_subdomain};
use crate::runtime::{CompiledPolicy, InvocationError, StagedState};
use crate::runtime::{Limits, ValidateError};
use crate::store::namespace;
use crate::tick::binding::{Binding, BindingSpec, Shadow};
use crate::tick::error::BindError;

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
pub(super) struct Checked {
    pub(super) id: String,
    pub(super) scope: Scope,
}

/// The longest scale-down stabilization window, as the HPA's `stabilizationWindowSeconds`.
const MAX_STABILIZATION: Duration = Duration::from_secs(3600);

/// The most replicas a target may have: Kubernetes keeps replicas in an int32.
const MAX_REPLICAS: u32 = i32::MAX as u32;

/// The longest interval between ticks.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

impl TickEngine {
    /// Refuses grants that overlap another tenant's: a namespace belongs to one tenant per
    /// backend (the tenant itself, being replaced, does not count).
    pub fn check_namespaces(&self, tenant: &TenantSpec) -> Result<(), String> {
        let backend = self.backend_identity(tenant);
        let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        for other in tenants.values() {
            if let Some(namespace) = tenant.shares_namespace_with(other)
                && self.backend_identity(other) == backend
            {
                return Err(format!(
                    "namespace {namespace:?} is already granted to tenant {} on the same cluster; a namespace belongs to one tenant",
                    other.name
                ));
            }
        }
        Ok(())
    }

    /// The quotas `tenant` runs with: the operator's, with its overrides.
    pub fn quotas_of(&self, tenant: &TenantSpec) -> crate::domain::quota::Quotas {
        self.ceilings.quotas.with(&tenant.quotas)
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
        let backend = self.backend_identity(&checked.scope.tenant);
        let mut bindings = self.bindings.write().unwrap_or_else(|p| p.into_inner());
        bindings.check_owners(&key, &backend, &checked.scope, &checked.id)?;
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
        let dropped_pools: Vec<String> = bindings
            .get(&key)
            .map(|old| {
                old.scope
                    .pools
                    .iter()
                    .filter(|p| !binding.scope.pools.contains(p))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        bindings.insert(key, backend, binding.clone());
        // Cancels persist (a store commit): not under the engine's bindings lock, which every
        // tick and the scheduler take.
        drop(bindings);
        for pool in &dropped_pools {
            self.operations
                .cancel_binding(&binding.tenant, &binding.name, Some(pool));
        }
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
        // One deadline from here: the wait for an instance spends it too.
        let waiting = std::time::Instant::now();
        let busy = |message: String| BindError::Busy {
            binding: checked.id.clone(),
            message,
        };
        let _permit = self
            .shares
            .acquire_for_check(&spec.tenant, spec.limits.deadline)
            .await
            .map_err(|e| busy(e.to_string()))?;
        let waited = waiting.elapsed();
        let Some(left) = crate::tick::shares::time_left(waited, spec.limits.deadline) else {
            return Err(busy(format!(
                "waited {} of its {} deadline for a sandbox instance",
                crate::domain::duration::format(waited),
                crate::domain::duration::format(spec.limits.deadline)
            )));
        };
        let staged = StagedState::new(self.state.clone(), namespace(&spec.tenant, &spec.name));
        let limits = Limits {
            deadline: left,
            ..spec.limits
        };
        policy
            .validate_config(
                &spec.config.to_string(),
                limits,
                spec.tenant.as_str().into(),
                spec.name.as_str().into(),
                self.clock_for(&checked.scope.tenant).now_ms(),
                staged,
            )
            .await
            .map_err(|e| match e {
                // Said as the binding's deadline, which is what ran out.
                ValidateError::Failed(InvocationError::Deadline(_)) => {
                    ValidateError::Failed(InvocationError::Deadline(
                        crate::domain::duration::format(spec.limits.deadline),
                    ))
                }
                other => other,
            })
            .map_err(|e| refused(crate::domain::display_chain(&e)))
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

    pub(super) fn check(&self, spec: &BindingSpec) -> Result<Checked, BindError> {
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
        // First: every later check (and every host call of every tick) is linear in these.
        let max_targets = ceilings.max_targets_per_binding as usize;
        if spec.targets.len() > max_targets || spec.vm_pools.len() > max_targets {
            return Err(invalid(format!(
                "a binding may list at most {max_targets} targets and {max_targets} vm_pools \
                 (the operator's max_targets_per_binding); this one lists {} and {}",
                spec.targets.len(),
                spec.vm_pools.len()
            )));
        }
        let min_interval = ceilings.min_interval;
        if spec.interval < min_interval || spec.interval > MAX_INTERVAL {
            return Err(invalid(format!(
                "interval must be from {} (the operator's min_interval) to 1d",
                crate::domain::duration::format(min_interval)
            )));
        }
        if spec.limits.deadline > ceilings.max_deadline {
            return Err(invalid(format!(
                "limits.deadline must be at most {} (the operator's max_deadline)",
                crate::domain::duration::format(ceilings.max_deadline)
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
            quotas: ceilings.quotas.with(&tenant.quotas),
        };
        let mut listed = std::collections::HashSet::with_capacity(spec.targets.len());
        for (target, workload) in spec.targets.iter().zip(&scope.targets) {
            check_dns_label("target namespace", &workload.namespace)
                .and_then(|()| check_dns_subdomain("target", &workload.name))
                .map_err(invalid)?;
            if target.max_replicas > MAX_REPLICAS {
                return Err(invalid(format!(
                    "{workload}: max_replicas {} exceeds {MAX_REPLICAS} (Kubernetes' int32 replicas)",
                    target.max_replicas
                )));
            }
            scope
                .check_read(workload)
                .map_err(|e| BindError::OutOfScope {
                    binding: id.clone(),
                    message: e.to_string(),
                })?;
            if target.stabilization_down > MAX_STABILIZATION {
                return Err(invalid(format!(
                    "{workload}: stabilization_down must be at most 1h (as the HPA's \
                     stabilizationWindowSeconds)"
                )));
            }
            if target.min_replicas > target.max_replicas {
                return Err(invalid(format!(
                    "{workload}: min_replicas {} > max_replicas {}",
                    target.min_replicas, target.max_replicas
                )));
            }
            if !listed.insert(workload) {
                return Err(invalid(format!("{workload} is listed twice")));
            }
        }
        let mut pools = std::collections::HashSet::with_capacity(spec.vm_pools.len());
        for pool in &spec.vm_pools {
            if !pools.insert(pool) {
                return Err(invalid(format!("vm pool {pool:?} is listed twice")));
            }
            scope.check_pool(pool).map_err(|e| BindError::OutOfScope {
                binding: id.clone(),
                message: e.to_string(),
            })?;
        }
        let key = (spec.tenant.clone(), spec.name.clone());
        // Checked before the (slow) config validation, and again under the write lock.
        let backend = self.backend_identity(&scope.tenant);
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check_owners(&key, &backend, &scope, &id)?;
        Ok(Checked { id, scope })
    }
}
