//! The cluster's nodes with their pods, the pods waiting for one, and the VMs of the binding's
//! pools with their power operations: what a node-VM policy decides from. Pods of other
//! tenants' namespaces are only summed ([`PodSummary`]).

use crate::wit::nodes as w;
pub use scalehost_types::PowerOperation;

use crate::{HostError, Vm};

/// A pod of a namespace granted to the binding's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// `(namespace, name)`.
    pub name: (String, String),
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

/// Other tenants' pods, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodSummary {
    /// How many.
    pub pods: u32,
    /// Of them, expendable (priority below -10).
    pub expendable: u32,
    /// Of them, refusing a drain.
    pub refusing_drain: u32,
    /// CPU they request, millicores.
    pub cpu_request_millis: u64,
    /// Of it, what the expendable ones request.
    pub expendable_cpu_millis: u64,
    /// Memory they request, bytes.
    pub memory_request_bytes: u64,
}

/// The pods waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The tenant's own.
    pub pods: Vec<Pod>,
    /// Other tenants', summed.
    pub others: PodSummary,
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
    /// Its non-terminal pods of the tenant's namespaces.
    pub pods: Vec<Pod>,
    /// Its other tenants' pods, summed.
    pub others: PodSummary,
    /// `(pool, vm_id)` of the VM it runs on, when that pool is granted to the binding.
    pub vm: Option<(String, String)>,
    /// The scalehost host runs here: never power it off.
    pub runs_host: bool,
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

fn summary(s: w::PodSummary) -> PodSummary {
    PodSummary {
        pods: s.pods,
        expendable: s.expendable,
        refusing_drain: s.refusing_drain,
        cpu_request_millis: s.cpu_request_millis,
        expendable_cpu_millis: s.expendable_cpu_millis,
        memory_request_bytes: s.memory_request_bytes,
    }
}

fn pod(p: w::Pod) -> Pod {
    Pod {
        name: (p.name.namespace, p.name.name),
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
            others: summary(n.others),
            vm: n.vm.map(|v| (v.pool, v.vm_id)),
            runs_host: n.runs_host,
        })
        .collect())
}

/// The pods waiting for a node.
pub fn pending_pods() -> Result<Pending, HostError> {
    let pending = w::pending_pods()?;
    Ok(Pending {
        pods: pending.pods.into_iter().map(pod).collect(),
        others: summary(pending.others),
    })
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
