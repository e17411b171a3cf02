//! The plain types the host and the policy SDK share, so that both sides name a workload, a scale
//! change or a series the same way. No I/O and no WIT here: the host and the SDK each convert
//! these to and from their own generated bindings at the sandbox edge.
//!
//! ```
//! use scalehost_types::{ScaleChange, WorkloadRef};
//!
//! let api = WorkloadRef::deployment("web", "api");
//! assert_eq!(api.to_string(), "deployment/web/api");
//! assert_eq!(ScaleChange::By(-2).apply_to(5), 3);
//! ```

use serde::{Deserialize, Serialize};

mod outcomes;

pub use outcomes::{
    Adjustment, PowerOperation, PowerOutcome, PowerProgress, Rail, ScaleOutcome, TickOutcomes,
};

/// Milliseconds since the Unix epoch, in host time (virtual in simulations).
pub type TimestampMs = u64;

/// The kind of a scalable workload; in JSON `"deployment"` or `"stateful-set"`.
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

/// Names one scalable workload; in JSON `{"kind": "deployment", "namespace": "web", "name": "api"}`
/// (`kind` defaults to deployment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// What the cluster reports of one workload now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// Schedulable capacity of the cluster's Ready, uncordoned nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// One value at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, host time.
    pub at: TimestampMs,
    /// The value.
    pub value: f64,
}

/// A labelled series of samples, oldest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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

/// How a scale intent changes replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleChange {
    /// Scale to exactly this many replicas.
    To(u32),
    /// Add (positive) or remove (negative) replicas.
    By(i32),
}

impl ScaleChange {
    /// The replica count this change asks for, starting from `current` (saturating at 0 and
    /// `u32::MAX`).
    pub fn apply_to(self, current: u32) -> u32 {
        match self {
            ScaleChange::To(n) => n,
            ScaleChange::By(d) => current.saturating_add_signed(d),
        }
    }
}

/// Priority below which a pod is expendable, as Cluster Autoscaler's default
/// `--expendable-pods-priority-cutoff`: it neither needs capacity nor keeps a node on.
pub const EXPENDABLE_PRIORITY_CUTOFF: i32 = -10;
