//! The plain types and rules everything else builds on: no I/O, no async, no wasm.
//!
//! - [`cluster`]: workloads, nodes, pods, VMs, capacity, series, backend errors and tick outcomes
//!   as the host sees them (the types shared with the SDK come from `scalehost-types`);
//! - [`scope`]: a tenant's grants and what one binding may read and act on;
//! - [`promql`]: tenants' queries parsed, scoped and costed, and the subset the embedded
//!   backends evaluate;
//! - [`quota`]: what one tenant may consume;
//! - [`trace`]: per-minute request traces for the simulated cluster and backtests;
//! - [`principal`]: who calls the API and owns what it uploads;
//! - [`duration`]: `"15s"`-style durations in configs.

pub mod cluster;
pub mod duration;
pub mod principal;
pub mod promql;
pub(crate) mod query;
pub mod quota;
pub mod scope;
pub mod trace;

/// An error and its causes on one line: `outer: cause: root cause`.
pub fn display_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
