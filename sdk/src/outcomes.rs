//! What became of the binding's previous intents: applied, clamped by which rail, failed, in
//! progress. Read it at the start of a tick to act on facts rather than on what was asked.
//!
//! ```no_run
//! use scalehost_sdk::{WorkloadRef, outcomes};
//!
//! let target = WorkloadRef::deployment("web", "api");
//! // A cooldown that starts only when a change was really applied:
//! let changed_at = outcomes::previous()
//!     .filter(|p| p.scale_of(&target).is_some_and(|s| s.changed()))
//!     .map(|p| p.at);
//! ```

pub use scalehost_types::{
    Adjustment, PowerOutcome, PowerProgress, Rail, ScaleOutcome, TickOutcomes,
};

use crate::wit::outcomes as w;

/// The outcomes of the binding's last tick that applied; `None` before its first and after the
/// host restarted (then assume the last intents were applied).
pub fn previous() -> Option<TickOutcomes> {
    w::previous().map(|p| TickOutcomes {
        at: p.at,
        scales: p
            .scales
            .into_iter()
            .map(|s| ScaleOutcome {
                target: s.target.into(),
                current: s.current,
                requested: s.requested,
                applied: s.applied,
                adjustments: s
                    .adjustments
                    .into_iter()
                    .map(|a| Adjustment {
                        rail: match a.rail {
                            w::Rail::MinReplicas => Rail::MinReplicas,
                            w::Rail::MaxReplicas => Rail::MaxReplicas,
                            w::Rail::StabilizationDown => Rail::StabilizationDown,
                            w::Rail::MaxStepUp => Rail::MaxStepUp,
                            w::Rail::MaxStepDown => Rail::MaxStepDown,
                            w::Rail::CooldownUp => Rail::CooldownUp,
                            w::Rail::CooldownDown => Rail::CooldownDown,
                        },
                        from: a.from,
                        to: a.to,
                    })
                    .collect(),
                error: s.error,
            })
            .collect(),
        powers: p
            .powers
            .into_iter()
            .map(|o| PowerOutcome {
                pool: o.pool,
                vm_id: o.vm_id,
                state: o.state.into(),
                operation: o.operation,
                progress: match o.progress {
                    w::PowerProgress::InProgress(s) => PowerProgress::InProgress(s),
                    w::PowerProgress::Done => PowerProgress::Done,
                    w::PowerProgress::Failed(s) => PowerProgress::Failed(s),
                    w::PowerProgress::Cancelled => PowerProgress::Cancelled,
                    w::PowerProgress::NotStarted(s) => PowerProgress::NotStarted(s),
                },
            })
            .collect(),
    })
}
