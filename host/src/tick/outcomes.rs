//! What became of a binding's intents, as its policy reads it (WIT 0.2.0 `outcomes`).
//!
//! The engine keeps the actions of a binding's last applied tick ([`LastApplied`], shared by
//! its revisions, in memory: after a restart a policy sees none and assumes its last intents
//! were applied); [`BindingActuation`] answers the policy from them and from the power
//! operations in flight, only when it asks.

use std::sync::Arc;

use super::audit::Action;
use super::operations::Operations;
use crate::domain::cluster::{
    Adjustment, PowerOperation, PowerOutcome, PowerProgress, ScaleOutcome, TickOutcomes,
    TimestampMs,
};
use crate::runtime::ActuationView;

/// The actions of a binding's last tick that applied.
#[derive(Debug)]
pub(crate) struct LastApplied {
    pub(crate) at: TimestampMs,
    pub(crate) actions: Vec<Action>,
}

/// One tick's view of its binding's actuation.
pub(crate) struct BindingActuation {
    pub(crate) last: Option<Arc<LastApplied>>,
    pub(crate) operations: Arc<Operations>,
    pub(crate) backend: Option<String>,
}

impl ActuationView for BindingActuation {
    fn previous(&self) -> Option<TickOutcomes> {
        let last = self.last.as_ref()?;
        let mut outcomes = TickOutcomes {
            at: last.at,
            scales: Vec::new(),
            powers: Vec::new(),
        };
        for action in &last.actions {
            match action {
                Action::Scale {
                    target,
                    current,
                    requested,
                    applied,
                    adjustments,
                    error,
                } => outcomes.scales.push(ScaleOutcome {
                    target: target.clone(),
                    current: *current,
                    requested: *requested,
                    applied: *applied,
                    adjustments: adjustments
                        .iter()
                        .map(|a| Adjustment {
                            rail: a.rail,
                            from: a.from,
                            to: a.to,
                        })
                        .collect(),
                    error: error.clone(),
                }),
                Action::Power {
                    pool,
                    vm_id,
                    state,
                    operation,
                    error,
                } => outcomes.powers.push(PowerOutcome {
                    pool: pool.clone(),
                    vm_id: vm_id.clone(),
                    state: *state,
                    operation: *operation,
                    progress: match (operation, error) {
                        (Some(id), _) => self.operations.progress(*id).unwrap_or_else(|| {
                            PowerProgress::Failed(format!(
                                "operation {id} ended too long ago for its outcome to be kept"
                            ))
                        }),
                        (None, error) => PowerProgress::NotStarted(
                            error.clone().unwrap_or_else(|| "not started".into()),
                        ),
                    },
                }),
            }
        }
        Some(outcomes)
    }

    fn in_flight(&self, pool: &str, vm_id: &str) -> Option<PowerOperation> {
        self.operations
            .in_flight(self.backend.as_deref(), pool, vm_id)
    }
}
