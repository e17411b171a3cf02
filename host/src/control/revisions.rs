//! A binding's revisions and switches: history, rollback, pause, shadow, promote; its state and power operations.

use crate::store::namespace;
use crate::tick::BindingSpec;

use super::Control;
use super::ControlError;
use super::bindings::BindingView;
use super::bindings::claimed;
use super::records::Activation;
use super::records::Revision;
use crate::domain::principal::Principal;
use crate::registry::unix_ms;
use serde::Serialize;

/// A binding's power operations, as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct OperationsView {
    /// In flight, oldest first.
    pub operations: Vec<crate::tick::Operation>,
    /// The last that ended (succeeded, failed, cancelled), oldest first.
    pub finished: Vec<crate::tick::Finished>,
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

impl Control {
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
        request: BindingSpec,
    ) -> Result<BindingView, ControlError> {
        self.authorize(who, tenant)?;
        let request = claimed(request, tenant, name)?;
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
}

/// Standard base64 with padding (state values that are not UTF-8).
pub(super) fn base64_encode(bytes: &[u8]) -> String {
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
