//! The host's config file (TOML): data dir, engine, cluster backend, tenants and bindings.
//!
//! The full reference is in the README ("Config reference"); `demo.toml` beside this file is a
//! complete example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backends::real::BackendConfig;
use crate::backends::simulated::SimSpec;
use crate::domain::scope::TenantSpec;
use crate::runtime::EngineConfig;
use crate::tick::BindingSpec;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid TOML of the expected shape (the message names line and field).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
}

/// Everything a host runs with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Where state and the audit log live (default `scalehost-data`, relative to the config).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The wasm engine's pool.
    #[serde(default)]
    pub engine: EngineConfig,
    /// The cluster backend.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Real backends (Prometheus, …) tenants may use by name.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Tenants and their grants.
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    /// Policies bound to targets.
    #[serde(default)]
    pub bindings: Vec<BindingSpec>,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// How big and how old `audit.jsonl` and its rotated files may grow.
    #[serde(default)]
    pub audit: crate::tick::AuditRetention,
    /// The folder relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("scalehost-data")
}

/// The HTTP API (`docs/api.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where to listen, e.g. `127.0.0.1:8080`; no API without it.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A file holding the admin token; else the `SCALEHOST_ADMIN_TOKEN` environment variable.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// The largest plugin accepted, bytes (default 64 MiB).
    #[serde(default = "default_max_plugin_bytes")]
    pub max_plugin_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            admin_token_file: None,
            max_plugin_bytes: default_max_plugin_bytes(),
        }
    }
}

fn default_max_plugin_bytes() -> usize {
    crate::registry::DEFAULT_MAX_PLUGIN_BYTES
}

/// Which cluster the host acts on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The backend (default `simulated`).
    #[serde(default)]
    pub backend: BackendKind,
    /// The simulated cluster's contents.
    #[serde(default)]
    pub simulated: SimSpec,
    /// Virtual seconds per real second for the simulated cluster under `serve` (default 1).
    #[serde(default = "one")]
    pub time_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// Cluster backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The embedded simulated cluster.
    #[default]
    Simulated,
}

impl HostConfig {
    /// Reads a config file; relative paths in it are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::from_toml(&text, path, base_dir)
    }

    /// Parses config text; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let mut config: HostConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        // A binding's spec leaves tenant and name optional (the API's path names them); here
        // nothing else does.
        for (index, binding) in config.bindings.iter().enumerate() {
            for (field, value) in [("tenant", &binding.tenant), ("name", &binding.name)] {
                if value.is_empty() {
                    return Err(ConfigError::Parse {
                        path: path.to_owned(),
                        message: format!(
                            "bindings[{index}] (plugin `{}`): missing field `{field}`",
                            binding.plugin
                        ),
                    });
                }
            }
        }
        config.base_dir = base_dir;
        Ok(config)
    }

    /// What `serve` runs with when no config file is given: the embedded simulated cluster of
    /// `default.toml` (beside this file), no tenants, no bindings.
    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_CONFIG, Path::new("default.toml"), PathBuf::new())
            .expect("the embedded default config is valid")
    }

    /// `path` resolved against the config's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// The embedded default config.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_parses() {
        let config = HostConfig::embedded_default();
        assert!(config.tenants.is_empty() && config.bindings.is_empty());
        assert!(!config.cluster.simulated.workloads.is_empty());
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_name() {
        let err = HostConfig::from_toml(
            "[[tenants]]\nname = \"a\"\nnamespace = [\"x\"]\n",
            Path::new("c.toml"),
            PathBuf::new(),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("unknown field `namespace`"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn a_binding_without_its_tenant_or_name_is_refused() {
        for (toml, field) in [
            (
                "[[bindings]]\nname = \"b\"\nplugin = \"p.wasm\"\n",
                "tenant",
            ),
            (
                "[[bindings]]\ntenant = \"a\"\nplugin = \"p.wasm\"\n",
                "name",
            ),
        ] {
            let message = HostConfig::from_toml(toml, Path::new("c.toml"), PathBuf::new())
                .unwrap_err()
                .to_string();
            assert_eq!(
                message,
                format!(
                    "invalid config c.toml: bindings[0] (plugin `p.wasm`): missing field `{field}`"
                )
            );
        }
    }
}
