//! Scales ahead of forecast load: daily seasonality plus recent trend, floored by the current load.
//!
//! Each tick reads the demand (`metric`, summed), feeds it to the [`forecast`], and scales the
//! target to `max(forecast replicas, reactive replicas)` within `[min_replicas, max_replicas]`,
//! scaling down only after a bucket of lower demand. The method is documented in [`forecast`] and
//! the README.

pub mod forecast;

use forecast::{Layout, Model, Params, desired_replicas};
use scalehost_sdk::{
    Policy, ScaleChange, WorkloadRef, actuation, clock, export_policy, log, metrics, state,
};
use serde::Deserialize;

/// State key of the small per-tick part of the model.
const META_KEY: &str = "meta";
/// State key of the bucket ring (raw little-endian `f32`s), written when a bucket closes.
const RING_KEY: &str = "ring";

/// Most buckets kept, so that a tick reads at most 32 KiB of history.
pub const MAX_BUCKETS: u64 = 8192;

/// The policy's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The workload to scale.
    pub target: WorkloadRef,
    /// PromQL whose summed value is the demand, e.g. requests per minute.
    pub metric: String,
    /// Demand one replica serves at 100 % utilization.
    pub capacity_per_replica: f64,
    /// Utilization the replicas should run at.
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// How far ahead to look, seconds (the replicas' startup delay).
    #[serde(default = "default_horizon_secs")]
    pub horizon_secs: u64,
    /// Length of a season, seconds.
    #[serde(default = "default_season_secs")]
    pub season_secs: u64,
    /// Length of a history bucket, seconds.
    #[serde(default = "default_bucket_secs")]
    pub bucket_secs: u64,
    /// Past seasons kept.
    #[serde(default = "default_seasons_kept")]
    pub seasons_kept: u32,
    /// Fewest replicas.
    #[serde(default = "default_min_replicas")]
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
}

fn default_target_utilization() -> f64 {
    0.8
}
fn default_horizon_secs() -> u64 {
    60
}
fn default_season_secs() -> u64 {
    86_400
}
fn default_bucket_secs() -> u64 {
    300
}
fn default_seasons_kept() -> u32 {
    7
}
fn default_min_replicas() -> u32 {
    1
}

impl Config {
    /// The model's parameters.
    pub fn params(&self) -> Params {
        Params {
            layout: Layout {
                bucket_ms: self.bucket_secs * 1000,
                buckets_per_season: self.season_secs / self.bucket_secs.max(1),
                seasons_kept: u64::from(self.seasons_kept),
            },
            horizon_ms: self.horizon_secs * 1000,
        }
    }

    /// Demand one replica carries at the target utilization.
    pub fn unit(&self) -> f64 {
        self.capacity_per_replica * self.target_utilization
    }
}

/// Checks a configuration; the error names the offending field.
pub fn validate(config: &Config) -> Result<(), String> {
    if config.target.namespace.is_empty() || config.target.name.is_empty() {
        return Err("target must name a namespace and a workload".into());
    }
    if config.metric.trim().is_empty() {
        return Err("metric must not be empty".into());
    }
    if !config.capacity_per_replica.is_finite() || config.capacity_per_replica <= 0.0 {
        return Err("capacity_per_replica must be a positive number".into());
    }
    let u = config.target_utilization;
    if !u.is_finite() || u <= 0.0 || u > 1.0 {
        return Err("target_utilization must be in (0, 1]".into());
    }
    if config.bucket_secs == 0 {
        return Err("bucket_secs must be at least 1".into());
    }
    if config.season_secs == 0 || !config.season_secs.is_multiple_of(config.bucket_secs) {
        return Err("season_secs must be a positive multiple of bucket_secs".into());
    }
    if config.seasons_kept == 0 {
        return Err("seasons_kept must be at least 1".into());
    }
    let buckets = (config.season_secs / config.bucket_secs) * u64::from(config.seasons_kept);
    if buckets > MAX_BUCKETS {
        return Err(format!(
            "seasons_kept × season_secs / bucket_secs must be at most {MAX_BUCKETS} buckets"
        ));
    }
    if config.horizon_secs > config.season_secs {
        return Err("horizon_secs must not exceed season_secs".into());
    }
    if config.max_replicas == 0 {
        return Err("max_replicas must be at least 1".into());
    }
    if config.min_replicas > config.max_replicas {
        return Err("min_replicas must not exceed max_replicas".into());
    }
    Ok(())
}

/// The exported policy.
pub struct PredictiveForecast;

impl Policy for PredictiveForecast {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        validate(config)
    }

    fn tick(config: Config) -> Result<(), String> {
        let now = clock::now_ms();
        let demand = match metrics::query_sum(&config.metric)? {
            Some(v) if v.is_finite() => v.max(0.0),
            Some(v) => {
                log::warn(&format!("metric returned {v}; no decision"));
                return Ok(());
            }
            None => {
                log::warn("metric returned no series; no decision");
                return Ok(());
            }
        };
        let current = metrics::workload(&config.target)?.replicas;
        let params = config.params();
        let mut model = Model::load(
            params.layout,
            state::get(META_KEY).as_deref(),
            state::get(RING_KEY),
        );
        // The next decision comes about one tick interval from now: the forecast must cover
        // until then, plus the startup delay.
        let interval = model
            .meta
            .last_ms
            .map_or(params.layout.bucket_ms, |last| now.saturating_sub(last));
        model.observe(now, demand, &params);
        let forecast = model.forecast(now, &params, interval);
        let desired = desired_replicas(
            demand,
            forecast,
            config.unit(),
            config.min_replicas,
            config.max_replicas,
        );
        let action = model.decide(now, desired, current);
        state::set(META_KEY, &model.meta.encode());
        if model.ring_dirty {
            state::set(RING_KEY, &model.ring);
        }
        if let Some(replicas) = action {
            let reason = match forecast {
                Some(f) => format!("demand {demand:.1}, forecast {f:.1}: {current} -> {replicas}"),
                None => format!("demand {demand:.1} (reactive): {current} -> {replicas}"),
            };
            actuation::scale(&config.target, ScaleChange::To(replicas), &reason)?;
        }
        Ok(())
    }
}

export_policy!(PredictiveForecast);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        scalehost_sdk::parse_config(json)
    }

    const BASE: &str = r#""target": {"namespace": "web", "name": "frontend"},
        "metric": "sum(scalehost_requests_per_minute{namespace=\"web\",workload=\"frontend\"})",
        "capacity_per_replica": 600, "max_replicas": 40"#;

    #[test]
    fn defaults() {
        let c = parse(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(
            (
                c.target_utilization,
                c.horizon_secs,
                c.season_secs,
                c.bucket_secs
            ),
            (0.8, 60, 86_400, 300)
        );
        assert_eq!((c.seasons_kept, c.min_replicas), (7, 1));
        assert_eq!(c.params().layout.slots(), 2016);
        assert_eq!(validate(&c), Ok(()));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(parse(&format!(r#"{{{BASE}, "horizon": 5}}"#)).is_err());
        let check = |extra: &str| validate(&parse(&format!("{{{BASE}, {extra}}}")).unwrap());
        assert_eq!(
            check(r#""bucket_secs": 7"#),
            Err("season_secs must be a positive multiple of bucket_secs".into())
        );
        assert_eq!(
            check(r#""bucket_secs": 60"#),
            Err("seasons_kept × season_secs / bucket_secs must be at most 8192 buckets".into())
        );
        assert_eq!(
            check(r#""target_utilization": 1.5"#),
            Err("target_utilization must be in (0, 1]".into())
        );
        assert_eq!(
            check(r#""min_replicas": 41"#),
            Err("min_replicas must not exceed max_replicas".into())
        );
        let mut c = parse(&format!("{{{BASE}}}")).unwrap();
        c.capacity_per_replica = 0.0;
        assert_eq!(
            validate(&c),
            Err("capacity_per_replica must be a positive number".into())
        );
        assert_eq!(
            check(r#""seasons_kept": 0"#),
            Err("seasons_kept must be at least 1".into())
        );
    }
}
