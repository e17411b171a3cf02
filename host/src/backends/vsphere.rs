//! Node VMs through the vSphere Automation REST API: sessions, listing, power, guest shutdown.
//!
//! Start with [`VSphere::new`]. `POST /api/session` with basic auth gives a session id, sent as
//! `vmware-api-session-id`; a 401 (the session expired) logs in again once and repeats the call.
//! [`VSphere::vms`] lists by names; [`VSphere::power`], [`VSphere::start`], [`VSphere::stop`]
//! and [`VSphere::shutdown_guest`] act on one VM. The password is read from a file or an
//! environment variable at start and never logged. TLS verification can only be skipped by an
//! explicit flag.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::domain::cluster::{BackendError, PowerState};

/// `[backends.vsphere]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSphereConfig {
    /// vCenter's base URL, e.g. `https://vcenter.example`.
    pub url: String,
    /// The user to log in as.
    pub username: String,
    /// A file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The CA of vCenter's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (never by default; for labs only).
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Timeout of each request (default 30s).
    #[serde(default = "default_timeout", with = "crate::domain::duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Why the vSphere client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VSphereSetupError {
    /// Something in the section is unusable.
    #[error("vsphere: {0}")]
    Invalid(String),
}

/// One VM as vCenter lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VmSummary {
    /// Its identifier (`vm-123`).
    pub vm: String,
    /// Its name.
    pub name: String,
    /// `POWERED_ON`, `POWERED_OFF` or `SUSPENDED`.
    pub power_state: String,
}

/// A vCenter.
pub struct VSphere {
    url: String,
    username: String,
    password: String,
    client: reqwest::Client,
    session: Mutex<Option<String>>,
}

impl std::fmt::Debug for VSphere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the session.
        f.debug_struct("VSphere")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl VSphere {
    /// A client for `config`, made on the host's runtime; reads the password now.
    pub fn new(config: &VSphereConfig) -> Result<Self, VSphereSetupError> {
        let invalid = |m: String| VSphereSetupError::Invalid(m);
        let password = match (&config.password_file, &config.password_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
                .trim()
                .to_owned(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| invalid(format!("environment variable {var} is not set")))?,
            _ => {
                return Err(invalid(
                    "give exactly one of password_file and password_env".into(),
                ));
            }
        };
        let mut builder = reqwest::Client::builder().timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            builder = builder.add_root_certificate(ca);
        }
        if config.insecure_skip_tls_verify {
            tracing::warn!(url = %config.url, "TLS verification of vCenter is off (insecure_skip_tls_verify)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(VSphere {
            url: config.url.trim_end_matches('/').to_owned(),
            username: config.username.clone(),
            password,
            client: builder.build().map_err(|e| invalid(e.to_string()))?,
            session: Mutex::new(None),
        })
    }

    /// The VMs named `names`.
    pub async fn vms(&self, names: &[String]) -> Result<Vec<VmSummary>, BackendError> {
        let query = vec![("names", names.join(","))];
        let body = self.call(Method::GET, "/api/vcenter/vm", &query).await?;
        serde_json::from_str(&body).map_err(|e| {
            BackendError::Unavailable(format!("vcenter listed VMs in another shape: {e}"))
        })
    }

    /// A VM's power state.
    pub async fn power(&self, vm: &str) -> Result<PowerState, BackendError> {
        let body = self
            .call(Method::GET, &format!("/api/vcenter/vm/{vm}/power"), &[])
            .await?;
        let state: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| BackendError::Unavailable(format!("vcenter power state: {e}")))?;
        Ok(power_state(state["state"].as_str().unwrap_or("")))
    }

    /// Powers a VM on.
    pub async fn start(&self, vm: &str) -> Result<(), BackendError> {
        self.call(
            Method::POST,
            &format!("/api/vcenter/vm/{vm}/power"),
            &[("action", "start".into())],
        )
        .await
        .map(|_| ())
    }

    /// Powers a VM off at once (a hard stop).
    pub async fn stop(&self, vm: &str) -> Result<(), BackendError> {
        self.call(
            Method::POST,
            &format!("/api/vcenter/vm/{vm}/power"),
            &[("action", "stop".into())],
        )
        .await
        .map(|_| ())
    }

    /// Asks the guest OS to shut down (needs VMware Tools in the guest).
    pub async fn shutdown_guest(&self, vm: &str) -> Result<(), BackendError> {
        self.call(
            Method::POST,
            &format!("/api/vcenter/vm/{vm}/guest/power"),
            &[("action", "shutdown".into())],
        )
        .await
        .map(|_| ())
    }

    /// Whether vCenter accepts the credentials (for `doctor`).
    pub async fn check(&self) -> Result<(), BackendError> {
        self.login().await.map(|_| ())
    }

    /// One call with the session; a 401 logs in again once and repeats it.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<String, BackendError> {
        async {
            for attempt in 0..2 {
                let session = match self.current_session() {
                    Some(session) if attempt == 0 => session,
                    _ => self.login().await?,
                };
                let response = self
                    .client
                    .request(method.clone(), format!("{}{path}", self.url))
                    .query(query)
                    .header("vmware-api-session-id", &session)
                    .send()
                    .await
                    .map_err(unreachable)?;
                let status = response.status();
                let body = response.text().await.map_err(unreachable)?;
                if status == StatusCode::UNAUTHORIZED {
                    *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    continue;
                }
                return answer(status, body, path);
            }
            Err(BackendError::Forbidden(
                "vcenter refused the session right after logging in".into(),
            ))
        }
        .await
    }

    fn current_session(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn login(&self) -> Result<String, BackendError> {
        let response = self
            .client
            .post(format!("{}/api/session", self.url))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(BackendError::Forbidden(format!(
                "vcenter refused the login of {}",
                self.username
            )));
        }
        let body = answer(status, body, "/api/session")?;
        let session: String = serde_json::from_str(&body)
            .map_err(|e| BackendError::Unavailable(format!("vcenter session id: {e}")))?;
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
        Ok(session)
    }
}

fn unreachable(e: reqwest::Error) -> BackendError {
    BackendError::Unavailable(format!(
        "vcenter unreachable: {}",
        crate::domain::display_chain(&e)
    ))
}

fn answer(status: StatusCode, body: String, path: &str) -> Result<String, BackendError> {
    if status.is_success() {
        return Ok(body);
    }
    // vCenter's error body: {"error_type": "NOT_FOUND", "messages": [{"default_message": …}]}.
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let kind = v["error_type"].as_str().unwrap_or("ERROR").to_owned();
            let text = v["messages"][0]["default_message"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            Some(format!("{kind}: {text}"))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(match status.as_u16() {
        404 => BackendError::NotFound(format!("{path}: {message}")),
        400 => BackendError::Invalid(format!("{path}: {message}")),
        403 => BackendError::Forbidden(format!("{path}: {message}")),
        code => BackendError::Unavailable(format!("vcenter {code} on {path}: {message}")),
    })
}

/// vCenter's power state names.
pub fn power_state(name: &str) -> PowerState {
    match name {
        "POWERED_ON" => PowerState::On,
        _ => PowerState::Off,
    }
}
