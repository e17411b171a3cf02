//! The Kubernetes HPA v2 algorithm as a scalehost policy, for parity with clusters that use it.
//!
//! The algorithm itself is the `scalehost-hpa` crate (`hpa/` at the repository's root), which
//! depends on nothing but `std` so that the host's native baseline shares it. This module parses the configuration, reads the workload and its
//! metric through the SDK, runs one reconcile and keeps the controller's recommendations and
//! scale events in state. See the README for the configuration.

use scalehost_hpa as hpa;

use hpa::{History, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy, Spec};
use scalehost_sdk::{
    Policy, ScaleChange, WorkloadRef, WorkloadStatus, actuation, clock, export_policy, log,
    metrics, state,
};
use serde::Deserialize;

/// State key of the encoded [`History`].
const HISTORY_KEY: &str = "hpa";

/// Upstream's limit on a stabilization window, seconds.
const MAX_STABILIZATION_SECS: u32 = 3600;

/// Upstream's limit on a policy period, seconds.
const MAX_PERIOD_SECS: u32 = 1800;

/// The policy's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The workload to scale.
    pub target: WorkloadRef,
    /// What is measured against the target.
    #[serde(default)]
    pub metric: Metric,
    /// CPU utilization the pods should run at (0.7 = 70 %), for the `cpu` metric.
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// No change while the usage ratio is within 1 ± tolerance.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Fewest replicas.
    #[serde(default = "default_min_replicas")]
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Stabilization and rate limits per direction.
    #[serde(default)]
    pub behavior: BehaviorConfig,
}

fn default_target_utilization() -> f64 {
    hpa::DEFAULT_TARGET_UTILIZATION
}

fn default_tolerance() -> f64 {
    hpa::DEFAULT_TOLERANCE
}

fn default_min_replicas() -> u32 {
    1
}

/// The metric: `"cpu"`, or `{"query": "<promql>", "target_value": 100}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "metric must be \"cpu\" or {\"query\": \"<promql>\", \"target_value\": <number>}"
)]
pub enum Metric {
    /// CPU utilization: usage / (ready × request per pod), against `target_utilization`.
    Cpu(CpuKeyword),
    /// The summed value of a query, averaged per ready replica, against `target_value`.
    Query(QueryMetric),
}

impl Default for Metric {
    fn default() -> Self {
        Metric::Cpu(CpuKeyword::Cpu)
    }
}

/// The keyword `"cpu"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuKeyword {
    /// CPU utilization.
    Cpu,
}

/// A query metric with an average value target per ready replica.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMetric {
    /// PromQL; the newest values of all returned series are summed.
    pub query: String,
    /// The value one ready replica should carry.
    pub target_value: f64,
}

/// `behavior`: scaling rules per direction.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorConfig {
    /// Scale-up rules; defaults: no stabilization, max(100 %, 4 pods) per 15 s.
    #[serde(default)]
    pub scale_up: RulesConfig,
    /// Scale-down rules; defaults: 300 s stabilization, 100 % per 15 s.
    #[serde(default)]
    pub scale_down: RulesConfig,
}

/// One direction's rules; every field defaults to upstream's default for the direction.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Stabilization window, seconds.
    #[serde(default)]
    pub stabilization_window_secs: Option<u32>,
    /// Rate limits.
    #[serde(default)]
    pub policies: Option<Vec<PolicyConfig>>,
    /// How the rate limits combine.
    #[serde(default)]
    pub select_policy: Option<SelectPolicyConfig>,
}

/// One rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `percent` or `pods`.
    #[serde(rename = "type")]
    pub kind: PolicyTypeConfig,
    /// Percent or pods per period.
    pub value: u32,
    /// Period, seconds.
    pub period_secs: u32,
}

/// `percent` or `pods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTypeConfig {
    /// Percent of the replicas at the period's start.
    Percent,
    /// Pods.
    Pods,
}

/// `max`, `min` or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectPolicyConfig {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

impl RulesConfig {
    fn resolve(&self, defaults: ScalingRules) -> ScalingRules {
        ScalingRules {
            stabilization_window_secs: self
                .stabilization_window_secs
                .map_or(defaults.stabilization_window_secs, |s| s as i32),
            select_policy: match self.select_policy {
                None => defaults.select_policy,
                Some(SelectPolicyConfig::Max) => SelectPolicy::Max,
                Some(SelectPolicyConfig::Min) => SelectPolicy::Min,
                Some(SelectPolicyConfig::Disabled) => SelectPolicy::Disabled,
            },
            policies: match &self.policies {
                None => defaults.policies,
                Some(list) => list
                    .iter()
                    .map(|p| ScalingPolicy {
                        kind: match p.kind {
                            PolicyTypeConfig::Percent => PolicyType::Percent,
                            PolicyTypeConfig::Pods => PolicyType::Pods,
                        },
                        value: p.value as i32,
                        period_secs: p.period_secs as i32,
                    })
                    .collect(),
            },
        }
    }

    fn validate(&self, field: &str) -> Result<(), String> {
        if self
            .stabilization_window_secs
            .is_some_and(|s| s > MAX_STABILIZATION_SECS)
        {
            return Err(format!(
                "behavior.{field}.stabilization_window_secs must be at most {MAX_STABILIZATION_SECS}"
            ));
        }
        if let Some(policies) = &self.policies {
            if policies.is_empty() {
                return Err(format!("behavior.{field}.policies must not be empty"));
            }
            for (i, p) in policies.iter().enumerate() {
                if p.value == 0 || p.value > i32::MAX as u32 {
                    return Err(format!(
                        "behavior.{field}.policies[{i}].value must be positive"
                    ));
                }
                if p.period_secs == 0 || p.period_secs > MAX_PERIOD_SECS {
                    return Err(format!(
                        "behavior.{field}.policies[{i}].period_secs must be between 1 and {MAX_PERIOD_SECS}"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// The resolved spec the algorithm runs on.
    pub fn spec(&self) -> Spec {
        Spec {
            min_replicas: self.min_replicas as i32,
            max_replicas: self.max_replicas as i32,
            scale_up: self
                .behavior
                .scale_up
                .resolve(ScalingRules::default_scale_up()),
            scale_down: self
                .behavior
                .scale_down
                .resolve(ScalingRules::default_scale_down()),
        }
    }

    /// `target_utilization` as the integer percent the HPA spec carries.
    pub fn target_utilization_pct(&self) -> i32 {
        (self.target_utilization * 100.0).round() as i32
    }
}

/// Checks a configuration; the error names the offending field.
pub fn validate(config: &Config) -> Result<(), String> {
    if config.target.namespace.is_empty() || config.target.name.is_empty() {
        return Err("target must name a namespace and a workload".into());
    }
    match &config.metric {
        Metric::Cpu(_) => {
            let t = config.target_utilization;
            if !t.is_finite() || t * 100.0 < 0.5 || t > 100.0 {
                return Err("target_utilization must be between 0.01 and 100".into());
            }
        }
        Metric::Query(q) => {
            if q.query.trim().is_empty() {
                return Err("metric.query must not be empty".into());
            }
            if !q.target_value.is_finite() || q.target_value <= 0.0 {
                return Err("metric.target_value must be a positive number".into());
            }
        }
    }
    if !config.tolerance.is_finite() || config.tolerance < 0.0 {
        return Err("tolerance must be a non-negative number".into());
    }
    if config.min_replicas == 0 {
        return Err("min_replicas must be at least 1".into());
    }
    if config.max_replicas > i32::MAX as u32 {
        return Err("max_replicas is too large".into());
    }
    if config.max_replicas < config.min_replicas {
        return Err("max_replicas must be at least min_replicas".into());
    }
    config.behavior.scale_up.validate("scale_up")?;
    config.behavior.scale_down.validate("scale_down")?;
    Ok(())
}

/// What the metric proposes for `status`, given the query's summed value when the metric is a
/// query. `None` when it cannot be computed (no ready pods, no usage reported, no series).
pub fn metric_proposal(
    config: &Config,
    status: &WorkloadStatus,
    query_total: Option<f64>,
) -> Option<i32> {
    let current = status.replicas as i32;
    let ready = i32::try_from(status.ready).ok()?;
    match &config.metric {
        Metric::Cpu(_) => hpa::resource_replicas(
            current,
            ready,
            i64::try_from(status.cpu_usage_millis?).ok()?,
            i64::try_from(status.cpu_request_millis).ok()?,
            config.target_utilization_pct(),
            config.tolerance,
        ),
        Metric::Query(q) => hpa::average_value_replicas(
            current,
            ready,
            query_total?,
            q.target_value,
            config.tolerance,
        ),
    }
}

/// The exported policy.
pub struct HpaClassic;

impl Policy for HpaClassic {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        validate(config)
    }

    fn tick(config: Config) -> Result<(), String> {
        let now = clock::now_ms() as i64;
        let status = metrics::workload(&config.target)?;
        let query_total = match &config.metric {
            Metric::Cpu(_) => None,
            // A failed query is a failed metric, as upstream: no change, but the bounds still apply.
            Metric::Query(q) => match metrics::query_sum(&q.query) {
                Ok(v) => v,
                Err(e) => {
                    log::warn(&format!("metric query failed: {e}"));
                    None
                }
            },
        };
        let proposal = metric_proposal(&config, &status, query_total);
        let mut history = state::get(HISTORY_KEY)
            .and_then(|bytes| History::decode(&bytes))
            .unwrap_or_default();
        let current = status.replicas as i32;
        let outcome = hpa::reconcile(&config.spec(), &mut history, now, current, proposal);
        state::set(HISTORY_KEY, &history.encode());
        match outcome.desired {
            Some(desired) if desired != current => {
                let reason = format!("hpa: {current} -> {desired}: {}", outcome.reason);
                actuation::scale(&config.target, ScaleChange::To(desired as u32), &reason)?;
            }
            Some(_) => {}
            None => log::info(&format!("no change: {}", outcome.reason)),
        }
        Ok(())
    }
}

export_policy!(HpaClassic);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        scalehost_sdk::parse_config(json)
    }

    const BASE: &str = r#""target": {"namespace": "web", "name": "api"}, "max_replicas": 20"#;

    #[test]
    fn defaults_match_upstream() {
        let c = parse(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(c.metric, Metric::Cpu(CpuKeyword::Cpu));
        assert_eq!(
            (c.target_utilization_pct(), c.tolerance, c.min_replicas),
            (70, 0.1, 1)
        );
        let spec = c.spec();
        assert_eq!(spec.scale_up, ScalingRules::default_scale_up());
        assert_eq!(spec.scale_down, ScalingRules::default_scale_down());
        assert_eq!(validate(&c), Ok(()));
    }

    #[test]
    fn parses_query_metric_and_partial_behavior() {
        let c = parse(&format!(
            r#"{{{BASE}, "metric": {{"query": "sum(rpm)", "target_value": 100}},
                "behavior": {{"scale_down": {{"stabilization_window_secs": 60,
                    "policies": [{{"type": "pods", "value": 1, "period_secs": 30}}]}},
                    "scale_up": {{"select_policy": "disabled"}}}}}}"#
        ))
        .unwrap();
        assert_eq!(
            c.metric,
            Metric::Query(QueryMetric {
                query: "sum(rpm)".into(),
                target_value: 100.0
            })
        );
        let spec = c.spec();
        assert_eq!(spec.scale_down.stabilization_window_secs, 60);
        assert_eq!(spec.scale_down.select_policy, SelectPolicy::Max);
        assert_eq!(
            spec.scale_down.policies,
            vec![ScalingPolicy {
                kind: PolicyType::Pods,
                value: 1,
                period_secs: 30
            }]
        );
        assert_eq!(spec.scale_up.select_policy, SelectPolicy::Disabled);
        assert_eq!(
            spec.scale_up.policies,
            ScalingRules::default_scale_up().policies
        );
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(
            parse(&format!(r#"{{{BASE}, "metric": "memory"}}"#))
                .unwrap_err()
                .contains("metric must be")
        );
        assert!(parse(&format!(r#"{{{BASE}, "colour": 1}}"#)).is_err());
        let check = |extra: &str| validate(&parse(&format!("{{{BASE}, {extra}}}")).unwrap());
        assert_eq!(
            check(r#""min_replicas": 30"#),
            Err("max_replicas must be at least min_replicas".into())
        );
        assert_eq!(
            check(r#""min_replicas": 0"#),
            Err("min_replicas must be at least 1".into())
        );
        assert_eq!(
            check(r#""tolerance": -1"#),
            Err("tolerance must be a non-negative number".into())
        );
        assert_eq!(
            check(r#""target_utilization": 0"#),
            Err("target_utilization must be between 0.01 and 100".into())
        );
        assert_eq!(
            check(r#""behavior": {"scale_up": {"policies": []}}"#),
            Err("behavior.scale_up.policies must not be empty".into())
        );
        assert_eq!(
            check(
                r#""behavior": {"scale_down": {"policies": [{"type": "percent", "value": 10, "period_secs": 0}]}}"#
            ),
            Err("behavior.scale_down.policies[0].period_secs must be between 1 and 1800".into())
        );
        assert_eq!(
            check(r#""behavior": {"scale_down": {"stabilization_window_secs": 7200}}"#),
            Err("behavior.scale_down.stabilization_window_secs must be at most 3600".into())
        );
        assert_eq!(
            check(r#""metric": {"query": "x", "target_value": 0}"#),
            Err("metric.target_value must be a positive number".into())
        );
    }

    #[test]
    fn cpu_proposal_uses_ready_pods_and_their_requests() {
        let c = parse(&format!("{{{BASE}}}")).unwrap();
        let status = |replicas, ready, usage| WorkloadStatus {
            replicas,
            ready,
            cpu_request_millis: 500,
            cpu_usage_millis: usage,
        };
        // 4 ready of 6, 2800m of 2000m requested = 140 % → ratio 2 → ceil(2 * 4) = 8.
        assert_eq!(
            metric_proposal(&c, &status(6, 4, Some(2_800)), None),
            Some(8)
        );
        // Within tolerance: the spec replicas are kept.
        assert_eq!(
            metric_proposal(&c, &status(6, 4, Some(1_400)), None),
            Some(6)
        );
        assert_eq!(metric_proposal(&c, &status(6, 0, Some(1_400)), None), None);
        assert_eq!(metric_proposal(&c, &status(6, 4, None), None), None);
    }
}
