//! What the simulated cluster is made of, as the config file's `[cluster.simulated]` table
//! describes it, and why a description is refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backends::Clock as _;
use crate::domain::cluster::{DEFAULT_STARTUP_DELAY, PowerState, TimestampMs, WorkloadKind};
use crate::domain::trace::TraceError;

/// What the simulated cluster contains; the `[cluster.simulated]` table of the config file.
/// The default is three always-on nodes of 4 cores and no workloads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Virtual time at start, ms since the Unix epoch.
    #[serde(default = "default_start_ms")]
    pub start_ms: TimestampMs,
    /// How often Ready pods push events.
    #[serde(default = "default_report_interval", with = "crate::domain::duration")]
    pub report_interval: Duration,
    /// Nodes that are always on.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Pools of node VMs with power control.
    #[serde(default)]
    pub vm_pools: Vec<VmPoolSpec>,
    /// Workloads and their load.
    #[serde(default)]
    pub workloads: Vec<SimWorkloadSpec>,
}

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec {
            start_ms: default_start_ms(),
            report_interval: default_report_interval(),
            nodes: (0..3)
                .map(|i| NodeSpec {
                    name: format!("node-{i}"),
                    cpu_millis: 4000,
                    memory_bytes: default_node_memory(),
                })
                .collect(),
            vm_pools: Vec::new(),
            workloads: Vec::new(),
        }
    }
}

fn default_start_ms() -> TimestampMs {
    // Now, to the minute: under `serve` the simulated cluster's time is then the wall clock's,
    // so events pushed with real timestamps line up. Replays set their own start.
    let now = crate::backends::SystemClock.now_ms();
    now - now % 60_000
}

fn default_report_interval() -> Duration {
    Duration::from_secs(10)
}

/// A node's name and size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Allocatable CPU, millicores.
    pub cpu_millis: u64,
    /// Allocatable memory, bytes (default 16 GiB).
    #[serde(default = "default_node_memory")]
    pub memory_bytes: u64,
}

fn default_node_memory() -> u64 {
    16 << 30
}

/// A pool of node VMs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPoolSpec {
    /// Pool name, as policies and tenant scopes name it.
    pub name: String,
    /// From power-on to node Ready.
    #[serde(default = "default_boot_delay", with = "crate::domain::duration")]
    pub boot_delay: Duration,
    /// The VMs.
    pub vms: Vec<SimVmSpec>,
}

fn default_boot_delay() -> Duration {
    Duration::from_secs(90)
}

/// A VM and the node it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimVmSpec {
    /// Hypervisor id.
    pub id: String,
    /// The node the VM runs.
    pub node: NodeSpec,
    /// Power state at start (default on, node Ready).
    #[serde(default = "default_power")]
    pub power: PowerState,
    /// Marked for maintenance: policies leave it alone (default false).
    #[serde(default)]
    pub maintenance: bool,
}

fn default_power() -> PowerState {
    PowerState::On
}

/// A simulated workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimWorkloadSpec {
    /// Deployment or StatefulSet.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Replicas at start.
    pub replicas: u32,
    /// CPU request per replica, millicores.
    pub cpu_request_millis: u64,
    /// Memory request per replica, bytes (default 256 MiB).
    #[serde(default = "default_pod_memory")]
    pub memory_request_bytes: u64,
    /// From scheduled to Ready.
    #[serde(default = "default_startup_delay", with = "crate::domain::duration")]
    pub startup_delay: Duration,
    /// Scheduling priority; higher preempts lower (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Requests per minute one replica serves at 100% of its CPU request (default 100).
    #[serde(default = "default_capacity_per_replica")]
    pub capacity_per_replica: f64,
    /// What drives its demand; none means no load.
    #[serde(default)]
    pub load: Option<LoadSpec>,
    /// Whether its Ready pods push `requests` and `cpu` events (default true).
    #[serde(default = "yes")]
    pub events: bool,
}

fn yes() -> bool {
    true
}

fn default_pod_memory() -> u64 {
    256 << 20
}

fn default_startup_delay() -> Duration {
    DEFAULT_STARTUP_DELAY
}

fn default_capacity_per_replica() -> f64 {
    100.0
}

/// Demand of a workload, in requests per minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LoadSpec {
    /// A trace CSV (`minute,requests`, see [`Trace`]); wraps around at its end.
    Trace {
        /// The CSV, relative to the config file's folder.
        path: PathBuf,
        /// The trace minute at virtual time zero.
        #[serde(default)]
        from_minute: u64,
        /// Multiplies every value.
        #[serde(default = "one")]
        scale: f64,
    },
    /// `base + amplitude × sin(2π t / period)`, peaking at a quarter period, never negative.
    Synthetic {
        /// Mean demand.
        base: f64,
        /// Swing around the mean.
        amplitude: f64,
        /// Period of the wave (default one day).
        #[serde(default = "one_day", with = "crate::domain::duration")]
        period: Duration,
    },
    /// A constant demand.
    Constant {
        /// Requests per minute.
        value: f64,
    },
}

fn one() -> f64 {
    1.0
}

fn one_day() -> Duration {
    Duration::from_secs(86400)
}

/// Why a simulated cluster could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A load trace could not be read.
    #[error("workload {workload}: cannot load its trace")]
    Trace {
        /// The workload.
        workload: String,
        /// The cause.
        #[source]
        source: TraceError,
    },
    /// Two things share a name.
    #[error("duplicate {what} {name:?}")]
    Duplicate {
        /// Node, VM, pool or workload.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A value is out of range.
    #[error("workload {workload}: {message}")]
    Invalid {
        /// The workload.
        workload: String,
        /// What is wrong.
        message: String,
    },
}

/// One step of a node VM's power lifecycle, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleEvent {
    /// Virtual time.
    pub at: TimestampMs,
    /// The VM.
    pub vm: String,
    /// `power-on`, `node-ready`, `uncordon`, `cordon`, `drain`, `power-off`.
    pub step: &'static str,
    /// Details (pods evicted, node name).
    pub detail: String,
}
