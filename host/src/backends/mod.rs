//! Where metrics come from and where actuation goes: the [`Cluster`] trait and its backends.
//!
//! Start with [`Cluster`], the sum of the small capability traits ([`MetricSource`],
//! [`WorkloadReader`], [`VmInventory`], [`Actuator`]); the embedded default is
//! [`simulated::SimulatedCluster`]. Every call is async and never blocks a runtime thread: the
//! in-memory backends answer at once, the real ones await their HTTP clients.

pub(crate) mod events;
pub mod kubernetes;
pub mod prometheus;
pub mod real;
pub mod simulated;
pub mod vsphere;

use async_trait::async_trait;

use crate::domain::cluster::{
    BackendError, Capacity, NodeInfo, PodInfo, PowerState, Series, TimestampMs, Vm, WorkloadRef,
    WorkloadStatus,
};

/// Where metric values come from: Prometheus, the simulated cluster, pushed events.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Evaluates an instant query at `at`.
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError>;
    /// Evaluates a range query.
    async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError>;
    /// Events pushed for `service` in `(now - window_ms, now]`, one series per source host.
    async fn events(
        &self,
        service: &str,
        window_ms: u64,
        now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError>;
}

/// Reads of workloads, nodes and the cluster's schedulable capacity.
#[async_trait]
pub trait WorkloadReader: Send + Sync {
    /// One workload's replicas, readiness and CPU.
    async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError>;
    /// Schedulable capacity, less what `exclude` requests.
    async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError>;
    /// Every node with its non-terminal pods. A backend without nodes (a test double) answers
    /// `unavailable`.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        Err(BackendError::Unavailable(
            "this backend has no node view".into(),
        ))
    }
    /// The pods waiting for a node.
    async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        Err(BackendError::Unavailable(
            "this backend has no node view".into(),
        ))
    }
}

/// The VMs of node pools.
#[async_trait]
pub trait VmInventory: Send + Sync {
    /// The VMs of a pool.
    async fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError>;
}

/// Carries out actuation: scaling workloads, powering node VMs.
#[async_trait]
pub trait Actuator: Send + Sync {
    /// Sets a workload's replicas through its scale subresource.
    async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError>;
    /// Powers a pool VM on (then waits for its node and uncordons it) or off (cordon, drain,
    /// then power off).
    async fn set_power(
        &self,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), BackendError>;
    /// Settles what an interrupted `set_power(pool, vm_id, state)` left (it was cancelled
    /// mid-step): a VM that still runs gives its node back to the scheduler. The default has
    /// nothing to settle.
    async fn abandon_power(
        &self,
        _pool: &str,
        _vm_id: &str,
        _state: PowerState,
    ) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Everything a tenant's backend offers: every capability trait at once.
///
/// The tick engine checks tenant scope before calling any of these; a backend only answers.
/// Every call is async and may be dropped at any await (a tick's deadline passed): a backend
/// keeps no half-done state across awaits.
pub trait Cluster: MetricSource + WorkloadReader + VmInventory + Actuator + 'static {}

impl<T: MetricSource + WorkloadReader + VmInventory + Actuator + 'static> Cluster for T {}

/// The host's time source: the only time policies see.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> TimestampMs;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}
