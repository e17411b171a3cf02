//! Reads: metric queries, workload status, cluster capacity, pushed events and VM pools.

use std::time::Duration;

use crate::wit::metrics as w;
use crate::{Capacity, HostError, Series, Vm, WorkloadRef, WorkloadStatus};

/// Evaluates an instant query at host time now.
pub fn query(promql: &str) -> Result<Vec<Series>, HostError> {
    Ok(w::query(promql)?.into_iter().map(Series::from).collect())
}

/// Evaluates an instant query and sums the newest value of every series; `None` when the query
/// returned no series.
pub fn query_sum(promql: &str) -> Result<Option<f64>, HostError> {
    Ok(sum_last(&query(promql)?))
}

/// Evaluates a range query from `start` to `end` (host milliseconds) at `step` resolution.
pub fn query_range(
    promql: &str,
    start: u64,
    end: u64,
    step: Duration,
) -> Result<Vec<Series>, HostError> {
    let step_ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    Ok(w::query_range(promql, start, end, step_ms)?
        .into_iter()
        .map(Series::from)
        .collect())
}

/// Reports one workload's replicas, readiness and CPU.
pub fn workload(target: &WorkloadRef) -> Result<WorkloadStatus, HostError> {
    Ok(w::workload(&target.into())?.into())
}

/// Reports the cluster's schedulable capacity, leaving out what `exclude` requests.
pub fn capacity(exclude: &[WorkloadRef]) -> Result<Capacity, HostError> {
    let exclude: Vec<_> = exclude.iter().map(Into::into).collect();
    Ok(w::capacity(&exclude)?.into())
}

/// Returns the events pushed for `service` during the last `window`, one series per host.
pub fn events(service: &str, window: Duration) -> Result<Vec<Series>, HostError> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    Ok(w::events(service, window_ms)?
        .into_iter()
        .map(Series::from)
        .collect())
}

/// Lists the VMs of a pool granted to the binding.
pub fn vms(pool: &str) -> Result<Vec<Vm>, HostError> {
    Ok(w::vms(pool)?.into_iter().map(Vm::from).collect())
}

/// Sums the newest value of every series; `None` for no series.
pub fn sum_last(series: &[Series]) -> Option<f64> {
    let mut values = series.iter().filter_map(Series::last).peekable();
    values.peek()?;
    Some(values.sum())
}

/// Sums every sample of every series (a window sum).
pub fn window_sum(series: &[Series]) -> f64 {
    series.iter().map(Series::sum).sum()
}
