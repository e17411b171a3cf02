//! Host side of `outcomes` (0.2.0): what became of the binding's last applied intents.

use tracing::instrument;

use super::super::Sandbox;
use super::super::bindings::v0_2::outcomes::{
    Adjustment, Host, PowerOutcome, PowerProgress, Rail, ScaleOutcome, TickOutcomes,
};
use crate::domain::cluster;

impl Host for Sandbox {
    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn previous(&mut self) -> wasmtime::Result<Option<TickOutcomes>> {
        self.charge(0)?;
        // During validate-config there is no binding yet, so nothing happened to it.
        let Some(access) = self.access.clone() else {
            return Ok(None);
        };
        let Some(previous) = access.actuation.previous() else {
            return Ok(None);
        };
        self.charge_bytes(outcome_bytes(&previous))?;
        Ok(Some(TickOutcomes {
            at: previous.at,
            scales: previous.scales.into_iter().map(scale_outcome).collect(),
            powers: previous.powers.into_iter().map(power_outcome).collect(),
        }))
    }
}

fn scale_outcome(s: cluster::ScaleOutcome) -> ScaleOutcome {
    ScaleOutcome {
        target: s.target.into(),
        current: s.current,
        requested: s.requested,
        applied: s.applied,
        adjustments: s
            .adjustments
            .into_iter()
            .map(|a| Adjustment {
                rail: rail_of(a.rail),
                from: a.from,
                to: a.to,
            })
            .collect(),
        error: s.error,
    }
}

fn power_outcome(p: cluster::PowerOutcome) -> PowerOutcome {
    PowerOutcome {
        pool: p.pool,
        vm_id: p.vm_id,
        state: p.state.into(),
        operation: p.operation,
        progress: match p.progress {
            cluster::PowerProgress::InProgress(step) => PowerProgress::InProgress(step),
            cluster::PowerProgress::Done => PowerProgress::Done,
            cluster::PowerProgress::Failed(why) => PowerProgress::Failed(why),
            cluster::PowerProgress::Cancelled => PowerProgress::Cancelled,
            cluster::PowerProgress::NotStarted(why) => PowerProgress::NotStarted(why),
        },
    }
}

fn rail_of(rail: cluster::Rail) -> Rail {
    match rail {
        cluster::Rail::MinReplicas => Rail::MinReplicas,
        cluster::Rail::MaxReplicas => Rail::MaxReplicas,
        cluster::Rail::StabilizationDown => Rail::StabilizationDown,
        cluster::Rail::MaxStepUp => Rail::MaxStepUp,
        cluster::Rail::MaxStepDown => Rail::MaxStepDown,
        cluster::Rail::CooldownUp => Rail::CooldownUp,
        cluster::Rail::CooldownDown => Rail::CooldownDown,
    }
}

fn outcome_bytes(o: &cluster::TickOutcomes) -> usize {
    let scales: usize = o
        .scales
        .iter()
        .map(|s| {
            s.target.namespace.len()
                + s.target.name.len()
                + 16
                + s.adjustments.len() * 12
                + s.error.as_ref().map_or(0, String::len)
        })
        .sum();
    let powers: usize = o
        .powers
        .iter()
        .map(|p| {
            p.pool.len()
                + p.vm_id.len()
                + 16
                + match &p.progress {
                    cluster::PowerProgress::InProgress(s)
                    | cluster::PowerProgress::Failed(s)
                    | cluster::PowerProgress::NotStarted(s) => s.len(),
                    _ => 0,
                }
        })
        .sum();
    8 + scales + powers
}
