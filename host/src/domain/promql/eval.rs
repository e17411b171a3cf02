//! The PromQL subset the embedded backends answer (the simulated cluster, the backtest model).
//!
//! Selectors with `=`, `!=`, `=~`, `!~` (and `or` groups), `offset` and `@`; `sum`, `avg`,
//! `min`, `max`, `count` with `by`/`without`; parentheses, numbers, unary minus; `+ - * / % ^`
//! between scalars, a scalar and a vector, or two vectors matched one-to-one (`on`/`ignoring`);
//! `vector`, `scalar`, `abs`, `ceil`, `floor`, `clamp_min`, `clamp_max`. Anything else is
//! `invalid`, naming the subset. A range query is the instant query at every step.

use std::collections::BTreeMap;

use promql_parser::label::Matcher;
use promql_parser::parser::{
    AtModifier, BinModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};

use crate::domain::cluster::{BackendError, Sample, Series, TimestampMs};

/// A series' labels, sorted by name (`__name__` among them for a selected series).
pub type Labels = Vec<(String, String)>;

/// The per-workload metrics the embedded backends (the simulated cluster, the backtest model)
/// serve, each labelled `namespace` and `workload`.
pub const WORKLOAD_METRICS: [&str; 5] = [
    "scalehost_requests_per_minute",
    "scalehost_replicas",
    "scalehost_ready_replicas",
    "scalehost_cpu_usage_millis",
    "scalehost_cpu_utilization",
];

/// The labels of workload metric `metric` of `namespace/workload`, sorted.
pub fn workload_labels(metric: &str, namespace: &str, workload: &str) -> Labels {
    vec![
        ("__name__".to_owned(), metric.to_owned()),
        ("namespace".to_owned(), namespace.to_owned()),
        ("workload".to_owned(), workload.to_owned()),
    ]
}

/// Where the evaluator reads series.
pub trait SeriesSource {
    /// Every series `selector` matches at `at`, with its labels and value there; none for an
    /// instant the source has no data for.
    fn select(
        &self,
        selector: &Selector<'_>,
        at: TimestampMs,
    ) -> Result<Vec<(Labels, f64)>, BackendError>;
}

/// A vector selector's matchers, as a source tests its series against.
pub struct Selector<'a> {
    vs: &'a VectorSelector,
}

impl<'a> Selector<'a> {
    /// The value an equality matcher requires of `label` (so that a source can use an index),
    /// when every alternative of the selector requires it.
    pub fn equal(&self, label: &str) -> Option<&'a str> {
        if label == "__name__"
            && let Some(name) = &self.vs.name
        {
            return Some(name);
        }
        let required = |group: &'a [Matcher]| -> Option<&'a str> {
            group
                .iter()
                .find(|m| m.name == label && m.op == promql_parser::label::MatchOp::Equal)
                .map(|m| m.value.as_str())
        };
        let m = &self.vs.matchers;
        if m.or_matchers.is_empty() {
            return required(&m.matchers);
        }
        let first = required(&m.or_matchers[0])?;
        m.or_matchers[1..]
            .iter()
            .all(|g| required(g) == Some(first))
            .then_some(first)
    }

    /// Whether a series with these labels is selected (a missing label is the empty string).
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let value = |name: &str| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        if let Some(name) = &self.vs.name
            && value("__name__") != name
        {
            return false;
        }
        let all = |group: &[Matcher]| group.iter().all(|m| m.is_match(value(&m.name)));
        let m = &self.vs.matchers;
        all(&m.matchers) && (m.or_matchers.is_empty() || m.or_matchers.iter().any(|g| all(g)))
    }
}

/// A value of the subset.
enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

/// Evaluates `text` at `at`: a vector's series each with one sample; a scalar as one series
/// without labels.
pub fn evaluate(
    text: &str,
    at: TimestampMs,
    source: &dyn SeriesSource,
) -> Result<Vec<Series>, BackendError> {
    let expr = super::parse(text)?;
    let eval = Eval {
        source,
        window: (at, at),
    };
    Ok(match eval.expr(&expr, at)? {
        Value::Scalar(value) => vec![Series {
            labels: Vec::new(),
            samples: vec![Sample { at, value }],
        }],
        Value::Vector(vector) => vector
            .into_iter()
            .map(|(labels, value)| Series {
                labels,
                samples: vec![Sample { at, value }],
            })
            .collect(),
    })
}

/// Evaluates `text` at every step from `start` to `end` (both checked by the caller), each
/// label set one series.
pub fn evaluate_range(
    text: &str,
    start: TimestampMs,
    end: TimestampMs,
    step_ms: u64,
    source: &dyn SeriesSource,
) -> Result<Vec<Series>, BackendError> {
    if step_ms == 0 || end < start {
        return Err(BackendError::Invalid(
            "range query needs step > 0 and end >= start".into(),
        ));
    }
    let expr = super::parse(text)?;
    let eval = Eval {
        source,
        window: (start, end),
    };
    let mut by_labels: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut at = start;
    while at <= end {
        match eval.expr(&expr, at)? {
            Value::Scalar(value) => by_labels
                .entry(Vec::new())
                .or_default()
                .push(Sample { at, value }),
            Value::Vector(vector) => {
                for (labels, value) in vector {
                    by_labels
                        .entry(labels)
                        .or_default()
                        .push(Sample { at, value });
                }
            }
        }
        at = match at.checked_add(step_ms) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(by_labels
        .into_iter()
        .map(|(labels, samples)| Series { labels, samples })
        .collect())
}

fn unsupported(what: &str) -> BackendError {
    BackendError::Invalid(format!(
        "{what} is outside the embedded cluster's PromQL subset (selectors, sum/avg/min/max/count \
         by/without, arithmetic, vector/scalar/abs/ceil/floor/clamp_min/clamp_max); a real \
         Prometheus answers the rest"
    ))
}

struct Eval<'a> {
    source: &'a dyn SeriesSource,
    /// The range's first and last evaluation, for `@ start()` and `@ end()`.
    window: (TimestampMs, TimestampMs),
}

impl Eval<'_> {
    fn expr(&self, expr: &Expr, at: TimestampMs) -> Result<Value, BackendError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.expr(&p.expr, at),
            Expr::Unary(u) => Ok(match self.expr(&u.expr, at)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(vector) => Value::Vector(
                    vector
                        .into_iter()
                        .map(|(labels, v)| (without_name(labels), -v))
                        .collect(),
                ),
            }),
            Expr::VectorSelector(vs) => {
                let at = self.shifted(at, vs.at.as_ref(), vs.offset.as_ref())?;
                let mut vector = self.source.select(&Selector { vs }, at)?;
                for (labels, _) in &mut vector {
                    labels.sort();
                }
                Ok(Value::Vector(vector))
            }
            Expr::Aggregate(a) => {
                if a.param.is_some() {
                    return Err(unsupported(&format!("{}(…)", a.op)));
                }
                let Value::Vector(vector) = self.expr(&a.expr, at)? else {
                    return Err(BackendError::Invalid(format!(
                        "{} needs a vector, not a scalar",
                        a.op
                    )));
                };
                aggregate(&a.op.to_string(), a.modifier.as_ref(), vector)
            }
            Expr::Binary(b) => {
                let op = b.op.to_string();
                let lhs = self.expr(&b.lhs, at)?;
                let rhs = self.expr(&b.rhs, at)?;
                binary(&op, b.modifier.as_ref(), lhs, rhs)
            }
            Expr::Call(call) => self.call(call.func.name, &call.args.args, at),
            Expr::MatrixSelector(_) => Err(unsupported("a range selector ([…])")),
            Expr::Subquery(_) => Err(unsupported("a subquery")),
            Expr::StringLiteral(_) => Err(unsupported("a string")),
            Expr::Extension(_) => Err(unsupported("an extension")),
        }
    }

    fn shifted(
        &self,
        at: TimestampMs,
        modifier: Option<&AtModifier>,
        offset: Option<&Offset>,
    ) -> Result<TimestampMs, BackendError> {
        let at = match modifier {
            None => at,
            Some(AtModifier::Start) => self.window.0,
            Some(AtModifier::End) => self.window.1,
            Some(AtModifier::At(time)) => time
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|_| BackendError::Invalid("@ before 1970".into()))?,
        };
        Ok(match offset {
            None => at,
            Some(Offset::Pos(d)) => {
                at.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
            Some(Offset::Neg(d)) => {
                at.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
        })
    }

    fn call(&self, name: &str, args: &[Box<Expr>], at: TimestampMs) -> Result<Value, BackendError> {
        let scalar_arg = |i: usize| -> Result<f64, BackendError> {
            match args.get(i).map(|a| self.expr(a, at)).transpose()? {
                Some(Value::Scalar(v)) => Ok(v),
                _ => Err(BackendError::Invalid(format!(
                    "{name}() needs a scalar as argument {}",
                    i + 1
                ))),
            }
        };
        let vector_arg = || -> Result<Vec<(Labels, f64)>, BackendError> {
            match args.first().map(|a| self.expr(a, at)).transpose()? {
                Some(Value::Vector(v)) => Ok(v),
                _ => Err(BackendError::Invalid(format!("{name}() needs a vector"))),
            }
        };
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, BackendError> {
            Ok(Value::Vector(
                vector_arg()?
                    .into_iter()
                    .map(|(labels, v)| (without_name(labels), f(v)))
                    .collect(),
            ))
        };
        match name {
            "vector" => Ok(Value::Vector(vec![(Vec::new(), scalar_arg(0)?)])),
            "scalar" => {
                let vector = vector_arg()?;
                Ok(Value::Scalar(match vector.as_slice() {
                    [(_, v)] => *v,
                    _ => f64::NAN,
                }))
            }
            "abs" => map(&f64::abs),
            "ceil" => map(&f64::ceil),
            "floor" => map(&f64::floor),
            "clamp_min" => {
                let min = scalar_arg(1)?;
                map(&|v| v.max(min))
            }
            "clamp_max" => {
                let max = scalar_arg(1)?;
                map(&|v| v.min(max))
            }
            other => Err(unsupported(&format!("{other}()"))),
        }
    }
}

fn without_name(mut labels: Labels) -> Labels {
    labels.retain(|(k, _)| k != "__name__");
    labels
}

/// The labels an aggregation or a vector match groups by.
fn grouping(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        None => Vec::new(),
        Some(LabelModifier::Include(keep)) => labels
            .iter()
            .filter(|(k, _)| keep.labels.iter().any(|l| l == k))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(drop)) => labels
            .iter()
            .filter(|(k, _)| k != "__name__" && !drop.labels.iter().any(|l| l == k))
            .cloned()
            .collect(),
    }
}

fn aggregate(
    op: &str,
    modifier: Option<&LabelModifier>,
    vector: Vec<(Labels, f64)>,
) -> Result<Value, BackendError> {
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for (labels, v) in vector {
        groups
            .entry(grouping(&labels, modifier))
            .or_default()
            .push(v);
    }
    let fold = |values: &[f64]| -> Result<f64, BackendError> {
        Ok(match op {
            "sum" => values.iter().sum(),
            "avg" => values.iter().sum::<f64>() / values.len() as f64,
            "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
            "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "count" => values.len() as f64,
            other => return Err(unsupported(&format!("{other}(…)"))),
        })
    };
    let mut out = Vec::with_capacity(groups.len());
    for (labels, values) in groups {
        out.push((labels, fold(&values)?));
    }
    Ok(Value::Vector(out))
}

fn arithmetic(op: &str, a: f64, b: f64) -> Result<f64, BackendError> {
    Ok(match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        "^" => a.powf(b),
        other => return Err(unsupported(&format!("the operator {other}"))),
    })
}

fn binary(
    op: &str,
    modifier: Option<&BinModifier>,
    lhs: Value,
    rhs: Value,
) -> Result<Value, BackendError> {
    Ok(match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(arithmetic(op, a, b)?),
        (Value::Vector(vector), Value::Scalar(b)) => Value::Vector(
            vector
                .into_iter()
                .map(|(l, a)| Ok((without_name(l), arithmetic(op, a, b)?)))
                .collect::<Result<_, BackendError>>()?,
        ),
        (Value::Scalar(a), Value::Vector(vector)) => Value::Vector(
            vector
                .into_iter()
                .map(|(l, b)| Ok((without_name(l), arithmetic(op, a, b)?)))
                .collect::<Result<_, BackendError>>()?,
        ),
        (Value::Vector(left), Value::Vector(right)) => {
            let matching = modifier.and_then(|m| m.matching.as_ref());
            if modifier.is_some_and(|m| m.card != VectorMatchCardinality::OneToOne) {
                return Err(unsupported("group_left/group_right"));
            }
            // Without `on`, series match on every label but the name.
            let key = |labels: &Labels| match matching {
                None => without_name(labels.clone()),
                some => grouping(labels, some),
            };
            let mut by_key: BTreeMap<Labels, f64> = BTreeMap::new();
            for (labels, v) in &right {
                if by_key.insert(key(labels), *v).is_some() {
                    return Err(BackendError::Invalid(
                        "many-to-many matching: the right-hand side has two series with the same labels"
                            .into(),
                    ));
                }
            }
            let mut out = Vec::new();
            for (labels, a) in left {
                if let Some(b) = by_key.get(&key(&labels)) {
                    out.push((without_name(labels), arithmetic(op, a, *b)?));
                }
            }
            Value::Vector(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two workloads in two namespaces; `demand` history is the minute's number.
    struct Fixture;

    impl SeriesSource for Fixture {
        fn select(
            &self,
            selector: &Selector<'_>,
            at: TimestampMs,
        ) -> Result<Vec<(Labels, f64)>, BackendError> {
            let mut out = Vec::new();
            for (namespace, workload, base) in [("web", "api", 100.0), ("batch", "job, x", 7.0)] {
                for (name, value) in [("demand", base + (at / 60_000) as f64), ("replicas", 2.0)] {
                    let labels: Labels = vec![
                        ("__name__".into(), name.into()),
                        ("namespace".into(), namespace.into()),
                        ("workload".into(), workload.into()),
                    ];
                    if selector.matches(&labels) {
                        out.push((labels, value));
                    }
                }
            }
            if selector.matches(&[("__name__".into(), "cluster_total".into())]) {
                out.push((vec![("__name__".into(), "cluster_total".into())], 1000.0));
            }
            Ok(out)
        }
    }

    fn values(text: &str) -> Vec<(Labels, f64)> {
        evaluate(text, 60_000, &Fixture)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .into_iter()
            .map(|s| (s.labels, s.samples[0].value))
            .collect()
    }

    fn one(text: &str) -> f64 {
        match values(text).as_slice() {
            [(_, v)] => *v,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_aggregations_and_arithmetic() {
        assert_eq!(one("demand{namespace=\"web\"}"), 101.0);
        // Commas in label values are no trouble for a real parser.
        assert_eq!(one("demand{workload=\"job, x\"}"), 8.0);
        assert_eq!(one("sum(demand)"), 109.0);
        assert_eq!(
            values("sum by (namespace) (demand)"),
            vec![
                (l(&[("namespace", "batch")]), 8.0),
                (l(&[("namespace", "web")]), 101.0)
            ]
        );
        assert_eq!(
            values("max without (workload) (demand)"),
            vec![
                (l(&[("namespace", "batch")]), 8.0),
                (l(&[("namespace", "web")]), 101.0)
            ]
        );
        assert_eq!(one("count(demand{namespace=~\"web|batch\"})"), 2.0);
        assert_eq!(one("avg(demand)"), 54.5);
        assert_eq!(one("min(demand{namespace!=\"web\"})"), 8.0);
        assert_eq!(
            one("demand{namespace!~\"b.*\"} / replicas{namespace=\"web\"}"),
            50.5
        );
        assert_eq!(one("sum(demand) * 2 - 1"), 217.0);
        assert_eq!(one("-(2 ^ 3) + 1"), -7.0);
        assert_eq!(one("demand{namespace=\"web\"} offset 1m"), 100.0);
        assert_eq!(one("demand{namespace=\"web\"} @ 600"), 110.0);
        assert_eq!(one("scalar(demand{namespace=\"web\"}) + vector(1)"), 102.0);
        assert_eq!(one("clamp_max(demand{namespace=\"web\"}, 50)"), 50.0);
        assert_eq!(one("cluster_total"), 1000.0);
        // Selected series carry their name; arithmetic drops it.
        assert_eq!(
            values("demand{namespace=\"web\"}")[0].0,
            l(&[
                ("__name__", "demand"),
                ("namespace", "web"),
                ("workload", "api")
            ])
        );
        assert_eq!(
            values("demand{namespace=\"web\"} + 0")[0].0,
            l(&[("namespace", "web"), ("workload", "api")])
        );
        // A missing label is the empty string; or groups select either.
        assert_eq!(one("cluster_total{namespace=\"\"}"), 1000.0);
        assert!(values("demand{namespace=\"\"}").is_empty());
        assert_eq!(
            values("demand{namespace=\"web\" or namespace=\"batch\"}").len(),
            2
        );
    }

    #[test]
    fn outside_the_subset_is_invalid_and_says_so() {
        for text in [
            "rate(demand[5m])",
            "topk(1, demand)",
            "demand > 1",
            "sum(demand",
        ] {
            assert!(
                matches!(evaluate(text, 0, &Fixture), Err(BackendError::Invalid(_))),
                "{text}"
            );
        }
        match evaluate("rate(demand[5m])", 0, &Fixture) {
            Err(BackendError::Invalid(m)) => assert!(m.contains("subset"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_range_is_the_instant_query_at_every_step() {
        let series =
            evaluate_range("sum(demand)", 0, 180_000, 60_000, &Fixture).expect("evaluates");
        assert_eq!(series.len(), 1);
        let values: Vec<f64> = series[0].samples.iter().map(|s| s.value).collect();
        assert_eq!(values, [107.0, 109.0, 111.0, 113.0]);
    }

    #[test]
    fn selectors_tell_a_source_what_an_index_can_use() {
        let expr = crate::domain::promql::parse("demand{workload=\"api\"}").expect("parses");
        let Expr::VectorSelector(vs) = &expr else {
            panic!("a selector")
        };
        let selector = Selector { vs };
        assert_eq!(selector.equal("workload"), Some("api"));
        assert_eq!(selector.equal("__name__"), Some("demand"));
        assert_eq!(selector.equal("namespace"), None);
    }
}
