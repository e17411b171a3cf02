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
    /// Marked for maintenance in the pool's configuration: policies leave it alone.
    pub maintenance: bool,
}

/// Priority below which a pod is expendable, as Cluster Autoscaler's default
/// `--expendable-pods-priority-cutoff`: it neither needs capacity nor keeps a node on.
pub const EXPENDABLE_PRIORITY_CUTOFF: i32 = -10;

/// A pod as a backend reports it for the node view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// CPU requested, millicores.
    pub cpu_request_millis: u64,
    /// Memory requested, bytes.
    pub memory_request_bytes: u64,
    /// Why a drain would refuse to evict it; `None` when it may be evicted or is left alone.
    pub drain_blocker: Option<String>,
}

impl PodInfo {
    /// Below the expendable cutoff ([`EXPENDABLE_PRIORITY_CUTOFF`]).
    pub fn expendable(&self) -> bool {
        self.priority < EXPENDABLE_PRIORITY_CUTOFF
    }
}

/// A node with its non-terminal pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// `Ready` is true.
    pub ready: bool,
    /// Not cordoned.
    pub schedulable: bool,
    /// Allocatable CPU, millicores.
    pub allocatable_cpu_millis: u64,
    /// Allocatable memory, bytes.
    pub allocatable_memory_bytes: u64,
    /// Its non-terminal pods.
    pub pods: Vec<PodInfo>,
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

/// What became of a binding's last applied tick, as the WIT 0.2.0 `outcomes` interface shows
/// it to the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickOutcomes {
    /// The tick's instant.
    pub at: TimestampMs,
    /// One per scaled target.
    pub scales: Vec<ScaleOutcome>,
    /// One per distinct power intent.
    pub powers: Vec<PowerOutcome>,
}

/// What became of one target's scale intents of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutcome {
    /// The target.
    pub target: WorkloadRef,
    /// Replicas before.
    pub current: u32,
    /// Replicas asked for.
    pub requested: u32,
    /// Replicas applied (`current` when it failed).
    pub applied: u32,
    /// Each rail that changed the value: (rail, from, to); rails are named as in audit
    /// records (`min-replicas`, `max-step-up`, ...).
    pub adjustments: Vec<(&'static str, u32, u32)>,
    /// The backend's error.
    pub error: Option<String>,
}

/// What became of one power intent of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOutcome {
    /// The pool.
    pub pool: String,
    /// The VM.
    pub vm_id: String,
    /// The state asked for.
    pub state: PowerState,
    /// The operation carrying it out.
    pub operation: Option<u64>,
    /// Where it stands.
    pub progress: PowerProgress,
}

/// Where a power intent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerProgress {
    /// Running; what it does.
    InProgress(String),
    /// The VM reached the state asked for.
    Done,
    /// It failed; why.
    Failed(String),
    /// It was cancelled.
    Cancelled,
    /// Nothing was started; why.
    NotStarted(String),
}

/// A power operation in flight on a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The operation's id.
    pub id: u64,
    /// The state it brings the VM to.
    pub state: PowerState,
    /// What it does now.
    pub step: String,
}
