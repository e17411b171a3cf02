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

use crate::wit::outcomes as w;
use crate::{PowerState, WorkloadRef};

/// A guard rail of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rail {
    /// The target's minimum replicas.
    MinReplicas,
    /// The target's maximum replicas.
    MaxReplicas,
    /// Scale-down stabilization.
    StabilizationDown,
    /// The most replicas added per tick.
    MaxStepUp,
    /// The most replicas removed per tick.
    MaxStepDown,
    /// No scale-up within the cooldown of the last change.
    CooldownUp,
    /// No scale-down within the cooldown of the last change.
    CooldownDown,
}

/// One rail changing the replicas a scale intent asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjustment {
    /// The rail.
    pub rail: Rail,
    /// Replicas before it.
    pub from: u32,
    /// Replicas after it.
    pub to: u32,
}

/// What became of one target's scale intents of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutcome {
    /// The target.
    pub target: WorkloadRef,
    /// Replicas before the host applied the tick.
    pub current: u32,
    /// Replicas asked for.
    pub requested: u32,
    /// Replicas the workload was scaled to (`current` when it failed or nothing changed).
    pub applied: u32,
    /// The rails that changed `requested`, in order.
    pub adjustments: Vec<Adjustment>,
    /// Why the backend refused or failed it; `None` when it was applied.
    pub error: Option<String>,
}

impl ScaleOutcome {
    /// The workload's replicas changed.
    pub fn changed(&self) -> bool {
        self.error.is_none() && self.applied != self.current
    }

    /// A rail changed what was asked for.
    pub fn clamped(&self) -> bool {
        !self.adjustments.is_empty()
    }
}

/// Where a power intent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerProgress {
    /// Running; what it does now.
    InProgress(String),
    /// The VM reached the state asked for.
    Done,
    /// It failed; why.
    Failed(String),
    /// It was cancelled.
    Cancelled,
    /// Nothing was started (another operation was in flight, the pool was lost); why.
    NotStarted(String),
}

/// What became of one power intent of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOutcome {
    /// The pool.
    pub pool: String,
    /// The VM.
    pub vm_id: String,
    /// The state asked for.
    pub state: PowerState,
    /// The host's operation carrying it out.
    pub operation: Option<u64>,
    /// Where it stands now.
    pub progress: PowerProgress,
}

/// The outcomes of one applied tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickOutcomes {
    /// The tick's instant (host milliseconds).
    pub at: u64,
    /// One per scaled target.
    pub scales: Vec<ScaleOutcome>,
    /// One per distinct power intent.
    pub powers: Vec<PowerOutcome>,
}

impl TickOutcomes {
    /// The outcome of the tick's scale of `target`, if it scaled it.
    pub fn scale_of(&self, target: &WorkloadRef) -> Option<&ScaleOutcome> {
        self.scales.iter().find(|s| s.target == *target)
    }
}

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
