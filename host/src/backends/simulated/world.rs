//! The simulated cluster's state and how it moves: nodes, VMs booting and draining, pods
//! scheduled and preempted, load, pushed events, and the answers to queries.

use std::collections::{HashMap, VecDeque};

use super::spec::{LifecycleEvent, NodeSpec, SimWorkloadSpec, VmPoolSpec};
use super::{CPU_BURST, EVENT_RETENTION_MS, HISTORY_MINUTES};
use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, TimestampMs, WorkloadKind, WorkloadRef,
};
use crate::domain::promql::{Labels, Selector, SeriesSource, WORKLOAD_METRICS, workload_labels};
use crate::domain::trace::{MINUTE_MS, Trace};

pub(super) enum Load {
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

pub(super) struct Node {
    pub(super) spec: NodeSpec,
    /// The VM running this node, as (pool index, VM index).
    pub(super) vm: Option<(usize, usize)>,
    /// Ready since this time; `None` while the VM is off or booting.
    pub(super) ready_since: Option<TimestampMs>,
    /// Booting: Ready at this time.
    pub(super) boots_at: Option<TimestampMs>,
    pub(super) cordoned: bool,
}

pub(super) struct Pod {
    pub(super) name: String,
    pub(super) node: Option<usize>,
    /// Ready from this time on, once scheduled (scheduling time + startup delay).
    pub(super) ready_at: TimestampMs,
}

pub(super) struct Workload {
    pub(super) spec: SimWorkloadSpec,
    pub(super) load: Load,
    pub(super) replicas: u32,
    pub(super) pods: Vec<Pod>,
    pub(super) next_pod: u64,
    /// (minute start, replicas, ready) per minute, newest last.
    pub(super) history: VecDeque<(TimestampMs, u32, u32)>,
}

pub(super) struct Pool {
    pub(super) spec: VmPoolSpec,
    pub(super) power: Vec<PowerState>,
    /// Index of each VM's node in `Sim::nodes`.
    pub(super) nodes: Vec<usize>,
}

pub(super) struct Sim {
    pub(super) now: TimestampMs,
    pub(super) report_interval_ms: u64,
    pub(super) next_report: TimestampMs,
    pub(super) nodes: Vec<Node>,
    pub(super) pools: Vec<Pool>,
    pub(super) workloads: Vec<Workload>,
    /// (kind, namespace, name) → index in `workloads`.
    pub(super) index: HashMap<(WorkloadKind, String, String), usize>,
    /// name → indices of the workloads of that name (in any namespace), for queries.
    pub(super) by_name: HashMap<String, Vec<usize>>,
    /// Workloads whose pods may not match their replicas or may wait for a node: what
    /// [`Sim::reconcile`] looks at, so that its cost follows the changes, not the cluster.
    pub(super) unsettled: std::collections::BTreeSet<usize>,
    /// The lowest priority of any workload: a pod of it can preempt nothing.
    pub(super) lowest_priority: i32,
    /// (CPU millicores, memory bytes) requested by the pods scheduled on each node, kept as
    /// pods are placed and removed.
    pub(super) node_used: Vec<(u64, u64)>,
    /// service → (host, at, value), oldest first.
    pub(super) events: HashMap<String, VecDeque<(String, TimestampMs, f64)>>,
    pub(super) lifecycle: Vec<LifecycleEvent>,
}

impl Workload {
    pub(super) fn reference(&self) -> WorkloadRef {
        WorkloadRef {
            kind: self.spec.kind,
            namespace: self.spec.namespace.clone(),
            name: self.spec.name.clone(),
        }
    }

    pub(super) fn demand_at(&self, t: TimestampMs) -> f64 {
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

    pub(super) fn ready_count(&self, nodes: &[Node], now: TimestampMs) -> u32 {
        self.pods.iter().filter(|p| is_ready(p, nodes, now)).count() as u32
    }

    /// CPU in use by all pods, millicores; `None` with no Ready pod (nothing to measure).
    pub(super) fn cpu_usage(&self, nodes: &[Node], now: TimestampMs) -> Option<u64> {
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

pub(super) fn is_ready(pod: &Pod, nodes: &[Node], now: TimestampMs) -> bool {
    pod.node
        .is_some_and(|n| nodes[n].ready_since.is_some() && now >= pod.ready_at)
}

impl Sim {
    pub(super) fn find(&self, target: &WorkloadRef) -> Result<usize, BackendError> {
        self.index
            .get(&(target.kind, target.namespace.clone(), target.name.clone()))
            .copied()
            .ok_or_else(|| BackendError::NotFound(format!("{target}")))
    }

    pub(super) fn advance_to(&mut self, t: TimestampMs) {
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

    pub(super) fn finish_boots(&mut self) {
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

    pub(super) fn vm_id_of(&self, node: usize) -> String {
        match self.nodes[node].vm {
            Some((p, v)) => self.pools[p].spec.vms[v].id.clone(),
            None => String::new(),
        }
    }

    pub(super) fn log(&mut self, vm: &str, step: &'static str, detail: String) {
        self.lifecycle.push(LifecycleEvent {
            at: self.now,
            vm: vm.to_owned(),
            step,
            detail,
        });
    }

    /// Makes pod counts match replicas and schedules pending pods, preempting lower priorities:
    /// of the unsettled workloads only (a settled one has nothing to do).
    pub(super) fn reconcile(&mut self) {
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

    pub(super) fn schedulable(&self, n: usize) -> bool {
        self.nodes[n].ready_since.is_some() && !self.nodes[n].cordoned
    }

    pub(super) fn schedule_pending(&mut self) {
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
    pub(super) fn preempt_for(&mut self, wi: usize, used: &mut [(u64, u64)]) -> Option<usize> {
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

    pub(super) fn push_events(&mut self) {
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

    pub(super) fn record_history(&mut self) {
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

    pub(super) fn pod_info(w: &Workload, pod: &Pod) -> PodInfo {
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

    pub(super) fn nodes_info(&self) -> Vec<NodeInfo> {
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

    pub(super) fn pending_pods(&self) -> Vec<PodInfo> {
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

    pub(super) fn capacity(&self, exclude: &[WorkloadRef]) -> Capacity {
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
    pub(super) fn workload_metric(
        &self,
        w: &Workload,
        metric: &str,
        t: TimestampMs,
    ) -> Option<f64> {
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
}

/// The cluster-wide metrics, without labels.
const CLUSTER_METRICS: [&str; 3] = [
    "scalehost_cluster_allocatable_cpu_millis",
    "scalehost_cluster_requested_cpu_millis",
    "scalehost_pending_pods",
];

impl SeriesSource for Sim {
    fn select(
        &self,
        selector: &Selector<'_>,
        at: TimestampMs,
    ) -> Result<Vec<(Labels, f64)>, BackendError> {
        // Never the future: the model knows the past and now.
        if at > self.now {
            return Ok(Vec::new());
        }
        let name_of = |name: &str| vec![("__name__".to_owned(), name.to_owned())];
        let mut out = Vec::new();
        let named = selector.equal("__name__");
        let wanted = |name: &&&str| named.is_none_or(|n| n == **name);
        for name in CLUSTER_METRICS.iter().filter(wanted) {
            let labels = name_of(name);
            if selector.matches(&labels) {
                // Capacity is only known now: the model keeps no history of it.
                if at < self.now {
                    continue;
                }
                let capacity = self.capacity(&[]);
                let value = match *name {
                    "scalehost_cluster_allocatable_cpu_millis" => capacity.allocatable_cpu_millis,
                    "scalehost_cluster_requested_cpu_millis" => capacity.requested_cpu_millis,
                    _ => u64::from(capacity.pending_pods),
                };
                out.push((labels, value as f64));
            }
        }
        let metrics: Vec<&str> = WORKLOAD_METRICS.iter().filter(wanted).copied().collect();
        if metrics.is_empty() {
            return Ok(out);
        }
        // A workload matcher picks the candidates from the index; else every workload is one.
        let candidates: Box<dyn Iterator<Item = &Workload>> = match selector.equal("workload") {
            Some(name) => Box::new(
                self.by_name
                    .get(name)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|&i| &self.workloads[i]),
            ),
            None => Box::new(self.workloads.iter()),
        };
        for w in candidates {
            for metric in &metrics {
                let labels = workload_labels(metric, &w.spec.namespace, &w.spec.name);
                if selector.matches(&labels)
                    && let Some(value) = self.workload_metric(w, metric, at)
                {
                    out.push((labels, value));
                }
            }
        }
        Ok(out)
    }
}
