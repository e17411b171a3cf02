//! What one tenant may consume: the operator's defaults and a tenant's own overrides.
//!
//! The operator sets [`Quotas`] for every tenant (`[engine.quotas]` in the config file); a
//! tenant's record may override each ([`QuotaOverrides`], admin-set). [`Quotas::with`] gives the
//! quotas one tenant runs with.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::promql::QueryLimits;

/// Per-tenant quotas, as the operator sets them for every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// How far before the tick a tenant's query may read (offsets, `@`, ranges, subqueries and
    /// a range query's span together).
    #[serde(with = "crate::domain::duration")]
    pub max_query_lookback: Duration,
    /// The most points one range query, or one subquery, may compute.
    pub max_query_points: u32,
    /// Queries per minute over all the tenant's bindings.
    pub queries_per_minute: u32,
    /// Tokens the tenant may hold at once.
    pub max_tokens: u32,
    /// Pushed-event series (service, host) the tenant may keep.
    pub max_event_series: u32,
    /// Bytes the tenant's pushed events may hold (32 per event, plus each series' names).
    pub max_event_bytes: u64,
    /// How far ahead of its backend's clock a pushed event may be stamped.
    #[serde(with = "crate::domain::duration")]
    pub max_event_skew: Duration,
}

impl Default for Quotas {
    fn default() -> Self {
        let query = QueryLimits::default();
        Quotas {
            max_query_lookback: query.max_lookback,
            max_query_points: query.max_points,
            queries_per_minute: query.per_minute,
            max_tokens: 100,
            max_event_series: 1000,
            max_event_bytes: 4 << 20,
            max_event_skew: Duration::from_secs(300),
        }
    }
}

/// A tenant's own quotas, where they differ from the operator's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaOverrides {
    /// See [`Quotas::max_query_lookback`].
    #[serde(
        with = "crate::domain::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_query_lookback: Option<Duration>,
    /// See [`Quotas::max_query_points`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_query_points: Option<u32>,
    /// See [`Quotas::queries_per_minute`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queries_per_minute: Option<u32>,
    /// See [`Quotas::max_tokens`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// See [`Quotas::max_event_series`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_series: Option<u32>,
    /// See [`Quotas::max_event_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<u64>,
}

impl QuotaOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == QuotaOverrides::default()
    }
}

impl Quotas {
    /// The quotas of a tenant with these overrides.
    pub fn with(&self, overrides: &QuotaOverrides) -> Quotas {
        Quotas {
            max_query_lookback: overrides
                .max_query_lookback
                .unwrap_or(self.max_query_lookback),
            max_query_points: overrides.max_query_points.unwrap_or(self.max_query_points),
            queries_per_minute: overrides
                .queries_per_minute
                .unwrap_or(self.queries_per_minute),
            max_tokens: overrides.max_tokens.unwrap_or(self.max_tokens),
            max_event_series: overrides.max_event_series.unwrap_or(self.max_event_series),
            max_event_bytes: overrides.max_event_bytes.unwrap_or(self.max_event_bytes),
            max_event_skew: self.max_event_skew,
        }
    }

    /// What one query may cost.
    pub fn query_limits(&self) -> QueryLimits {
        QueryLimits {
            max_lookback: self.max_query_lookback,
            max_points: self.max_query_points,
            per_minute: self.queries_per_minute,
        }
    }

    /// Refuses quotas no query could live with.
    pub fn check(&self) -> Result<(), String> {
        if self.max_query_points == 0 {
            return Err("quotas.max_query_points must be at least 1".into());
        }
        if self.queries_per_minute == 0 {
            return Err("quotas.queries_per_minute must be at least 1".into());
        }
        Ok(())
    }
}
