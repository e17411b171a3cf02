//! The HTTP API (axum): plugins, tenants, bindings, decisions, state; errors as JSON.
//!
//! Start with [`router`]: every route is listed in [`ROUTES`] (and in the OpenAPI document the
//! host serves at `/openapi.json`, checked against it by a test); `docs/api.md` documents each.
//! Handlers only translate: they authenticate the caller ([`Caller`]), parse, call
//! [`Control`](crate::control::Control) (off the async workers when it compiles or validates),
//! and map its errors to statuses ([`error`]).

pub(crate) mod error;
mod handlers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post, put};

pub use error::ApiError;

use crate::control::{Control, Principal};

/// What the handlers share.
pub struct ApiState {
    /// Tenants, plugins, bindings.
    pub control: Arc<Control>,
    /// Set once the host has installed its bindings and listens: `/healthz` answers 200.
    pub ready: AtomicBool,
}

impl ApiState {
    /// State for `control`, not ready yet.
    pub fn new(control: Arc<Control>) -> Arc<Self> {
        Arc::new(ApiState {
            control,
            ready: AtomicBool::new(false),
        })
    }

    /// Marks the host ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// The largest body of `POST /v1/events`, bytes.
pub const MAX_EVENTS_BODY: usize = 8 << 20;

/// Every route: method and path, as in the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("get", "/v1/plugins"),
    ("post", "/v1/plugins"),
    ("get", "/v1/plugins/{digest}"),
    ("delete", "/v1/plugins/{digest}"),
    ("get", "/v1/tenants"),
    ("post", "/v1/tenants"),
    ("get", "/v1/tenants/{tenant}"),
    ("put", "/v1/tenants/{tenant}"),
    ("delete", "/v1/tenants/{tenant}"),
    ("post", "/v1/tenants/{tenant}/tokens"),
    ("delete", "/v1/tenants/{tenant}/tokens/{id}"),
    ("get", "/v1/tenants/{tenant}/bindings"),
    ("get", "/v1/tenants/{tenant}/bindings/{name}"),
    ("put", "/v1/tenants/{tenant}/bindings/{name}"),
    ("delete", "/v1/tenants/{tenant}/bindings/{name}"),
    ("get", "/v1/tenants/{tenant}/bindings/{name}/history"),
    ("post", "/v1/tenants/{tenant}/bindings/{name}/rollback"),
    ("post", "/v1/tenants/{tenant}/bindings/{name}/pause"),
    ("post", "/v1/tenants/{tenant}/bindings/{name}/resume"),
    ("put", "/v1/tenants/{tenant}/bindings/{name}/shadow"),
    ("delete", "/v1/tenants/{tenant}/bindings/{name}/shadow"),
    ("post", "/v1/tenants/{tenant}/bindings/{name}/promote"),
    ("get", "/v1/tenants/{tenant}/bindings/{name}/state"),
    ("delete", "/v1/tenants/{tenant}/bindings/{name}/state"),
    ("get", "/v1/tenants/{tenant}/bindings/{name}/operations"),
    (
        "delete",
        "/v1/tenants/{tenant}/bindings/{name}/operations/{id}",
    ),
    ("get", "/v1/tenants/{tenant}/decisions"),
    ("post", "/v1/events"),
];

/// The API's router.
pub fn router(state: Arc<ApiState>) -> Router {
    use handlers::{
        cancel_operation, clear_state, create_tenant, decisions, delete_binding, delete_plugin,
        delete_shadow, delete_tenant, get_binding, get_plugin, get_state, get_tenant, healthz,
        history, issue_token, list_bindings, list_plugins, list_tenants, method_not_allowed,
        not_found, openapi, operations, pause, promote, push_events, put_binding, put_shadow,
        resume, revoke_token, rollback, update_tenant, upload_plugin,
    };
    let binding = "/v1/tenants/{tenant}/bindings/{name}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route(
            "/v1/plugins",
            // The upload reads its body itself, to answer an oversized one in JSON.
            get(list_plugins)
                .post(upload_plugin)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/plugins/{digest}",
            get(get_plugin).delete(delete_plugin),
        )
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/v1/tenants/{tenant}",
            get(get_tenant).put(update_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/{tenant}/tokens", post(issue_token))
        .route(
            "/v1/tenants/{tenant}/tokens/{id}",
            axum::routing::delete(revoke_token),
        )
        .route("/v1/tenants/{tenant}/bindings", get(list_bindings))
        .route(
            binding,
            get(get_binding).put(put_binding).delete(delete_binding),
        )
        .route(&format!("{binding}/history"), get(history))
        .route(&format!("{binding}/rollback"), post(rollback))
        .route(&format!("{binding}/pause"), post(pause))
        .route(&format!("{binding}/resume"), post(resume))
        .route(
            &format!("{binding}/shadow"),
            put(put_shadow).delete(delete_shadow),
        )
        .route(&format!("{binding}/promote"), post(promote))
        .route(
            &format!("{binding}/state"),
            get(get_state).delete(clear_state),
        )
        .route(&format!("{binding}/operations"), get(operations))
        .route(
            &format!("{binding}/operations/{{id}}"),
            axum::routing::delete(cancel_operation),
        )
        .route("/v1/tenants/{tenant}/decisions", get(decisions))
        .route(
            "/v1/events",
            post(push_events).layer(DefaultBodyLimit::max(MAX_EVENTS_BODY)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The authenticated caller: `Authorization: Bearer <token>`, the admin's or a tenant's.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer <token>")
            })?;
        match state.control.authenticate(token)? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}
