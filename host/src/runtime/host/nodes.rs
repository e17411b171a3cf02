//! Host side of `nodes` (0.2.0): the per-node view, pending pods and pool VMs with their
//! operations. The node view and pending pods are cluster-wide (the `cluster_metrics` grant);
//! even then pods of namespaces not granted to the tenant are only summed ([`PodSummary`]):
//! their names, priorities and requests one by one are other tenants' business.

use std::collections::HashMap;

use tracing::instrument;

use super::super::Sandbox;
use super::super::bindings::types::HostError;
use super::super::bindings::v0_2::nodes::{
    Host, Node, NodeVm, Pending, Pod, PodName, PodSummary, PoolVm, PowerOperation,
};
use crate::domain::cluster;
use crate::domain::scope::Scope;
use crate::runtime::Access;

type Answer<T> = wasmtime::Result<Result<T, HostError>>;

impl Sandbox {
    fn node_access(&self) -> Result<Access, HostError> {
        self.access.clone().ok_or_else(|| {
            HostError::Forbidden("nodes are not available during validate-config".into())
        })
    }
}

impl Host for Sandbox {
    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn list_nodes(&mut self) -> Answer<Vec<Node>> {
        self.charge(0)?;
        let access = match self.node_access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = access.scope.check_cluster_metrics("nodes.list-nodes") {
            return Ok(Err(e.into()));
        }
        let nodes = match access.cluster.nodes().await {
            Ok(nodes) => nodes,
            Err(e) => return Ok(Err(e.into())),
        };
        // Which granted pool VM runs which node: one inventory read per pool of the binding.
        let mut vm_of: HashMap<String, NodeVm> = HashMap::new();
        for pool in &access.scope.pools {
            match access.cluster.vms(pool).await {
                Ok(vms) => {
                    for vm in vms {
                        if let Some(node) = vm.node_name {
                            vm_of.insert(
                                node,
                                NodeVm {
                                    pool: pool.clone(),
                                    vm_id: vm.id,
                                },
                            );
                        }
                    }
                }
                Err(e) => return Ok(Err(e.into())),
            }
        }
        self.charge_bytes(
            nodes
                .iter()
                .map(|n| {
                    n.name.len()
                        + NODE_BYTES
                        + n.pods
                            .iter()
                            .filter(|p| own(&access.scope, p))
                            .map(pod_bytes)
                            .sum::<usize>()
                })
                .sum(),
        )?;
        let host_node = access.host_node.as_deref();
        Ok(Ok(nodes
            .into_iter()
            .map(|n| {
                let requested_cpu_millis = n.pods.iter().map(|p| p.cpu_request_millis).sum();
                let requested_memory_bytes = n.pods.iter().map(|p| p.memory_request_bytes).sum();
                let (pods, others) = split(&access.scope, n.pods);
                Node {
                    runs_host: host_node == Some(n.name.as_str()),
                    vm: vm_of.remove(&n.name),
                    name: n.name,
                    ready: n.ready,
                    schedulable: n.schedulable,
                    allocatable_cpu_millis: n.allocatable_cpu_millis,
                    allocatable_memory_bytes: n.allocatable_memory_bytes,
                    requested_cpu_millis,
                    requested_memory_bytes,
                    pods,
                    others,
                }
            })
            .collect()))
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn pending_pods(&mut self) -> Answer<Pending> {
        self.charge(0)?;
        let access = match self.node_access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = access.scope.check_cluster_metrics("nodes.pending-pods") {
            return Ok(Err(e.into()));
        }
        match access.cluster.pending_pods().await {
            Ok(pods) => {
                self.charge_bytes(
                    NODE_BYTES
                        + pods
                            .iter()
                            .filter(|p| own(&access.scope, p))
                            .map(pod_bytes)
                            .sum::<usize>(),
                )?;
                let (pods, others) = split(&access.scope, pods);
                Ok(Ok(Pending { pods, others }))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn pool_vms(&mut self, pool: String) -> Answer<Vec<PoolVm>> {
        self.charge(pool.len())?;
        let access = match self.node_access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        // The operations in flight on a pool are its binding's business: only a pool of this
        // binding is shown (a pool granted to the tenant but powered by another binding is not).
        if let Err(e) = access.scope.check_power(&pool) {
            return Ok(Err(e.into()));
        }
        let vms = match access.cluster.vms(&pool).await {
            Ok(vms) => vms,
            Err(e) => return Ok(Err(e.into())),
        };
        self.charge_bytes(vms.iter().map(|v| v.id.len() + v.name.len() + 48).sum())?;
        Ok(Ok(vms
            .into_iter()
            .map(|vm| PoolVm {
                maintenance: vm.maintenance,
                operation: access
                    .actuation
                    .in_flight(&pool, &vm.id)
                    .map(|op| PowerOperation {
                        id: op.id,
                        state: op.state.into(),
                        step: op.step,
                    }),
                vm: vm.into(),
            })
            .collect()))
    }
}

/// What a node's fixed fields and its summary of other tenants' pods cost the byte limit.
const NODE_BYTES: usize = 96;

/// Whether `p` is of a namespace granted to the tenant.
fn own(scope: &Scope, p: &cluster::PodInfo) -> bool {
    scope.tenant.namespaces.contains(&p.namespace)
}

/// The tenant's own pods, and the others summed.
fn split(scope: &Scope, pods: Vec<cluster::PodInfo>) -> (Vec<Pod>, PodSummary) {
    let mut others = PodSummary {
        pods: 0,
        expendable: 0,
        refusing_drain: 0,
        cpu_request_millis: 0,
        expendable_cpu_millis: 0,
        memory_request_bytes: 0,
    };
    let mut own_pods = Vec::new();
    for p in pods {
        if own(scope, &p) {
            own_pods.push(Pod {
                expendable: p.expendable(),
                name: PodName {
                    namespace: p.namespace,
                    name: p.name,
                },
                priority: p.priority,
                cpu_request_millis: p.cpu_request_millis,
                memory_request_bytes: p.memory_request_bytes,
                drain_blocker: p.drain_blocker,
            });
        } else {
            others.pods += 1;
            others.cpu_request_millis += p.cpu_request_millis;
            others.memory_request_bytes += p.memory_request_bytes;
            if p.expendable() {
                others.expendable += 1;
                others.expendable_cpu_millis += p.cpu_request_millis;
            }
            if p.drain_blocker.is_some() {
                others.refusing_drain += 1;
            }
        }
    }
    (own_pods, others)
}

/// Bytes one of the tenant's pods costs the byte limit.
fn pod_bytes(p: &cluster::PodInfo) -> usize {
    p.namespace.len() + p.name.len() + 32 + p.drain_blocker.as_ref().map_or(0, String::len)
}
