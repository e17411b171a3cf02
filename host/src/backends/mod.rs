//! Where metrics come from and where actuation goes: the [`Cluster`] trait and its backends.
//!
//! Start with [`Cluster`]; the embedded default is [`simulated::SimulatedCluster`]. Backends are
//! called from the tick's blocking thread, never from an async task, so they may block.

pub mod events;
pub mod kubernetes;
pub mod prometheus;
pub(crate) mod promql;
pub mod real;
pub mod simulated;
pub mod vsphere;

use crate::model::{
    BackendError, Capacity, PowerState, Series, TimestampMs, Vm, WorkloadRef, WorkloadStatus,
};

/// Reads and actuation against one cluster (and its node VMs and metric sources).
///
/// The tick engine checks tenant scope before calling any of these; a backend only answers.
pub trait Cluster: Send + Sync + 'static {
    /// Evaluates an instant query at `at`.
    fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError>;
    /// Evaluates a range query.
    fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError>;
    /// One workload's replicas, readiness and CPU.
    fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError>;
    /// Schedulable capacity, less what `exclude` requests.
    fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError>;
    /// Events pushed for `service` in `(now - window_ms, now]`, one series per source host.
    fn events(
        &self,
        service: &str,
        window_ms: u64,
        now: TimestampMs,
    ) -> Result<Vec<Series>, BackendError>;
    /// The VMs of a pool.
    fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError>;
    /// Sets a workload's replicas through its scale subresource.
    fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError>;
    /// Powers a pool VM on (then waits for its node and uncordons it) or off (cordon, drain, then
    /// power off).
    fn set_power(&self, pool: &str, vm_id: &str, state: PowerState) -> Result<(), BackendError>;
}

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
