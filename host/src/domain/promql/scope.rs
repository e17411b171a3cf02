//! A tenant's PromQL, scoped by rewriting: every selector reads only the tenant's namespaces.
//!
//! What a tenant may query is documented in `docs/api.md` ("Tenancy"); this is its one
//! implementation. The rules, for every vector and matrix selector wherever it sits (in
//! functions, aggregations, both sides of binary operations, subqueries):
//! - an equality matcher on `namespace` must name a granted namespace (or `""`, a series without
//!   the label, with the `cluster_metrics` grant): anything else is `forbidden`;
//! - `namespace=~"<granted>"` is added (with `|` an empty alternative under `cluster_metrics`),
//!   so that other matchers on the label can only narrow it; `or` groups get it each;
//! - series known to be cluster-wide ([`CLUSTER_WIDE_PREFIXES`]) need `cluster_metrics`;
//! - `info()`, which joins series the query does not name, is refused;
//! - [`QueryLimits`]: how far back the query reads and how many points it computes.

use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use serde::{Deserialize, Serialize};

use crate::domain::cluster::{BackendError, TimestampMs};

/// The label that holds a series' namespace, the wall between tenants.
pub const NAMESPACE_LABEL: &str = "namespace";

/// Metric-name prefixes of series that describe the whole cluster (they carry no namespace, or
/// another tenant's): readable only with the `cluster_metrics` grant.
pub const CLUSTER_WIDE_PREFIXES: &[&str] = &[
    "scalehost_cluster_",
    "scalehost_pending_pods",
    "kube_node_",
    "node_",
];

/// The step Prometheus gives a subquery without one (its default evaluation interval).
const DEFAULT_SUBQUERY_STEP_MS: i128 = 60_000;

/// What one tenant's queries may read.
#[derive(Debug, Clone, Copy)]
pub struct QueryGrant<'a> {
    /// The tenant, for messages.
    pub tenant: &'a str,
    /// Its namespaces.
    pub namespaces: &'a [String],
    /// Whether it may read cluster-wide series (those without a namespace label).
    pub cluster_metrics: bool,
}

/// How much one tenant's queries may cost a shared Prometheus (operator defaults in
/// `[engine.quotas]`, overridable per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryLimits {
    /// How far before the tick a query may read: offsets, `@`, matrix ranges, subqueries and a
    /// range query's span together.
    pub max_lookback: Duration,
    /// The most points a range query, or one subquery, may compute.
    pub max_points: u32,
    /// Queries per minute over all the tenant's bindings (a burst of one minute's worth).
    pub per_minute: u32,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_lookback: Duration::from_secs(8 * 86_400),
            max_points: 11_000,
            per_minute: 600,
        }
    }
}

/// When a query is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryWindow {
    /// At one instant (`metrics.query`).
    Instant(TimestampMs),
    /// From `start` to `end` every `step_ms` (`metrics.query-range`).
    Range {
        /// The first evaluation.
        start: TimestampMs,
        /// The last.
        end: TimestampMs,
        /// Between evaluations, ms (> 0).
        step_ms: u64,
    },
}

/// Parses `text`, enforces `grant` and `limits` for a query made at `now` over `window`, and
/// returns the query to send: the same expression with every selector scoped.
pub fn scope_query(
    text: &str,
    grant: &QueryGrant<'_>,
    limits: &QueryLimits,
    now: TimestampMs,
    window: QueryWindow,
) -> Result<String, BackendError> {
    let forbidden = |why: String| BackendError::Forbidden(why);
    let (start, end) = match window {
        QueryWindow::Instant(at) => (at, at),
        QueryWindow::Range {
            start,
            end,
            step_ms,
        } => {
            if step_ms == 0 || end < start {
                return Err(BackendError::Invalid(
                    "range query needs step > 0 and end >= start".into(),
                ));
            }
            let points = (end - start) / step_ms + 1;
            if points > u64::from(limits.max_points) {
                return Err(forbidden(format!(
                    "the range query has {points} points; tenant {} may ask at most {} (quotas.max_query_points)",
                    grant.tenant, limits.max_points
                )));
            }
            (start, end)
        }
    };
    let mut expr = super::parse(text)?;
    let mut walk = Walk::new(grant, limits, start, end)?;
    walk.expr(&mut expr, i128::from(start), i128::from(end))?;
    let reach = i128::from(now) - walk.earliest;
    if reach > limits.max_lookback.as_millis() as i128 {
        return Err(forbidden(format!(
            "the query reads {} before the tick; tenant {} may read at most {} back (quotas.max_query_lookback)",
            crate::domain::duration::format(Duration::from_millis(
                u64::try_from(reach).unwrap_or(u64::MAX)
            )),
            grant.tenant,
            crate::domain::duration::format(limits.max_lookback)
        )));
    }
    Ok(expr.to_string())
}

/// One pass over a query: scopes its selectors, records how far back it reads.
struct Walk<'a> {
    grant: &'a QueryGrant<'a>,
    max_points: u32,
    /// The range query's first and last evaluation (for `@ start()` and `@ end()`).
    window: (i128, i128),
    /// The matcher every selector gets.
    injected: Matcher,
    /// The earliest instant any selector reads, ms.
    earliest: i128,
}

impl<'a> Walk<'a> {
    fn new(
        grant: &'a QueryGrant<'a>,
        limits: &QueryLimits,
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<Self, BackendError> {
        if grant.namespaces.is_empty() && !grant.cluster_metrics {
            return Err(BackendError::Forbidden(format!(
                "tenant {} is granted no namespace and no cluster_metrics: it may not query metrics",
                grant.tenant
            )));
        }
        let mut alternatives = Vec::with_capacity(grant.namespaces.len() + 1);
        for namespace in grant.namespaces {
            // DNS-1123 labels have no regex metacharacters; refuse rather than escape anything else.
            if namespace.is_empty()
                || !namespace
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(BackendError::Forbidden(format!(
                    "tenant {}'s namespace {namespace:?} is not a DNS-1123 label",
                    grant.tenant
                )));
            }
            alternatives.push(namespace.as_str());
        }
        if grant.cluster_metrics {
            alternatives.push("");
        }
        // Built through the parser, so that the matcher's regex is the one Prometheus compiles.
        let text = format!("x{{{NAMESPACE_LABEL}=~\"{}\"}}", alternatives.join("|"));
        let injected = match super::parse(&text) {
            Ok(Expr::VectorSelector(vs)) => vs.matchers.matchers.into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| BackendError::Invalid(format!("cannot build the scope matcher {text}")))?;
        Ok(Walk {
            grant,
            max_points: limits.max_points,
            window: (i128::from(start), i128::from(end)),
            injected,
            earliest: i128::from(start),
        })
    }

    /// Scopes `expr`, evaluated at instants from `lo` to `hi` (ms).
    fn expr(&mut self, expr: &mut Expr, lo: i128, hi: i128) -> Result<(), BackendError> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs, lo, hi, 0),
            Expr::MatrixSelector(ms) => {
                let range = ms.range.as_millis() as i128;
                self.selector(&mut ms.vs, lo, hi, range)
            }
            Expr::Aggregate(a) => {
                if let Some(param) = &mut a.param {
                    self.expr(param, lo, hi)?;
                }
                self.expr(&mut a.expr, lo, hi)
            }
            Expr::Unary(u) => self.expr(&mut u.expr, lo, hi),
            Expr::Binary(b) => {
                self.expr(&mut b.lhs, lo, hi)?;
                self.expr(&mut b.rhs, lo, hi)
            }
            Expr::Paren(p) => self.expr(&mut p.expr, lo, hi),
            Expr::Subquery(s) => {
                let (lo, hi) = self.shifted(lo, hi, s.at.as_ref(), s.offset.as_ref());
                let range = s.range.as_millis() as i128;
                let step = s
                    .step
                    .map_or(DEFAULT_SUBQUERY_STEP_MS, |d| d.as_millis() as i128)
                    .max(1);
                let points = range / step + 1;
                if points > i128::from(self.max_points) {
                    return Err(BackendError::Forbidden(format!(
                        "a subquery of {points} points; tenant {} may ask at most {} (quotas.max_query_points)",
                        self.grant.tenant, self.max_points
                    )));
                }
                self.expr(&mut s.expr, lo - range, hi)
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::Call(call) => {
                if call.func.name == "info" {
                    return Err(BackendError::Forbidden(
                        "info() joins series the query does not name, which cannot be scoped to a tenant".into(),
                    ));
                }
                for arg in &mut call.args.args {
                    self.expr(arg, lo, hi)?;
                }
                Ok(())
            }
            Expr::Extension(_) => Err(BackendError::Forbidden(
                "an extension expression cannot be scoped".into(),
            )),
        }
    }

    /// The instants a node evaluated at `lo..=hi` reads, after its `@` and `offset`.
    fn shifted(
        &self,
        lo: i128,
        hi: i128,
        at: Option<&AtModifier>,
        offset: Option<&Offset>,
    ) -> (i128, i128) {
        let (lo, hi) = match at {
            None => (lo, hi),
            Some(AtModifier::Start) => (self.window.0, self.window.0),
            Some(AtModifier::End) => (self.window.1, self.window.1),
            Some(AtModifier::At(time)) => {
                let ms = match time.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => d.as_millis() as i128,
                    Err(before) => -(before.duration().as_millis() as i128),
                };
                (ms, ms)
            }
        };
        match offset {
            None => (lo, hi),
            Some(Offset::Pos(d)) => (lo - d.as_millis() as i128, hi - d.as_millis() as i128),
            Some(Offset::Neg(d)) => (lo + d.as_millis() as i128, hi + d.as_millis() as i128),
        }
    }

    fn selector(
        &mut self,
        vs: &mut VectorSelector,
        lo: i128,
        hi: i128,
        range: i128,
    ) -> Result<(), BackendError> {
        let (lo, _) = self.shifted(lo, hi, vs.at.as_ref(), vs.offset.as_ref());
        self.earliest = self.earliest.min(lo - range);
        if !self.grant.cluster_metrics {
            let names = vs.name.iter().cloned().chain(
                vs.matchers
                    .find_matchers("__name__")
                    .into_iter()
                    .filter(|m| m.op == MatchOp::Equal)
                    .map(|m| m.value),
            );
            for name in names {
                if CLUSTER_WIDE_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    return Err(BackendError::Forbidden(format!(
                        "{name} is a cluster-wide series: tenant {} needs the cluster_metrics grant to read it",
                        self.grant.tenant
                    )));
                }
            }
        }
        let matchers = &mut vs.matchers;
        let groups: Vec<&mut Vec<Matcher>> = if matchers.or_matchers.is_empty() {
            vec![&mut matchers.matchers]
        } else {
            matchers.or_matchers.iter_mut().collect()
        };
        for group in groups {
            for m in group.iter() {
                if m.name == NAMESPACE_LABEL && m.op == MatchOp::Equal {
                    self.check_namespace(&m.value)?;
                }
            }
            group.push(self.injected.clone());
        }
        Ok(())
    }

    fn check_namespace(&self, namespace: &str) -> Result<(), BackendError> {
        if namespace.is_empty() {
            return if self.grant.cluster_metrics {
                Ok(())
            } else {
                Err(BackendError::Forbidden(format!(
                    "series without a namespace are cluster-wide: tenant {} needs the cluster_metrics grant",
                    self.grant.tenant
                )))
            };
        }
        if self.grant.namespaces.iter().any(|n| n == namespace) {
            Ok(())
        } else {
            Err(BackendError::Forbidden(format!(
                "namespace {namespace:?} is not granted to tenant {}",
                self.grant.tenant
            )))
        }
    }
}

/// A tenant's query rate: a token bucket refilled at `per_minute`, holding at most one minute's
/// worth. Time is the tick's (virtual on the simulated cluster); it never runs backwards here.
#[derive(Debug, Clone, Default)]
pub struct QueryRate {
    tokens: f64,
    last: Option<TimestampMs>,
}

impl QueryRate {
    /// Takes one query's token at `now`; `false` when the minute's worth is spent.
    pub fn take(&mut self, now: TimestampMs, per_minute: u32) -> bool {
        let full = f64::from(per_minute);
        self.tokens = match self.last {
            None => full,
            Some(last) if now > last => {
                (self.tokens + (now - last) as f64 * full / 60_000.0).min(full)
            }
            Some(_) => self.tokens,
        };
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_700_000_000_000;

    fn grant(cluster_metrics: bool) -> (Vec<String>, bool) {
        (vec!["web".to_owned(), "shop".to_owned()], cluster_metrics)
    }

    fn scoped(text: &str, cluster_metrics: bool) -> Result<String, BackendError> {
        let (namespaces, cluster_metrics) = grant(cluster_metrics);
        scope_query(
            text,
            &QueryGrant {
                tenant: "a",
                namespaces: &namespaces,
                cluster_metrics,
            },
            &QueryLimits::default(),
            NOW,
            QueryWindow::Instant(NOW),
        )
    }

    fn forbidden(text: &str) -> String {
        match scoped(text, false) {
            Err(BackendError::Forbidden(message)) => message,
            other => panic!("{text}: expected forbidden, got {other:?}"),
        }
    }

    #[test]
    fn every_selector_is_scoped() {
        let ns = "namespace=~\"web|shop\"";
        for (query, expected) in [
            ("up", format!("up{{{ns}}}")),
            (
                "sum by (pod) (rate(x{namespace=\"web\"}[5m]))",
                format!("sum by (pod) (rate(x{{namespace=\"web\",{ns}}}[5m]))"),
            ),
            (
                "sum without (namespace) (x)",
                format!("sum without (namespace) (x{{{ns}}})"),
            ),
            ("{__name__=~\".+\"}", format!("{{__name__=~\".+\",{ns}}}")),
            (
                "label_replace(x, \"namespace\", \"batch\", \"\", \"\")",
                format!("label_replace(x{{{ns}}}, \"namespace\", \"batch\", \"\", \"\")"),
            ),
            ("a / on (pod) b", format!("a{{{ns}}} / on (pod) b{{{ns}}}")),
            (
                "max_over_time(rate(x[1m])[10m:1m] offset 1h)",
                format!("max_over_time(rate(x{{{ns}}}[1m])[10m:1m] offset 1h)"),
            ),
            ("vector(1)", "vector(1)".to_owned()),
            ("absent(x)", format!("absent(x{{{ns}}})")),
            (
                "x{namespace!=\"web\"}",
                format!("x{{namespace!=\"web\",{ns}}}"),
            ),
        ] {
            assert_eq!(scoped(query, false).expect(query), expected, "{query}");
        }
        // The rewrite parses again to the same text: what Prometheus receives is what was checked.
        let once = scoped(
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
            false,
        )
        .expect("scoped");
        assert_eq!(
            super::super::parse(&once).expect("parses").to_string(),
            once
        );
    }

    #[test]
    fn foreign_and_cluster_wide_selectors_are_forbidden() {
        for (query, why) in [
            (
                "sum(x{namespace=\"batch\"})",
                "namespace \"batch\" is not granted",
            ),
            (
                "count by (pod) (kube_pod_info{namespace=\"b\"})",
                "\"b\" is not granted",
            ),
            ("x{namespace=\"web\"} + y{namespace=\"batch\"}", "\"batch\""),
            ("absent(x{namespace=\"batch\"})", "\"batch\""),
            (
                "scalehost_cluster_allocatable_cpu_millis",
                "cluster_metrics",
            ),
            ("x{namespace=\"\"}", "cluster_metrics"),
            ("{__name__=\"node_cpu_seconds_total\"}", "cluster-wide"),
            ("info(x)", "info()"),
        ] {
            let message = forbidden(query);
            assert!(message.contains(why), "{query}: {message}");
        }
        assert_eq!(
            scoped("scalehost_cluster_allocatable_cpu_millis", true).expect("granted"),
            "scalehost_cluster_allocatable_cpu_millis{namespace=~\"web|shop|\"}"
        );
        let none = scope_query(
            "up",
            &QueryGrant {
                tenant: "a",
                namespaces: &[],
                cluster_metrics: false,
            },
            &QueryLimits::default(),
            NOW,
            QueryWindow::Instant(NOW),
        );
        assert!(matches!(none, Err(BackendError::Forbidden(_))), "{none:?}");
    }

    #[test]
    fn or_groups_are_scoped_each() {
        let scoped = scoped("x{a=\"1\" or b=\"2\"}", false).expect("scoped");
        assert_eq!(
            scoped,
            "x{a=\"1\", namespace=~\"web|shop\" or b=\"2\", namespace=~\"web|shop\"}"
        );
        assert!(forbidden("x{a=\"1\" or namespace=\"batch\"}").contains("batch"));
    }

    #[test]
    fn lookback_and_points_are_limited() {
        let limits = QueryLimits {
            max_lookback: Duration::from_secs(86_400),
            max_points: 100,
            per_minute: 10,
        };
        let (namespaces, _) = grant(false);
        let grant = QueryGrant {
            tenant: "a",
            namespaces: &namespaces,
            cluster_metrics: false,
        };
        let run = |text: &str, window| scope_query(text, &grant, &limits, NOW, window);
        let instant = QueryWindow::Instant(NOW);
        assert!(run("x[1d]", instant).is_ok());
        // Offsets, ranges and subqueries add up; @ reads where it says.
        for far in [
            "x[1d] offset 1m",
            "x offset 2d",
            "max_over_time(x[12h:1h] offset 13h)",
            "max_over_time(x[2h])[23h:1h]",
        ] {
            let message = match run(far, instant) {
                Err(BackendError::Forbidden(m)) => m,
                other => panic!("{far}: {other:?}"),
            };
            assert!(message.contains("at most 1d back"), "{far}: {message}");
        }
        let at = format!("x @ {}", (NOW - 2 * 86_400_000) / 1000);
        assert!(matches!(run(&at, instant), Err(BackendError::Forbidden(_))));
        assert!(
            run("x offset -5d", instant).is_ok(),
            "the future costs no history"
        );
        // A range query's span counts, and its points.
        let range = |start: TimestampMs, step_ms| QueryWindow::Range {
            start,
            end: NOW,
            step_ms,
        };
        assert!(run("x", range(NOW - 99 * 60_000, 60_000)).is_ok());
        assert!(matches!(
            run("x", range(NOW - 100 * 60_000, 60_000)),
            Err(BackendError::Forbidden(m)) if m.contains("101 points")
        ));
        assert!(matches!(
            run("x[1h]", range(NOW - 86_400_000, 3_600_000)),
            Err(BackendError::Forbidden(m)) if m.contains("at most 1d back")
        ));
        assert!(matches!(
            run("max_over_time(x[1h:30s])", instant),
            Err(BackendError::Forbidden(m)) if m.contains("121 points")
        ));
        assert!(matches!(
            run("x", range(NOW, 0)),
            Err(BackendError::Invalid(_))
        ));
    }

    #[test]
    fn the_rate_is_a_bucket_of_one_minute() {
        let mut rate = QueryRate::default();
        let taken = (0..15).filter(|_| rate.take(NOW, 10)).count();
        assert_eq!(taken, 10, "a burst of one minute's worth");
        assert!(!rate.take(NOW + 5_999, 10));
        assert!(rate.take(NOW + 6_000, 10), "one token every 6 s");
        assert!(!rate.take(NOW + 6_000, 10));
        // Time running backwards (another binding's tick) refills nothing.
        assert!(!rate.take(NOW, 10));
        assert!(rate.take(NOW + 600_000, 10));
        assert_eq!((0..20).filter(|_| rate.take(NOW + 600_000, 10)).count(), 9);
    }
}
