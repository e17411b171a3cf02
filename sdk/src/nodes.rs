//! The cluster's nodes with their pods, the pods waiting for one, and the VMs of the binding's
//! pools with their power operations: what a node-VM policy decides from. Pods of other
//! tenants' namespaces are counted, never named.

use crate::wit::nodes as w;
use crate::{HostError, PowerState, Vm};

/// A pod as the binding may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// `(namespace, name)` when the namespace is granted to the binding's tenant.
    pub name: Option<(String, String)>,
    /// Its priority.
    pub priority: i32,
    /// Below Cluster Autoscaler's expendable cutoff (-10): needs no capacity, keeps no node on.
    pub expendable: bool,
    /// CPU it requests, millicores.
    pub cpu_request_millis: u64,
    /// Memory it requests, bytes.
    pub memory_request_bytes: u64,
    /// Why a drain would refuse to evict it.
    pub drain_blocker: Option<String>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Ready.
    pub ready: bool,
    /// Not cordoned.
    pub schedulable: bool,
    /// Allocatable CPU, millicores.
    pub allocatable_cpu_millis: u64,
    /// Allocatable memory, bytes.
    pub allocatable_memory_bytes: u64,
    /// CPU its pods request, millicores.
    pub requested_cpu_millis: u64,
    /// Memory its pods request, bytes.
    pub requested_memory_bytes: u64,
    /// Its non-terminal pods.
    pub pods: Vec<Pod>,
    /// `(pool, vm_id)` of the VM it runs on, when that pool is granted to the binding.
    pub vm: Option<(String, String)>,
    /// The scalehost host runs here: never power it off.
    pub runs_host: bool,
}

/// A power operation in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOperation {
    /// The host's operation id.
    pub id: u64,
    /// The state it brings the VM to.
    pub state: PowerState,
    /// What it does now.
    pub step: String,
}

/// A VM of a pool, with its maintenance mark and its operation in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolVm {
    /// The VM.
    pub vm: Vm,
    /// Marked for maintenance: leave it alone.
    pub maintenance: bool,
    /// The power operation in flight on it.
    pub operation: Option<PowerOperation>,
}

fn pod(p: w::Pod) -> Pod {
    Pod {
        name: p.name.map(|n| (n.namespace, n.name)),
        priority: p.priority,
        expendable: p.expendable,
        cpu_request_millis: p.cpu_request_millis,
        memory_request_bytes: p.memory_request_bytes,
        drain_blocker: p.drain_blocker,
    }
}

/// Lists the cluster's nodes with their pods.
pub fn list() -> Result<Vec<Node>, HostError> {
    Ok(w::list_nodes()?
        .into_iter()
        .map(|n| Node {
            name: n.name,
            ready: n.ready,
            schedulable: n.schedulable,
            allocatable_cpu_millis: n.allocatable_cpu_millis,
            allocatable_memory_bytes: n.allocatable_memory_bytes,
            requested_cpu_millis: n.requested_cpu_millis,
            requested_memory_bytes: n.requested_memory_bytes,
            pods: n.pods.into_iter().map(pod).collect(),
            vm: n.vm.map(|v| (v.pool, v.vm_id)),
            runs_host: n.runs_host,
        })
        .collect())
}

/// Lists the pods waiting for a node.
pub fn pending_pods() -> Result<Vec<Pod>, HostError> {
    Ok(w::pending_pods()?.into_iter().map(pod).collect())
}

/// Lists the VMs of a pool granted to the binding, with their operations in flight.
pub fn pool_vms(pool: &str) -> Result<Vec<PoolVm>, HostError> {
    Ok(w::pool_vms(pool)?
        .into_iter()
        .map(|v| PoolVm {
            vm: v.vm.into(),
            maintenance: v.maintenance,
            operation: v.operation.map(|o| PowerOperation {
                id: o.id,
                state: o.state.into(),
                step: o.step,
            }),
        })
        .collect())
}
