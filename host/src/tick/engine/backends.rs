//! The engine's backends: the `[[backends]]` entries tenants choose, and which cluster each is.

use std::sync::Arc;

use super::TickEngine;
use crate::backends::{Clock, Cluster};
use crate::domain::scope::TenantSpec;

/// The identity of the engine's own cluster (the simulated one, or a test's).
const SIMULATED_IDENTITY: &str = "simulated";

/// A `[[backends]]` entry as the engine keeps it.
#[derive(Clone)]
pub(super) struct NamedBackend {
    pub(super) cluster: Arc<dyn Cluster>,
    pub(super) clock: Arc<dyn Clock>,
    /// Which cluster it acts on, for the one-writer rule.
    pub(super) identity: Arc<str>,
}

impl TickEngine {
    /// The time now on `backend`'s clock (the engine's own cluster for `None`), and whether it
    /// exists.
    pub fn backend_now(
        &self,
        backend: Option<&str>,
    ) -> Option<crate::domain::cluster::TimestampMs> {
        match backend {
            None => Some(self.clock.now_ms()),
            Some(name) => self
                .backends
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .map(|b| b.clock.now_ms()),
        }
    }

    /// The names of the named backends.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Adds a named backend that tenants may choose (`TenantSpec::backend`), known by its name
    /// alone. Its tenants' ticks run on the wall clock: real systems live in real time.
    pub fn add_backend(&self, name: &str, cluster: Arc<dyn Cluster>) {
        self.add_backend_at(name, &format!("backend:{name}"), cluster);
    }

    /// Adds a named backend whose `identity` says which cluster it acts on (the Kubernetes API
    /// server's URL): two names for one cluster share their workloads' one writer.
    pub fn add_backend_at(&self, name: &str, identity: &str, cluster: Arc<dyn Cluster>) {
        self.backends
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name.to_owned(),
                NamedBackend {
                    cluster,
                    clock: Arc::new(crate::backends::SystemClock),
                    identity: Arc::from(identity),
                },
            );
    }

    /// The identity of the cluster a tenant's bindings act on.
    pub(super) fn backend_identity(&self, tenant: &TenantSpec) -> Arc<str> {
        match &tenant.backend {
            None => Arc::from(SIMULATED_IDENTITY),
            Some(name) => self
                .backends
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .map_or_else(
                    || Arc::from(format!("backend:{name}")),
                    |b| b.identity.clone(),
                ),
        }
    }

    /// Whether a backend of that name exists.
    pub fn has_backend(&self, name: &str) -> bool {
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// The cluster a tenant's bindings read and act through.
    pub(super) fn cluster_for(&self, tenant: &TenantSpec) -> Arc<dyn Cluster> {
        self.backend_of(tenant)
            .map_or_else(|| self.cluster.clone(), |b| b.cluster)
    }

    /// The clock of a tenant's ticks.
    pub(super) fn clock_for(&self, tenant: &TenantSpec) -> Arc<dyn Clock> {
        self.backend_of(tenant)
            .map_or_else(|| self.clock.clone(), |b| b.clock)
    }

    pub(super) fn backend_of(&self, tenant: &TenantSpec) -> Option<NamedBackend> {
        let name = tenant.backend.as_ref()?;
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}
