//! The node side of the backend: capacity, the node view, pending pods, and the steps around a
//! VM's power (cordon, drain through the Eviction API, wait for Ready, uncordon).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};

use super::pods::{matches_selector, node_ready, pod_info, pod_requests, terminal};
use super::quantity::{bytes, cpu_millis};
use super::{Kubernetes, backend_error};
use crate::domain::cluster::{BackendError, Capacity, NodeInfo, PodInfo, WorkloadRef};

impl Kubernetes {
    /// Allocatable CPU and memory of the Ready, schedulable nodes; what non-terminal pods
    /// request (pending ones included), less the pods of `exclude`; the pending pods.
    pub async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        async {
            let mut excluded = Vec::new();
            for target in exclude {
                let shape = self.shape(target).await?;
                excluded.push((target.namespace.clone(), shape.selector));
            }
            let nodes = Api::<Node>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            let mut capacity = Capacity::default();
            for node in &nodes.items {
                if !node_ready(node)
                    || node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
                {
                    continue;
                }
                let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                let get = |k: &str| allocatable.and_then(|a| a.get(k)).map(|q| q.0.as_str());
                capacity.nodes += 1;
                capacity.allocatable_cpu_millis += get("cpu").map_or(0, cpu_millis);
                capacity.allocatable_memory_bytes += get("memory").map_or(0, bytes);
            }
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            for pod in &pods.items {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    continue;
                }
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                if excluded
                    .iter()
                    .any(|(ns, selector)| ns == namespace && matches_selector(selector, &labels))
                {
                    continue;
                }
                let (cpu, memory) = pod_requests(pod);
                capacity.requested_cpu_millis += cpu;
                capacity.requested_memory_bytes += memory;
                if phase == Some("Pending") {
                    capacity.pending_pods += 1;
                }
            }
            Ok(capacity)
        }
        .await
    }

    /// Every node with its non-terminal pods (two list calls, whatever the cluster's size).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        async {
            let nodes = Api::<Node>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            let mut infos: Vec<NodeInfo> = nodes
                .items
                .iter()
                .map(|node| {
                    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                    let get = |k: &str| allocatable.and_then(|a| a.get(k)).map(|q| q.0.as_str());
                    NodeInfo {
                        name: node.metadata.name.clone().unwrap_or_default(),
                        ready: node_ready(node),
                        schedulable: node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true),
                        allocatable_cpu_millis: get("cpu").map_or(0, cpu_millis),
                        allocatable_memory_bytes: get("memory").map_or(0, bytes),
                        pods: Vec::new(),
                    }
                })
                .collect();
            for pod in pods.items.iter().filter(|p| !terminal(p)) {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                if let Some(info) = infos.iter_mut().find(|n| Some(n.name.as_str()) == node) {
                    info.pods.push(pod_info(pod));
                }
            }
            Ok(infos)
        }
        .await
    }

    /// The pods the scheduler has not placed yet (Pending, no node).
    pub async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        async {
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default().fields("spec.nodeName="))
                .await
                .map_err(backend_error)?;
            Ok(pods
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
                .map(pod_info)
                .collect())
        }
        .await
    }

    /// Marks a node unschedulable.
    pub async fn cordon(&self, node: &str) -> Result<(), BackendError> {
        self.set_unschedulable(node, true).await
    }

    /// Marks a node schedulable again.
    pub async fn uncordon(&self, node: &str) -> Result<(), BackendError> {
        self.set_unschedulable(node, false).await
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), BackendError> {
        async {
            Api::<Node>::all(self.client.clone())
                .patch(
                    node,
                    &PatchParams::default(),
                    &Patch::Merge(
                        serde_json::json!({ "spec": { "unschedulable": unschedulable } }),
                    ),
                )
                .await
                .map(|_| ())
                .map_err(backend_error)
        }
        .await
    }

    /// Evicts every pod of a node through the Eviction API, except DaemonSet pods (their
    /// controller ignores cordons) and mirror pods (the kubelet owns them); a 429 (a
    /// PodDisruptionBudget forbids it now) is retried with backoff until `drain_timeout`.
    /// Returns the pods evicted.
    pub async fn drain(&self, node: &str) -> Result<Vec<String>, BackendError> {
        async {
            let deadline = Instant::now() + self.drain_timeout;
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
                .await
                .map_err(backend_error)?;
            let mut evicted = Vec::new();
            for pod in &pods.items {
                let owned_by_daemon_set = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "DaemonSet");
                let mirror = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
                let finished = matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                );
                if owned_by_daemon_set || mirror || finished {
                    continue;
                }
                let name = pod.metadata.name.clone().unwrap_or_default();
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let pods = Api::<Pod>::namespaced(self.client.clone(), &namespace);
                let mut backoff = Duration::from_millis(200);
                loop {
                    match pods.evict(&name, &EvictParams::default()).await {
                        Ok(_) => break,
                        // Gone already: nothing to evict.
                        Err(kube::Error::Api(status)) if status.code == 404 => break,
                        Err(kube::Error::Api(status)) if status.code == 429 => {
                            if Instant::now() + backoff > deadline {
                                return Err(BackendError::Unavailable(format!(
                                    "drain of {node} timed out after {:?}: evicting {namespace}/{name} is refused by a disruption budget ({})",
                                    self.drain_timeout, status.message
                                )));
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                        Err(error) => return Err(backend_error(error)),
                    }
                }
                evicted.push(format!("{namespace}/{name}"));
            }
            Ok(evicted)
        }
        .await
    }

    /// Waits until a node reports Ready, up to `timeout`.
    pub async fn wait_ready(&self, node: &str, timeout: Duration) -> Result<(), BackendError> {
        async {
            let deadline = Instant::now() + timeout;
            let nodes = Api::<Node>::all(self.client.clone());
            loop {
                match nodes.get_opt(node).await.map_err(backend_error)? {
                    Some(n) if node_ready(&n) => return Ok(()),
                    _ if Instant::now() >= deadline => {
                        return Err(BackendError::Unavailable(format!(
                            "node {node} not Ready within {timeout:?}"
                        )));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        .await
    }
}
