//! The PromQL subset the embedded backends answer: `name`, `name{label="value",…}`, `sum(…)`.

use crate::domain::cluster::BackendError;

/// A parsed query: `sum(name{label="value",…})`, with `sum` and the matchers optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// Wrapped in `sum(…)`.
    pub sum: bool,
    /// The metric name.
    pub metric: String,
    /// Equality matchers.
    pub matchers: Vec<(String, String)>,
}

/// Parses the subset; anything else is `invalid` with the reason.
pub(crate) fn parse_query(text: &str) -> Result<Query, BackendError> {
    let invalid = |why: &str| BackendError::Invalid(format!("query {text:?}: {why}"));
    let mut s = text.trim();
    let mut sum = false;
    if let Some(rest) = s.strip_prefix("sum(") {
        s = rest
            .strip_suffix(')')
            .ok_or_else(|| invalid("unclosed sum("))?
            .trim();
        sum = true;
    }
    let (metric, selector) = match s.find('{') {
        Some(i) => (
            &s[..i],
            Some(
                s[i..]
                    .strip_suffix('}')
                    .ok_or_else(|| invalid("unclosed {"))?,
            ),
        ),
        None => (s, None),
    };
    let metric = metric.trim();
    if metric.is_empty()
        || !metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(invalid(
            "expected a metric name, optionally with {label=\"value\"} and sum(...)",
        ));
    }
    let mut matchers = Vec::new();
    if let Some(selector) = selector {
        for part in selector[1..]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| invalid("label matchers must be label=\"value\""))?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| invalid("label values must be double-quoted"))?;
            if k.trim().ends_with('!') || k.trim().ends_with('~') || v.starts_with('~') {
                return Err(invalid("only equality matchers (=) are supported"));
            }
            matchers.push((k.trim().to_owned(), v.to_owned()));
        }
    }
    Ok(Query {
        sum,
        metric: metric.to_owned(),
        matchers,
    })
}

impl Query {
    /// Whether `labels` satisfy every matcher.
    pub(crate) fn matches(&self, labels: &[(String, String)]) -> bool {
        self.matchers
            .iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset_and_refuses_the_rest() {
        let q = parse_query("sum(scalehost_replicas{namespace=\"web\", workload=\"api\"})")
            .expect("parses");
        assert!(q.sum);
        assert_eq!(q.metric, "scalehost_replicas");
        assert_eq!(
            q.matchers,
            [
                ("namespace".into(), "web".into()),
                ("workload".into(), "api".into())
            ]
        );
        for bad in ["rate(x[5m])", "x{a!=\"b\"}", "x{a=b}", "sum(x", ""] {
            assert!(
                matches!(parse_query(bad), Err(BackendError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
