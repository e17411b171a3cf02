//! Fills the cluster's spare CPU with a low-priority filler workload and yields when paid load rises.
//!
//! Each tick: remaining = allocatable CPU − CPU requested by everything but the filler − reserve;
//! filler replicas = floor(max(0, remaining) / filler request), capped by `max_replicas`. The
//! host counts pending pods in `requested`, so a paid workload that cannot be scheduled shrinks
//! the filler at the very next tick. See the README for the configuration.

use scalehost_sdk::{
    Capacity, Policy, ScaleChange, WorkloadRef, actuation, export_policy, log, metrics,
};
use serde::Deserialize;

/// The policy's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The filler workload this policy scales.
    pub filler: WorkloadRef,
    /// CPU kept free for paid load.
    pub reserve: Reserve,
    /// CPU request of one filler replica in millicores; defaults to what the cluster reports.
    #[serde(default)]
    pub filler_cpu_request_millis: Option<u64>,
    /// Most filler replicas, if capped.
    #[serde(default)]
    pub max_replicas: Option<u32>,
}

/// CPU kept free: absolute, or a share of allocatable CPU.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reserve {
    /// Millicores: `{"millis": 2000}`.
    Millis(u64),
    /// Percent of allocatable CPU: `{"percent": 10}`.
    Percent(f64),
}

impl Reserve {
    /// The reserve in millicores for a cluster with `allocatable` millicores.
    pub fn millis(self, allocatable: u64) -> u64 {
        match self {
            Reserve::Millis(m) => m,
            // Rounded up so the reserve is never smaller than asked.
            Reserve::Percent(p) => (allocatable as f64 * p / 100.0).ceil() as u64,
        }
    }
}

/// Checks a configuration; the error names the offending field.
pub fn validate(config: &Config) -> Result<(), String> {
    if config.filler.namespace.is_empty() || config.filler.name.is_empty() {
        return Err("filler must name a namespace and a workload".into());
    }
    if let Reserve::Percent(p) = config.reserve
        && !(0.0..=100.0).contains(&p)
    {
        // NaN is outside every range, infinities outside this one.
        return Err("reserve.percent must be between 0 and 100".into());
    }
    if config.filler_cpu_request_millis == Some(0) {
        return Err("filler_cpu_request_millis must be at least 1".into());
    }
    Ok(())
}

/// Filler replicas that fit: floor(max(0, allocatable − requested − reserve) / request), capped.
/// `capacity` must leave the filler out of `requested`; `request_millis` must be positive.
pub fn filler_replicas(
    capacity: &Capacity,
    reserve: Reserve,
    request_millis: u64,
    max_replicas: Option<u32>,
) -> u32 {
    let allocatable = capacity.allocatable_cpu_millis;
    let remaining = allocatable
        .saturating_sub(capacity.requested_cpu_millis)
        .saturating_sub(reserve.millis(allocatable));
    let fit = u32::try_from(remaining / request_millis.max(1)).unwrap_or(u32::MAX);
    max_replicas.map_or(fit, |cap| fit.min(cap))
}

/// The exported policy.
pub struct OpportunisticMinerFill;

impl Policy for OpportunisticMinerFill {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        validate(config)
    }

    fn tick(config: Config) -> Result<(), String> {
        let status = metrics::workload(&config.filler)?;
        let request = config
            .filler_cpu_request_millis
            .unwrap_or(status.cpu_request_millis);
        if request == 0 {
            return Err("the filler requests no CPU; set filler_cpu_request_millis".to_string());
        }
        let capacity = metrics::capacity(std::slice::from_ref(&config.filler))?;
        let wanted = filler_replicas(&capacity, config.reserve, request, config.max_replicas);
        if wanted == status.replicas {
            log::debug(&format!("filler stays at {wanted}"));
            return Ok(());
        }
        let reason = format!(
            "spare cpu: allocatable {} - requested {} - reserve {} fits {wanted} x {request}m",
            capacity.allocatable_cpu_millis,
            capacity.requested_cpu_millis,
            config.reserve.millis(capacity.allocatable_cpu_millis),
        );
        actuation::scale(&config.filler, ScaleChange::To(wanted), &reason)?;
        Ok(())
    }
}

export_policy!(OpportunisticMinerFill);

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(allocatable: u64, requested: u64) -> Capacity {
        Capacity {
            nodes: 3,
            allocatable_cpu_millis: allocatable,
            requested_cpu_millis: requested,
            ..Capacity::default()
        }
    }

    #[test]
    fn fills_what_remains_after_reserve() {
        // 12000 - 5000 - 1000 = 6000 → 6 fillers of 1000m.
        assert_eq!(
            filler_replicas(&cap(12_000, 5_000), Reserve::Millis(1_000), 1_000, None),
            6
        );
        // Floors partial replicas.
        assert_eq!(
            filler_replicas(&cap(12_000, 5_000), Reserve::Millis(1_000), 1_500, None),
            4
        );
        assert_eq!(
            filler_replicas(&cap(12_000, 5_000), Reserve::Millis(0), 250, None),
            28
        );
    }

    #[test]
    fn percent_reserve_is_a_share_of_allocatable() {
        assert_eq!(Reserve::Percent(10.0).millis(12_000), 1_200);
        assert_eq!(Reserve::Percent(0.0).millis(12_000), 0);
        assert_eq!(Reserve::Percent(100.0).millis(12_000), 12_000);
        // 12000 - 5000 - 1200 = 5800 → 5 fillers of 1000m.
        assert_eq!(
            filler_replicas(&cap(12_000, 5_000), Reserve::Percent(10.0), 1_000, None),
            5
        );
    }

    #[test]
    fn never_negative_and_capped() {
        assert_eq!(
            filler_replicas(&cap(4_000, 5_000), Reserve::Millis(0), 100, None),
            0
        );
        assert_eq!(
            filler_replicas(&cap(4_000, 3_500), Reserve::Millis(1_000), 100, None),
            0
        );
        assert_eq!(
            filler_replicas(&cap(100_000, 0), Reserve::Millis(0), 100, Some(7)),
            7
        );
    }

    #[test]
    fn yields_when_paid_load_rises() {
        let reserve = Reserve::Millis(500);
        let before = filler_replicas(&cap(16_000, 4_000), reserve, 1_000, None);
        // Paid load adds six 1000m pods, still pending: requested counts them already.
        let after = filler_replicas(&cap(16_000, 10_000), reserve, 1_000, None);
        assert_eq!((before, after), (11, 5));
        // And grows back when the paid load leaves.
        assert_eq!(
            filler_replicas(&cap(16_000, 4_000), reserve, 1_000, None),
            before
        );
    }

    #[test]
    fn parses_and_validates() {
        let c: Config = scalehost_sdk::parse_config(
            r#"{"filler": {"namespace": "batch", "name": "miner"}, "reserve": {"percent": 10}}"#,
        )
        .unwrap();
        assert_eq!(c.reserve, Reserve::Percent(10.0));
        assert_eq!((c.filler_cpu_request_millis, c.max_replicas), (None, None));
        assert_eq!(validate(&c), Ok(()));
        let bad = Config {
            reserve: Reserve::Percent(120.0),
            ..c.clone()
        };
        assert_eq!(
            validate(&bad),
            Err("reserve.percent must be between 0 and 100".into())
        );
        let zero = Config {
            filler_cpu_request_millis: Some(0),
            ..c
        };
        assert_eq!(
            validate(&zero),
            Err("filler_cpu_request_millis must be at least 1".into())
        );
        assert!(
            scalehost_sdk::parse_config::<Config>(
                r#"{"filler": {"namespace": "b", "name": "m"}, "reserve": {"millis": 1}, "x": 1}"#
            )
            .is_err()
        );
    }
}
