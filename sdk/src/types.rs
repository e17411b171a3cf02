//! Plain Rust types for what crosses the WIT boundary, with serde for configs and state.

use serde::{Deserialize, Serialize};

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

/// The kind of a scalable workload; in JSON `"deployment"` or `"stateful-set"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// An apps/v1 Deployment.
    #[default]
    Deployment,
    /// An apps/v1 StatefulSet.
    StatefulSet,
}

/// Names one scalable workload; in JSON `{"kind": "deployment", "namespace": "web", "name": "api"}`
/// (`kind` defaults to deployment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRef {
    /// Deployment or StatefulSet.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
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

/// What the cluster reports of one workload now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadStatus {
    /// Replicas the workload is scaled to.
    pub replicas: u32,
    /// Replicas that are Ready.
    pub ready: u32,
    /// CPU requested by one replica, in millicores.
    pub cpu_request_millis: u64,
    /// CPU used by all the workload's pods, in millicores, where measured.
    pub cpu_usage_millis: Option<u64>,
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

/// Schedulable capacity of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Ready, schedulable nodes.
    pub nodes: u32,
    /// Allocatable CPU, millicores.
    pub allocatable_cpu_millis: u64,
    /// CPU requested by scheduled pods, less the excluded workloads.
    pub requested_cpu_millis: u64,
    /// Allocatable memory, bytes.
    pub allocatable_memory_bytes: u64,
    /// Memory requested by scheduled pods, less the excluded workloads.
    pub requested_memory_bytes: u64,
    /// Pods waiting for a node, less the excluded workloads.
    pub pending_pods: u32,
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

/// One value at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, host time.
    pub at: u64,
    /// The value.
    pub value: f64,
}

/// A labelled series of samples, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Samples, oldest first.
    pub samples: Vec<Sample>,
}

impl Series {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The newest sample's value.
    pub fn last(&self) -> Option<f64> {
        self.samples.last().map(|s| s.value)
    }

    /// The sum of all sample values.
    pub fn sum(&self) -> f64 {
        self.samples.iter().map(|s| s.value).sum()
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

/// How a scale intent changes replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleChange {
    /// Scale to exactly this many replicas.
    To(u32),
    /// Add (positive) or remove (negative) replicas.
    By(i32),
}

impl From<ScaleChange> for w::ScaleChange {
    fn from(c: ScaleChange) -> Self {
        match c {
            ScaleChange::To(n) => w::ScaleChange::To(n),
            ScaleChange::By(n) => w::ScaleChange::By(n),
        }
    }
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
