//! Guard rails the host enforces on every scale intent, whatever the policy asked.
//!
//! In order, as the HPA applies its own: bounds (min/max), scale-down stabilization (the highest
//! recommendation within the window), step limits per tick, then cooldowns since the last applied
//! change (up and down separately), and bounds again last, so that bounds win over step limits.
//! Each rail that changes the value says so in an [`RailAdjustment`], which the audit record keeps.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::domain::cluster::{Rail, TimestampMs};

/// Per-target guard rails (configured on each binding target, see `TargetSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rails {
    /// Never fewer replicas.
    pub min_replicas: u32,
    /// Never more replicas.
    pub max_replicas: u32,
    /// At most this many added per tick.
    pub max_step_up: Option<u32>,
    /// At most this many removed per tick.
    pub max_step_down: Option<u32>,
    /// No scale-up within this time of the last applied change.
    pub cooldown_up: Duration,
    /// No scale-down within this time of the last applied change.
    pub cooldown_down: Duration,
    /// Scale down only to the highest recommendation within this window (0: off).
    pub stabilization_down: Duration,
}

impl Rails {
    /// Rails that only bound replicas to `[min, max]`.
    pub fn bounds(min_replicas: u32, max_replicas: u32) -> Self {
        Rails {
            min_replicas,
            max_replicas,
            max_step_up: None,
            max_step_down: None,
            cooldown_up: Duration::ZERO,
            cooldown_down: Duration::ZERO,
            stabilization_down: Duration::ZERO,
        }
    }
}

/// One rail changing a value, with why (the audit record's; a policy sees it without the reason,
/// as an [`Adjustment`](crate::domain::cluster::Adjustment)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RailAdjustment {
    /// The rail; in JSON its kebab-case name.
    pub rail: Rail,
    /// Value before.
    pub from: u32,
    /// Value after.
    pub to: u32,
    /// Why, in words.
    pub reason: String,
}

/// What the rails remember of one target: recent recommendations and the last change.
#[derive(Debug, Clone, Default)]
pub struct RailHistory {
    recommendations: VecDeque<(TimestampMs, u32)>,
    last_change: Option<TimestampMs>,
}

/// The rails' verdict on one intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Replicas to apply.
    pub replicas: u32,
    /// What changed the requested value, in order.
    pub adjustments: Vec<RailAdjustment>,
}

impl Rails {
    /// Applies the rails to `requested` for a target now at `current`, without remembering
    /// anything; call [`RailHistory::record`] once the verdict is applied.
    pub fn judge(
        &self,
        history: &RailHistory,
        current: u32,
        requested: u32,
        now: TimestampMs,
    ) -> Verdict {
        let mut adjustments = Vec::new();
        let mut value = requested;
        let mut adjust = |value: &mut u32, to: u32, rail: Rail, reason: String| {
            if *value != to {
                adjustments.push(RailAdjustment {
                    rail,
                    from: *value,
                    to,
                    reason,
                });
                *value = to;
            }
        };
        if value < self.min_replicas {
            adjust(
                &mut value,
                self.min_replicas,
                Rail::MinReplicas,
                format!("below min_replicas {}", self.min_replicas),
            );
        }
        if value > self.max_replicas {
            adjust(
                &mut value,
                self.max_replicas,
                Rail::MaxReplicas,
                format!("above max_replicas {}", self.max_replicas),
            );
        }
        let window = self.stabilization_down.as_millis() as u64;
        if window > 0 && value < current {
            let highest = history
                .recommendations
                .iter()
                .filter(|(at, _)| at + window > now)
                .map(|(_, r)| *r)
                .fold(value, u32::max)
                .min(current);
            let secs = self.stabilization_down.as_secs();
            adjust(
                &mut value,
                highest,
                Rail::StabilizationDown,
                format!("highest recommendation in the last {secs}s"),
            );
        }
        if let Some(step) = self.max_step_up.filter(|_| value > current) {
            let limit = current.saturating_add(step);
            if value > limit {
                adjust(
                    &mut value,
                    limit,
                    Rail::MaxStepUp,
                    format!("at most +{step} per tick"),
                );
            }
        }
        if let Some(step) = self.max_step_down.filter(|_| value < current) {
            let limit = current.saturating_sub(step);
            if value < limit {
                adjust(
                    &mut value,
                    limit,
                    Rail::MaxStepDown,
                    format!("at most -{step} per tick"),
                );
            }
        }
        // Cooldowns never hold a target outside its bounds.
        let in_bounds = (self.min_replicas..=self.max_replicas).contains(&current);
        if let Some(last) = history.last_change.filter(|_| in_bounds) {
            let since = now.saturating_sub(last);
            let (cooldown, rail) = if value > current {
                (self.cooldown_up, Rail::CooldownUp)
            } else {
                (self.cooldown_down, Rail::CooldownDown)
            };
            if value != current && since < cooldown.as_millis() as u64 {
                let reason = format!(
                    "last change {}s ago, cooldown {}s",
                    since / 1000,
                    cooldown.as_secs()
                );
                adjust(&mut value, current, rail, reason);
            }
        }
        // Bounds win over step limits: a target below min (or above max) is brought inside at once.
        if value < self.min_replicas {
            adjust(
                &mut value,
                self.min_replicas,
                Rail::MinReplicas,
                format!("below min_replicas {}", self.min_replicas),
            );
        }
        if value > self.max_replicas {
            adjust(
                &mut value,
                self.max_replicas,
                Rail::MaxReplicas,
                format!("above max_replicas {}", self.max_replicas),
            );
        }
        Verdict {
            replicas: value,
            adjustments,
        }
    }
}

impl RailHistory {
    /// Remembers a tick's (bounded) recommendation and whether replicas changed; forgets
    /// recommendations older than `window`, and those a later one at least as high outranks
    /// for as long as either is in the window (the stabilization looks only at the highest):
    /// what is kept falls strictly from oldest to newest, so it is never longer than the
    /// distinct replica counts in the window.
    pub fn record(
        &mut self,
        now: TimestampMs,
        recommendation: u32,
        changed: bool,
        window: Duration,
    ) {
        let window = window.as_millis() as u64;
        if window > 0 {
            while self
                .recommendations
                .back()
                .is_some_and(|(_, r)| *r <= recommendation)
            {
                self.recommendations.pop_back();
            }
            self.recommendations.push_back((now, recommendation));
            while self
                .recommendations
                .front()
                .is_some_and(|(at, _)| at + window <= now)
            {
                self.recommendations.pop_front();
            }
        }
        if changed {
            self.last_change = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rails() -> Rails {
        Rails {
            min_replicas: 2,
            max_replicas: 10,
            max_step_up: Some(3),
            max_step_down: Some(2),
            cooldown_up: Duration::from_secs(30),
            cooldown_down: Duration::from_secs(60),
            stabilization_down: Duration::from_secs(300),
        }
    }

    #[test]
    fn bounds_and_steps_clamp_and_explain() {
        let v = rails().judge(&RailHistory::default(), 5, 50, 0);
        assert_eq!(v.replicas, 8);
        let rails_hit: Vec<_> = v
            .adjustments
            .iter()
            .map(|a| (a.rail.as_str(), a.from, a.to))
            .collect();
        assert_eq!(
            rails_hit,
            [("max-replicas", 50, 10), ("max-step-up", 10, 8)]
        );
        let v = rails().judge(&RailHistory::default(), 5, 0, 0);
        assert_eq!(v.replicas, 3);
        assert_eq!(v.adjustments[0].rail.as_str(), "min-replicas");
        assert_eq!(v.adjustments[1].rail.as_str(), "max-step-down");
    }

    #[test]
    fn stabilization_keeps_the_highest_recent_recommendation() {
        let r = rails();
        let mut h = RailHistory::default();
        h.record(0, 9, false, r.stabilization_down);
        let v = r.judge(&h, 8, 4, 100_000);
        assert_eq!(v.replicas, 8, "9 within the window, capped at current");
        assert_eq!(v.adjustments[0].rail.as_str(), "stabilization-down");
        h.record(100_000, 4, false, r.stabilization_down);
        let v = r.judge(&h, 8, 4, 301_000);
        assert_eq!(
            v.replicas, 6,
            "the 9 expired; 4 within the window, then the step limit"
        );
    }

    /// The kept history stays short however many ticks fall in the window, and the highest
    /// recommendation in the window is what keeping every one would give.
    #[test]
    fn stabilization_history_is_bounded_and_exact() {
        let window = Duration::from_secs(300);
        let mut h = RailHistory::default();
        let mut all: Vec<(u64, u32)> = Vec::new();
        for i in 0..100_000u64 {
            let now = i * 10;
            // A saw tooth between 2 and 41 replicas, one tick every 10 ms.
            let recommendation = 2 + ((i * 7919) % 40) as u32;
            h.record(now, recommendation, false, window);
            all.push((now, recommendation));
            if i % 997 == 0 {
                let naive = all
                    .iter()
                    .filter(|(at, _)| at + 300_000 > now)
                    .map(|(_, r)| *r)
                    .max();
                let kept = h
                    .recommendations
                    .iter()
                    .filter(|(at, _)| at + 300_000 > now)
                    .map(|(_, r)| *r)
                    .max();
                assert_eq!(kept, naive, "at tick {i}");
            }
        }
        assert!(
            h.recommendations.len() <= 40,
            "{} kept",
            h.recommendations.len()
        );
    }

    #[test]
    fn bounds_win_over_step_limits() {
        let v = rails().judge(&RailHistory::default(), 0, 1, 0);
        assert_eq!(v.replicas, 2, "a target below min goes to min at once");
    }

    #[test]
    fn cooldowns_hold_each_direction_separately() {
        let r = Rails {
            stabilization_down: Duration::ZERO,
            ..rails()
        };
        let mut h = RailHistory::default();
        h.record(0, 6, true, r.stabilization_down);
        assert_eq!(r.judge(&h, 6, 7, 20_000).replicas, 6);
        assert_eq!(r.judge(&h, 6, 7, 30_000).replicas, 7);
        let v = r.judge(&h, 6, 5, 40_000);
        assert_eq!(
            (v.replicas, v.adjustments.last().map(|a| a.rail.as_str())),
            (6, Some("cooldown-down"))
        );
        assert_eq!(r.judge(&h, 6, 5, 60_000).replicas, 5);
    }
}
