//! The command line's side of the API: `scalehost plugin|tenant|binding|decisions …`.
//!
//! Each command is one request; the answer is printed as JSON (lists as short tables), an API
//! error as its `code: message` on stderr with a non-zero exit. `--server` and `--token` come
//! from the flags or `SCALEHOST_SERVER` / `SCALEHOST_TOKEN`.

use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod commands;

pub use commands::{BindingCommand, ClientCommand, Connection, PluginCommand, TenantCommand};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not JSON.
    #[error("{path} is not JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why.
        message: String,
    },
    /// The request did not reach the host.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        /// The server.
        server: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The host answered with an error.
    #[error("{status}: {code}: {message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The API's error code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// Runs one client command; prints the answer or the error.
pub async fn run(command: ClientCommand) -> ExitCode {
    match execute(command).await {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one client command and returns what to print.
pub async fn execute(command: ClientCommand) -> Result<String, ClientError> {
    match command {
        ClientCommand::Plugin(PluginCommand::Push {
            file,
            name,
            version,
            connection,
        }) => {
            let bytes = std::fs::read(&file).map_err(|source| ClientError::Read {
                path: file.clone(),
                source,
            })?;
            let mut query = Vec::new();
            if let Some(name) = name {
                query.push(("name", name));
            }
            if let Some(version) = version {
                query.push(("version", version));
            }
            let answer = request(
                &connection,
                Method::POST,
                "/v1/plugins",
                &query,
                Body::Wasm(bytes),
            )
            .await?;
            Ok(pretty(&answer))
        }
        ClientCommand::Plugin(PluginCommand::Ls { connection }) => {
            let answer = request(&connection, Method::GET, "/v1/plugins", &[], Body::None).await?;
            Ok(table(
                &answer["plugins"],
                &["digest", "name", "version", "size"],
            ))
        }
        ClientCommand::Plugin(PluginCommand::Rm { digest, connection }) => {
            request(
                &connection,
                Method::DELETE,
                &format!("/v1/plugins/{digest}"),
                &[],
                Body::None,
            )
            .await?;
            Ok(format!("deleted {digest}"))
        }
        ClientCommand::Tenant(TenantCommand::Create {
            name,
            namespaces,
            vm_pools,
            connection,
        }) => {
            let body = json!({ "name": name, "namespaces": namespaces, "vm_pools": vm_pools });
            let answer = request(
                &connection,
                Method::POST,
                "/v1/tenants",
                &[],
                Body::Json(body),
            )
            .await?;
            Ok(pretty(&answer))
        }
        ClientCommand::Tenant(TenantCommand::Ls { connection }) => {
            let answer = request(&connection, Method::GET, "/v1/tenants", &[], Body::None).await?;
            Ok(table(
                &answer["tenants"],
                &["name", "namespaces", "vm_pools"],
            ))
        }
        ClientCommand::Binding(command) => binding(command).await,
        ClientCommand::Decisions {
            tenant,
            binding,
            since,
            limit,
            connection,
        } => {
            let mut query = Vec::new();
            if let Some(binding) = binding {
                query.push(("binding", binding));
            }
            if let Some(since) = since {
                query.push(("since", since.to_string()));
            }
            if let Some(limit) = limit {
                query.push(("limit", limit.to_string()));
            }
            let answer = request(
                &connection,
                Method::GET,
                &format!("/v1/tenants/{tenant}/decisions"),
                &query,
                Body::None,
            )
            .await?;
            // One record per line: easy to grep and to pipe into jq.
            Ok(answer["decisions"]
                .as_array()
                .map(|records| {
                    records
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default())
        }
    }
}

async fn binding(command: BindingCommand) -> Result<String, ClientError> {
    let path = |tenant: &str, name: &str, rest: &str| {
        format!("/v1/tenants/{tenant}/bindings/{name}{rest}")
    };
    let answer = match command {
        BindingCommand::Set {
            tenant,
            name,
            file,
            shadow,
            connection,
        } => {
            let text = std::fs::read_to_string(&file).map_err(|source| ClientError::Read {
                path: file.clone(),
                source,
            })?;
            let body: Value = serde_json::from_str(&text).map_err(|e| ClientError::Json {
                path: file.clone(),
                message: e.to_string(),
            })?;
            let rest = if shadow { "/shadow" } else { "" };
            request(
                &connection,
                Method::PUT,
                &path(&tenant, &name, rest),
                &[],
                Body::Json(body),
            )
            .await?
        }
        BindingCommand::Ls { tenant, connection } => {
            let answer = request(
                &connection,
                Method::GET,
                &format!("/v1/tenants/{tenant}/bindings"),
                &[],
                Body::None,
            )
            .await?;
            return Ok(table(
                &answer["bindings"],
                &["name", "revision", "digest", "paused"],
            ));
        }
        BindingCommand::History {
            tenant,
            name,
            connection,
        } => {
            request(
                &connection,
                Method::GET,
                &path(&tenant, &name, "/history"),
                &[],
                Body::None,
            )
            .await?
        }
        BindingCommand::Rollback {
            tenant,
            name,
            revision,
            connection,
        } => {
            let body = match revision {
                Some(revision) => json!({ "revision": revision }),
                None => json!({}),
            };
            request(
                &connection,
                Method::POST,
                &path(&tenant, &name, "/rollback"),
                &[],
                Body::Json(body),
            )
            .await?
        }
        BindingCommand::Pause {
            tenant,
            name,
            connection,
        } => {
            request(
                &connection,
                Method::POST,
                &path(&tenant, &name, "/pause"),
                &[],
                Body::None,
            )
            .await?
        }
        BindingCommand::Resume {
            tenant,
            name,
            connection,
        } => {
            request(
                &connection,
                Method::POST,
                &path(&tenant, &name, "/resume"),
                &[],
                Body::None,
            )
            .await?
        }
        BindingCommand::Promote {
            tenant,
            name,
            connection,
        } => {
            request(
                &connection,
                Method::POST,
                &path(&tenant, &name, "/promote"),
                &[],
                Body::None,
            )
            .await?
        }
        BindingCommand::Operations {
            tenant,
            name,
            cancel,
            connection,
        } => {
            let (method, suffix) = match cancel {
                Some(id) => (Method::DELETE, format!("/operations/{id}")),
                None => (Method::GET, "/operations".to_owned()),
            };
            request(
                &connection,
                method,
                &path(&tenant, &name, &suffix),
                &[],
                Body::None,
            )
            .await?
        }
    };
    Ok(pretty(&answer))
}

enum Body {
    None,
    Json(Value),
    Wasm(Vec<u8>),
}

async fn request(
    connection: &Connection,
    method: Method,
    path: &str,
    query: &[(&str, String)],
    body: Body,
) -> Result<Value, ClientError> {
    let url = format!("{}{path}", connection.server.trim_end_matches('/'));
    let mut builder = reqwest::Client::new().request(method, &url).query(query);
    if let Some(token) = &connection.token {
        builder = builder.bearer_auth(token);
    }
    builder = match body {
        Body::None => builder,
        Body::Json(value) => builder.json(&value),
        Body::Wasm(bytes) => builder
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(bytes),
    };
    let unreachable = |source| ClientError::Unreachable {
        server: connection.server.clone(),
        source,
    };
    let response = builder.send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_success() {
        Ok(value)
    } else {
        Err(ClientError::Api {
            status,
            code: value["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            message: value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned),
        })
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Rows of `columns` from a JSON array, aligned.
fn table(rows: &Value, columns: &[&str]) -> String {
    let cell = |row: &Value, column: &str| match &row[column] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| columns.iter().map(|c| cell(row, c)).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(columns.iter().map(|c| c.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}
