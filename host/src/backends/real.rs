//! A tenant's real backends: Prometheus for queries; Kubernetes and vSphere as they are
//! configured. Chosen per tenant (`[[tenants]] backend = "NAME"`, `[[backends]] name = "NAME"`).
//!
//! Start with [`RealCluster::from_config`]. A call no configured backend can answer reaches the
//! policy as `unavailable`, naming what to configure; it never falls back to the simulated
//! cluster.

use serde::{Deserialize, Serialize};

use super::Cluster;
use super::prometheus::{Prometheus, PrometheusConfig, PrometheusSetupError};
use crate::model::{
    BackendError, Capacity, PowerState, Series, TimestampMs, Vm, WorkloadRef, WorkloadStatus,
};

/// `[[backends]]` in the config file: a named set of real systems tenants can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The name tenants refer to.
    pub name: String,
    /// Where `metrics.query` and `metrics.query-range` go.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendSetupError {
    /// The Prometheus section is unusable.
    #[error("backend {backend}: prometheus")]
    Prometheus {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: PrometheusSetupError,
    },
}

/// The real systems behind one `[[backends]]` entry.
#[derive(Debug)]
pub struct RealCluster {
    name: String,
    prometheus: Option<Prometheus>,
}

impl RealCluster {
    /// Builds the clients of `config` (reads token and CA files now).
    pub fn from_config(config: &BackendConfig) -> Result<Self, BackendSetupError> {
        let prometheus = config
            .prometheus
            .as_ref()
            .map(Prometheus::new)
            .transpose()
            .map_err(|source| BackendSetupError::Prometheus {
                backend: config.name.clone(),
                source,
            })?;
        Ok(RealCluster {
            name: config.name.clone(),
            prometheus,
        })
    }

    /// The Prometheus client, if configured.
    pub fn prometheus(&self) -> Option<&Prometheus> {
        self.prometheus.as_ref()
    }

    fn missing(&self, what: &str, section: &str) -> BackendError {
        BackendError::Unavailable(format!(
            "backend {} has no {what} configured ([backends.{section}])",
            self.name
        ))
    }

    fn prometheus_or_missing(&self) -> Result<&Prometheus, BackendError> {
        self.prometheus
            .as_ref()
            .ok_or_else(|| self.missing("Prometheus", "prometheus"))
    }
}

impl Cluster for RealCluster {
    fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        self.prometheus_or_missing()?.query(promql, at)
    }

    fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        self.prometheus_or_missing()?
            .query_range(promql, start, end, step_ms)
    }

    fn workload(&self, _target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        Err(self.missing("Kubernetes", "kubernetes"))
    }

    fn capacity(&self, _exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        Err(self.missing("Kubernetes", "kubernetes"))
    }

    fn events(
        &self,
        _service: &str,
        _window_ms: u64,
        _now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError> {
        // Pushed events come from the host's store (`WithPushedEvents`), whatever the backend.
        Ok(Vec::new())
    }

    fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError> {
        Err(BackendError::NotFound(format!(
            "backend {} has no VM pool {pool}",
            self.name
        )))
    }

    fn scale(&self, _target: &WorkloadRef, _replicas: u32) -> Result<(), BackendError> {
        Err(self.missing("Kubernetes", "kubernetes"))
    }

    fn set_power(&self, pool: &str, _vm_id: &str, _state: PowerState) -> Result<(), BackendError> {
        Err(BackendError::NotFound(format!(
            "backend {} has no VM pool {pool}",
            self.name
        )))
    }
}
