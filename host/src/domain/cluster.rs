//! The host's own types for workloads, capacity, VMs and series, shared by backends and the tick
//! engine; the runtime converts them to and from the WIT types at the sandbox edge.

use serde::Serialize;

pub use scalehost_types::{
    Adjustment, Capacity, EXPENDABLE_PRIORITY_CUTOFF, PowerOperation, PowerOutcome, PowerProgress,
    PowerState, Rail, Sample, ScaleChange, ScaleOutcome, Series, TickOutcomes, TimestampMs,
    WorkloadKind, WorkloadRef, WorkloadStatus,
};

/// From a scale-up to the new pods Ready, when a simulated cluster or a backtest is not told.
pub const DEFAULT_STARTUP_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

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
