//! The shadow revision: the same instant, dry, its state under its own namespace.

use std::sync::Arc;

use super::apply::{Refused, commit_gated};
use super::{Revision, TickEngine};
use crate::domain::cluster::TimestampMs;
use crate::store::shadow_namespace;
use crate::tick::audit::{Outcome, ShadowRecord};
use crate::tick::binding::{Binding, Shadow};
use crate::tick::outcomes::LastApplied;

impl TickEngine {
    /// Runs the shadow revision on the same instant, dry: its state is committed under its own
    /// namespace, its intents only recorded.
    pub(super) async fn tick_shadow(
        &self,
        binding: &Binding,
        shadow: &Shadow,
        now: TimestampMs,
        state_epoch: u64,
        previous: Option<Arc<LastApplied>>,
    ) -> ShadowRecord {
        let invocation = self
            .invoke(
                binding,
                Revision {
                    policy: &shadow.policy,
                    config_json: &shadow.config_json,
                    limits: shadow.spec.limits,
                    scope: &shadow.scope,
                    state: shadow_namespace(&binding.tenant, &binding.name),
                    previous,
                },
                now,
            )
            .await;
        let result = match invocation.result {
            Ok(()) => commit_gated(binding, state_epoch, invocation.state)
                .await
                .map_err(Refused::into_error),
            Err(error) => Err(error),
        };
        ShadowRecord {
            plugin: shadow.policy.digest().to_owned(),
            revision: shadow.revision,
            outcome: match result {
                Ok(_) => Outcome::Ok,
                Err(error) => Outcome::Failed { error },
            },
            intents: invocation.intents,
        }
    }
}
