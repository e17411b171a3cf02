//! A tenant's real backends: Prometheus for queries, Kubernetes for workloads, capacity and
//! scaling (vSphere VM pools: not yet). Chosen per tenant (`[[tenants]] backend = "NAME"`, `[[backends]] name = "NAME"`).
//!
//! Start with [`RealCluster::connect`]. A call no configured backend can answer reaches the
//! policy as `unavailable`, naming what to configure; it never falls back to the simulated
//! cluster.

use serde::{Deserialize, Serialize};

use super::Cluster;
use super::kubernetes::{Kubernetes, KubernetesConfig, KubernetesSetupError};
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
    /// Where workloads, capacity and scaling go.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
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
    /// The Kubernetes section is unusable.
    #[error("backend {backend}: kubernetes")]
    Kubernetes {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: KubernetesSetupError,
    },
}

/// The real systems behind one `[[backends]]` entry.
#[derive(Debug)]
pub struct RealCluster {
    name: String,
    prometheus: Option<Prometheus>,
    kubernetes: Option<Kubernetes>,
}

impl RealCluster {
    /// Builds the clients of `config` (reads token, CA and kubeconfig files now). Runs on the
    /// host's tokio runtime, which the clients keep for their requests.
    pub async fn connect(config: &BackendConfig) -> Result<Self, BackendSetupError> {
        let prometheus = config
            .prometheus
            .as_ref()
            .map(Prometheus::new)
            .transpose()
            .map_err(|source| BackendSetupError::Prometheus {
                backend: config.name.clone(),
                source,
            })?;
        let kubernetes = match &config.kubernetes {
            Some(k) => Some(Kubernetes::connect(k).await.map_err(|source| {
                BackendSetupError::Kubernetes {
                    backend: config.name.clone(),
                    source,
                }
            })?),
            None => None,
        };
        Ok(RealCluster {
            name: config.name.clone(),
            prometheus,
            kubernetes,
        })
    }

    /// The Kubernetes client, if configured.
    pub fn kubernetes(&self) -> Option<&Kubernetes> {
        self.kubernetes.as_ref()
    }

    fn kubernetes_or_missing(&self) -> Result<&Kubernetes, BackendError> {
        self.kubernetes
            .as_ref()
            .ok_or_else(|| self.missing("Kubernetes", "kubernetes"))
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

    fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        self.kubernetes_or_missing()?.workload(target)
    }

    fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        self.kubernetes_or_missing()?.capacity(exclude)
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

    fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError> {
        self.kubernetes_or_missing()?
            .scale(target, replicas)
            .map(|_| ())
    }

    fn set_power(&self, pool: &str, _vm_id: &str, _state: PowerState) -> Result<(), BackendError> {
        Err(BackendError::NotFound(format!(
            "backend {} has no VM pool {pool}",
            self.name
        )))
    }
}
