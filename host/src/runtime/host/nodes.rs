//! Host side of `nodes` (0.2.0): the per-node view, pending pods and pool VMs with their
//! operations. Pods of namespaces not granted to the tenant are shown without their names.

use std::collections::HashMap;

use tracing::instrument;

use super::super::Sandbox;
use super::super::bindings::types::HostError;
use super::super::bindings::v0_2::nodes::{
    Host, Node, NodeVm, Pod, PodName, PoolVm, PowerOperation,
};
use crate::model;
use crate::runtime::Access;
use crate::tick::Scope;

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
                        + 96
                        + n.pods
                            .iter()
                            .map(|p| pod_bytes(&access.scope, p))
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
                    pods: n.pods.into_iter().map(|p| pod(&access.scope, p)).collect(),
                }
            })
            .collect()))
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn pending_pods(&mut self) -> Answer<Vec<Pod>> {
        self.charge(0)?;
        let access = match self.node_access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        match access.cluster.pending_pods().await {
            Ok(pods) => {
                self.charge_bytes(pods.iter().map(|p| pod_bytes(&access.scope, p)).sum())?;
                Ok(Ok(pods
                    .into_iter()
                    .map(|p| pod(&access.scope, p))
                    .collect()))
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

/// A pod as `scope` may see it: named only in a namespace granted to the tenant.
fn pod(scope: &Scope, p: model::PodInfo) -> Pod {
    let expendable = p.expendable();
    let named = scope.tenant.namespaces.contains(&p.namespace);
    Pod {
        name: named.then(|| PodName {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }),
        priority: p.priority,
        expendable,
        cpu_request_millis: p.cpu_request_millis,
        memory_request_bytes: p.memory_request_bytes,
        // Another tenant's reason could name its volumes: only that there is one is shown.
        drain_blocker: match p.drain_blocker {
            Some(why) if named => Some(why),
            Some(_) => Some("another tenant's pod that refuses a drain".into()),
            None => None,
        },
    }
}

/// Bytes a pod costs the byte limit: what the guest is given, and a fixed size for another
/// tenant's pod (whose real name lengths must not show through the limit).
fn pod_bytes(scope: &Scope, p: &model::PodInfo) -> usize {
    if scope.tenant.namespaces.contains(&p.namespace) {
        p.namespace.len() + p.name.len() + 32 + p.drain_blocker.as_ref().map_or(0, String::len)
    } else {
        96
    }
}
