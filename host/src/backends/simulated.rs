//! The embedded simulated cluster: nodes, node VMs, workloads and trace-driven load in virtual time.
//!
//! Start with [`SimSpec`] (what the config file describes) and [`SimulatedCluster::advance_to`]
//! (how time moves). The model:
//! - **Nodes** have allocatable CPU and memory. Nodes of a VM pool exist only while their VM is
//!   on: a VM powered on boots for the pool's `boot_delay`, then its node is Ready and uncordoned;
//!   powering off cordons the node, drains it (its pods go back to Pending and are rescheduled),
//!   then powers it off. Every step is written to the [lifecycle log](SimulatedCluster::lifecycle).
//! - **Pods** are scheduled first-fit by priority; a pending pod may preempt lower-priority pods,
//!   as the Kubernetes scheduler does. A scheduled pod is Ready `startup_delay` later. Scaling
//!   down removes pending pods first, then unready, then the newest.
//! - **Load** of a workload is a trace (requests per minute, one row per minute) or a synthetic
//!   daily wave. CPU usage is `demand / capacity_per_replica × cpu_request`, bursting to at most
//!   twice the Ready pods' requests (a CPU limit of 2× request).
//! - **Pushed events**: every `report_interval` each Ready pod pushes
//!   `"{namespace}/{name}/requests"` (requests it received in that interval) and
//!   `"{namespace}/{name}/cpu"` (its CPU utilization, percent), host label = pod name.
//! - **Queries** (a PromQL subset: `name`, `name{label="value",…}`, optionally `sum(…)`):
//!   `scalehost_requests_per_minute`, `scalehost_cpu_utilization` (usage / requests of Ready
//!   pods), `scalehost_cpu_usage_millis`, `scalehost_replicas`, `scalehost_ready_replicas`
//!   (labels `namespace`, `workload`), and `scalehost_cluster_allocatable_cpu_millis`,
//!   `scalehost_cluster_requested_cpu_millis`, `scalehost_pending_pods`. Unknown names give no
//!   series, as Prometheus does. Range queries answer the workload metrics from per-minute
//!   history (two days are kept).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::promql::{Query, parse_query};
use async_trait::async_trait;

use super::{Actuator, Clock, MetricSource, VmInventory, WorkloadReader};
use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, Sample, Series, TimestampMs, Vm,
    WorkloadKind, WorkloadRef, WorkloadStatus,
};
use crate::domain::trace::{Trace, TraceError};

const MINUTE_MS: u64 = 60_000;
const EVENT_RETENTION_MS: u64 = 3_600_000;
const HISTORY_MINUTES: usize = 2 * 24 * 60;
/// Usage may burst to this multiple of the Ready pods' CPU requests (their CPU limit).
const CPU_BURST: f64 = 2.0;

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
    let now = super::SystemClock.now_ms();
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
    Duration::from_secs(60)
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

/// The simulated cluster; thread-safe, cheap to share in an `Arc`.
pub struct SimulatedCluster {
    inner: Mutex<Sim>,
}

enum Load {
    None,
    Trace {
        trace: Trace,
        from_minute: u64,
        scale: f64,
    },
    Synthetic {
        base: f64,
        amplitude: f64,
        period_ms: f64,
    },
    Constant(f64),
}

struct Node {
    spec: NodeSpec,
    /// The VM running this node, as (pool index, VM index).
    vm: Option<(usize, usize)>,
    /// Ready since this time; `None` while the VM is off or booting.
    ready_since: Option<TimestampMs>,
    /// Booting: Ready at this time.
    boots_at: Option<TimestampMs>,
    cordoned: bool,
}

struct Pod {
    name: String,
    node: Option<usize>,
    /// Ready from this time on, once scheduled (scheduling time + startup delay).
    ready_at: TimestampMs,
}

struct Workload {
    spec: SimWorkloadSpec,
    load: Load,
    replicas: u32,
    pods: Vec<Pod>,
    next_pod: u64,
    /// (minute start, replicas, ready) per minute, newest last.
    history: VecDeque<(TimestampMs, u32, u32)>,
}

struct Pool {
    spec: VmPoolSpec,
    power: Vec<PowerState>,
    /// Index of each VM's node in `Sim::nodes`.
    nodes: Vec<usize>,
}

struct Sim {
    now: TimestampMs,
    report_interval_ms: u64,
    next_report: TimestampMs,
    nodes: Vec<Node>,
    pools: Vec<Pool>,
    workloads: Vec<Workload>,
    /// (kind, namespace, name) → index in `workloads`.
    index: HashMap<(WorkloadKind, String, String), usize>,
    /// name → indices of the workloads of that name (in any namespace), for queries.
    by_name: HashMap<String, Vec<usize>>,
    /// Workloads whose pods may not match their replicas or may wait for a node: what
    /// [`Sim::reconcile`] looks at, so that its cost follows the changes, not the cluster.
    unsettled: std::collections::BTreeSet<usize>,
    /// The lowest priority of any workload: a pod of it can preempt nothing.
    lowest_priority: i32,
    /// (CPU millicores, memory bytes) requested by the pods scheduled on each node, kept as
    /// pods are placed and removed.
    node_used: Vec<(u64, u64)>,
    /// service → (host, at, value), oldest first.
    events: HashMap<String, VecDeque<(String, TimestampMs, f64)>>,
    lifecycle: Vec<LifecycleEvent>,
}

impl SimulatedCluster {
    /// Builds the cluster at `spec.start_ms`; trace paths are relative to `base_dir`.
    pub fn new(spec: SimSpec, base_dir: &Path) -> Result<Self, SimError> {
        let mut names = std::collections::HashSet::new();
        let mut nodes = Vec::new();
        for node in &spec.nodes {
            if !names.insert(node.name.clone()) {
                return Err(SimError::Duplicate {
                    what: "node",
                    name: node.name.clone(),
                });
            }
            nodes.push(Node {
                spec: node.clone(),
                vm: None,
                ready_since: Some(spec.start_ms),
                boots_at: None,
                cordoned: false,
            });
        }
        let mut pools = Vec::new();
        let mut vm_ids = std::collections::HashSet::new();
        for (p, pool) in spec.vm_pools.iter().enumerate() {
            let mut pool_nodes = Vec::new();
            for (v, vm) in pool.vms.iter().enumerate() {
                if !names.insert(vm.node.name.clone()) {
                    return Err(SimError::Duplicate {
                        what: "node",
                        name: vm.node.name.clone(),
                    });
                }
                if !vm_ids.insert(vm.id.clone()) {
                    return Err(SimError::Duplicate {
                        what: "vm",
                        name: vm.id.clone(),
                    });
                }
                pool_nodes.push(nodes.len());
                nodes.push(Node {
                    spec: vm.node.clone(),
                    vm: Some((p, v)),
                    ready_since: (vm.power == PowerState::On).then_some(spec.start_ms),
                    boots_at: None,
                    cordoned: false,
                });
            }
            pools.push(Pool {
                spec: pool.clone(),
                power: pool.vms.iter().map(|vm| vm.power).collect(),
                nodes: pool_nodes,
            });
        }
        let mut workloads = Vec::new();
        let mut workload_names = std::collections::HashSet::new();
        for w in &spec.workloads {
            let id = format!("{}/{}", w.namespace, w.name);
            if !workload_names.insert(id.clone()) {
                return Err(SimError::Duplicate {
                    what: "workload",
                    name: id,
                });
            }
            if w.capacity_per_replica.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(SimError::Invalid {
                    workload: id,
                    message: "capacity_per_replica must be > 0".into(),
                });
            }
            let load = match &w.load {
                None => Load::None,
                Some(LoadSpec::Constant { value }) => Load::Constant(*value),
                Some(LoadSpec::Synthetic {
                    base,
                    amplitude,
                    period,
                }) => Load::Synthetic {
                    base: *base,
                    amplitude: *amplitude,
                    period_ms: period.as_millis() as f64,
                },
                Some(LoadSpec::Trace {
                    path,
                    from_minute,
                    scale,
                }) => {
                    let path = base_dir.join(path);
                    let trace = Trace::from_csv_path(&path).map_err(|source| SimError::Trace {
                        workload: id.clone(),
                        source,
                    })?;
                    Load::Trace {
                        trace,
                        from_minute: *from_minute,
                        scale: *scale,
                    }
                }
            };
            workloads.push(Workload {
                spec: w.clone(),
                load,
                replicas: w.replicas,
                pods: Vec::new(),
                next_pod: 0,
                history: VecDeque::new(),
            });
        }
        let report_interval_ms = (spec.report_interval.as_millis() as u64).max(1);
        let mut index = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in workloads.iter().enumerate() {
            index.insert(
                (w.spec.kind, w.spec.namespace.clone(), w.spec.name.clone()),
                i,
            );
            by_name.entry(w.spec.name.clone()).or_default().push(i);
        }
        let node_count = nodes.len();
        let mut sim = Sim {
            now: spec.start_ms,
            report_interval_ms,
            next_report: spec.start_ms + report_interval_ms,
            nodes,
            pools,
            unsettled: (0..workloads.len()).collect(),
            node_used: vec![(0, 0); node_count],
            lowest_priority: workloads.iter().map(|w| w.spec.priority).min().unwrap_or(0),
            workloads,
            index,
            by_name,
            events: HashMap::new(),
            lifecycle: Vec::new(),
        };
        sim.reconcile();
        // Pods that exist at start are Ready at start, as in a cluster that has been running.
        for pod in sim.workloads.iter_mut().flat_map(|w| w.pods.iter_mut()) {
            pod.ready_at = spec.start_ms;
        }
        sim.record_history();
        Ok(SimulatedCluster {
            inner: Mutex::new(sim),
        })
    }

    fn sim(&self) -> MutexGuard<'_, Sim> {
        // A panic while holding the lock leaves the model consistent enough to read on.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves virtual time forward to `t` (never back), booting VMs, scheduling pods and pushing
    /// events on the way.
    pub fn advance_to(&self, t: TimestampMs) {
        self.sim().advance_to(t);
    }

    /// Virtual time now.
    pub fn now(&self) -> TimestampMs {
        self.sim().now
    }

    /// The power lifecycle steps so far, in order.
    pub fn lifecycle(&self) -> Vec<LifecycleEvent> {
        self.sim().lifecycle.clone()
    }

    /// A workload's demand now (requests per minute) and what one replica serves.
    pub fn load(&self, target: &WorkloadRef) -> Result<(f64, f64), BackendError> {
        let sim = self.sim();
        let w = &sim.workloads[sim.find(target)?];
        Ok((w.demand_at(sim.now), w.spec.capacity_per_replica))
    }

    /// Every workload.
    pub fn workloads(&self) -> Vec<WorkloadRef> {
        self.sim()
            .workloads
            .iter()
            .map(Workload::reference)
            .collect()
    }

    /// Whether `node` is cordoned (unschedulable) now.
    pub fn is_cordoned(&self, node: &str) -> Option<bool> {
        self.sim()
            .nodes
            .iter()
            .find(|n| n.spec.name == node)
            .map(|n| n.cordoned)
    }
}

impl Clock for SimulatedCluster {
    fn now_ms(&self) -> TimestampMs {
        self.now()
    }
}

impl Workload {
    fn reference(&self) -> WorkloadRef {
        WorkloadRef {
            kind: self.spec.kind,
            namespace: self.spec.namespace.clone(),
            name: self.spec.name.clone(),
        }
    }

    fn demand_at(&self, t: TimestampMs) -> f64 {
        match &self.load {
            Load::None => 0.0,
            Load::Constant(v) => *v,
            Load::Synthetic {
                base,
                amplitude,
                period_ms,
            } => {
                let phase = (t % (*period_ms as u64)) as f64 / period_ms;
                (base + amplitude * (2.0 * std::f64::consts::PI * phase).sin()).max(0.0)
            }
            Load::Trace {
                trace,
                from_minute,
                scale,
            } => {
                // Minute 0 of the trace plays at the simulation's start; `from_minute` offsets it.
                trace.at_minute(t / MINUTE_MS + from_minute) * scale
            }
        }
    }

    fn ready_count(&self, nodes: &[Node], now: TimestampMs) -> u32 {
        self.pods.iter().filter(|p| is_ready(p, nodes, now)).count() as u32
    }

    /// CPU in use by all pods, millicores; `None` with no Ready pod (nothing to measure).
    fn cpu_usage(&self, nodes: &[Node], now: TimestampMs) -> Option<u64> {
        let ready = self.ready_count(nodes, now);
        if ready == 0 {
            return None;
        }
        let wanted = self.demand_at(now) / self.spec.capacity_per_replica
            * self.spec.cpu_request_millis as f64;
        let limit = ready as f64 * self.spec.cpu_request_millis as f64 * CPU_BURST;
        Some(wanted.min(limit).round() as u64)
    }
}

fn is_ready(pod: &Pod, nodes: &[Node], now: TimestampMs) -> bool {
    pod.node
        .is_some_and(|n| nodes[n].ready_since.is_some() && now >= pod.ready_at)
}

impl Sim {
    fn find(&self, target: &WorkloadRef) -> Result<usize, BackendError> {
        self.index
            .get(&(target.kind, target.namespace.clone(), target.name.clone()))
            .copied()
            .ok_or_else(|| BackendError::NotFound(format!("{target}")))
    }

    fn advance_to(&mut self, t: TimestampMs) {
        while self.now < t {
            let next_boot = self
                .nodes
                .iter()
                .filter_map(|n| n.boots_at)
                .min()
                .unwrap_or(u64::MAX);
            let next_minute = (self.now / MINUTE_MS + 1) * MINUTE_MS;
            let step_to = t.min(self.next_report).min(next_boot).min(next_minute);
            self.now = step_to;
            self.finish_boots();
            self.reconcile();
            if self.now == self.next_report {
                self.push_events();
                self.next_report += self.report_interval_ms;
            }
            if self.now % MINUTE_MS == 0 {
                self.record_history();
            }
        }
    }

    fn finish_boots(&mut self) {
        let now = self.now;
        for n in 0..self.nodes.len() {
            if self.nodes[n].boots_at.is_some_and(|at| at <= now) {
                self.nodes[n].boots_at = None;
                self.nodes[n].ready_since = Some(now);
                let vm = self.vm_id_of(n);
                let name = self.nodes[n].spec.name.clone();
                self.log(&vm, "node-ready", name.clone());
                self.nodes[n].cordoned = false;
                self.log(&vm, "uncordon", name);
            }
        }
    }

    fn vm_id_of(&self, node: usize) -> String {
        match self.nodes[node].vm {
            Some((p, v)) => self.pools[p].spec.vms[v].id.clone(),
            None => String::new(),
        }
    }

    fn log(&mut self, vm: &str, step: &'static str, detail: String) {
        self.lifecycle.push(LifecycleEvent {
            at: self.now,
            vm: vm.to_owned(),
            step,
            detail,
        });
    }

    /// Makes pod counts match replicas and schedules pending pods, preempting lower priorities:
    /// of the unsettled workloads only (a settled one has nothing to do).
    fn reconcile(&mut self) {
        let unsettled: Vec<usize> = self.unsettled.iter().copied().collect();
        for &wi in &unsettled {
            let w = &mut self.workloads[wi];
            while (w.pods.len() as u32) < w.replicas {
                w.pods.push(Pod {
                    name: format!("{}-{}", w.spec.name, w.next_pod),
                    node: None,
                    ready_at: 0,
                });
                w.next_pod += 1;
            }
            while (w.pods.len() as u32) > w.replicas {
                // Pending first, then not Ready, then the newest.
                let victim = w
                    .pods
                    .iter()
                    .rposition(|p| p.node.is_none())
                    .or_else(|| {
                        w.pods
                            .iter()
                            .rposition(|p| !is_ready(p, &self.nodes, self.now))
                    })
                    .unwrap_or(w.pods.len() - 1);
                if let Some(n) = w.pods.remove(victim).node {
                    self.node_used[n].0 -= w.spec.cpu_request_millis;
                    self.node_used[n].1 -= w.spec.memory_request_bytes;
                }
            }
        }
        self.schedule_pending();
        let settled: Vec<usize> = self
            .unsettled
            .iter()
            .copied()
            .filter(|&wi| {
                let w = &self.workloads[wi];
                w.pods.len() as u32 == w.replicas && w.pods.iter().all(|p| p.node.is_some())
            })
            .collect();
        for wi in settled {
            self.unsettled.remove(&wi);
        }
    }

    fn schedulable(&self, n: usize) -> bool {
        self.nodes[n].ready_since.is_some() && !self.nodes[n].cordoned
    }

    fn schedule_pending(&mut self) {
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for &wi in &self.unsettled {
            let w = &self.workloads[wi];
            for (pi, pod) in w.pods.iter().enumerate() {
                if pod.node.is_none() {
                    pending.push((wi, pi));
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        pending.sort_by_key(|&(wi, _)| std::cmp::Reverse(self.workloads[wi].spec.priority));
        let mut used = self.node_used.clone();
        for (wi, pi) in pending {
            if self.workloads[wi]
                .pods
                .get(pi)
                .is_none_or(|p| p.node.is_some())
            {
                continue; // Rescheduled or removed by an earlier preemption in this pass.
            }
            let (cpu, mem) = (
                self.workloads[wi].spec.cpu_request_millis,
                self.workloads[wi].spec.memory_request_bytes,
            );
            let fits = |n: usize, used: &[(u64, u64)]| {
                used[n].0 + cpu <= self.nodes[n].spec.cpu_millis
                    && used[n].1 + mem <= self.nodes[n].spec.memory_bytes
            };
            let node = (0..self.nodes.len()).find(|&n| self.schedulable(n) && fits(n, &used));
            let node = match node {
                Some(n) => Some(n),
                None => self.preempt_for(wi, &mut used),
            };
            if let Some(n) = node {
                used[n].0 += cpu;
                used[n].1 += mem;
                let ready_at = self.now + self.workloads[wi].spec.startup_delay.as_millis() as u64;
                let pod = &mut self.workloads[wi].pods[pi];
                pod.node = Some(n);
                pod.ready_at = ready_at;
            }
        }
        self.node_used = used;
    }

    /// Evicts lower-priority pods from the first node where that makes room for a pod of
    /// workload `wi`; returns the node.
    fn preempt_for(&mut self, wi: usize, used: &mut [(u64, u64)]) -> Option<usize> {
        let priority = self.workloads[wi].spec.priority;
        // Nothing ranks below the lowest priority: no search (priorities never change).
        if priority <= self.lowest_priority {
            return None;
        }
        let (cpu, mem) = (
            self.workloads[wi].spec.cpu_request_millis,
            self.workloads[wi].spec.memory_request_bytes,
        );
        for n in (0..self.nodes.len()).filter(|&n| self.schedulable(n)) {
            let mut victims: Vec<(i32, usize, usize)> = Vec::new();
            for (vwi, w) in self
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| w.spec.priority < priority)
            {
                for (vpi, pod) in w.pods.iter().enumerate().rev() {
                    if pod.node == Some(n) {
                        victims.push((w.spec.priority, vwi, vpi));
                    }
                }
            }
            victims.sort_by_key(|v| v.0);
            let (mut free_cpu, mut free_mem) = (
                self.nodes[n].spec.cpu_millis.saturating_sub(used[n].0),
                self.nodes[n].spec.memory_bytes.saturating_sub(used[n].1),
            );
            let mut chosen = Vec::new();
            for &(_, vwi, vpi) in &victims {
                if free_cpu >= cpu && free_mem >= mem {
                    break;
                }
                free_cpu += self.workloads[vwi].spec.cpu_request_millis;
                free_mem += self.workloads[vwi].spec.memory_request_bytes;
                chosen.push((vwi, vpi));
            }
            if free_cpu >= cpu && free_mem >= mem {
                for (vwi, vpi) in chosen {
                    used[n].0 -= self.workloads[vwi].spec.cpu_request_millis;
                    used[n].1 -= self.workloads[vwi].spec.memory_request_bytes;
                    // A preempted pod is deleted; its controller recreates it as pending.
                    self.workloads[vwi].pods[vpi].node = None;
                    self.unsettled.insert(vwi);
                }
                return Some(n);
            }
        }
        None
    }

    fn push_events(&mut self) {
        let now = self.now;
        let interval_min = self.report_interval_ms as f64 / MINUTE_MS as f64;
        for w in self.workloads.iter().filter(|w| w.spec.events) {
            let ready: Vec<&Pod> = w
                .pods
                .iter()
                .filter(|p| is_ready(p, &self.nodes, now))
                .collect();
            if ready.is_empty() {
                continue;
            }
            let demand = w.demand_at(now);
            let per_pod_requests = demand * interval_min / ready.len() as f64;
            let usage = w.cpu_usage(&self.nodes, now).unwrap_or(0) as f64;
            let utilization =
                100.0 * usage / (ready.len() as f64 * w.spec.cpu_request_millis.max(1) as f64);
            let prefix = format!("{}/{}", w.spec.namespace, w.spec.name);
            for (metric, value) in [("requests", per_pod_requests), ("cpu", utilization)] {
                let queue = self.events.entry(format!("{prefix}/{metric}")).or_default();
                for pod in &ready {
                    queue.push_back((pod.name.clone(), now, value));
                }
                while queue
                    .front()
                    .is_some_and(|e| e.1 + EVENT_RETENTION_MS < now)
                {
                    queue.pop_front();
                }
            }
        }
    }

    fn record_history(&mut self) {
        let now = self.now;
        let minute = now / MINUTE_MS * MINUTE_MS;
        let nodes = &self.nodes;
        for w in &mut self.workloads {
            let ready = w.ready_count(nodes, now);
            if w.history.back().is_some_and(|h| h.0 == minute) {
                w.history.pop_back();
            }
            w.history.push_back((minute, w.replicas, ready));
            while w.history.len() > HISTORY_MINUTES {
                w.history.pop_front();
            }
        }
    }

    fn pod_info(w: &Workload, pod: &Pod) -> PodInfo {
        PodInfo {
            namespace: w.spec.namespace.clone(),
            name: pod.name.clone(),
            priority: w.spec.priority,
            cpu_request_millis: w.spec.cpu_request_millis,
            memory_request_bytes: w.spec.memory_request_bytes,
            // Every simulated pod belongs to a Deployment or StatefulSet and keeps no local
            // data: a drain may evict it.
            drain_blocker: None,
        }
    }

    fn nodes_info(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.spec.name.clone(),
                ready: n.ready_since.is_some(),
                schedulable: !n.cordoned,
                allocatable_cpu_millis: n.spec.cpu_millis,
                allocatable_memory_bytes: n.spec.memory_bytes,
                pods: Vec::new(),
            })
            .collect();
        for w in &self.workloads {
            for pod in &w.pods {
                if let Some(n) = pod.node {
                    nodes[n].pods.push(Self::pod_info(w, pod));
                }
            }
        }
        nodes
    }

    fn pending_pods(&self) -> Vec<PodInfo> {
        self.workloads
            .iter()
            .flat_map(|w| {
                w.pods
                    .iter()
                    .filter(|p| p.node.is_none())
                    .map(move |p| Self::pod_info(w, p))
            })
            .collect()
    }

    fn capacity(&self, exclude: &[WorkloadRef]) -> Capacity {
        let mut c = Capacity::default();
        for n in (0..self.nodes.len()).filter(|&n| self.schedulable(n)) {
            c.nodes += 1;
            c.allocatable_cpu_millis += self.nodes[n].spec.cpu_millis;
            c.allocatable_memory_bytes += self.nodes[n].spec.memory_bytes;
        }
        for w in &self.workloads {
            if exclude.contains(&w.reference()) {
                continue;
            }
            let pods = w.pods.len() as u64;
            c.requested_cpu_millis += pods * w.spec.cpu_request_millis;
            c.requested_memory_bytes += pods * w.spec.memory_request_bytes;
            c.pending_pods += w.pods.iter().filter(|p| p.node.is_none()).count() as u32;
        }
        c
    }

    /// The value of a workload metric at `t` (history for the past, live for now).
    fn workload_metric(&self, w: &Workload, metric: &str, t: TimestampMs) -> Option<f64> {
        let (replicas, ready) = if t >= self.now {
            (w.replicas, w.ready_count(&self.nodes, self.now))
        } else {
            let minute = t / MINUTE_MS * MINUTE_MS;
            let i = w.history.partition_point(|h| h.0 <= minute);
            let &(_, replicas, ready) = w.history.get(i.checked_sub(1)?)?;
            (replicas, ready)
        };
        let demand = w.demand_at(t);
        let usage = || {
            (ready > 0).then(|| {
                let wanted =
                    demand / w.spec.capacity_per_replica * w.spec.cpu_request_millis as f64;
                wanted.min(ready as f64 * w.spec.cpu_request_millis as f64 * CPU_BURST)
            })
        };
        match metric {
            "scalehost_requests_per_minute" => Some(demand),
            "scalehost_replicas" => Some(replicas as f64),
            "scalehost_ready_replicas" => Some(ready as f64),
            "scalehost_cpu_usage_millis" => usage(),
            "scalehost_cpu_utilization" => {
                usage().map(|u| u / (ready as f64 * w.spec.cpu_request_millis.max(1) as f64))
            }
            _ => None,
        }
    }

    fn evaluate(&self, query: &Query, t: TimestampMs) -> Vec<(Vec<(String, String)>, f64)> {
        let cluster_value = match query.metric.as_str() {
            "scalehost_cluster_allocatable_cpu_millis" => {
                Some(self.capacity(&[]).allocatable_cpu_millis as f64)
            }
            "scalehost_cluster_requested_cpu_millis" => {
                Some(self.capacity(&[]).requested_cpu_millis as f64)
            }
            "scalehost_pending_pods" => Some(self.capacity(&[]).pending_pods as f64),
            _ => None,
        };
        if let Some(v) = cluster_value {
            return if query.matchers.is_empty() {
                vec![(Vec::new(), v)]
            } else {
                Vec::new()
            };
        }
        let mut out = Vec::new();
        // A workload matcher picks the candidates from the index; else every workload is one.
        let named = query
            .matchers
            .iter()
            .find(|(k, _)| k == "workload")
            .map(|(_, name)| self.by_name.get(name).map_or(&[][..], Vec::as_slice));
        let candidates: Box<dyn Iterator<Item = &Workload>> = match named {
            Some(indices) => Box::new(indices.iter().map(|&i| &self.workloads[i])),
            None => Box::new(self.workloads.iter()),
        };
        for w in candidates {
            let labels = vec![
                ("namespace".to_owned(), w.spec.namespace.clone()),
                ("workload".to_owned(), w.spec.name.clone()),
            ];
            if query.matches(&labels) {
                if let Some(value) = self.workload_metric(w, &query.metric, t) {
                    out.push((labels, value));
                }
            }
        }
        if query.sum && !out.is_empty() {
            let total = out.iter().map(|(_, v)| v).sum();
            out = vec![(Vec::new(), total)];
        }
        out
    }
}

#[async_trait]
impl MetricSource for SimulatedCluster {
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        let query = parse_query(promql)?;
        let sim = self.sim();
        let at = at.min(sim.now);
        Ok(sim
            .evaluate(&query, at)
            .into_iter()
            .map(|(labels, value)| Series {
                labels,
                samples: vec![Sample { at, value }],
            })
            .collect())
    }

    async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        if step_ms == 0 || end < start {
            return Err(BackendError::Invalid(
                "range query needs step > 0 and end >= start".into(),
            ));
        }
        if (end - start) / step_ms > 11_000 {
            return Err(BackendError::Invalid(
                "range query exceeds 11000 points per series".into(),
            ));
        }
        let query = parse_query(promql)?;
        let sim = self.sim();
        let mut by_labels: BTreeMap<Vec<(String, String)>, Vec<Sample>> = BTreeMap::new();
        let mut t = start;
        while t <= end.min(sim.now) {
            for (labels, value) in sim.evaluate(&query, t) {
                by_labels
                    .entry(labels)
                    .or_default()
                    .push(Sample { at: t, value });
            }
            t += step_ms;
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect())
    }

    async fn events(
        &self,
        service: &str,
        window_ms: u64,
        now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError> {
        let sim = self.sim();
        let Some(queue) = sim.events.get(service) else {
            return Ok(Vec::new());
        };
        let from = now.saturating_sub(window_ms);
        let mut by_host: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
        for (host, at, value) in queue.iter().filter(|e| e.1 > from && e.1 <= now) {
            by_host.entry(host).or_default().push(Sample {
                at: *at,
                value: *value,
            });
        }
        Ok(by_host
            .into_iter()
            .map(|(host, samples)| Series {
                labels: vec![("host".into(), host.into())],
                samples,
            })
            .collect())
    }
}

#[async_trait]
impl WorkloadReader for SimulatedCluster {
    async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        let sim = self.sim();
        let w = &sim.workloads[sim.find(target)?];
        Ok(WorkloadStatus {
            replicas: w.replicas,
            ready: w.ready_count(&sim.nodes, sim.now),
            cpu_request_millis: w.spec.cpu_request_millis,
            cpu_usage_millis: w.cpu_usage(&sim.nodes, sim.now),
        })
    }

    async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        Ok(self.sim().capacity(exclude))
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        Ok(self.sim().nodes_info())
    }

    async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        Ok(self.sim().pending_pods())
    }
}

#[async_trait]
impl VmInventory for SimulatedCluster {
    async fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError> {
        let sim = self.sim();
        let p = sim
            .pools
            .iter()
            .find(|p| p.spec.name == pool)
            .ok_or_else(|| BackendError::NotFound(format!("vm pool {pool}")))?;
        Ok(p.spec
            .vms
            .iter()
            .zip(&p.power)
            .map(|(vm, power)| Vm {
                id: vm.id.clone(),
                name: vm.id.clone(),
                power: *power,
                node_name: Some(vm.node.name.clone()),
                maintenance: vm.maintenance,
            })
            .collect())
    }
}

#[async_trait]
impl Actuator for SimulatedCluster {
    async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError> {
        let mut sim = self.sim();
        let w = sim.find(target)?;
        sim.workloads[w].replicas = replicas;
        sim.unsettled.insert(w);
        sim.reconcile();
        Ok(())
    }

    async fn set_power(
        &self,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), BackendError> {
        let mut sim = self.sim();
        let p = sim
            .pools
            .iter()
            .position(|p| p.spec.name == pool)
            .ok_or_else(|| BackendError::NotFound(format!("vm pool {pool}")))?;
        let v = sim.pools[p]
            .spec
            .vms
            .iter()
            .position(|vm| vm.id == vm_id)
            .ok_or_else(|| BackendError::NotFound(format!("vm {vm_id} in pool {pool}")))?;
        if sim.pools[p].power[v] == state {
            return Ok(());
        }
        let n = sim.pools[p].nodes[v];
        let node_name = sim.nodes[n].spec.name.clone();
        match state {
            PowerState::Off => {
                sim.nodes[n].cordoned = true;
                sim.log(vm_id, "cordon", node_name.clone());
                let mut evicted = 0;
                let mut moved = Vec::new();
                sim.node_used[n] = (0, 0);
                for (wi, w) in sim.workloads.iter_mut().enumerate() {
                    for pod in w.pods.iter_mut().filter(|pod| pod.node == Some(n)) {
                        pod.node = None;
                        evicted += 1;
                        moved.push(wi);
                    }
                }
                sim.unsettled.extend(moved);
                sim.log(
                    vm_id,
                    "drain",
                    format!("{node_name}: evicted {evicted} pods"),
                );
                sim.pools[p].power[v] = PowerState::Off;
                sim.nodes[n].ready_since = None;
                sim.nodes[n].boots_at = None;
                sim.log(vm_id, "power-off", node_name);
            }
            PowerState::On => {
                sim.pools[p].power[v] = PowerState::On;
                let boot = sim.pools[p].spec.boot_delay.as_millis() as u64;
                // The node joins cordoned and is uncordoned once Ready.
                sim.nodes[n].cordoned = true;
                sim.nodes[n].boots_at = Some(sim.now + boot);
                sim.log(vm_id, "power-on", node_name);
            }
        }
        sim.reconcile();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SimSpec {
        SimSpec {
            start_ms: 0,
            report_interval: Duration::from_secs(10),
            nodes: vec![NodeSpec {
                name: "n0".into(),
                cpu_millis: 2000,
                memory_bytes: 8 << 30,
            }],
            vm_pools: vec![VmPoolSpec {
                name: "pool".into(),
                boot_delay: Duration::from_secs(30),
                vms: vec![SimVmSpec {
                    id: "vm-1".into(),
                    node: NodeSpec {
                        name: "n1".into(),
                        cpu_millis: 2000,
                        memory_bytes: 8 << 30,
                    },
                    power: PowerState::On,
                    maintenance: false,
                }],
            }],
            workloads: vec![
                SimWorkloadSpec {
                    kind: WorkloadKind::Deployment,
                    namespace: "web".into(),
                    name: "api".into(),
                    replicas: 2,
                    cpu_request_millis: 500,
                    memory_request_bytes: 1 << 20,
                    startup_delay: Duration::from_secs(60),
                    priority: 10,
                    capacity_per_replica: 100.0,
                    load: Some(LoadSpec::Constant { value: 150.0 }),
                    events: true,
                },
                SimWorkloadSpec {
                    kind: WorkloadKind::Deployment,
                    namespace: "batch".into(),
                    name: "miner".into(),
                    replicas: 0,
                    cpu_request_millis: 500,
                    memory_request_bytes: 1 << 20,
                    startup_delay: Duration::from_secs(10),
                    priority: -10,
                    capacity_per_replica: 100.0,
                    load: None,
                    events: true,
                },
            ],
        }
    }

    fn api() -> WorkloadRef {
        WorkloadRef::deployment("web", "api")
    }

    fn miner() -> WorkloadRef {
        WorkloadRef::deployment("batch", "miner")
    }

    #[tokio::test]
    async fn new_replicas_become_ready_after_the_startup_delay() {
        let sim = SimulatedCluster::new(spec(), Path::new(".")).expect("builds");
        assert_eq!(sim.workload(&api()).await.expect("status").ready, 2);
        sim.scale(&api(), 3).await.expect("scales");
        let status = sim.workload(&api()).await.expect("status");
        assert_eq!((status.replicas, status.ready), (3, 2));
        sim.advance_to(59_000);
        assert_eq!(sim.workload(&api()).await.expect("status").ready, 2);
        sim.advance_to(60_000);
        assert_eq!(sim.workload(&api()).await.expect("status").ready, 3);
        // 150 rpm at 100 per replica on 500m each = 750m.
        assert_eq!(
            sim.workload(&api()).await.expect("status").cpu_usage_millis,
            Some(750)
        );
    }

    #[tokio::test]
    async fn higher_priority_pods_preempt_the_filler() {
        let sim = SimulatedCluster::new(spec(), Path::new(".")).expect("builds");
        sim.scale(&miner(), 6).await.expect("scales"); // 4000m total, 1000m used by api: 6 fit.
        assert_eq!(sim.capacity(&[]).await.expect("capacity").pending_pods, 0);
        sim.scale(&api(), 4).await.expect("scales");
        let cap = sim.capacity(&[miner()]).await.expect("capacity");
        assert_eq!(
            cap.pending_pods, 0,
            "api pods were placed by preempting miner pods"
        );
        assert_eq!(cap.requested_cpu_millis, 2000);
        assert_eq!(
            sim.capacity(&[]).await.expect("capacity").pending_pods,
            2,
            "two miner pods wait"
        );
    }

    #[tokio::test]
    async fn power_off_cordons_and_drains_before_powering_off_and_power_on_uncordons_when_ready() {
        let sim = SimulatedCluster::new(spec(), Path::new(".")).expect("builds");
        sim.scale(&api(), 6).await.expect("scales");
        sim.set_power("pool", "vm-1", PowerState::Off)
            .await
            .expect("powers off");
        let steps: Vec<_> = sim.lifecycle().iter().map(|e| e.step).collect();
        assert_eq!(steps, ["cordon", "drain", "power-off"]);
        assert_eq!(sim.capacity(&[]).await.expect("capacity").nodes, 1);
        assert_eq!(sim.capacity(&[]).await.expect("capacity").pending_pods, 2);
        sim.set_power("pool", "vm-1", PowerState::On)
            .await
            .expect("powers on");
        assert_eq!(sim.is_cordoned("n1"), Some(true));
        sim.advance_to(30_000);
        let steps: Vec<_> = sim.lifecycle().iter().map(|e| e.step).collect();
        assert_eq!(
            steps,
            [
                "cordon",
                "drain",
                "power-off",
                "power-on",
                "node-ready",
                "uncordon"
            ]
        );
        assert_eq!(sim.capacity(&[]).await.expect("capacity").pending_pods, 0);
        assert_eq!(sim.vms("pool").await.expect("vms")[0].power, PowerState::On);
    }

    #[tokio::test]
    async fn ready_pods_push_events_per_host() {
        let sim = SimulatedCluster::new(spec(), Path::new(".")).expect("builds");
        sim.advance_to(60_000);
        let series = sim
            .events("web/api/requests", 60_000, 60_000)
            .await
            .expect("events");
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].samples.len(), 6);
        // 150 rpm over 10 s split over 2 pods = 12.5 each.
        assert!((series[0].samples[0].value - 12.5).abs() < 1e-9);
        assert!(
            sim.events("web/api/requests", 60_000, 60_000)
                .await
                .expect("ok")[1]
                .labels[0]
                .1
                .starts_with("api-")
        );
    }

    #[tokio::test]
    async fn answers_the_documented_queries_and_refuses_bad_syntax() {
        let sim = SimulatedCluster::new(spec(), Path::new(".")).expect("builds");
        let rpm = sim
            .query(
                "scalehost_requests_per_minute{namespace=\"web\",workload=\"api\"}",
                0,
            )
            .await
            .expect("ok");
        assert_eq!(rpm.len(), 1);
        assert_eq!(rpm[0].samples[0].value, 150.0);
        let total = sim.query("sum(scalehost_replicas)", 0).await.expect("ok");
        assert_eq!(total[0].samples[0].value, 2.0);
        assert!(sim.query("no_such_metric", 0).await.expect("ok").is_empty());
        assert!(matches!(
            sim.query("rate(x[5m]", 0).await,
            Err(BackendError::Invalid(_))
        ));
        sim.advance_to(5 * MINUTE_MS);
        let range = sim
            .query_range(
                "scalehost_ready_replicas{workload=\"api\"}",
                0,
                5 * MINUTE_MS,
                MINUTE_MS,
            )
            .await
            .expect("ok");
        assert_eq!(range[0].samples.len(), 6);
    }
}
