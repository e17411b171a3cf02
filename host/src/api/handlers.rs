//! One function per route: authenticate, parse, call the control plane, answer JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{ApiError, ApiState, Caller};
use crate::control::{Control, ControlError};
use crate::domain::scope::TenantSpec;
use crate::tick::BindingSpec;

type ApiResult = Result<Response, ApiError>;

/// The OpenAPI document, maintained beside the routes (a test compares the two).
pub(super) const OPENAPI: &str = include_str!("openapi.json");

fn ok<T: serde::Serialize>(status: StatusCode, body: T) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Runs a control-plane call that may compile or run a policy on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<ApiState>,
    work: impl FnOnce(&Control) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    let control = state.control.clone();
    tokio::task::spawn_blocking(move || work(&control))
        .await
        .map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Runs a control-plane change that may commit a binding: its configs are checked by their
/// policies outside the change lock first (see [`Control::with_validation`]).
async fn validated<T: Send + 'static>(
    state: &Arc<ApiState>,
    change: impl Fn(&Control) -> Result<T, ControlError> + Clone + Send + 'static,
) -> Result<T, ApiError> {
    state
        .control
        .with_validation(change)
        .await
        .map_err(ApiError::from)
}

pub(super) async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the host is still starting",
        )
        .into_response()
    }
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

// ----- plugins -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    name: Option<String>,
    version: Option<String>,
}

pub(super) async fn upload_plugin(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = state.control.registry().max_bytes();
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("plugin of {size} bytes exceeds the limit of {limit} bytes"),
        )
    };
    // Refused before reading when the client says how much it sends.
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large(length.to_string()));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(format!("more than {limit}")))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be the component's bytes",
        ));
    }
    let added = blocking(&state, move |control| {
        control.add_plugin(&who, &bytes, query.name, query.version)
    })
    .await?;
    let status = if added.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, added.record)
}

pub(super) async fn list_plugins(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
) -> ApiResult {
    ok(
        StatusCode::OK,
        json!({ "plugins": state.control.plugins(&who)? }),
    )
}

pub(super) async fn get_plugin(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(digest): Path<String>,
) -> ApiResult {
    ok(StatusCode::OK, state.control.plugin(&who, &digest)?)
}

pub(super) async fn delete_plugin(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(digest): Path<String>,
) -> ApiResult {
    blocking(&state, move |control| control.delete_plugin(&who, &digest)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- tenants -----

pub(super) async fn create_tenant(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    body: Bytes,
) -> ApiResult {
    let spec: TenantSpec = parse(&body)?;
    let (tenant, token) =
        blocking(&state, move |control| control.create_tenant(&who, spec)).await?;
    ok(
        StatusCode::CREATED,
        json!({ "tenant": tenant, "token": token }),
    )
}

pub(super) async fn list_tenants(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
) -> ApiResult {
    ok(
        StatusCode::OK,
        json!({ "tenants": state.control.tenants(&who)? }),
    )
}

pub(super) async fn get_tenant(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    ok(StatusCode::OK, state.control.tenant(&who, &tenant)?)
}

pub(super) async fn update_tenant(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(tenant): Path<String>,
    body: Bytes,
) -> ApiResult {
    let spec: TenantSpec = parse(&body)?;
    if spec.name != tenant {
        return Err(ApiError::bad_request(format!(
            "the body names tenant {:?}, the path {tenant:?}",
            spec.name
        )));
    }
    let view = blocking(&state, move |control| control.update_tenant(&who, spec)).await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn delete_tenant(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    blocking(&state, move |control| control.delete_tenant(&who, &tenant)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn issue_token(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    let token = blocking(&state, move |control| control.issue_token(&who, &tenant)).await?;
    ok(StatusCode::CREATED, token)
}

pub(super) async fn revoke_token(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    blocking(&state, move |control| {
        control.revoke_token(&who, &tenant, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- bindings -----

pub(super) async fn list_bindings(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    ok(
        StatusCode::OK,
        json!({ "bindings": state.control.bindings(&who, &tenant)? }),
    )
}

pub(super) async fn get_binding(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    ok(StatusCode::OK, state.control.binding(&who, &tenant, &name)?)
}

pub(super) async fn put_binding(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let request: BindingSpec = parse(&body)?;
    let (view, created) = validated(&state, move |control| {
        control.put_binding(&who, &tenant, &name, request.clone())
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, view)
}

pub(super) async fn delete_binding(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    blocking(&state, move |control| {
        control.delete_binding(&who, &tenant, &name)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn history(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    ok(StatusCode::OK, state.control.history(&who, &tenant, &name)?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackRequest {
    revision: Option<u64>,
}

pub(super) async fn rollback(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        parse(&body)?
    };
    let view = validated(&state, move |control| {
        control.rollback(&who, &tenant, &name, request.revision)
    })
    .await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn pause(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    let view = blocking(&state, move |control| {
        control.set_paused(&who, &tenant, &name, true)
    })
    .await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn resume(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    let view = blocking(&state, move |control| {
        control.set_paused(&who, &tenant, &name, false)
    })
    .await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn put_shadow(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let request: BindingSpec = parse(&body)?;
    let view = validated(&state, move |control| {
        control.put_shadow(&who, &tenant, &name, request.clone())
    })
    .await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn delete_shadow(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    let view = validated(&state, move |control| {
        control.delete_shadow(&who, &tenant, &name)
    })
    .await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn promote(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    let view = validated(&state, move |control| control.promote(&who, &tenant, &name)).await?;
    ok(StatusCode::OK, view)
}

pub(super) async fn get_state(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    // A binding's state may be big: read it off the async workers.
    let entries = blocking(&state, move |control| control.state(&who, &tenant, &name)).await?;
    ok(StatusCode::OK, json!({ "entries": entries }))
}

pub(super) async fn clear_state(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    blocking(&state, move |control| {
        control.clear_state(&who, &tenant, &name)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn operations(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    ok(
        StatusCode::OK,
        state.control.operations(&who, &tenant, &name)?,
    )
}

pub(super) async fn cancel_operation(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path((tenant, name, id)): Path<(String, String, String)>,
) -> ApiResult {
    state.control.cancel_operation(&who, &tenant, &name, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- decisions -----

/// Most records one request returns.
const MAX_DECISIONS: usize = 10_000;

pub(super) async fn decisions(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    state.control.authorize(&who, &tenant)?;
    let number = |key: &str| -> Result<Option<u64>, ApiError> {
        query
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("{key}={v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    };
    for key in query.keys() {
        if !["since", "binding", "limit"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?} (since, binding, limit)"
            )));
        }
    }
    let since = number("since")?.unwrap_or(0);
    let limit = number("limit")?.map_or(MAX_DECISIONS, |l| (l as usize).min(MAX_DECISIONS));
    let binding = query.get("binding");
    let records: Vec<_> = state
        .control
        .engine()
        .audit()
        .recent_of(&tenant)
        .into_iter()
        .filter(|r| r.seq > since)
        .filter(|r| binding.is_none_or(|b| &r.binding == b))
        .take(limit)
        .collect();
    let records: Vec<&crate::tick::AuditRecord> = records.iter().map(|r| &**r).collect();
    ok(StatusCode::OK, json!({ "decisions": records }))
}

// ----- pushed events -----

/// `?backend=NAME`: the backend pushed events are for (the admin's choice; a tenant's own).
#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    backend: Option<String>,
}

pub(super) async fn push_events(
    State(state): State<Arc<ApiState>>,
    Caller(who): Caller,
    Query(query): Query<EventsQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "invalid_request"
            },
            e.body_text(),
        )
    })?;
    let events: Vec<crate::backends::events::Event> = parse(&body)?;
    let accepted = blocking(&state, move |control| {
        control.push_events(&who, query.backend.as_deref(), &events)
    })
    .await?;
    ok(StatusCode::ACCEPTED, json!({ "accepted": accepted }))
}
