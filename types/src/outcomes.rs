//! What became of a binding's intents: the rails that changed them, the scale applied, where a
//! power operation stands. The host fills these in; a policy reads them through the SDK's
//! `outcomes::previous()`.

use serde::{Deserialize, Serialize};

use crate::{PowerState, TimestampMs, WorkloadRef};

/// A guard rail of the host; in JSON and in audit records its kebab-case name
/// (`"min-replicas"`, `"max-step-up"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

impl Rail {
    /// Its kebab-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::MinReplicas => "min-replicas",
            Rail::MaxReplicas => "max-replicas",
            Rail::StabilizationDown => "stabilization-down",
            Rail::MaxStepUp => "max-step-up",
            Rail::MaxStepDown => "max-step-down",
            Rail::CooldownUp => "cooldown-up",
            Rail::CooldownDown => "cooldown-down",
        }
    }
}

impl std::fmt::Display for Rail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// The tick's instant.
    pub at: TimestampMs,
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

/// A power operation in flight on a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOperation {
    /// The host's operation id.
    pub id: u64,
    /// The state it brings the VM to.
    pub state: PowerState,
    /// What it does now.
    pub step: String,
}
