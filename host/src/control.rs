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

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::UnboundedSender;

use crate::backends::events::{Event, EventStore};
use crate::domain::cluster::WorkloadRef;
use crate::domain::scope::TenantSpec;
use crate::registry::{Added, Owner, PluginRecord, PluginRegistry, RegistryError, unix_ms};
use crate::runtime::Limits;
use crate::store::{StateError, namespace, shadow_namespace};
use crate::tick::{
    BindError, BindOptions, BindingSpec, FallbackSpec, Health, ShadowOptions, TargetSpec,
    TickEngine,
};

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const BINDINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bindings");

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: everything.
    Admin,
    /// A tenant: only its own tenant.
    Tenant(String),
}

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
    /// The binding was refused (scope, rails, or the policy's `validate-config`).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Binding state could not be read or cleared.
    #[error(transparent)]
    State(#[from] StateError),
    /// A stored record does not decode: the data dir is damaged.
    #[error("a stored record is damaged: {0}")]
    Corrupt(String),
    /// The control database failed.
    #[error("control database: {operation}")]
    Db {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: redb::Error,
    },
    /// The change needs these configs checked by their policies first (outside the change
    /// lock); [`Control::with_validation`] does that and tries again. Never reaches a caller
    /// of `with_validation`.
    #[error("the change needs {} config(s) checked first", .0.len())]
    NeedsValidation(Vec<PendingValidation>),
}

/// A config to check with its policy before a change can commit.
pub struct PendingValidation {
    spec: BindingSpec,
    policy: Arc<crate::runtime::CompiledPolicy>,
}

impl std::fmt::Debug for PendingValidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingValidation")
            .field(
                "binding",
                &format_args!("{}/{}", self.spec.tenant, self.spec.name),
            )
            .field("plugin", &self.policy.digest())
            .finish()
    }
}

/// What decides a `validate-config` answer: the binding (its state namespace), the plugin, the
/// config and the limits it ran under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ValidationKey {
    tenant: String,
    name: String,
    digest: String,
    /// sha256 of the config as the policy sees it (the memo holds no request bodies).
    config: [u8; 32],
    limits: Limits,
}

impl ValidationKey {
    fn of(spec: &BindingSpec, policy: &crate::runtime::CompiledPolicy) -> Self {
        ValidationKey {
            tenant: spec.tenant.clone(),
            name: spec.name.clone(),
            digest: policy.digest().to_owned(),
            config: sha256(&spec.config.to_string()),
            limits: spec.limits,
        }
    }
}

/// Configs remembered as accepted; past this many the memory starts again (a change then
/// checks its config once more).
const MAX_REMEMBERED_VALIDATIONS: usize = 4096;

/// Tries of a change whose configs keep changing under it before it is refused.
const VALIDATION_ATTEMPTS: usize = 3;

fn db_error(operation: &'static str) -> impl Fn(redb::Error) -> ControlError {
    move |source| ControlError::Db { operation, source }
}

/// A tenant as stored: its grants and its tokens' hashes (never the tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TenantRecord {
    spec: TenantSpec,
    tokens: Vec<TokenRecord>,
    created_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    /// Hex sha256 of the token.
    sha256: String,
    created_at: u64,
}

/// A binding's power operations, as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct OperationsView {
    /// In flight, oldest first.
    pub operations: Vec<crate::tick::Operation>,
    /// The last that ended (succeeded, failed, cancelled), oldest first.
    pub finished: Vec<crate::tick::Finished>,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Granted namespaces.
    pub namespaces: Vec<String>,
    /// Granted single workloads.
    pub workloads: Vec<WorkloadRef>,
    /// Granted VM pools.
    pub vm_pools: Vec<String>,
    /// Token ids (the tokens themselves are shown once, when made).
    pub tokens: Vec<String>,
    /// Unix milliseconds.
    pub created_at: u64,
}

/// A new token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    /// The tenant.
    pub tenant: String,
    /// Its id, to revoke it.
    pub id: String,
    /// The bearer token.
    pub token: String,
}

/// What a client sends to create or change a binding (`PUT …/bindings/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// `sha256:<hex>` or `name@version`.
    pub plugin: String,
    /// The policy's JSON config.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Time between ticks (default 15s).
    #[serde(default = "default_interval", with = "crate::domain::duration")]
    pub interval: std::time::Duration,
    /// Targets with their guard rails.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    /// VM pools it may power.
    #[serde(default)]
    pub vm_pools: Vec<String>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: Limits,
    /// Fallback after repeated failures.
    #[serde(default)]
    pub fallback: FallbackSpec,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_interval() -> std::time::Duration {
    std::time::Duration::from_secs(15)
}

/// One immutable revision of a binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, … per binding.
    pub revision: u64,
    /// The plugin digest it runs (a `name@version` is resolved when the revision is made).
    pub digest: String,
    /// The request, with `plugin` as the client gave it.
    pub request: BindingRequest,
    /// Unix milliseconds.
    pub created_at: u64,
}

/// When a revision became active, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The revision.
    pub revision: u64,
    /// `put`, `rollback` or `promote`.
    pub reason: String,
    /// Unix milliseconds.
    pub at: u64,
}

/// A binding as stored: every revision, which one is active, the shadow, the pause switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BindingRecord {
    revisions: Vec<Revision>,
    activations: Vec<Activation>,
    active: u64,
    shadow: Option<u64>,
    paused: bool,
}

impl BindingRecord {
    fn revision(&self, n: u64) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.revision == n)
    }

    fn next_revision(&self) -> u64 {
        self.revisions.last().map_or(1, |r| r.revision + 1)
    }
}

/// A binding as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BindingView {
    /// The tenant.
    pub tenant: String,
    /// The binding.
    pub name: String,
    /// The active revision.
    pub revision: u64,
    /// Its plugin digest.
    pub digest: String,
    /// Its request.
    pub spec: BindingRequest,
    /// The shadow revision, if any.
    pub shadow: Option<ShadowView>,
    /// True while ticks are skipped.
    pub paused: bool,
    /// Ticks, failures, the latest error.
    pub health: Health,
}

/// A shadow revision as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowView {
    /// Its revision.
    pub revision: u64,
    /// Its plugin digest.
    pub digest: String,
}

/// A binding's revisions and activations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// Every revision, oldest first.
    pub revisions: Vec<Revision>,
    /// Every activation, oldest first.
    pub activations: Vec<Activation>,
    /// The active revision.
    pub active: u64,
    /// The shadow revision.
    pub shadow: Option<u64>,
}

/// One state entry as the API shows it: UTF-8 values as text, others as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateEntry {
    /// The key.
    pub key: String,
    /// The value, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in base64, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// Tenants, tokens and bindings managed at run time; see the module docs.
pub struct Control {
    db: Arc<Database>,
    registry: Arc<PluginRegistry>,
    engine: Arc<TickEngine>,
    events: Arc<EventStore>,
    admin_token_sha256: Option<[u8; 32]>,
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
        let txn = db.begin_write().map_err(|e| db_error("open")(e.into()))?;
        txn.open_table(TENANTS)
            .map_err(|e| db_error("open")(e.into()))?;
        txn.open_table(BINDINGS)
            .map_err(|e| db_error("open")(e.into()))?;
        txn.commit().map_err(|e| db_error("open")(e.into()))?;
        let control = Control {
            db,
            registry,
            engine,
            events,
            admin_token_sha256: admin_token.map(sha256),
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

    /// Who presents `token`: compared by sha256, in constant time, against the admin token and
    /// every tenant token (all are compared, whatever matches first).
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, ControlError> {
        let presented = sha256(token);
        let mut found = None;
        if let Some(admin) = &self.admin_token_sha256
            && bool::from(admin.ct_eq(&presented))
        {
            found = Some(Principal::Admin);
        }
        for record in self.tenant_records()?.into_values() {
            for stored in &record.tokens {
                let Ok(stored) =
                    <[u8; 32]>::try_from(hex::decode(&stored.sha256).unwrap_or_default())
                else {
                    continue;
                };
                if bool::from(stored.ct_eq(&presented)) && found.is_none() {
                    found = Some(Principal::Tenant(record.spec.name.clone()));
                }
            }
        }
        Ok(found)
    }

    /// Refuses a principal outside `tenant` with "not found", so that tenants cannot probe
    /// each other's names.
    pub fn authorize(&self, who: &Principal, tenant: &str) -> Result<(), ControlError> {
        match who {
            Principal::Admin => Ok(()),
            Principal::Tenant(own) if own == tenant => Ok(()),
            Principal::Tenant(_) => Err(ControlError::NotFound(format!("no tenant {tenant}"))),
        }
    }

    fn admin_only(who: &Principal, what: &str) -> Result<(), ControlError> {
        match who {
            Principal::Admin => Ok(()),
            Principal::Tenant(_) => Err(ControlError::Forbidden(format!(
                "only the admin may {what}"
            ))),
        }
    }

    // ----- tenants -----

    /// Creates a tenant with its grants and a first token (admin only).
    pub fn create_tenant(
        &self,
        who: &Principal,
        spec: TenantSpec,
    ) -> Result<(TenantView, IssuedToken), ControlError> {
        Self::admin_only(who, "create tenants")?;
        check_name("tenant", &spec.name)?;
        self.check_backend(&spec)?;
        let _change = self.lock();
        if self.static_tenants.contains(&spec.name) || self.tenant_record(&spec.name)?.is_some() {
            return Err(ControlError::Conflict(format!(
                "tenant {} exists",
                spec.name
            )));
        }
        let (token, token_record) = new_token(&spec.name);
        let record = TenantRecord {
            spec: spec.clone(),
            tokens: vec![token_record.clone()],
            created_at: unix_ms(),
        };
        self.put_tenant(&record)?;
        self.engine.add_tenant(spec);
        Ok((
            view_tenant(&record),
            IssuedToken {
                tenant: record.spec.name.clone(),
                id: token_record.id,
                token,
            },
        ))
    }

    /// Every tenant (admin) or the caller's own.
    pub fn tenants(&self, who: &Principal) -> Result<Vec<TenantView>, ControlError> {
        Ok(self
            .tenant_records()?
            .values()
            .filter(|r| self.authorize(who, &r.spec.name).is_ok())
            .map(view_tenant)
            .collect())
    }

    /// One tenant.
    pub fn tenant(&self, who: &Principal, name: &str) -> Result<TenantView, ControlError> {
        self.authorize(who, name)?;
        self.tenant_record(name)?
            .map(|r| view_tenant(&r))
            .ok_or_else(|| ControlError::NotFound(format!("no tenant {name}")))
    }

    /// Changes a tenant's grants (admin only); refused if a binding (its active or shadow
    /// revision) would fall outside them. Running bindings take the new grants at once.
    pub fn update_tenant(
        &self,
        who: &Principal,
        spec: TenantSpec,
    ) -> Result<TenantView, ControlError> {
        Self::admin_only(who, "change tenants")?;
        let _change = self.lock();
        let mut record = self.existing_tenant(&spec.name)?;
        self.check_backend(&spec)?;
        let old = std::mem::replace(&mut record.spec, spec.clone());
        let bindings: Vec<_> = self
            .binding_records()?
            .into_iter()
            .filter(|((t, _), _)| *t == spec.name)
            .collect();
        self.engine.add_tenant(spec.clone());
        let checked = bindings.iter().try_for_each(|((t, n), binding)| {
            let (spec, _, options) = self.prepare(t, n, binding)?;
            self.engine.check_binding_quick(&spec)?;
            if let Some(shadow) = &options.shadow {
                self.engine.check_binding_quick(&shadow.spec)?;
            }
            Ok::<_, ControlError>(())
        });
        if let Err(error) = checked.and_then(|()| self.put_tenant(&record)) {
            self.engine.add_tenant(old);
            return Err(match error {
                ControlError::Bind(bind) => ControlError::Conflict(format!(
                    "the new grants would break a binding: {}",
                    crate::domain::display_chain(&bind)
                )),
                other => other,
            });
        }
        for ((t, n), binding) in &bindings {
            if let Err(error) = self.install(t, n, binding) {
                tracing::error!(tenant = %t, binding = %n, error = %crate::domain::display_chain(&error), "binding not reinstalled with the new grants");
            }
        }
        Ok(view_tenant(&record))
    }

    fn check_backend(&self, spec: &TenantSpec) -> Result<(), ControlError> {
        match &spec.backend {
            Some(name) if !self.engine.has_backend(name) => Err(ControlError::Invalid(format!(
                "tenant {}: no backend {name:?} in the host's config",
                spec.name
            ))),
            _ => Ok(()),
        }
    }

    /// Deletes a tenant (admin only); refused while it has bindings.
    pub fn delete_tenant(&self, who: &Principal, name: &str) -> Result<(), ControlError> {
        Self::admin_only(who, "delete tenants")?;
        let _change = self.lock();
        self.existing_tenant(name)?;
        if self.binding_records()?.keys().any(|(t, _)| t == name) {
            return Err(ControlError::Conflict(format!(
                "tenant {name} still has bindings; delete them first"
            )));
        }
        let txn = self
            .db
            .begin_write()
            .map_err(|e| db_error("delete tenant")(e.into()))?;
        {
            let mut table = txn
                .open_table(TENANTS)
                .map_err(|e| db_error("delete tenant")(e.into()))?;
            table
                .remove(name)
                .map_err(|e| db_error("delete tenant")(e.into()))?;
        }
        txn.commit()
            .map_err(|e| db_error("delete tenant")(e.into()))?;
        self.engine.remove_tenant(name);
        self.engine.audit().forget_tenant(name);
        // Its claims on plugins go; a plugin another binding still runs keeps its record.
        let owner = Owner::Tenant(name.to_owned());
        for plugin in self.registry.list(&owner)? {
            if self.registry.claimed_only_by(&plugin.digest, &owner)?
                && self.bound_anywhere(&plugin.digest)?
            {
                continue;
            }
            if let Err(error) = self.registry.release(&plugin.digest, &owner) {
                tracing::warn!(digest = %plugin.digest, error = %crate::domain::display_chain(&error), "claim not released");
            }
        }
        Ok(())
    }

    /// Issues another token for a tenant (admin, or the tenant itself).
    pub fn issue_token(&self, who: &Principal, tenant: &str) -> Result<IssuedToken, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_tenant(tenant)?;
        let (token, token_record) = new_token(tenant);
        record.tokens.push(token_record.clone());
        self.put_tenant(&record)?;
        Ok(IssuedToken {
            tenant: tenant.to_owned(),
            id: token_record.id,
            token,
        })
    }

    /// Revokes a token (admin, or the tenant itself).
    pub fn revoke_token(
        &self,
        who: &Principal,
        tenant: &str,
        id: &str,
    ) -> Result<(), ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_tenant(tenant)?;
        let before = record.tokens.len();
        record.tokens.retain(|t| t.id != id);
        if record.tokens.len() == before {
            return Err(ControlError::NotFound(format!("no token {id}")));
        }
        self.put_tenant(&record)
    }

    // ----- pushed events -----

    /// Keeps a batch of pushed events: a tenant may push only services under its namespaces
    /// (`<namespace>/…`); the batch is checked whole and kept whole, or refused whole.
    pub fn push_events(&self, who: &Principal, events: &[Event]) -> Result<usize, ControlError> {
        if let Principal::Tenant(tenant) = who {
            let spec = self
                .engine
                .tenant(tenant)
                .ok_or_else(|| ControlError::NotFound(format!("no tenant {tenant}")))?;
            for (index, event) in events.iter().enumerate() {
                let namespace = event.service.split('/').next().unwrap_or_default();
                if !event.service.contains('/') || !spec.namespaces.iter().any(|ns| ns == namespace)
                {
                    return Err(ControlError::Forbidden(format!(
                        "event {index}: service {:?} is not under a namespace granted to tenant {tenant}",
                        event.service
                    )));
                }
            }
        }
        self.events
            .push(events)
            .map_err(|e| ControlError::Invalid(e.to_string()))
    }

    // ----- plugins -----

    /// Stores a plugin for the caller (blocking: compiles).
    pub fn add_plugin(
        &self,
        who: &Principal,
        bytes: &[u8],
        name: Option<String>,
        version: Option<String>,
    ) -> Result<Added, ControlError> {
        Ok(self.registry.add(bytes, name, version, owner(who))?)
    }

    /// The plugins the caller may see: the admin's (shared with every tenant) and its own.
    pub fn plugins(&self, who: &Principal) -> Result<Vec<PluginRecord>, ControlError> {
        Ok(self.registry.list(&owner(who))?)
    }

    /// One plugin, if the caller may see it.
    pub fn plugin(&self, who: &Principal, digest: &str) -> Result<PluginRecord, ControlError> {
        self.registry
            .get(digest, &owner(who))?
            .ok_or_else(|| ControlError::NotFound(format!("no plugin {digest}")))
    }

    /// Deletes the caller's claim on a plugin; the files go with the last claim. Refused while
    /// any revision the caller (the admin: anyone) has active or in shadow runs it.
    pub fn delete_plugin(&self, who: &Principal, digest: &str) -> Result<(), ControlError> {
        let _change = self.lock();
        let record = self.plugin(who, digest)?;
        for ((tenant, name), binding) in self.binding_records()? {
            // A tenant's claim is held by its own bindings; the admin's by anyone's.
            if self.authorize(who, &tenant).is_err() {
                continue;
            }
            let uses = |n: Option<u64>| {
                n.and_then(|n| binding.revision(n))
                    .is_some_and(|r| r.digest == record.digest)
            };
            if uses(Some(binding.active)) || uses(binding.shadow) {
                return Err(ControlError::Conflict(format!(
                    "plugin {digest} is bound by {tenant}/{name}"
                )));
            }
        }
        // The last claim takes the files: refused while anyone's binding runs it.
        let claimant = owner(who);
        let last = matches!(claimant, Owner::Admin)
            || self.registry.claimed_only_by(&record.digest, &claimant)?;
        if last && self.bound_anywhere(&record.digest)? {
            return Err(ControlError::Conflict(format!(
                "plugin {digest} is still bound"
            )));
        }
        self.registry.release(digest, &claimant)?;
        Ok(())
    }

    /// Whether any binding's active or shadow revision runs `digest`.
    fn bound_anywhere(&self, digest: &str) -> Result<bool, ControlError> {
        Ok(self.binding_records()?.values().any(|binding| {
            [Some(binding.active), binding.shadow]
                .into_iter()
                .flatten()
                .filter_map(|n| binding.revision(n))
                .any(|r| r.digest == digest)
        }))
    }

    /// Refuses to activate a revision whose plugin the caller can no longer see.
    fn check_visible(&self, who: &Principal, digest: &str) -> Result<(), ControlError> {
        match self.registry.get(digest, &owner(who))? {
            Some(_) => Ok(()),
            None => Err(ControlError::NotFound(format!("no plugin {digest}"))),
        }
    }

    // ----- bindings -----

    /// Creates a binding or adds a revision and makes it active: checked (scope, plugin,
    /// rails, the config through the policy), committed, then swapped in at the binding's next
    /// tick; the binding's state and rail memory carry over. Returns the view and whether the
    /// binding is new. Blocking (the policy's `validate-config` runs).
    pub fn put_binding(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        request: BindingRequest,
    ) -> Result<(BindingView, bool), ControlError> {
        self.authorize(who, tenant)?;
        check_name("binding", name)?;
        let _change = self.lock();
        self.changeable_tenant(tenant)?;
        let digest = self.resolve_plugin(who, &request.plugin)?;
        let existing = self.binding_record(tenant, name)?;
        let created = existing.is_none();
        let mut record = existing.unwrap_or(BindingRecord {
            revisions: Vec::new(),
            activations: Vec::new(),
            active: 0,
            shadow: None,
            paused: false,
        });
        let revision = record.next_revision();
        record.revisions.push(Revision {
            revision,
            digest,
            request,
            created_at: unix_ms(),
        });
        record.active = revision;
        record.activations.push(Activation {
            revision,
            reason: "put".into(),
            at: unix_ms(),
        });
        self.commit_binding(tenant, name, &record)?;
        Ok((self.view(tenant, name, &record), created))
    }

    /// Every binding of a tenant.
    pub fn bindings(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<BindingView>, ControlError> {
        self.authorize(who, tenant)?;
        self.existing_tenant_or_static(tenant)?;
        Ok(self
            .binding_records()?
            .into_iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((t, n), r)| self.view(&t, &n, &r))
            .collect())
    }

    /// One binding.
    pub fn binding(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let record = self.existing_binding(tenant, name)?;
        Ok(self.view(tenant, name, &record))
    }

    /// Deletes a binding, its history and its state.
    pub fn delete_binding(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<(), ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        self.existing_binding(tenant, name)?;
        let txn = self
            .db
            .begin_write()
            .map_err(|e| db_error("delete binding")(e.into()))?;
        {
            let mut table = txn
                .open_table(BINDINGS)
                .map_err(|e| db_error("delete binding")(e.into()))?;
            table
                .remove((tenant, name))
                .map_err(|e| db_error("delete binding")(e.into()))?;
        }
        txn.commit()
            .map_err(|e| db_error("delete binding")(e.into()))?;
        // Waits for a tick in flight, so its state cannot land after the clearing.
        self.engine.unbind(tenant, name);
        self.engine.state().clear(&namespace(tenant, name))?;
        self.engine.state().clear(&shadow_namespace(tenant, name))?;
        Ok(())
    }

    /// Revisions and activations.
    pub fn history(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<History, ControlError> {
        self.authorize(who, tenant)?;
        let record = self.existing_binding(tenant, name)?;
        Ok(History {
            revisions: record.revisions,
            activations: record.activations,
            active: record.active,
            shadow: record.shadow,
        })
    }

    /// Makes an earlier revision active again: `revision`, or the one active before the
    /// current activation.
    pub fn rollback(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_binding(tenant, name)?;
        let target = match revision {
            Some(n) => n,
            None => record
                .activations
                .iter()
                .rev()
                .map(|a| a.revision)
                .find(|&n| n != record.active)
                .ok_or_else(|| {
                    ControlError::Conflict(format!(
                        "{tenant}/{name} has no earlier revision to roll back to"
                    ))
                })?,
        };
        if record.revision(target).is_none() {
            return Err(ControlError::NotFound(format!(
                "{tenant}/{name} has no revision {target}"
            )));
        }
        if target == record.active {
            return Err(ControlError::Conflict(format!(
                "revision {target} is already active"
            )));
        }
        if let Some(revision) = record.revision(target) {
            self.check_visible(who, &revision.digest)?;
        }
        record.active = target;
        if record.shadow == Some(target) {
            record.shadow = None;
        }
        record.activations.push(Activation {
            revision: target,
            reason: "rollback".into(),
            at: unix_ms(),
        });
        self.commit_binding(tenant, name, &record)?;
        Ok(self.view(tenant, name, &record))
    }

    /// Pauses (ticks skipped) or resumes a binding.
    pub fn set_paused(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        paused: bool,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_binding(tenant, name)?;
        record.paused = paused;
        self.put_binding_record(tenant, name, &record)?;
        self.engine.set_paused(tenant, name, paused);
        Ok(self.view(tenant, name, &record))
    }

    /// Adds a revision as the binding's shadow: it runs on the same ticks, dry.
    pub fn put_shadow(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        request: BindingRequest,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_binding(tenant, name)?;
        let digest = self.resolve_plugin(who, &request.plugin)?;
        let revision = record.next_revision();
        record.revisions.push(Revision {
            revision,
            digest,
            request,
            created_at: unix_ms(),
        });
        record.shadow = Some(revision);
        self.commit_binding(tenant, name, &record)?;
        Ok(self.view(tenant, name, &record))
    }

    /// Drops the shadow revision (it stays in the history).
    pub fn delete_shadow(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_binding(tenant, name)?;
        if record.shadow.take().is_none() {
            return Err(ControlError::NotFound(format!(
                "{tenant}/{name} has no shadow"
            )));
        }
        self.commit_binding(tenant, name, &record)?;
        Ok(self.view(tenant, name, &record))
    }

    /// Makes the shadow revision the active one (the binding's state carries over).
    pub fn promote(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_binding(tenant, name)?;
        let shadow = record
            .shadow
            .take()
            .ok_or_else(|| ControlError::Conflict(format!("{tenant}/{name} has no shadow")))?;
        if let Some(revision) = record.revision(shadow) {
            self.check_visible(who, &revision.digest)?;
        }
        record.active = shadow;
        record.activations.push(Activation {
            revision: shadow,
            reason: "promote".into(),
            at: unix_ms(),
        });
        self.commit_binding(tenant, name, &record)?;
        Ok(self.view(tenant, name, &record))
    }

    /// A binding's state entries.
    pub fn state(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<StateEntry>, ControlError> {
        self.authorize(who, tenant)?;
        self.existing_binding(tenant, name)?;
        Ok(self
            .engine
            .state()
            .list(&namespace(tenant, name))?
            .into_iter()
            .map(|(key, value)| match String::from_utf8(value) {
                Ok(text) => StateEntry {
                    key,
                    value: Some(text),
                    value_base64: None,
                },
                Err(bytes) => StateEntry {
                    key,
                    value: None,
                    value_base64: Some(base64_encode(bytes.as_bytes())),
                },
            })
            .collect())
    }

    /// Clears a binding's state.
    pub fn clear_state(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<(), ControlError> {
        self.authorize(who, tenant)?;
        self.existing_binding(tenant, name)?;
        self.engine.between_ticks(tenant, name, || {
            self.engine.state().clear(&namespace(tenant, name))
        })?;
        Ok(())
    }

    /// The power operations of a binding in flight (they run off the tick path).
    pub fn operations(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<OperationsView, ControlError> {
        self.authorize(who, tenant)?;
        self.existing_binding_or_static(tenant, name)?;
        let operations = self.engine.operations();
        Ok(OperationsView {
            operations: operations.of_binding(tenant, name),
            finished: operations.finished_of_binding(tenant, name),
        })
    }

    /// Cancels a power operation of a binding: the step under way is dropped; the VM and its
    /// node stay as that step left them.
    pub fn cancel_operation(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        id: &str,
    ) -> Result<(), ControlError> {
        // The binding may be gone: its operations are cancelled with it, but one being
        // settled still answers here.
        self.authorize(who, tenant)?;
        let not_found =
            || ControlError::NotFound(format!("{tenant}/{name} has no operation {id} in flight"));
        let id: u64 = id.parse().map_err(|_| not_found())?;
        if self.engine.operations().cancel(tenant, name, id) {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// A binding of the API's, or of the config file (whose bindings the engine alone knows).
    fn existing_binding_or_static(&self, tenant: &str, name: &str) -> Result<(), ControlError> {
        if self.engine.binding(tenant, name).is_some() {
            return Ok(());
        }
        self.existing_binding(tenant, name).map(drop)
    }

    // ----- internals -----

    /// Runs `change` (a call of this type that may commit a binding) on the blocking pool; when
    /// it answers [`ControlError::NeedsValidation`], checks those configs with their policies
    /// outside the change lock, each under its binding's deadline and limits, and runs the
    /// change again. A config the policy refuses ends it with the policy's message.
    pub async fn with_validation<T, F>(self: &Arc<Self>, change: F) -> Result<T, ControlError>
    where
        T: Send + 'static,
        F: Fn(&Control) -> Result<T, ControlError> + Clone + Send + 'static,
    {
        for _ in 0..VALIDATION_ATTEMPTS {
            let control = self.clone();
            let attempt = change.clone();
            let answer = tokio::task::spawn_blocking(move || attempt(&control))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            match answer {
                Err(ControlError::NeedsValidation(pending)) => {
                    for check in pending {
                        self.engine
                            .check_binding(&check.spec, &check.policy)
                            .await?;
                        let mut validated =
                            self.validated.lock().unwrap_or_else(|p| p.into_inner());
                        if validated.len() >= MAX_REMEMBERED_VALIDATIONS {
                            validated.clear();
                        }
                        validated.insert(ValidationKey::of(&check.spec, &check.policy));
                    }
                }
                other => return other,
            }
        }
        Err(ControlError::Conflict(
            "the binding kept changing while its config was checked; try again".into(),
        ))
    }

    /// Checks `record` (its configs must have been accepted by their policies: else it answers
    /// [`ControlError::NeedsValidation`] and changes nothing), commits it, then installs it in
    /// the engine: nothing slow can fail after the commit.
    fn commit_binding(
        &self,
        tenant: &str,
        name: &str,
        record: &BindingRecord,
    ) -> Result<(), ControlError> {
        let (spec, policy, options) = self.prepare(tenant, name, record)?;
        self.engine.check_binding_quick(&spec)?;
        if let Some(shadow) = &options.shadow {
            self.engine.check_binding_quick(&shadow.spec)?;
        }
        let mut pending = Vec::new();
        {
            let validated = self.validated.lock().unwrap_or_else(|p| p.into_inner());
            if !validated.contains(&ValidationKey::of(&spec, &policy)) {
                pending.push(PendingValidation {
                    spec: spec.clone(),
                    policy: policy.clone(),
                });
            }
            if let Some(shadow) = &options.shadow
                && !validated.contains(&ValidationKey::of(&shadow.spec, &shadow.policy))
            {
                pending.push(PendingValidation {
                    spec: shadow.spec.clone(),
                    policy: shadow.policy.clone(),
                });
            }
        }
        if !pending.is_empty() {
            return Err(ControlError::NeedsValidation(pending));
        }
        self.put_binding_record(tenant, name, record)?;
        self.install_prepared(tenant, name, spec, policy, options)
    }

    fn install(
        &self,
        tenant: &str,
        name: &str,
        record: &BindingRecord,
    ) -> Result<(), ControlError> {
        let (spec, policy, options) = self.prepare(tenant, name, record)?;
        self.install_prepared(tenant, name, spec, policy, options)
    }

    /// Installs in the engine; a binding new to the engine is announced to the scheduler.
    fn install_prepared(
        &self,
        tenant: &str,
        name: &str,
        spec: BindingSpec,
        policy: Arc<crate::runtime::CompiledPolicy>,
        options: BindOptions,
    ) -> Result<(), ControlError> {
        let new_to_engine = self.engine.binding(tenant, name).is_none();
        let binding = self.engine.install(spec, policy, options)?;
        if new_to_engine && let Some(added) = &self.added {
            let _ = added.send((tenant.to_owned(), name.to_owned(), binding.generation()));
        }
        Ok(())
    }

    fn prepare(
        &self,
        tenant: &str,
        name: &str,
        record: &BindingRecord,
    ) -> Result<
        (
            BindingSpec,
            Arc<crate::runtime::CompiledPolicy>,
            BindOptions,
        ),
        ControlError,
    > {
        let active = record.revision(record.active).ok_or_else(|| {
            ControlError::NotFound(format!("{tenant}/{name} has no revision {}", record.active))
        })?;
        let spec = spec_of(tenant, name, active);
        let policy = self.registry.load(&active.digest)?;
        let shadow = match record.shadow.and_then(|n| record.revision(n)) {
            Some(revision) => Some(ShadowOptions {
                spec: spec_of(tenant, name, revision),
                policy: self.registry.load(&revision.digest)?,
                revision: Some(revision.revision),
            }),
            None => None,
        };
        Ok((
            spec,
            policy,
            BindOptions {
                revision: Some(active.revision),
                shadow,
                paused: Some(record.paused),
            },
        ))
    }

    fn resolve_plugin(&self, who: &Principal, reference: &str) -> Result<String, ControlError> {
        Ok(self.registry.resolve(reference, &owner(who))?)
    }

    fn view(&self, tenant: &str, name: &str, record: &BindingRecord) -> BindingView {
        let active = record.revision(record.active);
        let binding = self.engine.binding(tenant, name);
        BindingView {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            revision: record.active,
            digest: active.map(|r| r.digest.clone()).unwrap_or_default(),
            spec: active
                .map(|r| r.request.clone())
                .unwrap_or_else(|| BindingRequest {
                    plugin: String::new(),
                    config: empty_object(),
                    interval: default_interval(),
                    targets: Vec::new(),
                    vm_pools: Vec::new(),
                    limits: Limits::default(),
                    fallback: FallbackSpec::default(),
                }),
            shadow: record
                .shadow
                .and_then(|n| record.revision(n))
                .map(|r| ShadowView {
                    revision: r.revision,
                    digest: r.digest.clone(),
                }),
            paused: record.paused,
            health: binding.map(|b| b.health()).unwrap_or_default(),
        }
    }

    fn changeable_tenant(&self, tenant: &str) -> Result<TenantRecord, ControlError> {
        if self.static_tenants.iter().any(|t| t == tenant) {
            return Err(ControlError::Conflict(format!(
                "tenant {tenant} is defined in the config file; its bindings are changed there"
            )));
        }
        self.existing_tenant(tenant)
    }

    fn existing_tenant(&self, name: &str) -> Result<TenantRecord, ControlError> {
        if self.static_tenants.iter().any(|t| t == name) {
            return Err(ControlError::Conflict(format!(
                "tenant {name} is defined in the config file"
            )));
        }
        self.tenant_record(name)?
            .ok_or_else(|| ControlError::NotFound(format!("no tenant {name}")))
    }

    fn existing_tenant_or_static(&self, name: &str) -> Result<(), ControlError> {
        if self.static_tenants.iter().any(|t| t == name) {
            return Ok(());
        }
        self.existing_tenant(name).map(|_| ())
    }

    fn existing_binding(&self, tenant: &str, name: &str) -> Result<BindingRecord, ControlError> {
        self.binding_record(tenant, name)?
            .ok_or_else(|| ControlError::NotFound(format!("no binding {tenant}/{name}")))
    }

    fn tenant_record(&self, name: &str) -> Result<Option<TenantRecord>, ControlError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("read")(e.into()))?;
        let table = txn
            .open_table(TENANTS)
            .map_err(|e| db_error("read")(e.into()))?;
        let value = table.get(name).map_err(|e| db_error("read")(e.into()))?;
        value.map(|v| decode(v.value())).transpose()
    }

    fn tenant_records(&self) -> Result<BTreeMap<String, TenantRecord>, ControlError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("read")(e.into()))?;
        let table = txn
            .open_table(TENANTS)
            .map_err(|e| db_error("read")(e.into()))?;
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(|e| db_error("read")(e.into()))? {
            let (key, value) = entry.map_err(|e| db_error("read")(e.into()))?;
            out.insert(key.value().to_owned(), decode(value.value())?);
        }
        Ok(out)
    }

    fn put_tenant(&self, record: &TenantRecord) -> Result<(), ControlError> {
        let json = serde_json::to_vec(record).unwrap_or_default();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| db_error("write tenant")(e.into()))?;
        {
            let mut table = txn
                .open_table(TENANTS)
                .map_err(|e| db_error("write tenant")(e.into()))?;
            table
                .insert(record.spec.name.as_str(), json.as_slice())
                .map_err(|e| db_error("write tenant")(e.into()))?;
        }
        txn.commit().map_err(|e| db_error("write tenant")(e.into()))
    }

    fn binding_record(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<BindingRecord>, ControlError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("read")(e.into()))?;
        let table = txn
            .open_table(BINDINGS)
            .map_err(|e| db_error("read")(e.into()))?;
        let value = table
            .get((tenant, name))
            .map_err(|e| db_error("read")(e.into()))?;
        value.map(|v| decode(v.value())).transpose()
    }

    fn binding_records(&self) -> Result<BTreeMap<(String, String), BindingRecord>, ControlError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("read")(e.into()))?;
        let table = txn
            .open_table(BINDINGS)
            .map_err(|e| db_error("read")(e.into()))?;
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(|e| db_error("read")(e.into()))? {
            let (key, value) = entry.map_err(|e| db_error("read")(e.into()))?;
            let (tenant, name) = key.value();
            out.insert((tenant.to_owned(), name.to_owned()), decode(value.value())?);
        }
        Ok(out)
    }

    fn put_binding_record(
        &self,
        tenant: &str,
        name: &str,
        record: &BindingRecord,
    ) -> Result<(), ControlError> {
        let json = serde_json::to_vec(record).unwrap_or_default();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| db_error("write binding")(e.into()))?;
        {
            let mut table = txn
                .open_table(BINDINGS)
                .map_err(|e| db_error("write binding")(e.into()))?;
            table
                .insert((tenant, name), json.as_slice())
                .map_err(|e| db_error("write binding")(e.into()))?;
        }
        txn.commit()
            .map_err(|e| db_error("write binding")(e.into()))
    }
}

/// Opens (or creates) the control database in `data_dir`.
pub fn open_database(data_dir: &Path) -> Result<Arc<Database>, ControlError> {
    let path = data_dir.join("control.redb");
    Database::create(&path)
        .map(Arc::new)
        .map_err(|e| db_error("open control.redb")(e.into()))
}

fn spec_of(tenant: &str, name: &str, revision: &Revision) -> BindingSpec {
    let request = &revision.request;
    BindingSpec {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        plugin: revision.digest.clone(),
        interval: request.interval,
        config: request.config.clone(),
        targets: request.targets.clone(),
        vm_pools: request.vm_pools.clone(),
        limits: request.limits,
        fallback: request.fallback,
    }
}

fn owner(who: &Principal) -> Owner {
    match who {
        Principal::Admin => Owner::Admin,
        Principal::Tenant(name) => Owner::Tenant(name.clone()),
    }
}

fn view_tenant(record: &TenantRecord) -> TenantView {
    TenantView {
        name: record.spec.name.clone(),
        namespaces: record.spec.namespaces.clone(),
        workloads: record.spec.workloads.clone(),
        vm_pools: record.spec.vm_pools.clone(),
        tokens: record.tokens.iter().map(|t| t.id.clone()).collect(),
        created_at: record.created_at,
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| ControlError::Corrupt(e.to_string()))
}

fn check_name(what: &str, name: &str) -> Result<(), ControlError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ControlError::Invalid(format!(
            "invalid {what} name {name:?}: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit"
        )))
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A fresh token `sht_<64 hex>` from the OS's randomness, and what is stored of it.
fn new_token(tenant: &str) -> (String, TokenRecord) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS provides randomness");
    let token = format!("sht_{}", hex::encode(secret));
    let digest = sha256(&token);
    let record = TokenRecord {
        // Not secret: names the token for revocation.
        id: format!("{tenant}-{}", &hex::encode(Sha256::digest(digest))[..12]),
        sha256: hex::encode(digest),
        created_at: unix_ms(),
    };
    (token, record)
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
