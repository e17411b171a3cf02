//! A tenant's real backends: Prometheus for queries, Kubernetes for workloads, capacity and
//! scaling, vSphere for the VMs of node pools (cordon, drain, guest shutdown; start, Ready,
//! uncordon). Chosen per tenant (`[[tenants]] backend = "NAME"`, `[[backends]] name = "NAME"`).
//!
//! Start with [`RealCluster::connect`]. A call no configured backend can answer reaches the
//! policy as `unavailable`, naming what to configure; it never falls back to the simulated
//! cluster.

use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use super::kubernetes::{Kubernetes, KubernetesConfig, KubernetesSetupError};
use super::prometheus::{Prometheus, PrometheusConfig, PrometheusSetupError};
use super::vsphere::{VSphere, VSphereConfig, VSphereSetupError};
use super::{Actuator, MetricSource, VmInventory, WorkloadReader};
use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, Series, TimestampMs, Vm, WorkloadRef,
    WorkloadStatus,
};
use crate::domain::query::CustomMetricQuery;

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
    /// The vCenter that runs the pools' VMs.
    #[serde(default)]
    pub vsphere: Option<VSphereConfig>,
    /// Node VMs a policy may power on and off (needs `vsphere` and `kubernetes`).
    #[serde(default)]
    pub vm_pools: Vec<VmPoolConfig>,
}

/// `[[backends.vm_pools]]`: VMs by their vCenter name, each running one Kubernetes node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPoolConfig {
    /// The pool's name, as tenants and policies use it.
    pub name: String,
    /// Its VMs.
    pub vms: Vec<PoolVm>,
    /// How long a guest shutdown may take before a hard stop (default 5m).
    #[serde(default = "default_shutdown_timeout", with = "crate::domain::duration")]
    pub shutdown_timeout: std::time::Duration,
    /// How long from power-on to the node being Ready (default 10m).
    #[serde(default = "default_boot_timeout", with = "crate::domain::duration")]
    pub boot_timeout: std::time::Duration,
}

/// One VM of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolVm {
    /// Its name in vCenter.
    pub name: String,
    /// The Kubernetes node it runs.
    pub node: String,
    /// Marked for maintenance: policies leave it alone (default false).
    #[serde(default)]
    pub maintenance: bool,
}

fn default_shutdown_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

fn default_boot_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(600)
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
    /// The vSphere section is unusable.
    #[error("backend {backend}: vsphere")]
    VSphere {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: VSphereSetupError,
    },
    /// VM pools without the vSphere or Kubernetes sections they need.
    #[error("backend {backend}: {message}")]
    Pools {
        /// The backend.
        backend: String,
        /// What is missing.
        message: String,
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
    vsphere: Option<VSphere>,
    pools: Vec<VmPoolConfig>,
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
        let vsphere = config
            .vsphere
            .as_ref()
            .map(VSphere::new)
            .transpose()
            .map_err(|source| BackendSetupError::VSphere {
                backend: config.name.clone(),
                source,
            })?;
        if !config.vm_pools.is_empty() && (vsphere.is_none() || kubernetes.is_none()) {
            return Err(BackendSetupError::Pools {
                backend: config.name.clone(),
                message: "vm_pools need both a vsphere and a kubernetes section (VMs are powered in vCenter, their nodes cordoned and drained in Kubernetes)".into(),
            });
        }
        Ok(RealCluster {
            name: config.name.clone(),
            prometheus,
            kubernetes,
            vsphere,
            pools: config.vm_pools.clone(),
        })
    }

    /// The vCenter client, if configured.
    pub fn vsphere(&self) -> Option<&VSphere> {
        self.vsphere.as_ref()
    }

    fn pool(&self, name: &str) -> Result<(&VmPoolConfig, &VSphere, &Kubernetes), BackendError> {
        let pool = self.pools.iter().find(|p| p.name == name).ok_or_else(|| {
            BackendError::NotFound(format!("backend {} has no VM pool {name}", self.name))
        })?;
        match (&self.vsphere, &self.kubernetes) {
            (Some(vsphere), Some(kubernetes)) => Ok((pool, vsphere, kubernetes)),
            _ => Err(self.missing("vSphere and Kubernetes", "vsphere")),
        }
    }

    /// Powers a pool VM off: cordon its node, drain it, shut the guest down, and stop the VM
    /// hard if the guest is still up after `shutdown_timeout`. Or on: start it, wait for its
    /// node to be Ready, uncordon it. Each step is safe to repeat.
    async fn power(
        &self,
        pool_name: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), BackendError> {
        let (pool, vsphere, kubernetes, node) = self.pool_vm(pool_name, vm_id).await?;
        let node = &node;
        match state {
            PowerState::Off => {
                kubernetes.cordon(node).await?;
                let evicted = match kubernetes.drain(node).await {
                    Ok(evicted) => evicted,
                    Err(error) => {
                        // The VM stays on: its node goes back to the scheduler rather than
                        // stay cordoned and forgotten.
                        if let Err(undo) = kubernetes.uncordon(node).await {
                            tracing::error!(%node, %undo, "drain failed and the node could not be uncordoned");
                        }
                        return Err(error);
                    }
                };
                tracing::info!(%node, evicted = evicted.len(), "node drained; shutting the guest down");
                let shut_down = async {
                    if vsphere.power(vm_id).await? == PowerState::Off {
                        return Ok(());
                    }
                    if let Err(error) = vsphere.shutdown_guest(vm_id).await {
                        // No VMware Tools in the guest, typically: the node is drained already.
                        tracing::warn!(vm = %vm_id, %error, "guest shutdown refused; stopping hard");
                        return vsphere.stop(vm_id).await;
                    }
                    let deadline = std::time::Instant::now() + pool.shutdown_timeout;
                    while std::time::Instant::now() < deadline {
                        if vsphere.power(vm_id).await? == PowerState::Off {
                            return Ok(());
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    tracing::warn!(vm = %vm_id, "guest still up after the shutdown timeout; stopping hard");
                    vsphere.stop(vm_id).await
                }
                .await;
                if let Err(error) = shut_down {
                    // The VM may still be on (vSphere refused or failed): unless it is known
                    // to be off, its node goes back to the scheduler rather than stay
                    // cordoned and forgotten.
                    if !matches!(vsphere.power(vm_id).await, Ok(PowerState::Off))
                        && let Err(undo) = kubernetes.uncordon(node).await
                    {
                        tracing::error!(%node, %undo, "power-off failed and the node could not be uncordoned");
                    }
                    return Err(error);
                }
                Ok(())
            }
            PowerState::On => {
                if vsphere.power(vm_id).await? == PowerState::Off {
                    vsphere.start(vm_id).await?;
                }
                let ready = kubernetes.wait_ready(node, pool.boot_timeout).await;
                // Uncordoned even when it did not turn Ready in time: a node that is not Ready
                // carries the not-ready taint and gets no pods, and once it comes up it must
                // not be left cordoned and forgotten.
                let uncordoned = kubernetes.uncordon(node).await;
                ready.and(uncordoned)
            }
        }
    }

    /// A pool VM's pool, clients and the node it runs.
    async fn pool_vm(
        &self,
        pool_name: &str,
        vm_id: &str,
    ) -> Result<(&VmPoolConfig, &VSphere, &Kubernetes, String), BackendError> {
        let (pool, vsphere, kubernetes) = self.pool(pool_name)?;
        let names: Vec<String> = pool.vms.iter().map(|v| v.name.clone()).collect();
        let summary = vsphere
            .vms(&names)
            .await?
            .into_iter()
            .find(|v| v.vm == vm_id)
            .ok_or_else(|| {
                BackendError::NotFound(format!("VM {vm_id} is not in pool {pool_name}"))
            })?;
        let node = pool
            .vms
            .iter()
            .find(|v| v.name == summary.name)
            .expect("listed by its name")
            .node
            .clone();
        Ok((pool, vsphere, kubernetes, node))
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

    /// Which cluster this backend acts on: its Kubernetes API server, else its own name. Two
    /// `[[backends]]` entries for one API server are one cluster to the one-writer rule.
    pub fn identity(&self) -> String {
        match &self.kubernetes {
            Some(kubernetes) => format!("kubernetes:{}", kubernetes.cluster_url()),
            None => format!("backend:{}", self.name),
        }
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

#[async_trait]
impl MetricSource for RealCluster {
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        if let Some(custom) = CustomMetricQuery::parse(promql) {
            return self.kubernetes_or_missing()?.custom_metric(&custom?).await;
        }
        self.prometheus_or_missing()?.query(promql, at).await
    }

    async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        if CustomMetricQuery::parse(promql).is_some() {
            return Err(BackendError::Invalid(
                "custom.metrics.k8s.io keeps no history: ask metrics.query for the value now"
                    .into(),
            ));
        }
        self.prometheus_or_missing()?
            .query_range(promql, start, end, step_ms)
            .await
    }

    async fn events(
        &self,
        _service: &str,
        _window_ms: u64,
        _now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError> {
        // Pushed events come from the host's store (`WithPushedEvents`), whatever the backend.
        Ok(Vec::new())
    }
}

#[async_trait]
impl WorkloadReader for RealCluster {
    async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        self.kubernetes_or_missing()?.workload(target).await
    }

    async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        self.kubernetes_or_missing()?.capacity(exclude).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        self.kubernetes_or_missing()?.nodes().await
    }

    async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        self.kubernetes_or_missing()?.pending_pods().await
    }
}

#[async_trait]
impl VmInventory for RealCluster {
    async fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError> {
        let (config, vsphere, _) = self.pool(pool)?;
        let names: Vec<String> = config.vms.iter().map(|v| v.name.clone()).collect();
        Ok(vsphere
            .vms(&names)
            .await?
            .into_iter()
            .map(|v| Vm {
                node_name: config
                    .vms
                    .iter()
                    .find(|p| p.name == v.name)
                    .map(|p| p.node.clone()),
                maintenance: config.vms.iter().any(|p| p.name == v.name && p.maintenance),
                power: super::vsphere::power_state(&v.power_state),
                id: v.vm,
                name: v.name,
            })
            .collect())
    }
}

#[async_trait]
impl Actuator for RealCluster {
    async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError> {
        self.kubernetes_or_missing()?
            .scale(target, replicas)
            .await
            .map(|_| ())
    }

    async fn set_power(
        &self,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), BackendError> {
        self.power(pool, vm_id, state).await
    }

    async fn abandon_power(
        &self,
        pool: &str,
        vm_id: &str,
        _state: PowerState,
    ) -> Result<(), BackendError> {
        let (_, vsphere, kubernetes, node) = self.pool_vm(pool, vm_id).await?;
        // Whichever way it was going, a VM that runs after the interruption gives its node to
        // the scheduler (a cancelled power-off must not leave it cordoned, and a cancelled
        // power-on that got as far as starting the VM must not leave it cordoned either); a VM
        // that is off has no node to give.
        if vsphere.power(vm_id).await? == PowerState::On {
            kubernetes.uncordon(&node).await?;
        }
        Ok(())
    }
}
