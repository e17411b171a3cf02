//! Workloads, capacity, scaling and node lifecycle against a real Kubernetes API server (kube).
//!
//! Start with [`Kubernetes::connect`]; then [`Kubernetes::workload`], [`Kubernetes::capacity`],
//! [`Kubernetes::scale`] (through the scale subresource, retried on 409 conflicts), and the node
//! steps around VM power: [`Kubernetes::cordon`], [`Kubernetes::drain`] (the Eviction API,
//! honouring 429 from PodDisruptionBudgets with backoff and an overall timeout, skipping
//! DaemonSet and mirror pods), [`Kubernetes::wait_ready`], [`Kubernetes::uncordon`].
//! Policies read custom.metrics.k8s.io through `metrics.query` (`domain::query::CustomMetricQuery`).
//!
//! The node steps and the node view are in `nodes.rs`, pods' requests and drain rules in
//! `pods.rs`, quantities in `quantity.rs`, custom metrics in `custom_metrics.rs`.
//!
//! Every call is async: a tick whose deadline passes drops its request in flight.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};

mod custom_metrics;
mod nodes;
mod pods;
mod quantity;

pub use pods::drain_blocker;
pub use quantity::{bytes, cpu_millis, quantity};

use crate::domain::cluster::{BackendError, WorkloadKind, WorkloadRef, WorkloadStatus};

/// `[backends.kubernetes]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Use the pod's service account (when scalehost runs in the cluster).
    #[serde(default)]
    pub in_cluster: bool,
    /// A kubeconfig file; without it and without `in_cluster`, `$KUBECONFIG` or
    /// `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current one).
    #[serde(default)]
    pub context: Option<String>,
    /// The API server's URL, instead of a kubeconfig.
    #[serde(default)]
    pub url: Option<String>,
    /// A bearer token file, with `url`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The CA of the API server's certificate, with `url`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of each request (default 10s).
    #[serde(default = "default_timeout", with = "crate::domain::duration")]
    pub timeout: Duration,
    /// How long a drain may take before the power-off is abandoned (default 5m).
    #[serde(default = "default_drain_timeout", with = "crate::domain::duration")]
    pub drain_timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Why the Kubernetes client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesSetupError {
    /// The configuration could not be loaded.
    #[error("kubernetes: {0}")]
    Config(String),
    /// A file (token, CA) could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A Kubernetes API server.
pub struct Kubernetes {
    client: kube::Client,
    drain_timeout: Duration,
    /// The API server's URL, as the client reaches it.
    cluster_url: String,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes").finish_non_exhaustive()
    }
}

/// Attempts at a scale write that meets a 409 conflict.
const CONFLICT_ATTEMPTS: u32 = 5;

impl Kubernetes {
    /// Loads the configuration (in-cluster, kubeconfig, or URL and token) and makes a client.
    pub async fn connect(config: &KubernetesConfig) -> Result<Self, KubernetesSetupError> {
        let setup = |e: &dyn std::fmt::Display| KubernetesSetupError::Config(e.to_string());
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| KubernetesSetupError::Read {
                path: path.clone(),
                source,
            })
        };
        let mut kube_config = if let Some(url) = &config.url {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| setup(&format!("url {url:?}: {e}")))?;
            let mut c = kube::Config::new(uri);
            if let Some(path) = &config.token_file {
                let token = String::from_utf8_lossy(&read(path)?).trim().to_owned();
                let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| setup(&"the token file holds characters a header cannot"))?;
                c.headers.push((http::header::AUTHORIZATION, value));
            }
            if let Some(path) = &config.ca_file {
                // Read here so that a missing file is named; kube loads it again itself.
                read(path)?;
                c.root_cert_file = Some(path.clone());
            }
            c
        } else if config.in_cluster {
            kube::Config::incluster().map_err(|e| setup(&e))?
        } else {
            let options = kube::config::KubeConfigOptions {
                context: config.context.clone(),
                ..Default::default()
            };
            match &config.kubeconfig {
                Some(path) => {
                    let file = kube::config::Kubeconfig::read_from(path).map_err(|e| setup(&e))?;
                    kube::Config::from_custom_kubeconfig(file, &options)
                        .await
                        .map_err(|e| setup(&e))?
                }
                None => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| setup(&e))?,
            }
        };
        // 429s are ours to handle (a drain has its own deadline) and a failed read is retried
        // at the next tick: no hidden retry loops inside a tick.
        kube_config.default_retry = false;
        kube_config.connect_timeout = Some(config.timeout);
        kube_config.read_timeout = Some(config.timeout);
        kube_config.write_timeout = Some(config.timeout);
        let cluster_url = kube_config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let client = kube::Client::try_from(kube_config).map_err(|e| setup(&e))?;
        Ok(Kubernetes {
            client,
            drain_timeout: config.drain_timeout,
            cluster_url,
        })
    }

    /// The API server's URL (lower-case, without a trailing slash): which cluster this is.
    pub fn cluster_url(&self) -> &str {
        &self.cluster_url
    }

    /// Replicas, Ready replicas, the CPU one replica requests, and the CPU its pods use (from
    /// metrics.k8s.io, where that API is served).
    pub async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        async {
            let shape = self.shape(target).await?;
            let usage = self.pod_usage(&target.namespace, &shape.selector).await?;
            Ok(WorkloadStatus {
                replicas: shape.replicas,
                ready: shape.ready,
                cpu_request_millis: shape.cpu_request_millis,
                cpu_usage_millis: usage,
            })
        }
        .await
    }

    /// Sets a workload's replicas through its scale subresource: reads the current Scale and
    /// writes it back with the new count and its resourceVersion; a 409 (someone wrote between)
    /// reads again, up to 5 times.
    pub async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<u32, BackendError> {
        async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let current = match target.kind {
                    WorkloadKind::Deployment => {
                        self.deployments(target).get_scale(&target.name).await
                    }
                    WorkloadKind::StatefulSet => {
                        self.stateful_sets(target).get_scale(&target.name).await
                    }
                }
                .map_err(|e| not_found_as(e, target))?;
                let mut wanted: Scale = current.clone();
                let spec = wanted.spec.get_or_insert_with(Default::default);
                let before = spec.replicas.unwrap_or(0).max(0) as u32;
                if before == replicas {
                    return Ok(before);
                }
                // The API's replicas are an int32: a larger count is refused, never wrapped.
                spec.replicas = Some(i32::try_from(replicas).map_err(|_| {
                    BackendError::Invalid(format!(
                        "{target}: {replicas} replicas exceeds Kubernetes' int32 limit"
                    ))
                })?);
                let written = match target.kind {
                    WorkloadKind::Deployment => {
                        self.deployments(target)
                            .replace_scale(&target.name, &PostParams::default(), &wanted)
                            .await
                    }
                    WorkloadKind::StatefulSet => {
                        self.stateful_sets(target)
                            .replace_scale(&target.name, &PostParams::default(), &wanted)
                            .await
                    }
                };
                match written {
                    Ok(_) => return Ok(before),
                    Err(kube::Error::Api(status))
                        if status.code == 409 && attempt < CONFLICT_ATTEMPTS =>
                    {
                        tracing::debug!(%target, attempt, "scale conflict; reading again");
                    }
                    Err(error) => return Err(not_found_as(error, target)),
                }
            }
        }
        .await
    }

    /// The API server's version (`GET /version`): reachable and authenticated.
    pub async fn version(&self) -> Result<String, BackendError> {
        async {
            self.client
                .apiserver_version()
                .await
                .map(|v| v.git_version)
                .map_err(backend_error)
        }
        .await
    }

    /// Whether scalehost's identity may `verb` the resource, across namespaces
    /// (SelfSubjectAccessReview).
    pub async fn can(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
    ) -> Result<bool, BackendError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        async {
            Api::<SelfSubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map(|r| r.status.is_some_and(|s| s.allowed))
                .map_err(backend_error)
        }
        .await
    }

    fn deployments(&self, target: &WorkloadRef) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &target.namespace)
    }

    fn stateful_sets(&self, target: &WorkloadRef) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &target.namespace)
    }

    /// A workload's replicas, readiness, per-replica CPU request and pod selector.
    async fn shape(&self, target: &WorkloadRef) -> Result<Shape, BackendError> {
        let (replicas, ready, template, selector) = match target.kind {
            WorkloadKind::Deployment => {
                let d = self
                    .deployments(target)
                    .get(&target.name)
                    .await
                    .map_err(|e| not_found_as(e, target))?;
                let spec = d.spec.unwrap_or_default();
                let status = d.status.unwrap_or_default();
                (
                    spec.replicas.unwrap_or(1),
                    status.ready_replicas.unwrap_or(0),
                    spec.template,
                    spec.selector.match_labels.unwrap_or_default(),
                )
            }
            WorkloadKind::StatefulSet => {
                let s = self
                    .stateful_sets(target)
                    .get(&target.name)
                    .await
                    .map_err(|e| not_found_as(e, target))?;
                let spec = s.spec.unwrap_or_default();
                let status = s.status.unwrap_or_default();
                (
                    spec.replicas.unwrap_or(1),
                    status.ready_replicas.unwrap_or(0),
                    spec.template,
                    spec.selector.match_labels.unwrap_or_default(),
                )
            }
        };
        let cpu_request_millis = template
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
            .map(|q| cpu_millis(&q.0))
            .sum();
        Ok(Shape {
            replicas: replicas.max(0) as u32,
            ready: ready.max(0) as u32,
            cpu_request_millis,
            selector,
        })
    }

    /// CPU used by the pods `selector` matches, from metrics.k8s.io; `None` where that API is
    /// not served or reports no pod.
    async fn pod_usage(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Option<u64>, BackendError> {
        let label_selector: Vec<String> =
            selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let uri = format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={}",
            urlencode(&label_selector.join(","))
        );
        let request = http::Request::get(uri)
            .body(Vec::new())
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        let list: serde_json::Value = match self.client.request(request).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 503 => {
                return Ok(None);
            }
            Err(error) => return Err(backend_error(error)),
        };
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Ok(None);
        }
        let used = items
            .iter()
            .flat_map(|pod| pod["containers"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["usage"]["cpu"].as_str().map(cpu_millis))
            .sum();
        Ok(Some(used))
    }
}

struct Shape {
    replicas: u32,
    ready: u32,
    cpu_request_millis: u64,
    selector: BTreeMap<String, String>,
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn not_found_as(error: kube::Error, target: &WorkloadRef) -> BackendError {
    match &error {
        kube::Error::Api(status) if status.code == 404 => {
            BackendError::NotFound(format!("{target}: {}", status.message))
        }
        _ => backend_error(error),
    }
}

/// The API server's answer as the policy sees it: its `Status` message kept.
fn backend_error(error: kube::Error) -> BackendError {
    match error {
        kube::Error::Api(status) => match status.code {
            404 => BackendError::NotFound(status.message),
            400 | 422 => BackendError::Invalid(status.message),
            401 | 403 => BackendError::Forbidden(format!(
                "the API server refused scalehost's credentials: {}",
                status.message
            )),
            code => BackendError::Unavailable(format!("kubernetes {code}: {}", status.message)),
        },
        other => BackendError::Unavailable(format!(
            "kubernetes: {}",
            crate::domain::display_chain(&other)
        )),
    }
}
