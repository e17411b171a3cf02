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
//! - **Queries** (the PromQL subset of [`crate::domain::promql::evaluate`]: selectors,
//!   aggregations with `by`/`without`, arithmetic): `scalehost_requests_per_minute`, `scalehost_cpu_utilization` (usage / requests of Ready
//!   pods), `scalehost_cpu_usage_millis`, `scalehost_replicas`, `scalehost_ready_replicas`
//!   (labels `namespace`, `workload`), and `scalehost_cluster_allocatable_cpu_millis`,
//!   `scalehost_cluster_requested_cpu_millis`, `scalehost_pending_pods` (no labels, only now).
//!   Selected series carry `__name__`. Unknown names give no series, as Prometheus does. Range
//!   queries answer the workload metrics from per-minute history (two days are kept).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Actuator, Clock, MetricSource, VmInventory, WorkloadReader};
use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, Sample, Series, TimestampMs, Vm,
    WorkloadRef, WorkloadStatus,
};
use crate::domain::promql;
use crate::domain::trace::{Trace, TraceError};

mod spec;
mod world;

pub use spec::{
    LifecycleEvent, LoadSpec, NodeSpec, SimError, SimSpec, SimVmSpec, SimWorkloadSpec, VmPoolSpec,
};
use world::{Load, Node, Pool, Sim, Workload};

/// Reads a trace CSV file (the format is [`Trace::from_csv_str`]'s).
pub fn read_trace(path: &Path) -> Result<Trace, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
        path: path.to_owned(),
        source,
    })?;
    Trace::from_csv_str(&text, path)
}

/// Pushed events are kept this long (here and in the backtest model).
pub(crate) const EVENT_RETENTION_MS: u64 = 3_600_000;
const HISTORY_MINUTES: usize = 2 * 24 * 60;
/// The most points a range query may ask per series, as Prometheus allows.
const MAX_RANGE_POINTS: u64 = 11_000;
/// Usage may burst to this multiple of the Ready pods' CPU requests (their CPU limit; here and
/// in the backtest model).
pub(crate) const CPU_BURST: f64 = 2.0;

/// The simulated cluster; thread-safe, cheap to share in an `Arc`.
pub struct SimulatedCluster {
    inner: Mutex<Sim>,
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
                    let trace = read_trace(&path).map_err(|source| SimError::Trace {
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

#[async_trait]
impl MetricSource for SimulatedCluster {
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        let sim = self.sim();
        let at = at.min(sim.now);
        promql::evaluate(promql, at, &*sim)
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
        if (end - start) / step_ms > MAX_RANGE_POINTS {
            return Err(BackendError::Invalid(format!(
                "range query exceeds {MAX_RANGE_POINTS} points per series"
            )));
        }
        let sim = self.sim();
        if start > sim.now {
            return Ok(Vec::new());
        }
        promql::evaluate_range(promql, start, end.min(sim.now), step_ms, &*sim)
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
    use crate::domain::cluster::WorkloadKind;
    use crate::domain::trace::MINUTE_MS;
    use std::time::Duration;

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
