//! Workloads, capacity, scaling and node lifecycle against a real Kubernetes API server (kube).
//!
//! Start with [`Kubernetes::connect`]; then [`Kubernetes::workload`], [`Kubernetes::capacity`],
//! [`Kubernetes::scale`] (through the scale subresource, retried on 409 conflicts), and the node
//! steps around VM power: [`Kubernetes::cordon`], [`Kubernetes::drain`] (the Eviction API,
//! honouring 429 from PodDisruptionBudgets with backoff and an overall timeout, skipping
//! DaemonSet and mirror pods), [`Kubernetes::wait_ready`], [`Kubernetes::uncordon`].
//! Policies read custom.metrics.k8s.io through `metrics.query` ([`CustomMetricQuery`]).
//!
//! Every call is async: a tick whose deadline passes drops its request in flight.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::model::{
    BackendError, Capacity, NodeInfo, PodInfo, Sample, Series, WorkloadKind, WorkloadRef,
    WorkloadStatus,
};

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
    #[serde(default = "default_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// How long a drain may take before the power-off is abandoned (default 5m).
    #[serde(default = "default_drain_timeout", with = "crate::duration")]
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
        let client = kube::Client::try_from(kube_config).map_err(|e| setup(&e))?;
        Ok(Kubernetes {
            client,
            drain_timeout: config.drain_timeout,
        })
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

    /// Allocatable CPU and memory of the Ready, schedulable nodes; what non-terminal pods
    /// request (pending ones included), less the pods of `exclude`; the pending pods.
    pub async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        async {
            let mut excluded = Vec::new();
            for target in exclude {
                let shape = self.shape(target).await?;
                excluded.push((target.namespace.clone(), shape.selector));
            }
            let nodes = Api::<Node>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            let mut capacity = Capacity::default();
            for node in &nodes.items {
                if !node_ready(node)
                    || node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
                {
                    continue;
                }
                let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                let get = |k: &str| allocatable.and_then(|a| a.get(k)).map(|q| q.0.as_str());
                capacity.nodes += 1;
                capacity.allocatable_cpu_millis += get("cpu").map_or(0, cpu_millis);
                capacity.allocatable_memory_bytes += get("memory").map_or(0, bytes);
            }
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            for pod in &pods.items {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    continue;
                }
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                if excluded
                    .iter()
                    .any(|(ns, selector)| ns == namespace && matches_selector(selector, &labels))
                {
                    continue;
                }
                let (cpu, memory) = pod_requests(pod);
                capacity.requested_cpu_millis += cpu;
                capacity.requested_memory_bytes += memory;
                if phase == Some("Pending") {
                    capacity.pending_pods += 1;
                }
            }
            Ok(capacity)
        }
        .await
    }

    /// Every node with its non-terminal pods (two list calls, whatever the cluster's size).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        async {
            let nodes = Api::<Node>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(backend_error)?;
            let mut infos: Vec<NodeInfo> = nodes
                .items
                .iter()
                .map(|node| {
                    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                    let get = |k: &str| allocatable.and_then(|a| a.get(k)).map(|q| q.0.as_str());
                    NodeInfo {
                        name: node.metadata.name.clone().unwrap_or_default(),
                        ready: node_ready(node),
                        schedulable: node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true),
                        allocatable_cpu_millis: get("cpu").map_or(0, cpu_millis),
                        allocatable_memory_bytes: get("memory").map_or(0, bytes),
                        pods: Vec::new(),
                    }
                })
                .collect();
            for pod in pods.items.iter().filter(|p| !terminal(p)) {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                if let Some(info) = infos.iter_mut().find(|n| Some(n.name.as_str()) == node) {
                    info.pods.push(pod_info(pod));
                }
            }
            Ok(infos)
        }
        .await
    }

    /// The pods the scheduler has not placed yet (Pending, no node).
    pub async fn pending_pods(&self) -> Result<Vec<PodInfo>, BackendError> {
        async {
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default().fields("spec.nodeName="))
                .await
                .map_err(backend_error)?;
            Ok(pods
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
                .map(pod_info)
                .collect())
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
                spec.replicas = Some(replicas as i32);
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

    /// Marks a node unschedulable.
    pub async fn cordon(&self, node: &str) -> Result<(), BackendError> {
        self.set_unschedulable(node, true).await
    }

    /// Marks a node schedulable again.
    pub async fn uncordon(&self, node: &str) -> Result<(), BackendError> {
        self.set_unschedulable(node, false).await
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), BackendError> {
        async {
            Api::<Node>::all(self.client.clone())
                .patch(
                    node,
                    &PatchParams::default(),
                    &Patch::Merge(
                        serde_json::json!({ "spec": { "unschedulable": unschedulable } }),
                    ),
                )
                .await
                .map(|_| ())
                .map_err(backend_error)
        }
        .await
    }

    /// Evicts every pod of a node through the Eviction API, except DaemonSet pods (their
    /// controller ignores cordons) and mirror pods (the kubelet owns them); a 429 (a
    /// PodDisruptionBudget forbids it now) is retried with backoff until `drain_timeout`.
    /// Returns the pods evicted.
    pub async fn drain(&self, node: &str) -> Result<Vec<String>, BackendError> {
        async {
            let deadline = Instant::now() + self.drain_timeout;
            let pods = Api::<Pod>::all(self.client.clone())
                .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
                .await
                .map_err(backend_error)?;
            let mut evicted = Vec::new();
            for pod in &pods.items {
                let owned_by_daemon_set = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "DaemonSet");
                let mirror = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
                let finished = matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                );
                if owned_by_daemon_set || mirror || finished {
                    continue;
                }
                let name = pod.metadata.name.clone().unwrap_or_default();
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let pods = Api::<Pod>::namespaced(self.client.clone(), &namespace);
                let mut backoff = Duration::from_millis(200);
                loop {
                    match pods.evict(&name, &EvictParams::default()).await {
                        Ok(_) => break,
                        // Gone already: nothing to evict.
                        Err(kube::Error::Api(status)) if status.code == 404 => break,
                        Err(kube::Error::Api(status)) if status.code == 429 => {
                            if Instant::now() + backoff > deadline {
                                return Err(BackendError::Unavailable(format!(
                                    "drain of {node} timed out after {:?}: evicting {namespace}/{name} is refused by a disruption budget ({})",
                                    self.drain_timeout, status.message
                                )));
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                        Err(error) => return Err(backend_error(error)),
                    }
                }
                evicted.push(format!("{namespace}/{name}"));
            }
            Ok(evicted)
        }
        .await
    }

    /// Waits until a node reports Ready, up to `timeout`.
    pub async fn wait_ready(&self, node: &str, timeout: Duration) -> Result<(), BackendError> {
        async {
            let deadline = Instant::now() + timeout;
            let nodes = Api::<Node>::all(self.client.clone());
            loop {
                match nodes.get_opt(node).await.map_err(backend_error)? {
                    Some(n) if node_ready(&n) => return Ok(()),
                    _ if Instant::now() >= deadline => {
                        return Err(BackendError::Unavailable(format!(
                            "node {node} not Ready within {timeout:?}"
                        )));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
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

struct Shape {
    replicas: u32,
    ready: u32,
    cpu_request_millis: u64,
    selector: BTreeMap<String, String>,
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn matches_selector(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn pod_info(pod: &Pod) -> PodInfo {
    let (cpu, memory) = pod_requests(pod);
    PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
        cpu_request_millis: cpu,
        memory_request_bytes: memory,
        drain_blocker: drain_blocker(pod),
    }
}

/// Why a drain would refuse to evict `pod`, by the rules of `kubectl drain` (without
/// `--force` or `--delete-emptydir-data`: k8s.io/kubectl/pkg/drain/filters.go) and Cluster
/// Autoscaler's `safe-to-evict` annotation (cluster-autoscaler/utils/drain/drain.go). `None`
/// for pods a drain evicts, and for those it leaves alone: DaemonSet and mirror pods.
pub fn drain_blocker(pod: &Pod) -> Option<String> {
    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let owners = pod.metadata.owner_references.iter().flatten();
    let controller = owners.clone().find(|o| o.controller == Some(true));
    if annotation("kubernetes.io/config.mirror").is_some()
        || owners.clone().any(|o| o.kind == "DaemonSet")
    {
        return None;
    }
    match annotation("cluster-autoscaler.kubernetes.io/safe-to-evict") {
        Some("false") => return Some("annotated safe-to-evict: \"false\"".into()),
        Some("true") => return None,
        _ => {}
    }
    if controller.is_none() {
        return Some("not managed by a controller (a bare pod)".into());
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .find(|v| v.empty_dir.is_some());
    if let Some(volume) = empty_dir {
        return Some(format!("local storage: emptyDir volume {}", volume.name));
    }
    None
}

/// What a pod requests: its containers' requests (init containers run before, one at a time,
/// so their largest request counts if it is larger), as the scheduler counts.
fn pod_requests(pod: &Pod) -> (u64, u64) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let request = |c: &k8s_openapi::api::core::v1::Container, key: &str, parse: fn(&str) -> u64| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(key))
            .map_or(0, |q| parse(&q.0))
    };
    let sum = |key: &str, parse: fn(&str) -> u64| -> u64 {
        spec.containers.iter().map(|c| request(c, key, parse)).sum()
    };
    let init = |key: &str, parse: fn(&str) -> u64| -> u64 {
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| request(c, key, parse))
            .max()
            .unwrap_or(0)
    };
    (
        sum("cpu", cpu_millis).max(init("cpu", cpu_millis)),
        sum("memory", bytes).max(init("memory", bytes)),
    )
}

/// A CPU quantity in millicores: `2`, `0.5`, `250m`, `1500000n`, `300u`.
pub fn cpu_millis(quantity: &str) -> u64 {
    let q = quantity.trim();
    let (number, scale) = match q.char_indices().last() {
        Some((i, 'm')) => (&q[..i], 1.0),
        Some((i, 'u')) => (&q[..i], 1e-3),
        Some((i, 'n')) => (&q[..i], 1e-6),
        _ => (q, 1000.0),
    };
    number
        .parse::<f64>()
        .map_or(0, |n| (n * scale).ceil().max(0.0) as u64)
}

/// Any quantity as a number: `1500m` is 1.5, `2k` 2000, `1Ki` 1024, `3e2` 300.
pub fn quantity(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let suffixes: [(&str, f64); 16] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        // An exponent ("1E3") is not the exa suffix: only a bare trailing E is.
        ("E", 1e18),
        ("", 1.0),
    ];
    suffixes.iter().find_map(|(suffix, factor)| {
        let number = q.strip_suffix(suffix)?;
        let n: f64 = number.parse().ok()?;
        n.is_finite().then_some(n * factor)
    })
}

/// A memory quantity in bytes: `128Mi`, `1Gi`, `500M`, `1e9`, `1024`.
pub fn bytes(quantity: &str) -> u64 {
    let q = quantity.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = q.strip_suffix(suffix) {
            return number.parse::<f64>().map_or(0, |n| (n * factor) as u64);
        }
    }
    q.parse::<f64>().map_or(0, |n| n.max(0.0) as u64)
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
        other => BackendError::Unavailable(format!("kubernetes: {}", crate::display_chain(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_quantity() {
        assert_eq!(quantity("1500m"), Some(1.5));
        assert_eq!(quantity("2k"), Some(2000.0));
        assert_eq!(quantity("1Ki"), Some(1024.0));
        assert_eq!(quantity("42"), Some(42.0));
        assert_eq!(quantity("3e2"), Some(300.0));
        assert_eq!(quantity("1E"), Some(1e18));
        assert_eq!(quantity("lots"), None);
    }

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

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a pod")
    }

    #[test]
    fn drain_blockers_follow_kubectl_and_cluster_autoscaler() {
        let owned = |kind: &str| serde_json::json!([{ "apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "u", "controller": true }]);
        let replica_set = pod(
            serde_json::json!({ "metadata": { "name": "a", "ownerReferences": owned("ReplicaSet") } }),
        );
        assert_eq!(drain_blocker(&replica_set), None);
        let bare = pod(serde_json::json!({ "metadata": { "name": "a" } }));
        assert_eq!(
            drain_blocker(&bare).as_deref(),
            Some("not managed by a controller (a bare pod)")
        );
        let daemon = pod(
            serde_json::json!({ "metadata": { "name": "a", "ownerReferences": owned("DaemonSet") } }),
        );
        assert_eq!(
            drain_blocker(&daemon),
            None,
            "a drain leaves DaemonSet pods alone"
        );
        let mirror = pod(
            serde_json::json!({ "metadata": { "name": "a", "annotations": { "kubernetes.io/config.mirror": "x" } } }),
        );
        assert_eq!(drain_blocker(&mirror), None, "and mirror pods");
        let scratch = pod(serde_json::json!({
            "metadata": { "name": "a", "ownerReferences": owned("ReplicaSet") },
            "spec": { "containers": [], "volumes": [{ "name": "cache", "emptyDir": {} }] }
        }));
        assert_eq!(
            drain_blocker(&scratch).as_deref(),
            Some("local storage: emptyDir volume cache")
        );
        let pinned = pod(serde_json::json!({
            "metadata": { "name": "a", "ownerReferences": owned("ReplicaSet"),
                          "annotations": { "cluster-autoscaler.kubernetes.io/safe-to-evict": "false" } }
        }));
        assert_eq!(
            drain_blocker(&pinned).as_deref(),
            Some("annotated safe-to-evict: \"false\"")
        );
        let allowed = pod(serde_json::json!({
            "metadata": { "name": "a", "annotations": { "cluster-autoscaler.kubernetes.io/safe-to-evict": "true" } },
            "spec": { "containers": [], "volumes": [{ "name": "cache", "emptyDir": {} }] }
        }));
        assert_eq!(
            drain_blocker(&allowed),
            None,
            "safe-to-evict=true overrides the others"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("2"), 2000);
        assert_eq!(cpu_millis("0.5"), 500);
        assert_eq!(cpu_millis("250m"), 250);
        assert_eq!(cpu_millis("1500000n"), 2);
        assert_eq!(cpu_millis("300u"), 1);
        assert_eq!(bytes("128Mi"), 128 << 20);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("500M"), 500_000_000);
        assert_eq!(bytes("1e9"), 1_000_000_000);
        assert_eq!(bytes("1024"), 1024);
    }

    #[test]
    fn selectors_match_all_their_labels() {
        let selector: BTreeMap<String, String> = [("app".into(), "web".into())].into();
        let mut labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "a".into())].into();
        assert!(matches_selector(&selector, &labels));
        labels.insert("app".into(), "db".into());
        assert!(!matches_selector(&selector, &labels));
        assert!(
            !matches_selector(&BTreeMap::new(), &labels),
            "an empty selector selects nothing here"
        );
    }
}
