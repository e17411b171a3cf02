//! What a binding may read and act on: its tenant's grants and its own targets and pools.

use serde::{Deserialize, Serialize};

use crate::domain::cluster::{BackendError, TimestampMs, WorkloadRef};
use crate::domain::promql::{QueryGrant, QueryWindow, scope_query};
use crate::domain::quota::{QuotaOverrides, Quotas};

/// A tenant and what it is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Cluster-wide data: capacity totals, the node view and series without a namespace
    /// (`scalehost_cluster_*`, node metrics). What a cluster-filling or node-pool policy needs,
    /// and no other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_metrics: bool,
    /// Its own quotas, where they differ from the operator's.
    #[serde(default, skip_serializing_if = "QuotaOverrides::is_empty")]
    pub quotas: QuotaOverrides,
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
    /// The tenant's quotas (the operator's, with the tenant's overrides).
    pub quotas: Quotas,
}

impl TenantSpec {
    /// Refuses grants no backend should see: namespaces must be DNS-1123 labels and workloads
    /// DNS-1123 names, each listed once.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for namespace in &self.namespaces {
            check_dns_label("namespace", namespace)?;
            if !seen.insert(namespace) {
                return Err(format!("namespace {namespace:?} is listed twice"));
            }
        }
        for workload in &self.workloads {
            check_dns_label("namespace", &workload.namespace)?;
            check_dns_subdomain("workload", &workload.name)?;
        }
        for pool in &self.vm_pools {
            if pool.is_empty() || pool.len() > 253 || pool.chars().any(char::is_control) {
                return Err(format!(
                    "vm pool name {pool:?}: 1 to 253 printable characters"
                ));
            }
        }
        Ok(())
    }

    /// The first of its namespaces that `other`, another tenant, also holds (the caller
    /// checks that both act on the same cluster).
    pub fn shares_namespace_with(&self, other: &TenantSpec) -> Option<&str> {
        if self.name == other.name {
            return None;
        }
        self.namespaces
            .iter()
            .find(|n| other.namespaces.contains(n))
            .map(String::as_str)
    }
}

/// Kubernetes' rule for namespaces: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending with
/// a letter or digit (DNS-1123 label).
pub fn check_dns_label(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not a DNS-1123 label (1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        ))
    }
}

/// Kubernetes' rule for object names such as Deployments: up to 253 characters of DNS-1123
/// labels joined by dots.
pub fn check_dns_subdomain(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&name.len())
        && name
            .split('.')
            .all(|label| check_dns_label(what, label).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} is not a DNS-1123 subdomain (up to 253 of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)"
        ))
    }
}

impl Scope {
    /// The query to send for `text`, made at `now` over `window`: PromQL with every selector
    /// scoped to the tenant's namespaces ([`crate::domain::promql`]); a custom-metrics query
    /// unchanged once its namespace is checked.
    pub fn scoped_query(
        &self,
        text: &str,
        now: TimestampMs,
        window: QueryWindow,
    ) -> Result<String, BackendError> {
        if crate::domain::query::CustomMetricQuery::parse(text).is_some() {
            self.check_custom_metric(text)?;
            return Ok(text.to_owned());
        }
        scope_query(
            text,
            &QueryGrant {
                tenant: &self.tenant.name,
                namespaces: &self.tenant.namespaces,
                cluster_metrics: self.tenant.cluster_metrics,
            },
            &self.quotas.query_limits(),
            now,
            window,
        )
    }

    /// Cluster-wide reads (capacity totals, the node view) need the `cluster_metrics` grant.
    pub fn check_cluster_metrics(&self, what: &str) -> Result<(), BackendError> {
        if self.tenant.cluster_metrics {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "{what} is cluster-wide: tenant {} needs the cluster_metrics grant",
                self.tenant.name
            )))
        }
    }

    /// Reading a workload needs a well-formed name, and its namespace, or the workload itself,
    /// granted to the tenant.
    pub fn check_read(&self, target: &WorkloadRef) -> Result<(), BackendError> {
        // Names go into API paths: only Kubernetes names get that far.
        check_dns_label("namespace", &target.namespace)
            .and_then(|()| check_dns_subdomain("workload", &target.name))
            .map_err(BackendError::Invalid)?;
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
