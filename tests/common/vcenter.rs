//! An in-process server that follows the vSphere Automation REST API on the paths scalehost
//! uses, for the VM pool tests.
//!
//! Modelled: `POST /api/session` with basic auth (a JSON string session id; 401 for wrong
//! credentials); the `vmware-api-session-id` header on every other call (401 without a live
//! session); session expiry (tests can expire every session at once, as vCenter does after
//! its idle timeout); `GET /api/vcenter/vm?names=` (summaries with `power_state`);
//! `GET /api/vcenter/vm/{vm}/power`; `POST /api/vcenter/vm/{vm}/power?action=start|stop`;
//! `POST /api/vcenter/vm/{vm}/guest/power?action=shutdown` (the guest powers off, unless a
//! test says its tools do not answer: then 503 as vCenter answers without VMware Tools).
//! Errors carry `error_type` and `messages[].default_message`. Calls are logged in order, into
//! the Kubernetes test server's log when given one, so the order across both can be checked.
//!
//! Not modelled: folders, filters other than names, tasks, suspend, reset, other APIs.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

/// A VM.
#[derive(Debug, Clone)]
pub struct FakeVm {
    pub name: String,
    pub on: bool,
    /// VMware Tools answer a guest shutdown.
    pub tools: bool,
    /// vCenter refuses to change its power (503): a host in trouble.
    pub refuse_power: bool,
}

/// The vCenter's state.
#[derive(Debug, Default)]
pub struct FakeVcenter {
    pub username: String,
    pub password: String,
    pub vms: BTreeMap<String, FakeVm>,
    pub sessions: BTreeSet<String>,
    pub logins: u32,
    pub log: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    vcenter: Arc<Mutex<FakeVcenter>>,
    /// Where to log too (the Kubernetes test server's log).
    also: Option<super::apiserver::Shared>,
}

impl Shared {
    fn log(&self, line: String) {
        if let Some(also) = &self.also {
            also.lock()
                .expect("state")
                .log
                .push(format!("vcenter {line}"));
        }
        self.vcenter.lock().expect("state").log.push(line);
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error_type": kind, "messages": [{ "id": "x", "default_message": message, "args": [] }] })),
    )
        .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let session = headers
        .get("vmware-api-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if shared
        .vcenter
        .lock()
        .expect("state")
        .sessions
        .contains(session)
    {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "This method requires authentication.",
        ))
    }
}

async fn login(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut vc = shared.vcenter.lock().expect("state");
    let expected = format!(
        "Basic {}",
        base64(format!("{}:{}", vc.username, vc.password).as_bytes())
    );
    if given != expected {
        drop(vc);
        shared.log("POST session refused".into());
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Authentication required.",
        );
    }
    vc.logins += 1;
    let session = format!("session-{}", vc.logins);
    vc.sessions.insert(session.clone());
    drop(vc);
    shared.log("POST session".into());
    (StatusCode::CREATED, Json(json!(session))).into_response()
}

async fn list(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = authorized(&shared, &headers) {
        return e;
    }
    shared.log("GET vms".into());
    let names: Vec<String> = query
        .get("names")
        .map(|n| n.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let vc = shared.vcenter.lock().expect("state");
    let items: Vec<_> = vc
        .vms
        .iter()
        .filter(|(_, vm)| names.is_empty() || names.contains(&vm.name))
        .map(|(id, vm)| {
            json!({ "vm": id, "name": vm.name, "power_state": if vm.on { "POWERED_ON" } else { "POWERED_OFF" }, "cpu_count": 4, "memory_size_MiB": 8192 })
        })
        .collect();
    Json(items).into_response()
}

async fn get_power(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(vm): Path<String>,
) -> Response {
    if let Err(e) = authorized(&shared, &headers) {
        return e;
    }
    let vc = shared.vcenter.lock().expect("state");
    match vc.vms.get(&vm) {
        Some(v) => Json(json!({ "state": if v.on { "POWERED_ON" } else { "POWERED_OFF" } }))
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("VirtualMachine with identifier '{vm}' does not exist."),
        ),
    }
}

async fn set_power(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(vm): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = authorized(&shared, &headers) {
        return e;
    }
    let action = query.get("action").cloned().unwrap_or_default();
    shared.log(format!("POST power {action} {vm}"));
    let mut vc = shared.vcenter.lock().expect("state");
    let Some(v) = vc.vms.get_mut(&vm) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("VirtualMachine with identifier '{vm}' does not exist."),
        );
    };
    if v.refuse_power {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "The host of this virtual machine is not responding.",
        );
    }
    match action.as_str() {
        "start" if v.on => error(
            StatusCode::BAD_REQUEST,
            "ALREADY_IN_DESIRED_STATE",
            "Virtual machine is already powered on.",
        ),
        "start" => {
            v.on = true;
            StatusCode::NO_CONTENT.into_response()
        }
        "stop" if !v.on => error(
            StatusCode::BAD_REQUEST,
            "ALREADY_IN_DESIRED_STATE",
            "Virtual machine is already powered off.",
        ),
        "stop" => {
            v.on = false;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Unknown action.",
        ),
    }
}

async fn guest_power(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(vm): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = authorized(&shared, &headers) {
        return e;
    }
    let action = query.get("action").cloned().unwrap_or_default();
    shared.log(format!("POST guest {action} {vm}"));
    let mut vc = shared.vcenter.lock().expect("state");
    let Some(v) = vc.vms.get_mut(&vm) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such VM");
    };
    if !v.tools {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "VMware Tools is not running in the guest.",
        );
    }
    v.on = false;
    StatusCode::NO_CONTENT.into_response()
}

/// Serves the fake vCenter; logs also into `also` when given.
pub async fn serve(
    vcenter: Arc<Mutex<FakeVcenter>>,
    also: Option<super::apiserver::Shared>,
) -> String {
    let app = axum::Router::new()
        .route("/api/session", post(login))
        .route("/api/vcenter/vm", get(list))
        .route("/api/vcenter/vm/{vm}/power", get(get_power).post(set_power))
        .route("/api/vcenter/vm/{vm}/guest/power", post(guest_power))
        .with_state(Shared { vcenter, also });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}
