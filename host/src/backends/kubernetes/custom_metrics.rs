//! custom.metrics.k8s.io values for `metrics.query` (the query's syntax is
//! `domain::query::CustomMetricQuery`).

use super::quantity::quantity;
use super::{Kubernetes, backend_error, urlencode};
use crate::domain::cluster::{BackendError, Sample, Series};
use crate::domain::query::CustomMetricQuery;

impl Kubernetes {
    /// The values custom.metrics.k8s.io (v1beta2) reports for `query`'s objects.
    pub async fn custom_metric(
        &self,
        query: &CustomMetricQuery,
    ) -> Result<Vec<Series>, BackendError> {
        let mut uri = format!(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/{}/{}/{}",
            query.namespace, query.resource, query.name, query.metric
        );
        if let Some(selector) = &query.label_selector {
            uri = format!("{uri}?labelSelector={}", urlencode(selector));
        }
        let request = http::Request::get(uri)
            .body(Vec::new())
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        let list: serde_json::Value = self.client.request(request).await.map_err(backend_error)?;
        let mut series = Vec::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let object = &item["describedObject"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            let value = item["value"].as_str().and_then(quantity).ok_or_else(|| {
                BackendError::Unavailable(format!(
                    "custom metrics: {} is not a quantity",
                    item["value"]
                ))
            })?;
            let at =
                serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>(
                    item["timestamp"].clone(),
                )
                .map_err(|e| {
                    BackendError::Unavailable(format!("custom metrics: timestamp: {e}"))
                })?;
            let metric = match item["metric"]["name"].as_str() {
                Some(name) => name.to_owned(),
                None => query.metric.clone(),
            };
            series.push(Series {
                labels: vec![
                    ("kind".into(), text(&object["kind"])),
                    ("metric".into(), metric),
                    ("name".into(), text(&object["name"])),
                    ("namespace".into(), text(&object["namespace"])),
                ],
                samples: vec![Sample {
                    at: u64::try_from(at.0.as_millisecond()).unwrap_or(0),
                    value,
                }],
            });
        }
        Ok(series)
    }
}
