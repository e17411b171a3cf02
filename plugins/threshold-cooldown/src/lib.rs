//! Threshold rules with a cooldown: Cloudify's Riemann "scale" policy as a scalehost component.
//!
//! Each tick reads a per-host window sum of a metric (the sum of every sample in the window
//! divided by the number of reporting hosts, as Cloudify's policy computes it), fires the first
//! rule whose threshold is crossed, clamps the result to the rule's limit, and then stays quiet
//! for `cooldown_secs` from the tick whose change the host applied (read back through
//! `outcomes` at the next tick: a failed or fully clamped scale starts no cooldown). See the
//! README for the configuration.

use std::time::Duration;

use scalehost_sdk::outcomes::{self, TickOutcomes};
use scalehost_sdk::{
    Policy, ScaleChange, Series, WorkloadRef, actuation, clock, export_policy, log, metrics, state,
};
use serde::Deserialize;

/// State key of the last applied scale's instant (host milliseconds, u64 little-endian): the
/// cooldown's start.
const LAST_SCALE_KEY: &str = "last_scale_ms";
/// State key of the instant of a scale asked for and not yet known applied (same encoding).
const PENDING_KEY: &str = "pending_scale_ms";

/// Resolution of the range query for a `query` source.
const QUERY_STEP: Duration = Duration::from_secs(15);

/// The policy's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The workload to scale.
    pub target: WorkloadRef,
    /// Where the value comes from.
    pub source: Source,
    /// Length of the window the value is summed over, in seconds.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// Rules, tried in order; the first that fires decides.
    pub rules: Vec<Rule>,
    /// Quiet time after a scale, in seconds.
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
}

fn default_window_secs() -> u64 {
    60
}

fn default_cooldown_secs() -> u64 {
    120
}

/// Where the metric comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// Pushed events of a service, one series per host: `{"events": {"service": "web/api/requests"}}`.
    Events {
        /// The pushed service name.
        service: String,
    },
    /// A PromQL range query over the window at 15 s steps: `{"query": "..."}`.
    Query(String),
}

/// Which way a rule scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Fires when the value is above the threshold; never scales above the limit.
    Up,
    /// Fires when the value is below the threshold; never scales below the limit.
    Down,
}

/// How a rule changes replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Add (positive) or remove (negative) replicas.
    By(i32),
    /// Scale to exactly this many replicas.
    To(u32),
}

/// One scaling rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Up or down.
    pub direction: Direction,
    /// The value the window value is compared with.
    pub threshold: f64,
    /// The change the rule asks for.
    pub step: Step,
    /// Scale limit: the most replicas an up rule reaches, the fewest a down rule leaves.
    pub limit: u32,
}

/// Checks a configuration; the error names the offending field.
pub fn validate(config: &Config) -> Result<(), String> {
    if config.target.namespace.is_empty() || config.target.name.is_empty() {
        return Err("target must name a namespace and a workload".into());
    }
    match &config.source {
        Source::Events { service } if service.is_empty() => {
            return Err("source.events.service must not be empty".into());
        }
        Source::Query(q) if q.trim().is_empty() => {
            return Err("source.query must not be empty".into());
        }
        _ => {}
    }
    if config.window_secs == 0 {
        return Err("window_secs must be at least 1".into());
    }
    if config.rules.is_empty() {
        return Err("rules must not be empty".into());
    }
    for (i, rule) in config.rules.iter().enumerate() {
        if !rule.threshold.is_finite() {
            return Err(format!("rules[{i}].threshold must be finite"));
        }
        match (rule.direction, rule.step) {
            (Direction::Up, Step::By(by)) if by <= 0 => {
                return Err(format!(
                    "rules[{i}].step.by must be positive for an up rule"
                ));
            }
            (Direction::Down, Step::By(by)) if by >= 0 => {
                return Err(format!(
                    "rules[{i}].step.by must be negative for a down rule"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The per-host window sum: every sample of every series added up, divided by the number of
/// series that reported at least one sample. `None` when no host reported.
pub fn per_host_value(series: &[Series]) -> Option<f64> {
    let reporting = series.iter().filter(|s| !s.samples.is_empty()).count();
    if reporting == 0 {
        return None;
    }
    let sum: f64 = series.iter().map(Series::sum).sum();
    Some(sum / reporting as f64)
}

/// True while the cooldown that started at `last_scale_ms` still runs at `now_ms`.
pub fn in_cooldown(last_scale_ms: Option<u64>, now_ms: u64, cooldown_secs: u64) -> bool {
    last_scale_ms
        .is_some_and(|last| now_ms < last.saturating_add(cooldown_secs.saturating_mul(1000)))
}

/// What the rules decide for `value` at `current` replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No rule fired.
    NoRule,
    /// Rule `rule` fired but is already at its limit or would not change anything.
    AtLimit {
        /// Index of the rule that fired.
        rule: usize,
    },
    /// Rule `rule` fired: scale to `replicas`.
    Scale {
        /// Index of the rule that fired.
        rule: usize,
        /// The replicas to scale to.
        replicas: u32,
    },
}

/// Applies the first rule that fires. An up rule never lowers replicas and never goes above its
/// limit; a down rule never raises replicas and never goes below its limit.
pub fn decide(rules: &[Rule], value: f64, current: u32) -> Decision {
    let Some((i, rule)) = rules.iter().enumerate().find(|(_, r)| match r.direction {
        Direction::Up => value > r.threshold,
        Direction::Down => value < r.threshold,
    }) else {
        return Decision::NoRule;
    };
    let stepped = match rule.step {
        Step::By(by) => (i64::from(current) + i64::from(by)).clamp(0, i64::from(u32::MAX)) as u32,
        Step::To(to) => to,
    };
    let wanted = match rule.direction {
        Direction::Up => stepped.min(rule.limit),
        Direction::Down => stepped.max(rule.limit),
    };
    let moves_the_right_way = match rule.direction {
        Direction::Up => wanted > current,
        Direction::Down => wanted < current,
    };
    if moves_the_right_way {
        Decision::Scale {
            rule: i,
            replicas: wanted,
        }
    } else {
        Decision::AtLimit { rule: i }
    }
}

/// Whether the scale this policy asked for at `pending_ms` changed `target`, from the outcomes
/// of the binding's last applied tick. Without them (the host restarted) or when they are of
/// another tick, it is assumed applied: a cooldown too many is safer than a scale too many.
pub fn pending_applied(
    pending_ms: u64,
    previous: Option<&TickOutcomes>,
    target: &WorkloadRef,
) -> bool {
    match previous {
        Some(previous) if previous.at == pending_ms => {
            previous.scale_of(target).is_some_and(|s| s.changed())
        }
        _ => true,
    }
}

/// Encodes the last scale instant for `state`.
pub fn encode_last_scale(ms: u64) -> [u8; 8] {
    ms.to_le_bytes()
}

/// Decodes the last scale instant; `None` if absent or malformed.
pub fn decode_last_scale(bytes: Option<&[u8]>) -> Option<u64> {
    Some(u64::from_le_bytes(bytes?.try_into().ok()?))
}

/// The exported policy.
pub struct ThresholdCooldown;

impl Policy for ThresholdCooldown {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        validate(config)
    }

    fn tick(config: Config) -> Result<(), String> {
        let now = clock::now_ms();
        let mut last = decode_last_scale(state::get(LAST_SCALE_KEY).as_deref());
        // The cooldown starts only where the host applied a change: settle the last intent.
        if let Some(pending) = decode_last_scale(state::get(PENDING_KEY).as_deref()) {
            state::delete(PENDING_KEY);
            if pending_applied(pending, outcomes::previous().as_ref(), &config.target) {
                last = Some(pending);
                state::set(LAST_SCALE_KEY, &encode_last_scale(pending));
            } else {
                log::info("the last scale was not applied; no cooldown");
            }
        }
        // Checked before any read so a cooling-down tick costs one state lookup.
        if in_cooldown(last, now, config.cooldown_secs) {
            log::debug("in cooldown");
            return Ok(());
        }
        let window = Duration::from_secs(config.window_secs);
        let series = match &config.source {
            Source::Events { service } => metrics::events(service, window)?,
            Source::Query(promql) => {
                let start = now.saturating_sub(config.window_secs.saturating_mul(1000));
                metrics::query_range(promql, start, now, QUERY_STEP)?
            }
        };
        let Some(value) = per_host_value(&series) else {
            log::info("no hosts reporting in the window; no decision");
            return Ok(());
        };
        let current = metrics::workload(&config.target)?.replicas;
        match decide(&config.rules, value, current) {
            Decision::NoRule => {}
            Decision::AtLimit { rule } => log::debug(&format!(
                "rule {rule} fired at {value:.3} but replicas are at its limit"
            )),
            Decision::Scale { rule, replicas } => {
                let r = &config.rules[rule];
                let reason = format!(
                    "rule {rule}: value {value:.3} {} threshold {}; {current} -> {replicas}",
                    if r.direction == Direction::Up {
                        ">"
                    } else {
                        "<"
                    },
                    r.threshold
                );
                actuation::scale(&config.target, ScaleChange::To(replicas), &reason)?;
                state::set(PENDING_KEY, &encode_last_scale(now));
            }
        }
        Ok(())
    }
}

export_policy!(ThresholdCooldown);

#[cfg(test)]
mod tests {
    use super::*;
    use scalehost_sdk::Sample;

    fn rule(direction: Direction, threshold: f64, step: Step, limit: u32) -> Rule {
        Rule {
            direction,
            threshold,
            step,
            limit,
        }
    }

    fn series(values: &[f64]) -> Series {
        Series {
            labels: vec![("host".into(), "h".into())],
            samples: values
                .iter()
                .map(|&value| Sample { at: 0, value })
                .collect(),
        }
    }

    fn parse(json: &str) -> Result<Config, String> {
        scalehost_sdk::parse_config(json)
    }

    #[test]
    fn per_host_value_is_window_sum_over_reporting_hosts() {
        let s = [series(&[10.0, 20.0]), series(&[30.0]), series(&[])];
        assert_eq!(per_host_value(&s), Some(30.0));
        assert_eq!(per_host_value(&[]), None);
        assert_eq!(per_host_value(&[series(&[])]), None);
    }

    #[test]
    fn up_rule_fires_above_threshold_and_respects_limit() {
        let rules = [rule(Direction::Up, 100.0, Step::By(2), 5)];
        assert_eq!(decide(&rules, 100.0, 1), Decision::NoRule);
        assert_eq!(
            decide(&rules, 101.0, 1),
            Decision::Scale {
                rule: 0,
                replicas: 3
            }
        );
        assert_eq!(
            decide(&rules, 101.0, 4),
            Decision::Scale {
                rule: 0,
                replicas: 5
            }
        );
        assert_eq!(decide(&rules, 101.0, 5), Decision::AtLimit { rule: 0 });
        // Above the limit already: an up rule never scales down.
        assert_eq!(decide(&rules, 101.0, 7), Decision::AtLimit { rule: 0 });
    }

    #[test]
    fn down_rule_fires_below_threshold_and_respects_limit() {
        let rules = [rule(Direction::Down, 10.0, Step::By(-3), 2)];
        assert_eq!(decide(&rules, 10.0, 8), Decision::NoRule);
        assert_eq!(
            decide(&rules, 9.0, 8),
            Decision::Scale {
                rule: 0,
                replicas: 5
            }
        );
        assert_eq!(
            decide(&rules, 9.0, 4),
            Decision::Scale {
                rule: 0,
                replicas: 2
            }
        );
        assert_eq!(decide(&rules, 9.0, 2), Decision::AtLimit { rule: 0 });
        assert_eq!(decide(&rules, 9.0, 1), Decision::AtLimit { rule: 0 });
    }

    #[test]
    fn to_steps_are_absolute_and_clamped() {
        let up = [rule(Direction::Up, 0.0, Step::To(50), 20)];
        assert_eq!(
            decide(&up, 1.0, 3),
            Decision::Scale {
                rule: 0,
                replicas: 20
            }
        );
        let down = [rule(Direction::Down, 5.0, Step::To(0), 1)];
        assert_eq!(
            decide(&down, 1.0, 3),
            Decision::Scale {
                rule: 0,
                replicas: 1
            }
        );
        // A "to" that would move the wrong way does nothing.
        let up_low = [rule(Direction::Up, 0.0, Step::To(2), 20)];
        assert_eq!(decide(&up_low, 1.0, 3), Decision::AtLimit { rule: 0 });
    }

    #[test]
    fn first_firing_rule_wins() {
        let rules = [
            rule(Direction::Up, 200.0, Step::By(4), 10),
            rule(Direction::Up, 100.0, Step::By(1), 10),
            rule(Direction::Down, 50.0, Step::By(-1), 1),
        ];
        assert_eq!(
            decide(&rules, 250.0, 2),
            Decision::Scale {
                rule: 0,
                replicas: 6
            }
        );
        assert_eq!(
            decide(&rules, 150.0, 2),
            Decision::Scale {
                rule: 1,
                replicas: 3
            }
        );
        assert_eq!(decide(&rules, 75.0, 2), Decision::NoRule);
        assert_eq!(
            decide(&rules, 25.0, 2),
            Decision::Scale {
                rule: 2,
                replicas: 1
            }
        );
    }

    #[test]
    fn cooldown_holds_for_its_duration() {
        assert!(!in_cooldown(None, 1_000_000, 120));
        assert!(in_cooldown(Some(1_000_000), 1_000_000, 120));
        assert!(in_cooldown(Some(1_000_000), 1_119_999, 120));
        assert!(!in_cooldown(Some(1_000_000), 1_120_000, 120));
        assert!(!in_cooldown(Some(1_000_000), 1_000_000, 0));
    }

    #[test]
    fn last_scale_round_trips() {
        let bytes = encode_last_scale(1_700_000_000_123);
        assert_eq!(decode_last_scale(Some(&bytes)), Some(1_700_000_000_123));
        assert_eq!(decode_last_scale(Some(&[1, 2, 3])), None);
        assert_eq!(decode_last_scale(None), None);
    }

    #[test]
    fn parses_both_sources_with_defaults() {
        let c = parse(
            r#"{"target": {"namespace": "web", "name": "api"},
                "source": {"events": {"service": "web/api/requests"}},
                "rules": [{"direction": "up", "threshold": 500, "step": {"by": 1}, "limit": 10},
                          {"direction": "down", "threshold": 100, "step": {"to": 2}, "limit": 2}]}"#,
        )
        .unwrap();
        assert_eq!(c.window_secs, 60);
        assert_eq!(c.cooldown_secs, 120);
        assert_eq!(
            c.source,
            Source::Events {
                service: "web/api/requests".into()
            }
        );
        assert_eq!(c.rules[1].step, Step::To(2));
        assert_eq!(validate(&c), Ok(()));
        let q = parse(
            r#"{"target": {"namespace": "web", "name": "api"}, "source": {"query": "x"},
                "window_secs": 30, "cooldown_secs": 0,
                "rules": [{"direction": "up", "threshold": 1.5, "step": {"by": 1}, "limit": 3}]}"#,
        )
        .unwrap();
        assert_eq!(q.source, Source::Query("x".into()));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let base = r#""target": {"namespace": "web", "name": "api"}, "source": {"query": "x"}"#;
        assert!(parse(&format!(r#"{{{base}, "rules": [], "extra": 1}}"#)).is_err());
        assert!(
            parse(&format!(
                r#"{{{base}, "rules": [{{"direction": "up", "threshold": 1, "step": {{"by": 1}}, "limit": 3, "x": 0}}]}}"#
            ))
            .is_err()
        );
        let empty = parse(&format!(r#"{{{base}, "rules": []}}"#)).unwrap();
        assert_eq!(validate(&empty), Err("rules must not be empty".into()));
        let wrong_sign = parse(&format!(
            r#"{{{base}, "rules": [{{"direction": "down", "threshold": 1, "step": {{"by": 1}}, "limit": 3}}]}}"#
        ))
        .unwrap();
        assert_eq!(
            validate(&wrong_sign),
            Err("rules[0].step.by must be negative for a down rule".into())
        );
        let mut nan = wrong_sign.clone();
        nan.rules[0].threshold = f64::NAN;
        assert_eq!(
            validate(&nan),
            Err("rules[0].threshold must be finite".into())
        );
        let mut zero_window = empty.clone();
        zero_window.rules = nan.rules.clone();
        zero_window.rules[0].threshold = 1.0;
        zero_window.rules[0].step = Step::By(-1);
        zero_window.window_secs = 0;
        assert_eq!(
            validate(&zero_window),
            Err("window_secs must be at least 1".into())
        );
    }

    fn outcome(
        at: u64,
        target: &WorkloadRef,
        current: u32,
        applied: u32,
        error: Option<&str>,
    ) -> TickOutcomes {
        TickOutcomes {
            at,
            scales: vec![outcomes::ScaleOutcome {
                target: target.clone(),
                current,
                requested: applied,
                applied,
                adjustments: vec![],
                error: error.map(Into::into),
            }],
            powers: vec![],
        }
    }

    #[test]
    fn the_cooldown_starts_only_where_a_change_was_applied() {
        let api = WorkloadRef::deployment("web", "api");
        let other = WorkloadRef::deployment("web", "other");
        // Applied: the workload went 2 -> 4.
        assert!(pending_applied(
            1000,
            Some(&outcome(1000, &api, 2, 4, None)),
            &api
        ));
        // Refused by the backend, or held where it was by the rails: no change, no cooldown.
        assert!(!pending_applied(
            1000,
            Some(&outcome(1000, &api, 2, 2, Some("forbidden"))),
            &api
        ));
        assert!(!pending_applied(
            1000,
            Some(&outcome(1000, &api, 4, 4, None)),
            &api
        ));
        // The tick applied no scale of this target.
        assert!(!pending_applied(
            1000,
            Some(&outcome(1000, &other, 2, 4, None)),
            &api
        ));
        // No record (a restarted host) or another tick's: assume applied.
        assert!(pending_applied(1000, None, &api));
        assert!(pending_applied(
            1000,
            Some(&outcome(2000, &api, 2, 2, None)),
            &api
        ));
    }
}
