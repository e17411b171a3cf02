//! An in-process HTTP server that answers as the Kubernetes API server does on the paths
//! scalehost uses, for the Kubernetes backend's tests.
//!
//! Modelled: Deployments and StatefulSets (`GET`), their scale subresource (`GET`, `PUT` with
//! resourceVersion optimistic concurrency: a stale version answers 409 `Conflict`, and tests can
//! make the next writes conflict as if another writer got there first, or answer 503
//! `ServiceUnavailable` as an overloaded server does); Nodes (`GET` one or all,
//! merge-`PATCH` of `spec.unschedulable`); Pods (`GET` all, `fieldSelector=spec.nodeName=`);
//! the Eviction subresource (201, 429 `TooManyRequests` while a disruption budget forbids, 404
//! for a missing pod; an evicted pod is gone); metrics.k8s.io PodMetrics (`labelSelector=`; 404
//! when the metrics API is switched off); custom.metrics.k8s.io v1beta2 values of named objects or
//! of every object (`*`) of a resource with `labelSelector=` (404 when no object has the metric,
//! as prometheus-adapter answers; 404 for the whole group when the API is switched off);
//! `GET /version`; SelfSubjectAccessReview (allowed
//! unless a test denies the verb and resource). Errors are `Status` objects with `code`, `reason` and
//! the API server's message wording. Every request is logged in order.
//!
//! Authentication is a bearer token when a test sets one (401 `Unauthorized` otherwise).
//!
//! Not modelled: other authentication, RBAC, watches, other verbs and kinds, label selectors beyond
//! `k=v[,k=v]`, field selectors beyond `spec.nodeName`, strategic-merge patches, admission,
//! garbage collection, the controllers (replica counts change only when a test says so).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A Deployment or StatefulSet.
#[derive(Debug, Clone)]
pub struct FakeWorkload {
    pub replicas: i32,
    pub ready: i32,
    pub cpu_request: String,
    pub labels: BTreeMap<String, String>,
    pub resource_version: u64,
}

/// A node.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub cpu: String,
    pub memory: String,
    pub ready: bool,
    pub unschedulable: bool,
}

/// A pod.
#[derive(Debug, Clone)]
pub struct FakePod {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cpu: String,
    pub memory: String,
    pub phase: String,
    pub daemon_set: bool,
    pub mirror: bool,
    /// 429s left before an eviction is allowed.
    pub budget_refusals: u32,
    /// CPU used, for metrics.k8s.io.
    pub usage: String,
}

/// One object's value of a custom metric.
#[derive(Debug, Clone)]
pub struct FakeCustomMetric {
    pub namespace: String,
    /// Plural resource, as in the URL (`pods`).
    pub resource: String,
    /// The described object's kind (`Pod`).
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub metric: String,
    /// A quantity, as adapters write it (`1500m`).
    pub value: String,
}

/// The whole fake cluster.
#[derive(Debug, Default)]
pub struct FakeState {
    pub deployments: BTreeMap<(String, String), FakeWorkload>,
    pub stateful_sets: BTreeMap<(String, String), FakeWorkload>,
    pub nodes: BTreeMap<String, FakeNode>,
    pub pods: Vec<FakePod>,
    pub metrics_api: bool,
    /// When set, every request must carry `Authorization: Bearer <token>` (else 401).
    pub token: Option<String>,
    /// Whether custom.metrics.k8s.io is served, and its values.
    pub custom_metrics_api: bool,
    pub custom_metrics: Vec<FakeCustomMetric>,
    /// The next scale writes answer 409, as if another writer had just written.
    pub conflicting_writes: u32,
    /// The next scale writes answer 503, as an overloaded API server does.
    pub unavailable_writes: u32,
    /// Permissions a SelfSubjectAccessReview answers as denied: `verb resource[/sub]`.
    pub denied: Vec<String>,
    /// `METHOD path` of every request, in order.
    pub log: Vec<String>,
}

pub type Shared = Arc<Mutex<FakeState>>;

fn status(code: u16, reason: &str, message: String) -> Response {
    (
        StatusCode::from_u16(code).expect("status"),
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        })),
    )
        .into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(404, "NotFound", format!("{kind} \"{name}\" not found"))
}

fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    json!(labels)
}

fn workload_json(kind: &str, ns: &str, name: &str, w: &FakeWorkload) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": { "name": name, "namespace": ns, "resourceVersion": w.resource_version.to_string() },
        "spec": {
            "replicas": w.replicas,
            "selector": { "matchLabels": labels_json(&w.labels) },
            "template": {
                "metadata": { "labels": labels_json(&w.labels) },
                "spec": { "containers": [{ "name": "app", "image": "app", "resources": { "requests": { "cpu": w.cpu_request } } }] }
            },
            "serviceName": name,
        },
        "status": { "replicas": w.replicas, "readyReplicas": w.ready },
    })
}

fn scale_json(ns: &str, name: &str, w: &FakeWorkload) -> Value {
    let selector: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": name, "namespace": ns, "resourceVersion": w.resource_version.to_string() },
        "spec": { "replicas": w.replicas },
        "status": { "replicas": w.replicas, "selector": selector.join(",") },
    })
}

fn node_json(name: &str, n: &FakeNode) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "spec": { "unschedulable": n.unschedulable },
        "status": {
            "allocatable": { "cpu": n.cpu, "memory": n.memory },
            "conditions": [{ "type": "Ready", "status": if n.ready { "True" } else { "False" } }],
        },
    })
}

fn pod_json(p: &FakePod) -> Value {
    let mut metadata =
        json!({ "name": p.name, "namespace": p.namespace, "labels": labels_json(&p.labels) });
    if p.daemon_set {
        metadata["ownerReferences"] =
            json!([{ "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "1" }]);
    }
    if p.mirror {
        metadata["annotations"] = json!({ "kubernetes.io/config.mirror": "abc" });
    }
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {
            "nodeName": p.node,
            "containers": [{ "name": "app", "image": "app", "resources": { "requests": { "cpu": p.cpu, "memory": p.memory } } }],
        },
        "status": { "phase": p.phase },
    })
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    Json(json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items }))
        .into_response()
}

fn table<'a>(
    state: &'a mut FakeState,
    resource: &str,
) -> &'a mut BTreeMap<(String, String), FakeWorkload> {
    if resource == "deployments" {
        &mut state.deployments
    } else {
        &mut state.stateful_sets
    }
}

async fn get_workload(
    State(s): State<Shared>,
    Path((ns, resource, name)): Path<(String, String, String)>,
) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!("GET {resource}/{ns}/{name}"));
    let kind = if resource == "deployments" {
        "Deployment"
    } else {
        "StatefulSet"
    };
    match table(&mut state, &resource).get(&(ns.clone(), name.clone())) {
        Some(w) => Json(workload_json(kind, &ns, &name, w)).into_response(),
        None => not_found(&format!("{resource}.apps"), &name),
    }
}

async fn get_scale(
    State(s): State<Shared>,
    Path((ns, resource, name)): Path<(String, String, String)>,
) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!("GET {resource}/{ns}/{name}/scale"));
    match table(&mut state, &resource).get(&(ns.clone(), name.clone())) {
        Some(w) => Json(scale_json(&ns, &name, w)).into_response(),
        None => not_found(&format!("{resource}.apps"), &name),
    }
}

async fn put_scale(
    State(s): State<Shared>,
    Path((ns, resource, name)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!("PUT {resource}/{ns}/{name}/scale"));
    let conflict = || {
        status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource}.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
    };
    if state.unavailable_writes > 0 {
        state.unavailable_writes -= 1;
        return status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        );
    }
    if state.conflicting_writes > 0 {
        state.conflicting_writes -= 1;
        // Another writer got there first: the stored version moves on.
        if let Some(w) = table(&mut state, &resource).get_mut(&(ns.clone(), name.clone())) {
            w.resource_version += 1;
        }
        return conflict();
    }
    let Some(w) = table(&mut state, &resource).get_mut(&(ns.clone(), name.clone())) else {
        return not_found(&format!("{resource}.apps"), &name);
    };
    let sent = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if !sent.is_empty() && sent != w.resource_version.to_string() {
        return conflict();
    }
    let Some(replicas) = body["spec"]["replicas"].as_i64() else {
        return status(422, "Invalid", "Scale.spec.replicas: Required value".into());
    };
    if replicas < 0 {
        return status(
            422,
            "Invalid",
            "Scale.spec.replicas: Invalid value: must be greater than or equal to 0".into(),
        );
    }
    w.replicas = replicas as i32;
    w.resource_version += 1;
    Json(scale_json(&ns, &name, w)).into_response()
}

async fn list_nodes(State(s): State<Shared>) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push("GET nodes".into());
    let items = state
        .nodes
        .iter()
        .map(|(n, node)| node_json(n, node))
        .collect();
    list("NodeList", items)
}

async fn get_node(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!("GET node/{name}"));
    match state.nodes.get(&name) {
        Some(node) => Json(node_json(&name, node)).into_response(),
        None => not_found("nodes", &name),
    }
}

async fn patch_node(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Json(patch): Json<Value>,
) -> Response {
    let mut state = s.lock().expect("state");
    let unschedulable = patch["spec"]["unschedulable"].as_bool();
    state.log.push(format!(
        "PATCH node/{name} unschedulable={}",
        unschedulable.map_or("-".to_owned(), |u| u.to_string())
    ));
    let Some(node) = state.nodes.get_mut(&name) else {
        return not_found("nodes", &name);
    };
    if let Some(u) = unschedulable {
        node.unschedulable = u;
    }
    let json = node_json(&name, node);
    Json(json).into_response()
}

async fn list_pods(
    State(s): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut state = s.lock().expect("state");
    let on_node = query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_owned);
    state.log.push(format!(
        "GET pods{}",
        on_node
            .as_ref()
            .map_or(String::new(), |n| format!(" on {n}"))
    ));
    let items = state
        .pods
        .iter()
        // As the API server matches fields: an unscheduled pod's `spec.nodeName` is "".
        .filter(|p| {
            on_node
                .as_ref()
                .is_none_or(|n| p.node.as_deref().unwrap_or_default() == n)
        })
        .map(pod_json)
        .collect();
    list("PodList", items)
}

async fn evict(State(s): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!("POST eviction {ns}/{name}"));
    let Some(index) = state
        .pods
        .iter()
        .position(|p| p.namespace == ns && p.name == name)
    else {
        return not_found("pods", &name);
    };
    if state.pods[index].budget_refusals > 0 {
        state.pods[index].budget_refusals -= 1;
        return status(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        );
    }
    state.pods.remove(index);
    (
        StatusCode::CREATED,
        Json(json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 })),
    )
        .into_response()
}

/// `labelSelector=k=v[,k=v]` of a request's query.
fn label_selector(query: &BTreeMap<String, String>) -> Vec<(String, String)> {
    query
        .get("labelSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn pod_metrics(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!("GET podmetrics/{ns}"));
    if !state.metrics_api {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    let selector = label_selector(&query);
    let items: Vec<Value> = state
        .pods
        .iter()
        .filter(|p| p.namespace == ns && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .map(|p| {
            json!({
                "metadata": { "name": p.name, "namespace": p.namespace },
                "containers": [{ "name": "app", "usage": { "cpu": p.usage, "memory": "10Mi" } }],
            })
        })
        .collect();
    Json(
        json!({ "kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": items }),
    )
    .into_response()
}

async fn custom_metric(
    State(s): State<Shared>,
    Path((ns, resource, name, metric)): Path<(String, String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut state = s.lock().expect("state");
    state.log.push(format!(
        "GET custom.metrics/{ns}/{resource}/{name}/{metric}"
    ));
    if !state.custom_metrics_api {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    let selector = label_selector(&query);
    let items: Vec<Value> = state
        .custom_metrics
        .iter()
        .filter(|m| m.namespace == ns && m.resource == resource && m.metric == metric)
        .filter(|m| name == "*" || m.name == name)
        .filter(|m| selector.iter().all(|(k, v)| m.labels.get(k) == Some(v)))
        .map(|m| {
            json!({
                "describedObject": { "kind": m.kind, "namespace": m.namespace, "name": m.name, "apiVersion": "/v1" },
                "metric": { "name": m.metric, "selector": null },
                "timestamp": "2026-11-24T10:00:00Z",
                "value": m.value,
            })
        })
        .collect();
    if items.is_empty() && (name != "*" || selector.is_empty()) {
        return status(
            404,
            "NotFound",
            format!("the server could not find the metric {metric} for {resource}"),
        );
    }
    Json(json!({ "kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "metadata": {}, "items": items }))
        .into_response()
}

async fn version() -> Response {
    Json(json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64" }))
        .into_response()
}

async fn access_review(State(s): State<Shared>, Json(mut review): Json<Value>) -> Response {
    let mut state = s.lock().expect("state");
    let attributes = &review["spec"]["resourceAttributes"];
    let mut what = format!(
        "{} {}",
        attributes["verb"].as_str().unwrap_or(""),
        attributes["resource"].as_str().unwrap_or("")
    );
    if let Some(sub) = attributes["subresource"].as_str() {
        what = format!("{what}/{sub}");
    }
    state
        .log
        .push(format!("POST selfsubjectaccessreview {what}"));
    let allowed = !state.denied.contains(&what);
    review["status"] = json!({ "allowed": allowed });
    (StatusCode::CREATED, Json(review)).into_response()
}

async fn authenticate(
    State(s): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let expected = s.lock().expect("state").token.clone();
    if let Some(token) = expected {
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if presented != Some(format!("Bearer {token}").as_str()) {
            s.lock()
                .expect("state")
                .log
                .push(format!("401 {}", request.uri().path()));
            return status(401, "Unauthorized", "Unauthorized".into());
        }
    }
    next.run(request).await
}

/// Serves `state` on a free loopback port; returns its base URL.
pub async fn serve(state: Shared) -> (String, SocketAddr) {
    let app = axum::Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/{resource}/{name}",
            get(get_workload),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/{resource}/{name}/scale",
            get(get_scale).put(put_scale),
        )
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
        .route("/api/v1/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}/eviction", post(evict))
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            get(pod_metrics),
        )
        .route(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{resource}/{name}/{metric}",
            get(custom_metric),
        )
        .route("/version", get(version))
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(access_review),
        )
        .fallback(|| async {
            status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), addr)
}

/// A small cluster: two Ready nodes (one with a DaemonSet pod, a mirror pod and two app
/// pods), `web/api` with 4 replicas of 250m and its pods' metrics, a StatefulSet `data/db`.
pub fn sample() -> FakeState {
    let labels = |app: &str| BTreeMap::from([("app".to_owned(), app.to_owned())]);
    let pod = |ns: &str, name: &str, node: &str, app: &str, cpu: &str| FakePod {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        labels: labels(app),
        cpu: cpu.into(),
        memory: "128Mi".into(),
        phase: "Running".into(),
        daemon_set: false,
        mirror: false,
        budget_refusals: 0,
        usage: "100m".into(),
    };
    let mut state = FakeState {
        metrics_api: true,
        ..FakeState::default()
    };
    state.deployments.insert(
        ("web".into(), "api".into()),
        FakeWorkload {
            replicas: 4,
            ready: 3,
            cpu_request: "250m".into(),
            labels: labels("api"),
            resource_version: 100,
        },
    );
    state.stateful_sets.insert(
        ("data".into(), "db".into()),
        FakeWorkload {
            replicas: 3,
            ready: 3,
            cpu_request: "1".into(),
            labels: labels("db"),
            resource_version: 7,
        },
    );
    for node in ["node-a", "node-b"] {
        state.nodes.insert(
            node.into(),
            FakeNode {
                cpu: "4".into(),
                memory: "16Gi".into(),
                ready: true,
                unschedulable: false,
            },
        );
    }
    for i in 0..4 {
        let node = if i < 2 { "node-a" } else { "node-b" };
        state
            .pods
            .push(pod("web", &format!("api-{i}"), node, "api", "250m"));
    }
    let mut agent = pod("kube-system", "agent-a", "node-a", "agent", "50m");
    agent.daemon_set = true;
    state.pods.push(agent);
    let mut mirror = pod("kube-system", "etcd-node-a", "node-a", "etcd", "100m");
    mirror.mirror = true;
    state.pods.push(mirror);
    let mut pending = pod("batch", "job-0", "node-b", "job", "500m");
    pending.node = None;
    pending.phase = "Pending".into();
    state.pods.push(pending);
    let mut done = pod("batch", "job-old", "node-b", "job", "2");
    done.phase = "Succeeded".into();
    state.pods.push(done);
    state
}
