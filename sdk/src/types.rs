//! Plain Rust types for what crosses the WIT boundary, with serde for configs and state.

pub use scalehost_types::{
    Capacity, PowerState, Sample, ScaleChange, Series, WorkloadKind, WorkloadRef, WorkloadStatus,
};

use crate::wit::types as w;

/// Why the host refused or could not answer a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The binding's tenant has no right to this target, pool or query.
    Forbidden(String),
    /// The named workload, pool, VM or series does not exist.
    NotFound(String),
    /// The arguments are malformed.
    Invalid(String),
    /// The backend failed; a later tick may succeed.
    Unavailable(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Forbidden(m) => write!(f, "forbidden: {m}"),
            HostError::NotFound(m) => write!(f, "not found: {m}"),
            HostError::Invalid(m) => write!(f, "invalid: {m}"),
            HostError::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

impl From<HostError> for String {
    fn from(e: HostError) -> String {
        e.to_string()
    }
}

impl From<w::HostError> for HostError {
    fn from(e: w::HostError) -> Self {
        match e {
            w::HostError::Forbidden(m) => HostError::Forbidden(m),
            w::HostError::NotFound(m) => HostError::NotFound(m),
            w::HostError::Invalid(m) => HostError::Invalid(m),
            w::HostError::Unavailable(m) => HostError::Unavailable(m),
        }
    }
}

impl From<&WorkloadRef> for w::WorkloadRef {
    fn from(r: &WorkloadRef) -> Self {
        w::WorkloadRef {
            kind: match r.kind {
                WorkloadKind::Deployment => w::WorkloadKind::Deployment,
                WorkloadKind::StatefulSet => w::WorkloadKind::StatefulSet,
            },
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        }
    }
}

impl From<w::WorkloadRef> for WorkloadRef {
    fn from(r: w::WorkloadRef) -> Self {
        WorkloadRef {
            kind: match r.kind {
                w::WorkloadKind::Deployment => WorkloadKind::Deployment,
                w::WorkloadKind::StatefulSet => WorkloadKind::StatefulSet,
            },
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<w::WorkloadStatus> for WorkloadStatus {
    fn from(s: w::WorkloadStatus) -> Self {
        WorkloadStatus {
            replicas: s.replicas,
            ready: s.ready,
            cpu_request_millis: s.cpu_request_millis,
            cpu_usage_millis: s.cpu_usage_millis,
        }
    }
}

impl From<w::ClusterCapacity> for Capacity {
    fn from(c: w::ClusterCapacity) -> Self {
        Capacity {
            nodes: c.nodes,
            allocatable_cpu_millis: c.allocatable_cpu_millis,
            requested_cpu_millis: c.requested_cpu_millis,
            allocatable_memory_bytes: c.allocatable_memory_bytes,
            requested_memory_bytes: c.requested_memory_bytes,
            pending_pods: c.pending_pods,
        }
    }
}

impl From<w::Series> for Series {
    fn from(s: w::Series) -> Self {
        Series {
            labels: s.labels,
            samples: s
                .samples
                .into_iter()
                .map(|x| Sample {
                    at: x.at,
                    value: x.value,
                })
                .collect(),
        }
    }
}

impl From<ScaleChange> for w::ScaleChange {
    fn from(c: ScaleChange) -> Self {
        match c {
            ScaleChange::To(n) => w::ScaleChange::To(n),
            ScaleChange::By(n) => w::ScaleChange::By(n),
        }
    }
}

impl From<PowerState> for w::PowerState {
    fn from(p: PowerState) -> Self {
        match p {
            PowerState::On => w::PowerState::On,
            PowerState::Off => w::PowerState::Off,
        }
    }
}

impl From<w::PowerState> for PowerState {
    fn from(p: w::PowerState) -> Self {
        match p {
            w::PowerState::On => PowerState::On,
            w::PowerState::Off => PowerState::Off,
        }
    }
}

/// A node VM in a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// The hypervisor's identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Power state now.
    pub power: PowerState,
    /// The Kubernetes node the VM runs, if mapped.
    pub node_name: Option<String>,
}

impl From<w::Vm> for Vm {
    fn from(v: w::Vm) -> Self {
        Vm {
            id: v.id,
            name: v.name,
            power: v.power.into(),
            node_name: v.node_name,
        }
    }
}
