//! `scalehost validate`: is this file a policy component this host can run, and is its config good?

use std::path::Path;
use std::sync::Arc;

use crate::runtime::{Limits, PolicyEngine, StagedState, ValidateError};
use crate::runtime::{PluginError, load_plugin};
use crate::store::StateStore;

/// What a successful validation found.
#[derive(Debug, Clone)]
pub struct Validated {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: usize,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Whether a config was checked by `validate-config`.
    pub config_checked: bool,
}

/// Why validation failed; every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The file is not a loadable policy component.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The config is not JSON.
    #[error("config is not JSON: {0}")]
    ConfigJson(String),
    /// The policy refused the config, or its check failed.
    #[error("config refused")]
    Config(#[source] ValidateError),
    /// The scratch state store could not be created.
    #[error("cannot create a scratch state store: {0}")]
    State(String),
}

/// Checks that `path` is a component of the policy world, compiles it, and runs its
/// `validate-config` on `config` when given.
pub async fn validate_plugin(
    engine: &PolicyEngine,
    path: &Path,
    config: Option<&str>,
) -> Result<Validated, ValidationError> {
    let policy = load_plugin(engine, path)?;
    if let Some(config) = config {
        let value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| ValidationError::ConfigJson(e.to_string()))?;
        let store =
            Arc::new(StateStore::in_memory().map_err(|e| ValidationError::State(e.to_string()))?);
        let staged = StagedState::new(store, "validate/validate".into());
        policy
            .validate_config(
                &value.to_string(),
                Limits::default(),
                "validate".into(),
                "validate".into(),
                0,
                staged,
            )
            .await
            .map_err(ValidationError::Config)?;
    }
    Ok(Validated {
        digest: policy.digest().to_owned(),
        size: policy.size(),
        imports: policy.imports().to_vec(),
        config_checked: config.is_some(),
    })
}
