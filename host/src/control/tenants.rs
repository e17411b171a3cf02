//! Tenants: create, read, update (grants, backend), delete; pushed events admitted for a tenant.

use crate::backends::events::{Event, EventError, PushLimits};
use crate::domain::cluster::WorkloadRef;
use crate::domain::quota::QuotaOverrides;
use crate::domain::scope::TenantSpec;

use super::Control;
use super::ControlError;
use super::auth::{IssuedToken, new_token};
use super::records::TenantRecord;
use crate::domain::principal::Principal;
use crate::registry::unix_ms;
use serde::Serialize;

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Granted namespaces.
    pub namespaces: Vec<String>,
    /// Granted single workloads.
    pub workloads: Vec<WorkloadRef>,
    /// Granted VM pools.
    pub vm_pools: Vec<String>,
    /// The backend its bindings use (the simulated cluster when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Whether it may read cluster-wide data.
    pub cluster_metrics: bool,
    /// Its own quotas, where they differ from the operator's.
    pub quotas: QuotaOverrides,
    /// Token ids (the tokens themselves are shown once, when made).
    pub tokens: Vec<String>,
    /// Unix milliseconds.
    pub created_at: u64,
}

pub(super) fn view_tenant(record: &TenantRecord) -> TenantView {
    TenantView {
        name: record.spec.name.clone(),
        namespaces: record.spec.namespaces.clone(),
        workloads: record.spec.workloads.clone(),
        vm_pools: record.spec.vm_pools.clone(),
        backend: record.spec.backend.clone(),
        cluster_metrics: record.spec.cluster_metrics,
        quotas: record.spec.quotas,
        tokens: record.tokens.iter().map(|t| t.id.clone()).collect(),
        created_at: record.created_at,
    }
}

pub(super) fn check_name(what: &str, name: &str) -> Result<(), ControlError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ControlError::Invalid(format!(
            "invalid {what} name {name:?}: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit"
        )))
    }
}

impl Control {
    /// Creates a tenant with its grants and a first token (admin only).
    pub fn create_tenant(
        &self,
        who: &Principal,
        spec: TenantSpec,
    ) -> Result<(TenantView, IssuedToken), ControlError> {
        Self::admin_only(who, "create tenants")?;
        check_name("tenant", &spec.name)?;
        self.check_backend(&spec)?;
        let _change = self.lock();
        self.check_grants(&spec)?;
        if self.static_tenants.contains(&spec.name) || self.tenant_record(&spec.name)?.is_some() {
            return Err(ControlError::Conflict(format!(
                "tenant {} exists",
                spec.name
            )));
        }
        let (token, token_record) = new_token(&spec.name);
        let record = TenantRecord {
            spec: spec.clone(),
            tokens: vec![token_record.clone()],
            created_at: unix_ms(),
        };
        self.put_tenant(&record)?;
        self.index_tokens(&record.spec.name, &record.tokens);
        self.engine.add_tenant(spec);
        Ok((
            view_tenant(&record),
            IssuedToken {
                tenant: record.spec.name.clone(),
                id: token_record.id,
                token,
            },
        ))
    }

    /// Every tenant (admin) or the caller's own.
    pub fn tenants(&self, who: &Principal) -> Result<Vec<TenantView>, ControlError> {
        Ok(self
            .tenant_records()?
            .values()
            .filter(|r| self.authorize(who, &r.spec.name).is_ok())
            .map(view_tenant)
            .collect())
    }

    /// One tenant.
    pub fn tenant(&self, who: &Principal, name: &str) -> Result<TenantView, ControlError> {
        self.authorize(who, name)?;
        self.tenant_record(name)?
            .map(|r| view_tenant(&r))
            .ok_or_else(|| ControlError::NotFound(format!("no tenant {name}")))
    }

    /// Changes a tenant's grants (admin only); refused if a binding (its active or shadow
    /// revision) would fall outside them. Running bindings take the new grants at once.
    pub fn update_tenant(
        &self,
        who: &Principal,
        spec: TenantSpec,
    ) -> Result<TenantView, ControlError> {
        Self::admin_only(who, "change tenants")?;
        let _change = self.lock();
        let mut record = self.existing_tenant(&spec.name)?;
        self.check_backend(&spec)?;
        self.check_grants(&spec)?;
        let old = std::mem::replace(&mut record.spec, spec.clone());
        let bindings: Vec<_> = self
            .binding_records()?
            .into_iter()
            .filter(|((t, _), _)| *t == spec.name)
            .collect();
        self.engine.add_tenant(spec.clone());
        let checked = bindings.iter().try_for_each(|((t, n), binding)| {
            let (spec, _, options) = self.prepare(t, n, binding)?;
            self.engine.check_binding_quick(&spec)?;
            if let Some(shadow) = &options.shadow {
                self.engine.check_binding_quick(&shadow.spec)?;
            }
            Ok::<_, ControlError>(())
        });
        if let Err(error) = checked.and_then(|()| self.put_tenant(&record)) {
            self.engine.add_tenant(old);
            return Err(match error {
                ControlError::Bind(bind) => ControlError::Conflict(format!(
                    "the new grants would break a binding: {}",
                    crate::domain::display_chain(&bind)
                )),
                other => other,
            });
        }
        for ((t, n), binding) in &bindings {
            if let Err(error) = self.install(t, n, binding) {
                tracing::error!(tenant = %t, binding = %n, error = %crate::domain::display_chain(&error), "binding not reinstalled with the new grants");
            }
        }
        Ok(view_tenant(&record))
    }

    /// Well-formed grants, no namespace of another tenant on the same backend, quotas a query
    /// can live with.
    fn check_grants(&self, spec: &TenantSpec) -> Result<(), ControlError> {
        spec.check()
            .map_err(|m| ControlError::Invalid(format!("tenant {}: {m}", spec.name)))?;
        self.engine
            .check_namespaces(spec)
            .map_err(|m| ControlError::Conflict(format!("tenant {}: {m}", spec.name)))?;
        self.engine
            .quotas_of(spec)
            .check()
            .map_err(|m| ControlError::Invalid(format!("tenant {}: {m}", spec.name)))
    }

    pub(super) fn check_backend(&self, spec: &TenantSpec) -> Result<(), ControlError> {
        match &spec.backend {
            Some(name) if !self.engine.has_backend(name) => Err(ControlError::Invalid(format!(
                "tenant {}: no backend {name:?} in the host's config",
                spec.name
            ))),
            _ => Ok(()),
        }
    }

    /// Deletes a tenant (admin only); refused while it has bindings.
    pub fn delete_tenant(&self, who: &Principal, name: &str) -> Result<(), ControlError> {
        Self::admin_only(who, "delete tenants")?;
        let _change = self.lock();
        self.existing_tenant(name)?;
        if self.binding_records()?.keys().any(|(t, _)| t == name) {
            return Err(ControlError::Conflict(format!(
                "tenant {name} still has bindings; delete them first"
            )));
        }
        self.remove_tenant_record(name)?;
        self.unindex_tenant(name);
        self.engine.remove_tenant(name);
        self.engine.audit().forget_tenant(name);
        // Its claims on plugins go; a plugin another binding still runs keeps its record.
        let owner = Principal::Tenant(name.to_owned());
        for plugin in self.registry.list(&owner)? {
            if self.registry.claimed_only_by(&plugin.digest, &owner)?
                && self.bound_anywhere(&plugin.digest)?
            {
                continue;
            }
            if let Err(error) = self.registry.release(&plugin.digest, &owner) {
                tracing::warn!(digest = %plugin.digest, error = %crate::domain::display_chain(&error), "claim not released");
            }
        }
        Ok(())
    }

    /// Keeps a batch of pushed events for a backend: a tenant's is its own backend (naming
    /// another is forbidden), and it may push only services under its namespaces
    /// (`<namespace>/…`), within its quotas; the admin names the backend (none: the host's own
    /// cluster) and is held to the operator's quotas. The batch is checked whole and kept
    /// whole, or refused whole.
    pub fn push_events(
        &self,
        who: &Principal,
        backend: Option<&str>,
        events: &[Event],
    ) -> Result<usize, ControlError> {
        let (owner, backend, quotas) = match who {
            Principal::Admin => (
                "admin".to_owned(),
                backend.map(str::to_owned),
                self.engine.quotas_of(&TenantSpec::default()),
            ),
            Principal::Tenant(tenant) => {
                let spec = self
                    .engine
                    .tenant(tenant)
                    .ok_or_else(|| ControlError::NotFound(format!("no tenant {tenant}")))?;
                if backend.is_some_and(|b| spec.backend.as_deref() != Some(b)) {
                    return Err(ControlError::Forbidden(format!(
                        "tenant {tenant} pushes events for its own backend only"
                    )));
                }
                (
                    format!("tenant {tenant}"),
                    spec.backend.clone(),
                    self.engine.quotas_of(&spec),
                )
            }
        };
        let now = self.engine.backend_now(backend.as_deref()).ok_or_else(|| {
            ControlError::Invalid(format!("no backend {:?} in the host's config", backend))
        })?;
        if let Principal::Tenant(tenant) = who {
            let spec = self
                .engine
                .tenant(tenant)
                .ok_or_else(|| ControlError::NotFound(format!("no tenant {tenant}")))?;
            for (index, event) in events.iter().enumerate() {
                let namespace = event.service.split('/').next().unwrap_or_default();
                if !event.service.contains('/') || !spec.namespaces.iter().any(|ns| ns == namespace)
                {
                    return Err(ControlError::Forbidden(format!(
                        "event {index}: service {:?} is not under a namespace granted to tenant {tenant}",
                        event.service
                    )));
                }
            }
        }
        let limits = PushLimits {
            now,
            max_skew_ms: u64::try_from(quotas.max_event_skew.as_millis()).unwrap_or(u64::MAX),
            max_series: quotas.max_event_series as usize,
            max_bytes: usize::try_from(quotas.max_event_bytes).unwrap_or(usize::MAX),
        };
        self.events
            .push(backend.as_deref().unwrap_or(""), &owner, events, &limits)
            .map_err(|e| match e {
                EventError::Quota(message) => ControlError::Quota(message),
                other => ControlError::Invalid(other.to_string()),
            })
    }

    // ----- plugins -----

    pub(super) fn changeable_tenant(&self, tenant: &str) -> Result<TenantRecord, ControlError> {
        if self.static_tenants.iter().any(|t| t == tenant) {
            return Err(ControlError::Conflict(format!(
                "tenant {tenant} is defined in the config file; its bindings are changed there"
            )));
        }
        self.existing_tenant(tenant)
    }

    pub(super) fn existing_tenant(&self, name: &str) -> Result<TenantRecord, ControlError> {
        if self.static_tenants.iter().any(|t| t == name) {
            return Err(ControlError::Conflict(format!(
                "tenant {name} is defined in the config file"
            )));
        }
        self.tenant_record(name)?
            .ok_or_else(|| ControlError::NotFound(format!("no tenant {name}")))
    }

    pub(super) fn existing_tenant_or_static(&self, name: &str) -> Result<(), ControlError> {
        if self.static_tenants.iter().any(|t| t == name) {
            return Ok(());
        }
        self.existing_tenant(name).map(|_| ())
    }
}
