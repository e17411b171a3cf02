//! What a binding may read and act on: its tenant's grants and its own targets and pools.

use serde::{Deserialize, Serialize};

use crate::domain::cluster::{BackendError, WorkloadRef};

/// A tenant and what it is granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Tenant name.
    pub name: String,
    /// Namespaces whose workloads it may read and scale.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Single workloads it may read and scale outside those namespaces.
    #[serde(default)]
    pub workloads: Vec<WorkloadRef>,
    /// VM pools it may list and power.
    #[serde(default)]
    pub vm_pools: Vec<String>,
    /// The `[[backends]]` entry its bindings read and act through; the simulated cluster when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// The grants of one binding, checked by the host on every call (never by the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The tenant's grants.
    pub tenant: TenantSpec,
    /// Workloads this binding may scale (its targets; one writer each).
    pub targets: Vec<WorkloadRef>,
    /// Pools this binding may power.
    pub pools: Vec<String>,
}

impl Scope {
    /// Reading a workload needs its namespace, or the workload itself, granted to the tenant.
    pub fn check_read(&self, target: &WorkloadRef) -> Result<(), BackendError> {
        let granted = self
            .tenant
            .namespaces
            .iter()
            .any(|ns| *ns == target.namespace)
            || self.tenant.workloads.contains(target);
        if granted {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "{target} is not granted to tenant {} (neither its namespace nor the workload)",
                self.tenant.name
            )))
        }
    }

    /// Whether a series may be shown: one labelled with a namespace needs it granted. (Series
    /// without the label, such as cluster-wide sums, are the backend's to scope.)
    pub fn may_see(&self, labels: &[(String, String)]) -> bool {
        labels
            .iter()
            .filter(|(k, _)| k == "namespace")
            .all(|(_, ns)| self.tenant.namespaces.contains(ns))
    }

    /// A custom-metrics query reads objects of one namespace, which must be granted: the
    /// backend's credentials are the host's, not the tenant's.
    pub fn check_custom_metric(&self, query: &str) -> Result<(), BackendError> {
        match crate::domain::query::CustomMetricQuery::parse(query) {
            Some(Ok(custom)) if !self.tenant.namespaces.contains(&custom.namespace) => {
                Err(BackendError::Forbidden(format!(
                    "namespace {:?} is not granted to tenant {}",
                    custom.namespace, self.tenant.name
                )))
            }
            _ => Ok(()),
        }
    }

    /// Pushed-event services are named `<namespace>/…`; reading one needs the namespace granted.
    pub fn check_service(&self, service: &str) -> Result<(), BackendError> {
        let namespace = service.split('/').next().unwrap_or_default();
        if service.contains('/') && self.tenant.namespaces.iter().any(|ns| ns == namespace) {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "event service {service:?} is not under a namespace granted to tenant {} (services are named <namespace>/...)",
                self.tenant.name
            )))
        }
    }

    /// Scaling needs the workload to be one of the binding's targets.
    pub fn check_scale(&self, target: &WorkloadRef) -> Result<(), BackendError> {
        self.check_read(target)?;
        if self.targets.contains(target) {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "{target} is not a target of this binding"
            )))
        }
    }

    /// Listing a pool needs it granted to the tenant.
    pub fn check_pool(&self, pool: &str) -> Result<(), BackendError> {
        if self.tenant.vm_pools.iter().any(|p| p == pool) {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "vm pool {pool} is not granted to tenant {}",
                self.tenant.name
            )))
        }
    }

    /// Powering needs the pool to be one of the binding's pools.
    pub fn check_power(&self, pool: &str) -> Result<(), BackendError> {
        self.check_pool(pool)?;
        if self.pools.iter().any(|p| p == pool) {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "vm pool {pool} is not a pool of this binding"
            )))
        }
    }
}
