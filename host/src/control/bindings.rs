//! Bindings: put (checked, validated outside the change lock, committed, installed), read, delete; the views the API answers.

use std::sync::Arc;

use crate::runtime::Limits;
use crate::store::{namespace, shadow_namespace};
use crate::tick::{BindOptions, BindingSpec, Health, ShadowOptions};

use super::Control;
use super::ControlError;
use super::auth::sha256;
use super::records::BindingRecord;
use super::records::{Activation, Revision};
use super::tenants::check_name;
use crate::domain::principal::Principal;
use crate::registry::unix_ms;
use serde::Serialize;

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
pub(super) struct ValidationKey {
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
pub(super) const MAX_REMEMBERED_VALIDATIONS: usize = 4096;

/// Tries of a change whose configs keep changing under it before it is refused.
pub(super) const VALIDATION_ATTEMPTS: usize = 3;

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
    /// Its spec.
    pub spec: BindingSpec,
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

/// What the engine runs for a revision: its spec with the plugin resolved to the digest.
pub(super) fn spec_of(tenant: &str, name: &str, revision: &Revision) -> BindingSpec {
    BindingSpec {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        plugin: revision.digest.clone(),
        ..revision.request.clone()
    }
}

/// `request` as `tenant`'s binding `name`, or why it names another.
pub(super) fn claimed(
    request: BindingSpec,
    tenant: &str,
    name: &str,
) -> Result<BindingSpec, ControlError> {
    request
        .claimed_by(tenant, name)
        .map_err(|e| ControlError::Invalid(e.to_string()))
}

impl Control {
    /// Creates a binding or adds a revision and makes it active: checked (scope, plugin,
    /// rails, the config through the policy), committed, then swapped in at the binding's next
    /// tick; the binding's state and rail memory carry over. Returns the view and whether the
    /// binding is new. Blocking (the policy's `validate-config` runs).
    pub fn put_binding(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        request: BindingSpec,
    ) -> Result<(BindingView, bool), ControlError> {
        self.authorize(who, tenant)?;
        check_name("binding", name)?;
        let request = claimed(request, tenant, name)?;
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
        self.remove_binding_record(tenant, name)?;
        // Waits for a tick in flight, so its state cannot land after the clearing.
        self.engine.unbind(tenant, name);
        self.engine.state().clear(&namespace(tenant, name))?;
        self.engine.state().clear(&shadow_namespace(tenant, name))?;
        Ok(())
    }

    /// A binding of the API's, or of the config file (whose bindings the engine alone knows).
    pub(super) fn existing_binding_or_static(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(), ControlError> {
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
    pub(super) fn commit_binding(
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

    pub(super) fn install(
        &self,
        tenant: &str,
        name: &str,
        record: &BindingRecord,
    ) -> Result<(), ControlError> {
        let (spec, policy, options) = self.prepare(tenant, name, record)?;
        self.install_prepared(tenant, name, spec, policy, options)
    }

    /// Installs in the engine; a binding new to the engine is announced to the scheduler.
    pub(super) fn install_prepared(
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

    pub(super) fn prepare(
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

    pub(super) fn view(&self, tenant: &str, name: &str, record: &BindingRecord) -> BindingView {
        let active = record.revision(record.active);
        let binding = self.engine.binding(tenant, name);
        BindingView {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            revision: record.active,
            digest: active.map(|r| r.digest.clone()).unwrap_or_default(),
            spec: active
                .map(|r| r.request.clone())
                .unwrap_or_else(|| BindingSpec::for_plugin("")),
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

    pub(super) fn existing_binding(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<BindingRecord, ControlError> {
        self.binding_record(tenant, name)?
            .ok_or_else(|| ControlError::NotFound(format!("no binding {tenant}/{name}")))
    }
}
