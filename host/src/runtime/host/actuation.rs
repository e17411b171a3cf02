//! Host side of `actuation`: records scope-checked intents; nothing is applied during the tick.

use tracing::instrument;

use super::super::Sandbox;
use super::super::bindings::actuation::Host;
use super::super::bindings::types::{HostError, PowerState, ScaleChange, WorkloadRef};
use super::types::ref_bytes;
use crate::domain::cluster;
use crate::runtime::Intent;
use crate::runtime::sandbox::clip;

/// How much of an intent's reason is kept in its audit record (all of it is charged).
const MAX_REASON_BYTES: usize = 1024;

fn not_during_validation() -> HostError {
    HostError::Forbidden("actuation is not available during validate-config".into())
}

impl Host for Sandbox {
    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn scale(
        &mut self,
        target: WorkloadRef,
        change: ScaleChange,
        reason: String,
    ) -> wasmtime::Result<Result<u32, HostError>> {
        self.charge(ref_bytes(&target) + reason.len() + 8)?;
        let Some(access) = self.access.clone() else {
            return Ok(Err(not_during_validation()));
        };
        let target = cluster::WorkloadRef::from(target);
        if let Err(e) = access.scope.check_scale(&target) {
            return Ok(Err(e.into()));
        }
        let change = cluster::ScaleChange::from(change);
        // Compose with this tick's earlier intents for the same target; else start from the
        // cluster's current replicas (needed only for a relative change).
        let earlier = self.requested_of(&target);
        let base = match (earlier, change) {
            (Some(requested), _) => requested,
            (None, cluster::ScaleChange::To(_)) => 0,
            (None, cluster::ScaleChange::By(_)) => match access.cluster.workload(&target).await {
                Ok(status) => status.replicas,
                Err(e) => return Ok(Err(e.into())),
            },
        };
        let requested = change.apply_to(base);
        self.record_intent(Intent::Scale {
            target,
            change,
            requested,
            reason: clip(reason, MAX_REASON_BYTES),
        });
        Ok(Ok(requested))
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn set_power(
        &mut self,
        pool: String,
        vm_id: String,
        state: PowerState,
        reason: String,
    ) -> wasmtime::Result<Result<(), HostError>> {
        self.charge(pool.len() + vm_id.len() + reason.len() + 1)?;
        let Some(access) = self.access.clone() else {
            return Ok(Err(not_during_validation()));
        };
        self.name_power_target(&pool, &vm_id)?;
        if let Err(e) = access.scope.check_power(&pool) {
            return Ok(Err(e.into()));
        }
        match access.cluster.vms(&pool).await {
            // The host does not power off the node it runs on, whatever a policy asks.
            Ok(vms)
                if state == PowerState::Off
                    && access.host_node.as_deref().is_some_and(|host| {
                        vms.iter()
                            .any(|vm| vm.id == vm_id && vm.node_name.as_deref() == Some(host))
                    }) =>
            {
                return Ok(Err(HostError::Forbidden(format!(
                    "vm {vm_id} runs the node this host runs on"
                ))));
            }
            Ok(vms) if vms.iter().any(|vm| vm.id == vm_id) => {}
            Ok(_) => {
                return Ok(Err(HostError::NotFound(format!(
                    "vm {vm_id} in pool {pool}"
                ))));
            }
            Err(e) => return Ok(Err(e.into())),
        }
        self.record_intent(Intent::Power {
            pool,
            vm_id,
            state: state.into(),
            reason: clip(reason, MAX_REASON_BYTES),
        });
        Ok(Ok(()))
    }
}
