//! The query syntax a policy uses for Kubernetes custom metrics through `metrics.query`.

use crate::domain::cluster::BackendError;

/// How a policy asks for a custom.metrics.k8s.io value through `metrics.query`:
/// `custom.metrics.k8s.io/<namespace>/<resource>/<object name or *>/<metric>[?<label selector>]`,
/// e.g. `custom.metrics.k8s.io/web/pods/*/http_requests_per_second?app=api` or
/// `custom.metrics.k8s.io/web/services/api/requests_per_second`.
///
/// The answer is one series per described object, labelled `kind`, `metric`, `name` and
/// `namespace`, with one sample: the adapter's value at its timestamp. Only namespaced objects;
/// there is no history (`metrics.query-range` refuses such a query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMetricQuery {
    /// The objects' namespace.
    pub namespace: String,
    /// The objects' resource, plural (`pods`, `services`, `deployments.apps`, ...).
    pub resource: String,
    /// One object's name, or `*` for every object of the resource (narrowed by the selector).
    pub name: String,
    /// The metric's name.
    pub metric: String,
    /// A label selector (`app=api,tier=web`), for `*`.
    pub label_selector: Option<String>,
}

impl CustomMetricQuery {
    /// What starts a custom-metrics query.
    pub const PREFIX: &str = "custom.metrics.k8s.io/";

    /// Parses a query that starts with [`Self::PREFIX`]; `None` for any other query.
    pub fn parse(query: &str) -> Option<Result<Self, BackendError>> {
        let rest = query.trim().strip_prefix(Self::PREFIX)?;
        let (path, label_selector) = match rest.split_once('?') {
            Some((path, selector)) => (path, Some(selector.to_owned())),
            None => (rest, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let valid_segment = |s: &str| {
            !matches!(s, "" | "." | "..")
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
        };
        Some(match parts.as_slice() {
            [namespace, resource, name, metric]
                if [namespace, resource, metric]
                    .iter()
                    .all(|s| valid_segment(s))
                    && (*name == "*" || valid_segment(name))
                    && label_selector.as_deref().is_none_or(|s| !s.is_empty()) =>
            {
                Ok(CustomMetricQuery {
                    namespace: (*namespace).to_owned(),
                    resource: (*resource).to_owned(),
                    name: (*name).to_owned(),
                    metric: (*metric).to_owned(),
                    label_selector,
                })
            }
            _ => Err(BackendError::Invalid(format!(
                "custom metrics are asked as {}<namespace>/<resource>/<name or *>/<metric>[?<label selector>], not {query:?}",
                Self::PREFIX
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_metric_queries() {
        let q = CustomMetricQuery::parse("custom.metrics.k8s.io/web/pods/*/rps?app=api")
            .expect("a custom query")
            .expect("valid");
        assert_eq!(
            (
                q.namespace.as_str(),
                q.resource.as_str(),
                q.name.as_str(),
                q.metric.as_str()
            ),
            ("web", "pods", "*", "rps")
        );
        assert_eq!(q.label_selector.as_deref(), Some("app=api"));
        assert!(CustomMetricQuery::parse("sum(rate(x[1m]))").is_none());
        for bad in [
            "custom.metrics.k8s.io/web/pods/rps",
            "custom.metrics.k8s.io/web/pods/*/rps/extra",
            "custom.metrics.k8s.io//pods/*/rps",
            "custom.metrics.k8s.io/web/pods/*/rps?",
            "custom.metrics.k8s.io/web/../*/rps",
        ] {
            assert!(
                matches!(
                    CustomMetricQuery::parse(bad),
                    Some(Err(BackendError::Invalid(_)))
                ),
                "{bad}"
            );
        }
    }
}
