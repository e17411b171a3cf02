//! Intents: scale a workload, power a VM. The host applies them after a successful tick.

use crate::wit::actuation as w;
use crate::{HostError, PowerState, ScaleChange, WorkloadRef};

/// Records an intent to scale one of the binding's targets; returns the replicas asked for
/// (before the host's guard rails, which the audit log reports).
pub fn scale(target: &WorkloadRef, change: ScaleChange, reason: &str) -> Result<u32, HostError> {
    Ok(w::scale(&target.into(), change.into(), reason)?)
}

/// Records an intent to power a VM of one of the binding's pools on or off.
pub fn set_power(
    pool: &str,
    vm_id: &str,
    state: PowerState,
    reason: &str,
) -> Result<(), HostError> {
    Ok(w::set_power(pool, vm_id, state.into(), reason)?)
}
