//! `metrics.query` and `metrics.query-range` against a real Prometheus, over its HTTP API.
//!
//! Start with [`Prometheus::query`]. Vector, matrix and scalar results become series (a scalar is
//! one series without labels); Prometheus's own errors (bad PromQL, its query timeout) reach the
//! policy as `invalid` with Prometheus's message; an unreachable server, a timeout of ours or a
//! 5xx as `unavailable`. Every call has a timeout. The bearer token is read from its file at
//! start and never logged.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::cluster::{BackendError, Sample, Series, TimestampMs};

/// `[backends.prometheus]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// A file holding a bearer token, sent on every request.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// A PEM file of the CA that signs the server's certificate (added to the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of every request (default 10s); also passed to Prometheus as its query timeout.
    #[serde(default = "default_timeout", with = "crate::domain::duration")]
    pub timeout: Duration,
    /// The largest answer read, bytes (default 16 MiB): a bigger one is refused as
    /// `unavailable` while it streams in, before it is held whole.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
}

fn default_max_answer_bytes() -> u64 {
    16 << 20
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Why the Prometheus backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusSetupError {
    /// A file (token, CA) could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The URL or the CA is unusable.
    #[error("prometheus: {0}")]
    Invalid(String),
}

/// A Prometheus server. Its calls are async: a tick's deadline drops a request in flight.
pub struct Prometheus {
    url: String,
    token: Option<String>,
    timeout: Duration,
    max_answer_bytes: u64,
    client: reqwest::Client,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    Scalar((f64, String)),
    String((f64, String)),
}

#[derive(Deserialize)]
struct VectorItem {
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

impl Prometheus {
    /// A client for `config`: reads the token and CA files now.
    pub fn new(config: &PrometheusConfig) -> Result<Self, PrometheusSetupError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| PrometheusSetupError::Read {
                path: path.clone(),
                source,
            })
        };
        let token = match &config.bearer_token_file {
            Some(path) => Some(String::from_utf8_lossy(&read(path)?).trim().to_owned()),
            None => None,
        };
        let mut builder = reqwest::Client::builder().timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let ca = reqwest::Certificate::from_pem(&read(path)?).map_err(|e| {
                PrometheusSetupError::Invalid(format!(
                    "{}: not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(ca);
        }
        let url = config.url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(PrometheusSetupError::Invalid(format!(
                "url {url:?} must start with http:// or https://"
            )));
        }
        let client = builder
            .build()
            .map_err(|e| PrometheusSetupError::Invalid(e.to_string()))?;
        Ok(Prometheus {
            url,
            token,
            timeout: config.timeout,
            max_answer_bytes: config.max_answer_bytes,
            client,
        })
    }

    /// An instant query at `at`.
    pub async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        self.get(
            "/api/v1/query",
            &[("query", promql.to_owned()), ("time", seconds(at))],
        )
        .await
    }

    /// A range query.
    pub async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        if step_ms == 0 {
            return Err(BackendError::Invalid("step must be > 0".into()));
        }
        if end < start {
            return Err(BackendError::Invalid("end is before start".into()));
        }
        self.get(
            "/api/v1/query_range",
            &[
                ("query", promql.to_owned()),
                ("start", seconds(start)),
                ("end", seconds(end)),
                ("step", seconds(step_ms)),
            ],
        )
        .await
    }

    /// Whether the server answers `/-/ready` (for `doctor`).
    pub async fn check(&self) -> Result<(), BackendError> {
        self.get("/api/v1/query", &[("query", "1".to_owned())])
            .await
            .map(|_| ())
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Series>, BackendError> {
        let mut request = self
            .client
            .get(format!("{}{path}", self.url))
            .query(params)
            .query(&[("timeout", format!("{}ms", self.timeout.as_millis()))]);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unavailable = |e: reqwest::Error| {
            BackendError::Unavailable(if e.is_timeout() {
                format!("prometheus did not answer within {:?}", self.timeout)
            } else {
                format!(
                    "prometheus unreachable: {}",
                    crate::domain::display_chain(&e)
                )
            })
        };
        let mut response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        // Read with a cap: a huge answer is refused while it streams in, never held whole.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if (bytes.len() + chunk.len()) as u64 > self.max_answer_bytes {
                return Err(BackendError::Unavailable(format!(
                    "prometheus's answer exceeds {} bytes (max_answer_bytes)",
                    self.max_answer_bytes
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&bytes);
        let answer: Answer = match serde_json::from_str(&body) {
            Ok(answer) => answer,
            Err(_) if !status.is_success() => {
                return Err(BackendError::Unavailable(format!(
                    "prometheus answered {status}: {}",
                    body.chars().take(200).collect::<String>()
                )));
            }
            Err(e) => {
                return Err(BackendError::Unavailable(format!(
                    "prometheus answered something else than its API: {e}"
                )));
            }
        };
        if answer.status != "success" {
            let message = format!(
                "prometheus: {}: {}",
                answer.error_type.as_deref().unwrap_or("error"),
                answer.error.as_deref().unwrap_or("no message")
            );
            // 400/422 are the query's fault; 503 (its timeout) and the rest are Prometheus's.
            return Err(if status.as_u16() == 400 || status.as_u16() == 422 {
                BackendError::Invalid(message)
            } else {
                BackendError::Unavailable(message)
            });
        }
        let data = answer
            .data
            .ok_or_else(|| BackendError::Unavailable("prometheus sent no data".into()))?;
        Ok(match data {
            Data::Vector(items) => items
                .into_iter()
                .map(|item| Series {
                    labels: item.metric.into_iter().collect(),
                    samples: sample(item.value).into_iter().collect(),
                })
                .collect(),
            Data::Matrix(items) => items
                .into_iter()
                .map(|item| Series {
                    labels: item.metric.into_iter().collect(),
                    samples: item.values.into_iter().filter_map(sample).collect(),
                })
                .collect(),
            Data::Scalar(value) | Data::String(value) => vec![Series {
                labels: Vec::new(),
                samples: sample(value).into_iter().collect(),
            }],
        })
    }
}

/// A Prometheus sample `[seconds, "value"]`; NaN and ±Inf are kept as Prometheus gives them.
fn sample((at, value): (f64, String)) -> Option<Sample> {
    let value = match value.as_str() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse().ok()?,
    };
    Some(Sample {
        at: (at * 1000.0).round() as u64,
        value,
    })
}

/// Milliseconds as Prometheus's decimal seconds.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_type_becomes_series() {
        let parse = |json: &str| -> Vec<Series> {
            let answer: Answer = serde_json::from_str(json).expect("parses");
            match answer.data.expect("data") {
                Data::Vector(items) => items
                    .into_iter()
                    .map(|i| Series {
                        labels: i.metric.into_iter().collect(),
                        samples: sample(i.value).into_iter().collect(),
                    })
                    .collect(),
                Data::Matrix(items) => items
                    .into_iter()
                    .map(|i| Series {
                        labels: i.metric.into_iter().collect(),
                        samples: i.values.into_iter().filter_map(sample).collect(),
                    })
                    .collect(),
                Data::Scalar(v) | Data::String(v) => vec![Series {
                    labels: vec![],
                    samples: sample(v).into_iter().collect(),
                }],
            }
        };
        let vector = parse(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1700000000.5,"2.5"]}]}}"#,
        );
        assert_eq!(vector[0].labels, vec![("job".into(), "a".into())]);
        assert_eq!(
            vector[0].samples,
            vec![Sample {
                at: 1_700_000_000_500,
                value: 2.5
            }]
        );
        let matrix = parse(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"+Inf"]]}]}}"#,
        );
        assert_eq!(matrix[0].samples.len(), 2);
        assert!(matrix[0].samples[1].value.is_infinite());
        let scalar =
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[3,"7"]}}"#);
        assert_eq!(
            (scalar[0].labels.len(), scalar[0].samples[0].value),
            (0, 7.0)
        );
        assert_eq!(seconds(1_700_000_000_005), "1700000000.005");
    }
}
