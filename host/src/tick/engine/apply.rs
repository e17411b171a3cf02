//! Applying a tick's intents after the rails: scale through the backend, power through the
//! operations queue; a fallback's actions the same way.

use std::time::Duration;

use super::TickEngine;
use crate::domain::cluster::BackendError;
use crate::domain::cluster::{PowerState, TimestampMs, WorkloadRef};
use crate::domain::scope::Scope;
use crate::runtime::{Intent, InvocationError, StagedState};
use crate::tick::audit::Action;
use crate::tick::binding::Binding;
use crate::tick::io::{blocking_io, retry};
use crate::tick::operations::Started;

impl TickEngine {
    pub(super) async fn apply_intents(
        &self,
        binding: &Binding,
        intents: &[Intent],
        now: TimestampMs,
    ) -> Vec<Action> {
        let cluster = self.cluster_for(&binding.scope.tenant);
        // Per target, the last intent holds the composed request.
        let mut requests: Vec<(&WorkloadRef, u32)> = Vec::new();
        for intent in intents {
            if let Intent::Scale {
                target, requested, ..
            } = intent
            {
                match requests.iter_mut().find(|(t, _)| *t == target) {
                    Some(entry) => entry.1 = *requested,
                    None => requests.push((target, *requested)),
                }
            }
        }
        // The binding may be removed, or a newer revision may drop a target or pool, while
        // this tick acts: each action checks that the binding still owns what it touches.
        let mut actions = Vec::with_capacity(requests.len());
        for (target, requested) in requests {
            actions.push(
                if self.still_owns(binding, |s| s.targets.contains(target)) {
                    self.scale(binding, target, requested, now, true).await
                } else {
                    refused_scale(target, requested, crate::tick::audit::NO_LONGER_A_TARGET)
                },
            );
        }
        // Identical power intents of one tick are one operation.
        let mut seen: Vec<(&str, &str, PowerState)> = Vec::new();
        for intent in intents {
            if let Intent::Power {
                pool, vm_id, state, ..
            } = intent
            {
                if seen.contains(&(pool.as_str(), vm_id.as_str(), *state)) {
                    continue;
                }
                seen.push((pool, vm_id, *state));
                let (operation, error) = if self.still_owns(binding, |s| s.pools.contains(pool)) {
                    match blocking_io(|| {
                        self.operations.start(
                            cluster.clone(),
                            &binding.tenant,
                            &binding.name,
                            binding.scope.tenant.backend.as_deref(),
                            pool,
                            vm_id,
                            *state,
                        )
                    }) {
                        Started::New(id) => {
                            // A removal or a swap that dropped the pool between the check and
                            // the start cancelled what the binding had then, not this one.
                            if !self.still_owns(binding, |s| s.pools.contains(pool)) {
                                self.operations.cancel(&binding.tenant, &binding.name, id);
                            }
                            (Some(id), None)
                        }
                        Started::Joined(id) => (Some(id), None),
                        Started::Waiting { id, state } => (
                            None,
                            Some(format!(
                                "{}operation {id} on {vm_id} (power {}) is in flight",
                                crate::tick::audit::WAITING,
                                power_word(state)
                            )),
                        ),
                        Started::Refused(why) => (None, Some(why)),
                    }
                } else {
                    (None, Some(crate::tick::audit::NO_LONGER_A_POOL.to_owned()))
                };
                actions.push(Action::Power {
                    pool: pool.clone(),
                    vm_id: vm_id.clone(),
                    state: *state,
                    operation,
                    error,
                });
            }
        }
        actions
    }

    pub(super) async fn apply_fallback(
        &self,
        binding: &Binding,
        replicas: u32,
        now: TimestampMs,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for target in &binding.spec.targets {
            let workload = target.workload();
            actions.push(
                if self.still_owns(binding, |s| s.targets.contains(&workload)) {
                    self.scale(binding, &workload, replicas, now, false).await
                } else {
                    refused_scale(&workload, replicas, crate::tick::audit::NO_LONGER_A_TARGET)
                },
            );
        }
        actions
    }

    /// Whether `binding`'s tick may still act on what `owns` picks out of the current
    /// revision's scope: the binding is not removed (nor removed and created again).
    pub(super) fn still_owns(&self, binding: &Binding, owns: impl Fn(&Scope) -> bool) -> bool {
        if binding
            .gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retired
        {
            return false;
        }
        self.binding(&binding.tenant, &binding.name)
            .is_some_and(|current| current.generation == binding.generation && owns(&current.scope))
    }

    /// Scales one target; `with_rails` applies every rail, otherwise only min/max.
    pub(super) async fn scale(
        &self,
        binding: &Binding,
        target: &WorkloadRef,
        requested: u32,
        now: TimestampMs,
        with_rails: bool,
    ) -> Action {
        let Some(spec) = binding
            .spec
            .targets
            .iter()
            .find(|t| t.workload() == *target)
        else {
            // Scope checks at intent time make this unreachable; refuse rather than act.
            return refused_scale(target, requested, "not a target of this binding");
        };
        let rails = if with_rails {
            spec.rails()
        } else {
            crate::tick::guard::Rails::bounds(spec.min_replicas, spec.max_replicas)
        };
        let cluster = self.cluster_for(&binding.scope.tenant);
        let current = match within_step(retry(|| cluster.workload(target))).await {
            Ok(status) => status.replicas,
            Err(e) => return refused_scale(target, requested, &e.to_string()),
        };
        let verdict = {
            let mut histories = binding.rails.lock().unwrap_or_else(|p| p.into_inner());
            let history = histories.entry(target.clone()).or_default();
            rails.judge(history, current, requested, now)
        };
        let bounded = requested.clamp(spec.min_replicas, spec.max_replicas);
        // The read above awaited the backend: a DELETE or a swap that dropped the target meanwhile
        // must not see the write go out after it answered (two writers).
        if verdict.replicas != current
            && !self.still_owns(binding, |scope| scope.targets.contains(target))
        {
            return refused_scale(target, requested, crate::tick::audit::NO_LONGER_A_TARGET);
        }
        let error = if verdict.replicas != current {
            within_step(retry(|| cluster.scale(target, verdict.replicas)))
                .await
                .err()
                .map(|e| e.to_string())
        } else {
            None
        };
        binding
            .rails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.clone())
            .or_default()
            .record(
                now,
                bounded,
                error.is_none() && verdict.replicas != current,
                spec.stabilization_down,
            );
        Action::Scale {
            target: target.clone(),
            current,
            requested,
            applied: if error.is_none() {
                verdict.replicas
            } else {
                current
            },
            adjustments: verdict.adjustments,
            error,
        }
    }
}

/// How long one scale step (a read or a write, its retries included) may take: a backend that
/// stalls costs the tick this, not the half-minute of its clients' own timeouts and retries.
const SCALE_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// `call` within [`SCALE_STEP_TIMEOUT`].
async fn within_step<T>(
    call: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    tokio::time::timeout(SCALE_STEP_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(BackendError::Unavailable(format!(
                "the backend did not answer within {}",
                crate::domain::duration::format(SCALE_STEP_TIMEOUT)
            )))
        })
}

/// Why a tick's state was not committed.
pub(super) enum Refused {
    /// Overtaken by a removal or a state clearing: not the policy's failure.
    Discarded(InvocationError),
    /// The store failed.
    Failed(InvocationError),
}

impl Refused {
    pub(super) fn into_error(self) -> InvocationError {
        match self {
            Refused::Discarded(error) | Refused::Failed(error) => error,
        }
    }
}

/// A scale action that was not attempted, and why.
pub(super) fn refused_scale(target: &WorkloadRef, requested: u32, why: &str) -> Action {
    Action::Scale {
        target: target.clone(),
        current: 0,
        requested,
        applied: 0,
        adjustments: Vec::new(),
        error: Some(why.to_owned()),
    }
}

/// "on" or "off".
pub(super) fn power_word(state: PowerState) -> &'static str {
    match state {
        PowerState::On => "on",
        PowerState::Off => "off",
    }
}

/// Commits a tick's staged state unless the binding was removed or its state cleared while
/// the tick ran. The check and the queueing happen under the binding's commit gate, so a
/// removal or a clearing (which take the gate, then queue their own writes) is ordered after
/// a commit that passed it; the wait for durability happens outside it.
pub(super) async fn commit_gated(
    binding: &Binding,
    state_epoch: u64,
    state: StagedState,
) -> Result<usize, Refused> {
    let durable = {
        let gate = binding.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.retired {
            return Err(Refused::Discarded(InvocationError::State(
                "the binding was removed while the tick ran; nothing applied".into(),
            )));
        }
        if gate.state_epoch != state_epoch {
            return Err(Refused::Discarded(InvocationError::State(
                "the binding's state was cleared while the tick ran; nothing applied".into(),
            )));
        }
        state.commit_async()
    };
    durable.await.map_err(|e| {
        let message = crate::domain::display_chain(&e);
        Refused::Failed(match e {
            // Other tenants' writes fill the committer's queue: the host's overload.
            crate::store::StateError::Busy(_) => InvocationError::Overloaded(message),
            _ => InvocationError::State(message),
        })
    })
}
