//! The API's one error shape, `{"error": {"code", "message"}}`, and the status of each cause.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::control::ControlError;
use crate::registry::RegistryError;
use crate::tick::BindError;

/// An error answered by the API. HTTP statuses live here only: the layers below speak in their
/// own error enums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`not_found`, `invalid_config`, …; see docs/api.md).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let message = crate::domain::display_chain(&error);
        let (status, code) = match &error {
            ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ControlError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ControlError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ControlError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ControlError::Quota(_) => (StatusCode::TOO_MANY_REQUESTS, "quota"),
            ControlError::Bind(bind) => match bind {
                BindError::Config { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
                BindError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
                BindError::UnknownTenant { .. } => (StatusCode::NOT_FOUND, "not_found"),
                BindError::TargetTaken { .. } => (StatusCode::CONFLICT, "conflict"),
                BindError::OutOfScope { .. } => (StatusCode::FORBIDDEN, "out_of_scope"),
                BindError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_binding"),
            },
            ControlError::Registry(registry) => return registry_error(registry, message),
            ControlError::State(_) | ControlError::Store(_) | ControlError::NeedsValidation(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        if status.is_server_error() {
            tracing::error!(%message, "request failed");
        }
        ApiError::new(status, code, message)
    }
}

fn registry_error(error: &RegistryError, message: String) -> ApiError {
    let (status, code) = match error {
        RegistryError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        RegistryError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin"),
        RegistryError::Label { .. } | RegistryError::BadReference(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        RegistryError::LabelTaken { .. } | RegistryError::Relabel { .. } => {
            (StatusCode::CONFLICT, "conflict")
        }
        RegistryError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        RegistryError::CompilerBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        RegistryError::Damaged { .. } | RegistryError::Io { .. } | RegistryError::Store(_) => {
            tracing::error!(%message, "registry failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    ApiError::new(status, code, message)
}
