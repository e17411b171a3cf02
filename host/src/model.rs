//! The host's own types for workloads, capacity, VMs and series, shared by backends and the tick
//! engine; the runtime converts them to and from the WIT types at the sandbox edge.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, in host time (virtual in simulations).
pub type TimestampMs = u64;

/// The kind of a scalable workload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// An apps/v1 Deployment.
    #[default]
    Deployment,
    /// An apps/v1 StatefulSet.
    StatefulSet,
}

/// Names one scalable workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRef {
    /// Deployment or StatefulSet (default deployment).
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl WorkloadRef {
    /// A Deployment reference.
    pub fn deployment(namespace: &str, name: &str) -> Self {
        WorkloadRef {
            kind: WorkloadKind::Deployment,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        };
        write!(f, "{kind}/{}/{}", self.namespace, self.name)
    }
}

/// What the cluster reports of one workload now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WorkloadStatus {
    /// Replicas the workload is scaled to.
    pub replicas: u32,
    /// Ready replicas.
    pub ready: u32,
    /// CPU requested by one replica, millicores.
    pub cpu_request_millis: u64,
    /// CPU used by all the workload's pods, millicores, where measured.
    pub cpu_usage_millis: Option<u64>,
}

/// Schedulable capacity of the cluster's Ready, uncordoned nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Capacity {
    /// Ready, schedulable nodes.
    pub nodes: u32,
    /// Allocatable CPU, millicores.
    pub allocatable_cpu_millis: u64,
    /// CPU requested by non-terminal pods (pending included), less the excluded workloads.
    pub requested_cpu_millis: u64,
    /// Allocatable memory, bytes.
    pub allocatable_memory_bytes: u64,
    /// Memory requested by non-terminal pods, less the excluded workloads.
    pub requested_memory_bytes: u64,
    /// Pods waiting for a node, less the excluded workloads.
    pub pending_pods: u32,
}

/// Power state of a node VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
}

/// A node VM in a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vm {
    /// The hypervisor's identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Power state now.
    pub power: PowerState,
    /// The Kubernetes node the VM runs.
    pub node_name: Option<String>,
}

/// One value at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When.
    pub at: TimestampMs,
    /// The value.
    pub value: f64,
}

/// A labelled series, oldest sample first.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Series {
    /// Labels sorted by name.
    pub labels: Vec<(String, String)>,
    /// Samples, oldest first.
    pub samples: Vec<Sample>,
}

/// How a scale intent changes replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleChange {
    /// To exactly this many replicas.
    To(u32),
    /// Add or remove this many.
    By(i32),
}

impl ScaleChange {
    /// The replica count this change asks for, starting from `current`.
    pub fn apply_to(self, current: u32) -> u32 {
        match self {
            ScaleChange::To(n) => n,
            ScaleChange::By(d) => current.saturating_add_signed(d),
        }
    }
}

/// Why a backend refused or could not answer; becomes the WIT `host-error` for policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum BackendError {
    /// Outside the binding's tenant scope.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such workload, pool, VM or series.
    #[error("not found: {0}")]
    NotFound(String),
    /// Malformed arguments.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The backend failed or is unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
}
