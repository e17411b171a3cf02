//! The HTTP API: every endpoint through the router (`oneshot`), bad input included; one test on
//! a real socket; a live swap under a binding ticking every 100 ms; SIGKILL during uploads and
//! bindings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use scalehost::Host;
use scalehost::api::{self, ApiState};
use scalehost::config::HostConfig;
use scalehost_test_artifacts as artifacts;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-token";

/// The tests that measure time (the live swap) or load the machine (the kills) hold it for
/// writing and run alone; every other test holds it for reading. On a 2-core CI machine a
/// concurrent compile would otherwise delay the ticks being measured.
static TIMING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A host on the embedded default cluster (namespaces `default`, `batch`), data in a temp dir,
/// its router ready.
struct TestHost {
    host: Host,
    router: Router,
    _dir: tempfile::TempDir,
}

async fn test_host(max_plugin_bytes: Option<usize>) -> TestHost {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).expect("writes");
    let mut config = HostConfig::embedded_default();
    config.data_dir = dir.path().join("data");
    config.api.admin_token_file = Some(token_file);
    if let Some(limit) = max_plugin_bytes {
        config.api.max_plugin_bytes = limit;
    }
    let host = Host::from_config(config).await.expect("host starts");
    let state = ApiState::new(host.control().clone());
    state.set_ready();
    TestHost {
        router: api::router(state),
        host,
        _dir: dir,
    }
}

/// One request through the router: (status, JSON body or Null).
async fn call(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{path}: the body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, value)
}

fn json_body(value: Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

/// Asserts the error shape and code.
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(artifacts::POLICY_FIXTURE).expect("fixture")
}

/// The fixture with a custom section appended: the same behaviour under another digest.
fn fixture_variant(tag: &str) -> Vec<u8> {
    let mut bytes = fixture_bytes();
    let name = b"scalehost-test";
    let payload = tag.as_bytes();
    let content_len = 1 + name.len() + payload.len();
    assert!(
        content_len < 128 && name.len() < 128,
        "one-byte LEB128 sizes"
    );
    bytes.push(0); // custom section
    bytes.push(content_len as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

async fn create_tenant(router: &Router, name: &str, namespaces: &[&str]) -> String {
    let answer = call(
        router,
        Method::POST,
        "/v1/tenants",
        Some(ADMIN),
        json_body(json!({ "name": name, "namespaces": namespaces })),
    )
    .await;
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    answer.1["token"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

async fn upload(router: &Router, token: &str, bytes: Vec<u8>) -> String {
    let answer = call(
        router,
        Method::POST,
        "/v1/plugins",
        Some(token),
        Some(bytes),
    )
    .await;
    assert!(answer.0.is_success(), "{}", answer.1);
    answer.1["digest"].as_str().expect("digest").to_owned()
}

fn counter_binding(plugin: &str, interval: &str) -> Value {
    json!({
        "plugin": plugin,
        "config": { "mode": "counter" },
        "interval": interval,
        "targets": [{ "namespace": "default", "name": "web", "min_replicas": 1, "max_replicas": 10 }],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_the_openapi_document_match_the_routes() {
    let _timing = TIMING.read().await;
    let t = test_host(None).await;
    let not_ready = api::router(ApiState::new(t.host.control().clone()));
    assert_error(
        &call(&not_ready, Method::GET, "/healthz", None, None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "starting",
    );
    let (status, body) = call(&t.router, Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let (status, doc) = call(&t.router, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let mut routed: Vec<(String, String)> = api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed, "the OpenAPI document lists every route");
    // And every listed route is served: no route falls through to "no such route".
    for (method, path) in api::ROUTES {
        let path = path
            .replace("{digest}", "sha256:00")
            .replace("{tenant}", "nobody")
            .replace("{name}", "nothing")
            .replace("{id}", "none");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let (_, body) = call(&t.router, method.clone(), &path, Some(ADMIN), None).await;
        assert_ne!(
            body["error"]["message"], "no such route",
            "{method} {path} is not routed"
        );
    }
    assert_error(
        &call(&t.router, Method::GET, "/v2/nothing", None, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &call(&t.router, Method::PATCH, "/v1/plugins", Some(ADMIN), None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_required_and_tenants_see_only_themselves() {
    let _timing = TIMING.read().await;
    let t = test_host(None).await;
    let r = &t.router;
    assert_error(
        &call(r, Method::GET, "/v1/plugins", None, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &call(r, Method::GET, "/v1/plugins", Some("wrong"), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let a = create_tenant(r, "team-a", &["default"]).await;
    let b = create_tenant(r, "team-b", &["batch"]).await;
    // Admin-only operations.
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/tenants",
            Some(&a),
            json_body(json!({ "name": "evil" })),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &call(r, Method::DELETE, "/v1/tenants/team-b", Some(&a), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // A tenant lists only itself and cannot see another.
    let (_, list) = call(r, Method::GET, "/v1/tenants", Some(&a), None).await;
    assert_eq!(list["tenants"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["tenants"][0]["name"], "team-a");
    assert_error(
        &call(r, Method::GET, "/v1/tenants/team-b", Some(&a), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Plugins: a tenant's upload is invisible to the other; the admin's is shared.
    let own = upload(r, &a, fixture_variant("a")).await;
    let shared = upload(r, ADMIN, fixture_variant("shared")).await;
    assert_error(
        &call(
            r,
            Method::GET,
            &format!("/v1/plugins/{own}"),
            Some(&b),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (status, _) = call(
        r,
        Method::GET,
        &format!("/v1/plugins/{shared}"),
        Some(&b),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = call(r, Method::GET, "/v1/plugins", Some(&b), None).await;
    assert_eq!(list["plugins"].as_array().map(Vec::len), Some(1));
    // Bindings of another tenant: not found, whatever the method.
    let put = call(
        r,
        Method::PUT,
        "/v1/tenants/team-a/bindings/c",
        Some(&a),
        json_body(counter_binding(&own, "1s")),
    )
    .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    for (method, path) in [
        (Method::GET, "/v1/tenants/team-a/bindings/c"),
        (Method::GET, "/v1/tenants/team-a/bindings"),
        (Method::DELETE, "/v1/tenants/team-a/bindings/c"),
        (Method::GET, "/v1/tenants/team-a/bindings/c/state"),
        (Method::POST, "/v1/tenants/team-a/bindings/c/pause"),
        (Method::GET, "/v1/tenants/team-a/decisions"),
    ] {
        assert_error(
            &call(r, method, path, Some(&b), None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    // A tenant cannot bind another tenant's plugin, nor target outside its scope.
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team-b/bindings/c",
            Some(&b),
            json_body(counter_binding(&own, "1s")),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team-b/bindings/c",
            Some(&b),
            json_body(counter_binding(&shared, "1s")),
        )
        .await,
        StatusCode::FORBIDDEN,
        "out_of_scope",
    );
    // Tokens: a second one works, a revoked one does not; only hashes are stored.
    let (status, issued) = call(r, Method::POST, "/v1/tenants/team-a/tokens", Some(&a), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let second = issued["token"].as_str().expect("token").to_owned();
    let (status, _) = call(r, Method::GET, "/v1/tenants/team-a", Some(&second), None).await;
    assert_eq!(status, StatusCode::OK);
    let id = issued["id"].as_str().expect("id");
    let (status, _) = call(
        r,
        Method::DELETE,
        &format!("/v1/tenants/team-a/tokens/{id}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &call(r, Method::GET, "/v1/tenants/team-a", Some(&second), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let db = std::fs::read(t._dir.path().join("data/control.redb")).expect("control db");
    assert!(
        !db.windows(a.len()).any(|w| w == a.as_bytes()),
        "a token is stored in the clear"
    );
    // Tokens are a quota: a tenant allowed two holds two at most, until it revokes one.
    let (status, limited) = call(
        r,
        Method::POST,
        "/v1/tenants",
        Some(ADMIN),
        json_body(
            json!({ "name": "team-q", "namespaces": ["quota"], "quotas": { "max_tokens": 2 } }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{limited}");
    assert_eq!(limited["tenant"]["quotas"]["max_tokens"], 2);
    let q = limited["token"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, _) = call(r, Method::POST, "/v1/tenants/team-q/tokens", Some(&q), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let third = call(r, Method::POST, "/v1/tenants/team-q/tokens", Some(&q), None).await;
    assert_error(&third, StatusCode::TOO_MANY_REQUESTS, "quota");
    assert!(
        third.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("quotas.max_tokens 2")),
        "{}",
        third.1
    );
    let first_id = limited["token"]["id"].as_str().expect("id");
    let (status, _) = call(
        r,
        Method::DELETE,
        &format!("/v1/tenants/team-q/tokens/{first_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &call(r, Method::GET, "/v1/tenants/team-q", Some(&q), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // A tenant with bindings cannot be deleted; without, it can.
    assert_error(
        &call(r, Method::DELETE, "/v1/tenants/team-a", Some(ADMIN), None).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    // Scope changes: refused while a binding would fall outside, accepted otherwise.
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team-a",
            Some(ADMIN),
            json_body(json!({ "name": "team-a", "namespaces": ["shop"] })),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    // A namespace belongs to one tenant per backend: team-b's batch is not team-a's to have.
    let taken = call(
        r,
        Method::PUT,
        "/v1/tenants/team-a",
        Some(ADMIN),
        json_body(json!({ "name": "team-a", "namespaces": ["default", "batch"] })),
    )
    .await;
    assert_error(&taken, StatusCode::CONFLICT, "conflict");
    assert!(
        taken.1["error"]["message"].as_str().is_some_and(
            |m| m.contains("\"batch\" is already granted to tenant team-b on the same cluster")
        ),
        "{}",
        taken.1
    );
    // Nor may a namespace be anything but a Kubernetes name.
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team-a",
            Some(ADMIN),
            json_body(json!({ "name": "team-a", "namespaces": ["default", "Shop/../x"] })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team-a",
            Some(ADMIN),
            json_body(json!({ "name": "team-z", "namespaces": ["default"] })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let (status, widened) = call(
        r,
        Method::PUT,
        "/v1/tenants/team-a",
        Some(ADMIN),
        json_body(json!({ "name": "team-a", "namespaces": ["default", "shop"] })),
    )
    .await;
    assert_eq!(
        (status, widened["namespaces"].clone()),
        (StatusCode::OK, json!(["default", "shop"]))
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team-a",
            Some(&a),
            json_body(json!({ "name": "team-a" })),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, _) = call(r, Method::DELETE, "/v1/tenants/team-b", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &call(r, Method::GET, "/v1/tenants/team-b", Some(&b), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_validated_stored_once_and_deleted_only_when_unbound() {
    let _timing = TIMING.read().await;
    let t = test_host(Some(2 << 20)).await;
    let r = &t.router;
    let bytes = fixture_bytes();
    let first = call(
        r,
        Method::POST,
        "/v1/plugins",
        Some(ADMIN),
        Some(bytes.clone()),
    )
    .await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    let record = &first.1;
    let digest = record["digest"].as_str().expect("digest").to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 7 + 64);
    assert_eq!(record["size"], bytes.len());
    assert_eq!(record["world"], "scalehost:policy/policy@0.2.0");
    assert!(
        record["imports"]
            .as_array()
            .expect("imports")
            .iter()
            .any(|i| i == "scalehost:policy/actuation@0.2.0"),
        "{record}"
    );
    let again = call(
        r,
        Method::POST,
        "/v1/plugins",
        Some(ADMIN),
        Some(bytes.clone()),
    )
    .await;
    assert_eq!(again.0, StatusCode::OK);
    assert_eq!(again.1, first.1, "the same bytes give the same answer");
    // Bad input, each with its reason.
    for (body, code, status, says) in [
        (
            b"not wasm at all".to_vec(),
            "invalid_plugin",
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a WebAssembly binary",
        ),
        (
            b"\0asm\x01\0\0\0".to_vec(),
            "invalid_plugin",
            StatusCode::UNPROCESSABLE_ENTITY,
            "core WebAssembly module",
        ),
        (
            std::fs::read(artifacts::OTHER_WORLD).expect("other world"),
            "invalid_plugin",
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a component of world",
        ),
        (
            vec![0u8; 3 << 20],
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds the limit",
        ),
        (
            Vec::new(),
            "invalid_request",
            StatusCode::BAD_REQUEST,
            "component's bytes",
        ),
    ] {
        let answer = call(r, Method::POST, "/v1/plugins", Some(ADMIN), Some(body)).await;
        assert_error(&answer, status, code);
        assert!(
            answer.1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{says}: {}",
            answer.1
        );
    }
    // Labels: name@version resolves at bind time; a label names one digest.
    let labelled = call(
        r,
        Method::POST,
        "/v1/plugins?name=counter&version=1.0.0",
        Some(ADMIN),
        Some(fixture_variant("v1")),
    )
    .await;
    assert_eq!(labelled.0, StatusCode::CREATED, "{}", labelled.1);
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/plugins?name=counter&version=1.0.0",
            Some(ADMIN),
            Some(fixture_variant("v1-other")),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/plugins?name=Bad%20Name",
            Some(ADMIN),
            Some(bytes.clone()),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let _ = create_tenant(r, "team", &["default"]).await;
    let bound = call(
        r,
        Method::PUT,
        "/v1/tenants/team/bindings/c",
        Some(ADMIN),
        json_body(counter_binding("counter@1.0.0", "1s")),
    )
    .await;
    assert_eq!(bound.0, StatusCode::CREATED, "{}", bound.1);
    assert_eq!(bound.1["digest"], labelled.1["digest"]);
    let v1 = labelled.1["digest"].as_str().expect("digest");
    assert_error(
        &call(
            r,
            Method::DELETE,
            &format!("/v1/plugins/{v1}"),
            Some(ADMIN),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let (status, list) = call(r, Method::GET, "/v1/plugins", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["plugins"].as_array().map(Vec::len), Some(2));
    let (status, _) = call(
        r,
        Method::DELETE,
        &format!("/v1/plugins/{digest}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &call(
            r,
            Method::GET,
            &format!("/v1/plugins/{digest}"),
            Some(ADMIN),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let blob = t
        ._dir
        .path()
        .join("data/plugins")
        .join(format!("{}.wasm", &digest[7..]));
    assert!(!blob.exists(), "the bytes go with the record");
    assert_error(
        &call(
            r,
            Method::GET,
            "/v1/plugins/sha256:nothex",
            Some(ADMIN),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bindings_have_revisions_rollback_pause_shadow_state_and_decisions() {
    let _timing = TIMING.read().await;
    let t = test_host(None).await;
    let r = &t.router;
    let token = create_tenant(r, "team", &["default"]).await;
    let token = token.as_str();
    let v1 = upload(r, token, fixture_variant("one")).await;
    let v2 = upload(r, token, fixture_variant("two")).await;
    let path = "/v1/tenants/team/bindings/counter";
    // Bad input.
    assert_error(
        &call(
            r,
            Method::PUT,
            path,
            Some(token),
            Some(b"{not json".to_vec()),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            path,
            Some(token),
            json_body(json!({ "plugin": v1, "surprise": 1 })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // A body may name its tenant and binding (as a config file's entry does), but only the path's.
    for (field, value) in [("tenant", "other"), ("name", "elsewhere")] {
        let mut misnamed = counter_binding(&v1, "1s");
        misnamed[field] = json!(value);
        let answer = call(r, Method::PUT, path, Some(token), json_body(misnamed)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
        assert!(
            answer.1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("the body names {field} `{value}`"))),
            "{}",
            answer.1
        );
    }
    let refused = call(
        r,
        Method::PUT,
        path,
        Some(token),
        json_body(json!({ "plugin": v1, "config": { "mode": "reject" } })),
    )
    .await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_config");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("this fixture rejects every config")),
        "the policy's own message: {}",
        refused.1
    );
    let mut bad_rails = counter_binding(&v1, "1s");
    bad_rails["targets"][0]["min_replicas"] = json!(20);
    assert_error(
        &call(r, Method::PUT, path, Some(token), json_body(bad_rails)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_binding",
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/nobody/bindings/x",
            Some(ADMIN),
            json_body(counter_binding(&v1, "1s")),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            "/v1/tenants/team/bindings/Bad_Name",
            Some(token),
            json_body(counter_binding(&v1, "1s")),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &call(
            r,
            Method::PUT,
            path,
            Some(token),
            json_body(counter_binding("sha256:1234", "1s")),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Create, then a new revision.
    let created = call(
        r,
        Method::PUT,
        path,
        Some(token),
        json_body(counter_binding(&v1, "1s")),
    )
    .await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    assert_eq!(created.1["revision"], 1);
    assert_eq!(
        (&created.1["spec"]["tenant"], &created.1["spec"]["name"]),
        (&json!("team"), &json!("counter")),
        "the path's names are filled in"
    );
    let mut named = counter_binding(&v2, "1s");
    named["tenant"] = json!("team");
    named["name"] = json!("counter");
    let changed = call(r, Method::PUT, path, Some(token), json_body(named)).await;
    assert_eq!(changed.0, StatusCode::OK, "{}", changed.1);
    assert_eq!(
        (changed.1["revision"].clone(), changed.1["digest"].clone()),
        (json!(2), json!(v2))
    );
    let engine = t.host.control().engine().clone();
    async fn tick(engine: &Arc<scalehost::tick::TickEngine>) -> scalehost::tick::AuditRecord {
        let binding = engine.binding("team", "counter").expect("bound");
        engine.tick(&binding).await
    }
    let record = tick(&engine).await;
    assert_eq!(
        (record.plugin.as_str(), record.revision),
        (v2.as_str(), Some(2))
    );
    // Rollback to the previous revision; to a named one; refused to a missing one.
    let (status, rolled) = call(
        r,
        Method::POST,
        &format!("{path}/rollback"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(
        (status, rolled["revision"].clone()),
        (StatusCode::OK, json!(1))
    );
    assert_eq!(tick(&engine).await.plugin, v1);
    let (status, rolled) = call(
        r,
        Method::POST,
        &format!("{path}/rollback"),
        Some(token),
        json_body(json!({ "revision": 2 })),
    )
    .await;
    assert_eq!(
        (status, rolled["revision"].clone()),
        (StatusCode::OK, json!(2))
    );
    assert_error(
        &call(
            r,
            Method::POST,
            &format!("{path}/rollback"),
            Some(token),
            json_body(json!({ "revision": 9 })),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, history) = call(
        r,
        Method::GET,
        &format!("{path}/history"),
        Some(token),
        None,
    )
    .await;
    let reasons: Vec<&str> = history["activations"]
        .as_array()
        .expect("activations")
        .iter()
        .map(|a| a["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reasons, ["put", "put", "rollback", "rollback"]);
    assert_eq!(history["revisions"].as_array().map(Vec::len), Some(2));
    // Pause and resume.
    let (_, paused) = call(r, Method::POST, &format!("{path}/pause"), Some(token), None).await;
    assert_eq!(paused["paused"], true);
    assert!(
        engine
            .binding("team", "counter")
            .expect("bound")
            .is_paused()
    );
    let (_, resumed) = call(
        r,
        Method::POST,
        &format!("{path}/resume"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(resumed["paused"], false);
    // Shadow: runs dry beside the active revision, then is promoted.
    let mut shadow = counter_binding(&v1, "1s");
    shadow["config"] = json!({ "mode": "scale", "target": { "namespace": "default", "name": "web" }, "replicas": 9 });
    let (status, with_shadow) = call(
        r,
        Method::PUT,
        &format!("{path}/shadow"),
        Some(token),
        json_body(shadow),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{with_shadow}");
    assert_eq!(with_shadow["shadow"]["revision"], 3);
    let record = tick(&engine).await;
    let shadow_run = record.shadow.as_ref().expect("the shadow ran");
    assert_eq!(shadow_run.revision, Some(3));
    assert_eq!(shadow_run.intents.len(), 1, "its intent is recorded");
    assert!(
        record.actions.iter().all(|a| !a.changed()),
        "and never applied"
    );
    // A shadow can also be dropped, then set again and promoted.
    let (status, dropped) = call(
        r,
        Method::DELETE,
        &format!("{path}/shadow"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(
        (status, dropped["shadow"].clone()),
        (StatusCode::OK, Value::Null)
    );
    assert!(
        engine
            .binding("team", "counter")
            .expect("bound")
            .shadow
            .is_none()
    );
    let mut shadow = counter_binding(&v1, "1s");
    shadow["config"] = json!({ "mode": "scale", "target": { "namespace": "default", "name": "web" }, "replicas": 9 });
    let (status, again) = call(
        r,
        Method::PUT,
        &format!("{path}/shadow"),
        Some(token),
        json_body(shadow),
    )
    .await;
    assert_eq!(
        (status, again["shadow"]["revision"].clone()),
        (StatusCode::OK, json!(4))
    );
    let (status, promoted) = call(
        r,
        Method::POST,
        &format!("{path}/promote"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(
        (
            status,
            promoted["revision"].clone(),
            promoted["shadow"].clone()
        ),
        (StatusCode::OK, json!(4), Value::Null)
    );
    assert_error(
        &call(
            r,
            Method::POST,
            &format!("{path}/promote"),
            Some(token),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(
        &call(
            r,
            Method::DELETE,
            &format!("{path}/shadow"),
            Some(token),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Back to the counter: state carries over revisions, can be read and cleared.
    let (status, _) = call(
        r,
        Method::POST,
        &format!("{path}/rollback"),
        Some(token),
        json_body(json!({ "revision": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tick(&engine).await;
    let (_, state) = call(r, Method::GET, &format!("{path}/state"), Some(token), None).await;
    let entries = state["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["key"], "ticks");
    let ticks: u64 = entries[0]["value"]
        .as_str()
        .expect("text")
        .parse()
        .expect("a count");
    assert_eq!(ticks, 4, "every counter tick of revisions 1 and 2 counted");
    let (status, _) = call(
        r,
        Method::DELETE,
        &format!("{path}/state"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, state) = call(r, Method::GET, &format!("{path}/state"), Some(token), None).await;
    assert_eq!(state["entries"], json!([]));
    // Decisions, filtered.
    let (status, decisions) = call(
        r,
        Method::GET,
        "/v1/tenants/team/decisions?binding=counter",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let records = decisions["decisions"].as_array().expect("records");
    assert_eq!(records.len(), 4);
    let last_seq = records[2]["seq"].as_u64().expect("seq");
    let (_, later) = call(
        r,
        Method::GET,
        &format!("/v1/tenants/team/decisions?since={last_seq}&limit=1"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(later["decisions"].as_array().map(Vec::len), Some(1));
    assert_eq!(later["decisions"][0]["seq"], last_seq + 1);
    assert_error(
        &call(
            r,
            Method::GET,
            "/v1/tenants/team/decisions?since=yesterday",
            Some(token),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Listing, deleting.
    let (_, list) = call(
        r,
        Method::GET,
        "/v1/tenants/team/bindings",
        Some(token),
        None,
    )
    .await;
    assert_eq!(list["bindings"].as_array().map(Vec::len), Some(1));
    let (status, _) = call(r, Method::DELETE, path, Some(token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(engine.binding("team", "counter").is_none());
    assert_error(
        &call(r, Method::GET, path, Some(token), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Runs a host in the background on a real socket; returns its address and a stop switch.
async fn running(
    t: TestHost,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let TestHost { host, _dir, .. } = t;
    let addr = host.local_addr().expect("listens");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        host.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("runs");
    });
    (addr, stop, task, _dir)
}

async fn listening_host() -> TestHost {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).expect("writes");
    let mut config = HostConfig::embedded_default();
    config.data_dir = dir.path().join("data");
    config.api.admin_token_file = Some(token_file);
    config.api.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let host = Host::from_config(config).await.expect("host starts");
    let state = ApiState::new(host.control().clone());
    TestHost {
        router: api::router(state),
        host,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_socket_serves_the_api() {
    let _timing = TIMING.read().await;
    let (addr, stop, task, _dir) = running(listening_host().await).await;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(format!("{base}/healthz")).send().await {
            Ok(response) if response.status() == 200 => break,
            _ => {
                assert!(Instant::now() < deadline, "no /healthz 200 within 10 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let response = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "web", "namespaces": ["default"] }))
        .send()
        .await
        .expect("sends");
    assert_eq!(response.status(), 201);
    let response = client
        .get(format!("{base}/v1/tenants"))
        .send()
        .await
        .expect("sends");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unauthorized");
    let _ = stop.send(());
    task.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_swap_misses_no_tick_runs_none_twice_and_keeps_state() {
    let _timing = TIMING.write().await;
    let t = listening_host().await;
    let router = t.router.clone();
    let token = create_tenant(&router, "live", &["default"]).await;
    let old = upload(&router, &token, fixture_variant("old")).await;
    let new = upload(&router, &token, fixture_variant("new")).await;
    let path = "/v1/tenants/live/bindings/counter";
    let (addr, stop, task, _dir) = running(t).await;
    let _ = addr;
    let put = call(
        &router,
        Method::PUT,
        path,
        Some(&token),
        json_body(counter_binding(&old, "100ms")),
    )
    .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    let bound_at = std::time::Instant::now();
    // Let the old revision tick, swap, let the new one tick.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let swap = call(
        &router,
        Method::PUT,
        path,
        Some(&token),
        json_body(counter_binding(&new, "100ms")),
    )
    .await;
    assert_eq!(swap.0, StatusCode::OK, "{}", swap.1);
    let (_, at_swap) = call(
        &router,
        Method::GET,
        "/v1/tenants/live/decisions",
        Some(&token),
        None,
    )
    .await;
    let seen_at_swap = at_swap["decisions"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["seq"].as_u64())
        .expect("ticks before the swap");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let observed = bound_at.elapsed();
    let (_, paused) = call(
        &router,
        Method::POST,
        &format!("{path}/pause"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(paused["paused"], true);
    // A tick in flight when pausing still lands; then nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, decisions) = call(
        &router,
        Method::GET,
        "/v1/tenants/live/decisions?binding=counter",
        Some(&token),
        None,
    )
    .await;
    let records = decisions["decisions"].as_array().expect("records").clone();
    let (_, state) = call(
        &router,
        Method::GET,
        &format!("{path}/state"),
        Some(&token),
        None,
    )
    .await;
    let _ = stop.send(());
    task.await.expect("stops");

    // About 2.4 s at 100 ms: a missed rhythm gives fewer, a binding ticked twice per period
    // (two schedules) about twice as many.
    assert!(
        (15..=30).contains(&records.len()),
        "about 24 ticks in 2.4 s, got {}",
        records.len()
    );
    assert!(
        records.iter().all(|r| r["outcome"]["status"] == "ok"),
        "{records:?}"
    );
    // The digest switches exactly once, old then new, and every tick after the swap was
    // acknowledged ran the new one.
    let digests: Vec<&str> = records
        .iter()
        .map(|r| r["plugin"].as_str().unwrap_or(""))
        .collect();
    let switch = digests
        .iter()
        .position(|d| *d == new)
        .expect("the new revision ticked");
    assert!(switch > 0, "the old revision ticked first");
    assert!(digests[..switch].iter().all(|d| *d == old));
    assert!(digests[switch..].iter().all(|d| *d == new));
    for record in &records {
        if record["seq"].as_u64().expect("seq") > seen_at_swap {
            assert_eq!(record["plugin"], new.as_str());
        }
    }
    // One rhythm across the swap: no gap of two intervals (missed), no two ticks within half
    // an interval (doubled). Times are the host's clock (the simulated cluster follows real
    // time).
    let times: Vec<u64> = records
        .iter()
        .map(|r| r["at"].as_u64().expect("at"))
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (50..=150).contains(&gap),
            "ticks {gap} ms apart in {times:?}"
        );
    }
    // Exactly one tick per interval over the span they cover, none missed, none doubled; and
    // the span covers the whole time the binding ran: its first tick within its phase (under
    // one interval) and its last within an interval of the pause, so a binding that stopped
    // ticking after the swap fails here.
    let span = times[times.len() - 1] - times[0];
    let window = observed.as_millis() as u64;
    assert!(
        span + 250 >= window,
        "the ticks span {span} ms of the {window} ms the binding ran: {times:?}"
    );
    assert_eq!(
        records.len() as u64,
        (span + 50) / 100 + 1,
        "ticks over {span} ms at 100 ms: {times:?}"
    );
    // The state carried over: the counter counted every tick of both revisions.
    let counted: usize = state["entries"][0]["value"]
        .as_str()
        .expect("counter")
        .parse()
        .expect("a number");
    assert_eq!(counted, records.len(), "state carried across the swap");
}

// ----- SIGKILL -----

fn scalehost_serve(data_dir: &Path, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_scalehost"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
        ])
        .env("SCALEHOST_ADMIN_TOKEN", ADMIN)
        .env("SCALEHOST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn upload_over_http(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tag: &str,
) -> Option<String> {
    let response = client
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(token)
        .body(fixture_variant(tag))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let record: Value = response.json().await.ok()?;
    record["digest"].as_str().map(str::to_owned)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_acknowledged_survives_sigkill() {
    let _timing = TIMING.write().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    let client = reqwest::Client::new();
    // Acknowledged (2xx) plugins and binding revisions, across three kills at different moments.
    let mut plugins: Vec<String> = Vec::new();
    let mut revisions: Vec<(String, u64, String)> = Vec::new();
    let mut token = String::new();
    for (round, kill_after) in [(0u32, 2500u64), (1, 4100), (2, 1700)] {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = scalehost_serve(&data, port);
        wait_ready(&client, &base).await;
        // What the previous rounds were told is there.
        check_acknowledged(&client, &base, &token, &plugins, &revisions).await;
        if round == 0 {
            let created: Value = client
                .post(format!("{base}/v1/tenants"))
                .bearer_auth(ADMIN)
                .json(&json!({ "name": "crash", "namespaces": ["default"] }))
                .send()
                .await
                .expect("sends")
                .json()
                .await
                .expect("JSON");
            token = created["token"]["token"]
                .as_str()
                .expect("token")
                .to_owned();
        }
        // A plugin for the revision worker below.
        let base_plugin = upload_over_http(&client, &base, &token, &format!("crash-{round}-base"))
            .await
            .expect("uploads");
        plugins.push(base_plugin.clone());
        // Revisions of one binding as fast as possible until the kill (no compilation: many
        // durable commits).
        let revising = {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0u64.. {
                    let Ok(response) = client
                        .put(format!("{base}/v1/tenants/crash/bindings/fast"))
                        .bearer_auth(&token)
                        .json(&counter_binding(
                            &base_plugin,
                            &format!("{}ms", 50 + i % 50),
                        ))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if !response.status().is_success() {
                        break;
                    }
                    let Ok(view) = response.json::<Value>().await else {
                        break;
                    };
                    acked.push((
                        "fast".to_owned(),
                        view["revision"].as_u64().expect("revision"),
                        base_plugin.clone(),
                    ));
                }
                acked
            })
        };
        // Upload and bind as fast as possible until the kill.
        let worker = {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            tokio::spawn(async move {
                let mut acked_plugins = Vec::new();
                let mut acked_revisions = Vec::new();
                for i in 0.. {
                    let bytes = fixture_variant(&format!("crash-{round}-{i}"));
                    let Ok(response) = client
                        .post(format!("{base}/v1/plugins"))
                        .bearer_auth(&token)
                        .body(bytes)
                        .send()
                        .await
                    else {
                        break;
                    };
                    if !response.status().is_success() {
                        break;
                    }
                    let Ok(record) = response.json::<Value>().await else {
                        break;
                    };
                    let digest = record["digest"].as_str().expect("digest").to_owned();
                    acked_plugins.push(digest.clone());
                    let name = format!("b{}", i % 3);
                    let Ok(response) = client
                        .put(format!("{base}/v1/tenants/crash/bindings/{name}"))
                        .bearer_auth(&token)
                        .json(&counter_binding(&digest, "50ms"))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if !response.status().is_success() {
                        break;
                    }
                    let Ok(view) = response.json::<Value>().await else {
                        break;
                    };
                    acked_revisions.push((
                        name,
                        view["revision"].as_u64().expect("revision"),
                        digest,
                    ));
                }
                (acked_plugins, acked_revisions)
            })
        };
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let (acked_plugins, acked_revisions) = worker.await.expect("worker");
        plugins.extend(acked_plugins);
        revisions.extend(acked_revisions);
        revisions.extend(revising.await.expect("revision worker"));
    }
    eprintln!(
        "acknowledged before the kills: {} plugins, {} binding revisions",
        plugins.len(),
        revisions.len()
    );
    assert!(
        plugins.len() >= 3,
        "some uploads were acknowledged: {}",
        plugins.len()
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = scalehost_serve(&data, port);
    wait_ready(&client, &base).await;
    check_acknowledged(&client, &base, &token, &plugins, &revisions).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Every acknowledged plugin is listed, and every acknowledged revision is in its binding's
/// history with its digest; nothing half-written shows (every listed record is whole).
async fn check_acknowledged(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    plugins: &[String],
    revisions: &[(String, u64, String)],
) {
    if token.is_empty() {
        return;
    }
    let listed: Value = client
        .get(format!("{base}/v1/plugins"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sends")
        .json()
        .await
        .expect("JSON");
    let listed: Vec<&str> = listed["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["digest"].as_str().expect("every record is whole"))
        .collect();
    for digest in plugins {
        assert!(
            listed.contains(&digest.as_str()),
            "acknowledged plugin {digest} lost"
        );
    }
    let mut histories: std::collections::HashMap<&str, Value> = std::collections::HashMap::new();
    for (name, revision, digest) in revisions {
        if !histories.contains_key(name.as_str()) {
            let history: Value = client
                .get(format!("{base}/v1/tenants/crash/bindings/{name}/history"))
                .bearer_auth(token)
                .send()
                .await
                .expect("sends")
                .json()
                .await
                .expect("JSON");
            histories.insert(name, history);
        }
        let history = &histories[name.as_str()];
        let found = history["revisions"]
            .as_array()
            .unwrap_or_else(|| panic!("binding {name} lost: {history}"))
            .iter()
            .any(|r| r["revision"] == *revision && r["digest"] == digest.as_str());
        assert!(found, "acknowledged revision {revision} of {name} lost");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_or_a_swap_never_recompiles() {
    let _timing = TIMING.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).expect("writes");
    let config = || {
        let mut config = HostConfig::embedded_default();
        config.data_dir = dir.path().join("data");
        config.api.admin_token_file = Some(token_file.clone());
        config
    };
    let (one, two) = {
        let host = Host::from_config(config()).await.expect("starts");
        let state = ApiState::new(host.control().clone());
        let r = api::router(state);
        let token = create_tenant(&r, "keep", &["default"]).await;
        let one = upload(&r, &token, fixture_variant("keep-1")).await;
        let two = upload(&r, &token, fixture_variant("keep-2")).await;
        let registry = host.control().registry().clone();
        assert_eq!(registry.compilations(), 2, "each upload compiles once");
        let path = "/v1/tenants/keep/bindings/b";
        let put = call(
            &r,
            Method::PUT,
            path,
            Some(&token),
            json_body(counter_binding(&one, "1s")),
        )
        .await;
        assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
        let swap = call(
            &r,
            Method::PUT,
            path,
            Some(&token),
            json_body(counter_binding(&two, "1s")),
        )
        .await;
        assert_eq!(swap.0, StatusCode::OK, "{}", swap.1);
        assert_eq!(
            registry.compilations(),
            2,
            "binding and swapping compile nothing"
        );
        (one, two)
    };
    let host = Host::from_config(config()).await.expect("restarts");
    let engine = host.control().engine().clone();
    let binding = engine.binding("keep", "b").expect("the binding is back");
    assert_eq!(binding.policy.digest(), two);
    assert_eq!(binding.revision, Some(2));
    assert_eq!(
        engine.tick(&binding).await.outcome,
        scalehost::tick::Outcome::Ok
    );
    // A rollback to the other revision loads its artifact from disk.
    let r = api::router(ApiState::new(host.control().clone()));
    let rolled = call(
        &r,
        Method::POST,
        "/v1/tenants/keep/bindings/b/rollback",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(rolled.1["digest"], one.as_str(), "{}", rolled.1);
    assert_eq!(
        host.control().registry().compilations(),
        0,
        "the restart and the rollback loaded compiled artifacts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_never_change_and_a_plugin_bound_elsewhere_is_not_deleted() {
    let _timing = TIMING.read().await;
    let t = test_host(None).await;
    let r = &t.router;
    let a = create_tenant(r, "owner", &["default"]).await;
    let _ = create_tenant(r, "borrower", &["batch"]).await;
    let labelled = call(
        r,
        Method::POST,
        "/v1/plugins?name=mine&version=1",
        Some(&a),
        Some(fixture_variant("mine")),
    )
    .await;
    assert_eq!(labelled.0, StatusCode::CREATED, "{}", labelled.1);
    let digest = labelled.1["digest"].as_str().expect("digest").to_owned();
    // The same bytes under other labels: refused, the first labels stay.
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/plugins?name=mine&version=2",
            Some(&a),
            Some(fixture_variant("mine")),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let (_, record) = call(
        r,
        Method::GET,
        &format!("/v1/plugins/{digest}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(
        (record["name"].as_str(), record["version"].as_str()),
        (Some("mine"), Some("1"))
    );
    // The admin binds another tenant to it; its owner cannot pull it away.
    let borrowed = call(
        r,
        Method::PUT,
        "/v1/tenants/borrower/bindings/borrowed",
        Some(ADMIN),
        json_body(json!({
            "plugin": digest,
            "config": { "mode": "counter" },
            "targets": [{ "namespace": "batch", "name": "worker", "min_replicas": 0, "max_replicas": 4 }],
        })),
    )
    .await;
    assert_eq!(borrowed.0, StatusCode::CREATED, "{}", borrowed.1);
    let refused = call(
        r,
        Method::DELETE,
        &format!("/v1/plugins/{digest}"),
        Some(&a),
        None,
    )
    .await;
    assert_error(&refused, StatusCode::CONFLICT, "conflict");
    assert!(
        !refused.1["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("borrower"),
        "another tenant's name is not shown: {}",
        refused.1
    );
    let (status, _) = call(
        r,
        Method::DELETE,
        "/v1/tenants/borrower/bindings/borrowed",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        r,
        Method::DELETE,
        &format!("/v1/plugins/{digest}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Deleting a tenant releases its claims and forgets its decisions, so the name can be
    // given again without inheriting anything.
    let kept = upload(r, &a, fixture_variant("kept")).await;
    let (status, _) = call(r, Method::DELETE, "/v1/tenants/owner", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let again = create_tenant(r, "owner", &["default"]).await;
    assert_error(
        &call(
            r,
            Method::GET,
            &format!("/v1/plugins/{kept}"),
            Some(&again),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_events_reach_a_policy_and_stay_in_the_tenants_namespaces() {
    let _timing = TIMING.read().await;
    let t = test_host(None).await;
    let r = &t.router;
    let token = create_tenant(r, "ops", &["default"]).await;
    let plugin = upload(
        r,
        &token,
        std::fs::read(artifacts::THRESHOLD_COOLDOWN).expect("threshold-cooldown"),
    )
    .await;
    let bound = call(
        r,
        Method::PUT,
        "/v1/tenants/ops/bindings/load",
        Some(&token),
        json_body(json!({
            "plugin": plugin,
            "config": {
                "target": { "namespace": "default", "name": "web" },
                "source": { "events": { "service": "default/web/load" } },
                "window_secs": 60,
                "cooldown_secs": 0,
                "rules": [{ "direction": "up", "threshold": 100.0, "step": { "by": 2 }, "limit": 10 }],
            },
            "targets": [{ "namespace": "default", "name": "web", "min_replicas": 1, "max_replicas": 10 }],
        })),
    )
    .await;
    assert_eq!(bound.0, StatusCode::CREATED, "{}", bound.1);
    let now_s = t.host.simulated().expect("simulated").now() as f64 / 1000.0;
    let events = |service: &str| {
        json!([
            { "host": "h1", "service": service, "metric": 150.0, "time": now_s - 20.0 },
            { "host": "h1", "service": service, "metric": 150.0, "time": now_s - 10.0, "ttl": 120.0 },
            { "host": "h2", "service": service, "metric": 100.0, "time": now_s - 5.0 },
        ])
    };
    // Outside the tenant's namespaces, malformed, or unauthenticated: refused whole.
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/events",
            Some(&token),
            json_body(events("batch/worker/load")),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let mut bad = events("default/web/load");
    bad[2]["metric"] = json!("lots");
    assert_error(
        &call(r, Method::POST, "/v1/events", Some(&token), json_body(bad)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let mut late = events("default/web/load");
    late[1]["ttl"] = json!(-1.0);
    let refused = call(r, Method::POST, "/v1/events", Some(&token), json_body(late)).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("event 1: ttl")),
        "{}",
        refused.1
    );
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/events",
            None,
            json_body(events("default/web/load")),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // Stamped an hour ahead of the backend's clock: it would never expire in time.
    let mut future = events("default/web/load");
    future[0]["time"] = json!(now_s + 3600.0);
    let refused = call(
        r,
        Method::POST,
        "/v1/events",
        Some(&token),
        json_body(future),
    )
    .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        refused.1["error"]["message"].as_str().is_some_and(
            |m| m.contains("event 0: time") && m.contains("outside the backend's window")
        ),
        "{}",
        refused.1
    );
    // A tenant pushes for its own backend only.
    assert_error(
        &call(
            r,
            Method::POST,
            "/v1/events?backend=prod",
            Some(&token),
            json_body(events("default/web/load")),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Accepted: (150 + 150 + 100) / 2 hosts = 200 per host > 100, so up by 2 from 4.
    let (status, accepted) = call(
        r,
        Method::POST,
        "/v1/events",
        Some(&token),
        json_body(events("default/web/load")),
    )
    .await;
    assert_eq!(
        (status, accepted["accepted"].clone()),
        (StatusCode::ACCEPTED, json!(3))
    );
    let engine = t.host.control().engine().clone();
    let record = tokio::spawn(async move {
        let binding = engine.binding("ops", "load").expect("bound");
        engine.tick(&binding).await
    })
    .await
    .expect("ticks");
    assert_eq!(record.outcome, scalehost::tick::Outcome::Ok, "{record:?}");
    assert!(
        matches!(
            record.actions.first(),
            Some(scalehost::tick::Action::Scale { applied: 6, .. })
        ),
        "{:?}",
        record.actions
    );
}

/// An 18 MB Python component takes seconds to compile: the upload compiles it off the tick path,
/// so a binding ticking every 100 ms keeps its rhythm meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn compiling_a_heavy_upload_never_stalls_ticks() {
    let _timing = TIMING.write().await;
    let python = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/threshold-cooldown-python.wasm");
    let python = std::fs::read(&python).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build it with `cargo xtask plugins`)",
            python.display()
        )
    });
    let t = listening_host().await;
    let router = t.router.clone();
    let token = create_tenant(&router, "heavy", &["default"]).await;
    let counter = upload(&router, &token, fixture_variant("heavy")).await;
    let (_addr, stop, task, _dir) = running(t).await;
    let path = "/v1/tenants/heavy/bindings/counter";
    let put = call(
        &router,
        Method::PUT,
        path,
        Some(&token),
        json_body(counter_binding(&counter, "100ms")),
    )
    .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seqs = |router: Router, token: String| async move {
        let (_, decisions) = call(
            &router,
            Method::GET,
            "/v1/tenants/heavy/decisions?binding=counter",
            Some(&token),
            None,
        )
        .await;
        decisions["decisions"]
            .as_array()
            .expect("records")
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .collect::<Vec<u64>>()
    };
    let before = *seqs(router.clone(), token.clone())
        .await
        .last()
        .expect("ticks before the upload");
    let started = std::time::Instant::now();
    let heavy = upload(&router, &token, python).await;
    let compiling = started.elapsed();
    let ticked = seqs(router.clone(), token.clone())
        .await
        .into_iter()
        .filter(|seq| *seq > before)
        .count() as u64;
    let _ = stop.send(());
    task.await.expect("stops");

    assert!(heavy.starts_with("sha256:"));
    assert!(
        compiling > Duration::from_secs(1),
        "the upload compiled ({compiling:?})"
    );
    // At 100 ms the binding is due compiling/100ms times; a tick path blocked by the compile
    // would show none or one.
    let due = compiling.as_millis() as u64 / 100;
    eprintln!("{ticked} ticks while the upload compiled for {compiling:?} ({due} due)");
    assert!(
        ticked * 2 >= due,
        "{ticked} ticks while compiling for {compiling:?} ({due} due)"
    );
}

/// A binding of the fixture in `mode`, without targets, with its own deadline and interval.
fn fixture_binding_json(plugin: &str, mode: &str, deadline: &str, interval: &str) -> Value {
    json!({
        "plugin": plugin,
        "config": { "mode": mode },
        "interval": interval,
        "limits": { "deadline": deadline },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_policy_costs_only_its_own_request_and_its_own_ticks() {
    let _timing = TIMING.write().await;
    let t = listening_host().await;
    let router = t.router.clone();
    let engine = t.host.control().engine().clone();
    let (_addr, stop, task, _dir) = running(t).await;
    let slow = create_tenant(&router, "slow", &["default"]).await;
    let other = create_tenant(&router, "other", &["batch"]).await;
    let slow_plugin = upload(&router, &slow, fixture_bytes()).await;
    let other_plugin = upload(&router, &other, fixture_bytes()).await;

    // validate-config sleeps 60 s: the PUT is refused when its 2 s deadline passes, and another
    // tenant's write in the meantime is not held up behind it.
    let put_slow = {
        let router = router.clone();
        let slow = slow.clone();
        let body = fixture_binding_json(&slow_plugin, "sleep-in-validate", "2s", "1s");
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = call(
                &router,
                Method::PUT,
                "/v1/tenants/slow/bindings/sleepy",
                Some(&slow),
                json_body(body),
            )
            .await;
            (answer, started.elapsed(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let answer = call(
        &router,
        Method::PUT,
        "/v1/tenants/other/bindings/counter",
        Some(&other),
        json_body(json!({
            "plugin": other_plugin,
            "config": { "mode": "counter" },
            "interval": "1s",
            "targets": [{ "namespace": "batch", "name": "worker", "min_replicas": 0, "max_replicas": 10 }],
        })),
    )
    .await;
    let other_took = started.elapsed();
    let other_done = Instant::now();
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    let (slow_answer, slow_took, slow_done) = put_slow.await.expect("the slow PUT answers");
    assert_error(
        &slow_answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_config",
    );
    assert!(
        slow_answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deadline of 2s exceeded")),
        "{}",
        slow_answer.1
    );
    assert!(
        slow_took < Duration::from_secs(3),
        "the sleeping check answered after {slow_took:?}"
    );
    assert!(
        other_took < Duration::from_secs(1) && other_done < slow_done,
        "the other tenant's write took {other_took:?}, behind the sleeping check"
    );

    // A tick that sleeps fails at its 300 ms deadline and the binding keeps its 500 ms rhythm.
    let answer = call(
        &router,
        Method::PUT,
        "/v1/tenants/slow/bindings/sleeper",
        Some(&slow),
        json_body(fixture_binding_json(
            &slow_plugin,
            "sleep",
            "300ms",
            "500ms",
        )),
    )
    .await;
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let ticks: Vec<_> = engine
        .audit()
        .recent()
        .into_iter()
        .filter(|r| r.tenant == "slow" && r.binding == "sleeper")
        .collect();
    assert!(ticks.len() >= 4, "{} ticks in 3.2 s at 500 ms", ticks.len());
    for record in &ticks {
        assert!(
            matches!(&record.outcome, scalehost::tick::Outcome::Failed { error: scalehost::runtime::InvocationError::Deadline(d) } if d == "300ms"),
            "{:?}",
            record.outcome
        );
    }
    for pair in ticks.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap <= 750, "ticks {gap} ms apart at a 500 ms interval");
    }

    // DELETE of a binding whose tick is asleep (5 s deadline) answers at once.
    let answer = call(
        &router,
        Method::PUT,
        "/v1/tenants/slow/bindings/long-sleeper",
        Some(&slow),
        json_body(fixture_binding_json(&slow_plugin, "sleep", "5s", "10s")),
    )
    .await;
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    // Its first tick starts within its phase (under 1 s) and then sleeps.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let answer = call(
        &router,
        Method::DELETE,
        "/v1/tenants/slow/bindings/long-sleeper",
        Some(&slow),
        None,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(answer.0, StatusCode::NO_CONTENT, "{}", answer.1);
    assert!(took < Duration::from_secs(1), "DELETE took {took:?}");
    let _ = stop.send(());
    task.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bindings_operations_are_listed_and_cancelled_by_its_tenant_only() {
    let _timing = TIMING.read().await;
    let t = test_host(None).await;
    let r = &t.router;
    let owner = create_tenant(r, "owner", &["default"]).await;
    let other = create_tenant(r, "other", &["batch"]).await;
    let plugin = upload(r, &owner, fixture_bytes()).await;
    let put = call(
        r,
        Method::PUT,
        "/v1/tenants/owner/bindings/counter",
        Some(&owner),
        json_body(counter_binding(&plugin, "1s")),
    )
    .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    let path = "/v1/tenants/owner/bindings/counter/operations";
    let listed = call(r, Method::GET, path, Some(&owner), None).await;
    assert_eq!(
        listed,
        (StatusCode::OK, json!({ "operations": [], "finished": [] }))
    );
    for id in ["1", "not-a-number"] {
        assert_error(
            &call(
                r,
                Method::DELETE,
                &format!("{path}/{id}"),
                Some(&owner),
                None,
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    assert_error(
        &call(r, Method::GET, path, Some(&other), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &call(
            r,
            Method::GET,
            "/v1/tenants/owner/bindings/nothing/operations",
            Some(&owner),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
