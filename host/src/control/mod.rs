//! The control plane: tenants and their tokens, binding revisions, pause, shadow; persisted.
//!
//! Start with [`Control`]: every change the API makes goes through it, in the same order: check
//! (the tenant's scope, the plugin, the config through the policy's `validate-config`), commit
//! to the control database (`control.redb`, one durable transaction), then install in the
//! [`TickEngine`]. A crash after the commit is repaired at the next start, which installs what
//! the database holds; nothing is acknowledged before its commit.
//!
//! The policy's `validate-config` never runs under the change lock: a change that needs a
//! config checked answers [`ControlError::NeedsValidation`], [`Control::with_validation`] runs
//! the checks (async, each bounded by its binding's deadline) and tries the change again. A
//! slow or hostile policy so delays only the request that bound it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::Database;
use tokio::sync::mpsc::UnboundedSender;

use crate::backends::events::EventStore;
use crate::registry::{PluginRegistry, RegistryError};
use crate::store::{StateError, TableError};
mod auth;
mod bindings;
mod plugins;
mod records;
mod revisions;
mod tenants;

pub use auth::IssuedToken;
use auth::sha256;
use bindings::ValidationKey;
pub use bindings::{BindingView, PendingValidation, ShadowView};
pub use records::{Activation, Revision};
use records::{BINDINGS, TENANTS};
pub use revisions::{History, OperationsView, StateEntry};
pub use tenants::TenantView;

use crate::tick::{BindError, TickEngine};

pub use crate::domain::principal::Principal;

/// Why the control plane refused or failed. The API maps each to a status and a code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such tenant, binding, revision or plugin (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// Exists already, or is in use.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// Only the admin may do this.
    #[error("{0}")]
    Forbidden(String),
    /// It would take a tenant past one of its quotas.
    #[error("{0}")]
    Quota(String),
    /// The binding was refused (scope, rails, or the policy's `validate-config`).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Binding state could not be read or cleared.
    #[error(transparent)]
    State(#[from] StateError),
    /// The control database failed, or a record in it is damaged.
    #[error(transparent)]
    Store(#[from] TableError),
    /// The change needs these configs checked by their policies first (outside the change
    /// lock); [`Control::with_validation`] does that and tries again. Never reaches a caller
    /// of `with_validation`.
    #[error("the change needs {} config(s) checked first", .0.len())]
    NeedsValidation(Vec<PendingValidation>),
}

/// Tenants, tokens and bindings managed at run time; see the module docs.
pub struct Control {
    db: Arc<Database>,
    registry: Arc<PluginRegistry>,
    engine: Arc<TickEngine>,
    events: Arc<EventStore>,
    admin_token_sha256: Option<[u8; 32]>,
    /// Every tenant token's sha256 → its tenant: a request finds its caller in O(1), without
    /// reading the tenant records.
    tokens: std::sync::RwLock<std::collections::HashMap<[u8; 32], String>>,
    /// Tenants defined by the config file: visible, not changeable through the API.
    static_tenants: Vec<String>,
    /// Bindings created at run time are announced here for the scheduler.
    added: Option<UnboundedSender<(String, String, u64)>>,
    /// One change at a time: check, commit and install stay in order. Never held while a
    /// policy runs.
    changes: Mutex<()>,
    /// Configs their policies accepted, so a change commits without running a policy.
    validated: Mutex<HashSet<ValidationKey>>,
}

impl Control {
    /// Opens the control tables in `db` and installs every stored tenant and binding into
    /// `engine` (plugins from their compiled artifacts: no recompilation). A binding that no
    /// longer binds (its plugin deleted, say) is logged and left out.
    pub fn open(
        db: Arc<Database>,
        registry: Arc<PluginRegistry>,
        engine: Arc<TickEngine>,
        events: Arc<EventStore>,
        admin_token: Option<&str>,
        static_tenants: Vec<String>,
    ) -> Result<Self, ControlError> {
        TENANTS.create(&db)?;
        BINDINGS.create(&db)?;
        let control = Control {
            db,
            registry,
            engine,
            events,
            admin_token_sha256: admin_token.map(sha256),
            tokens: Default::default(),
            static_tenants,
            added: None,
            changes: Mutex::default(),
            validated: Mutex::default(),
        };
        for record in control.tenant_records()?.into_values() {
            if control.static_tenants.contains(&record.spec.name) {
                return Err(ControlError::Conflict(format!(
                    "tenant {} is both in the config file and in the data dir",
                    record.spec.name
                )));
            }
            control.index_tokens(&record.spec.name, &record.tokens);
            control.engine.add_tenant(record.spec);
        }
        for ((tenant, name), record) in control.binding_records()? {
            if let Err(error) = control.install(&tenant, &name, &record) {
                tracing::error!(%tenant, binding = %name, error = %crate::domain::display_chain(&error), "stored binding not installed");
            }
        }
        Ok(control)
    }

    /// Announces bindings created from now on on `added` (the scheduler follows it).
    pub fn announce_to(&mut self, added: UnboundedSender<(String, String, u64)>) {
        self.added = Some(added);
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// The tick engine.
    pub fn engine(&self) -> &Arc<TickEngine> {
        &self.engine
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- authentication -----
}

#[cfg(test)]
mod tests {
    use super::auth::new_token;
    use super::revisions::base64_encode;
    use super::tenants::check_name;
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("tenant", "team-a").is_ok());
        for bad in ["", "Team", "-a", "a/b", &"x".repeat(64)] {
            assert!(check_name("tenant", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, ra) = new_token("t");
        let (b, _) = new_token("t");
        assert_ne!(a, b);
        assert!(a.starts_with("sht_") && a.len() == 4 + 64);
        assert_eq!(ra.sha256, hex::encode(sha256(&a)));
        assert!(!ra.sha256.contains(&a[4..]));
    }
}
