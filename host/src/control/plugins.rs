//! The plugin registry as tenants see it: upload, list, read, delete (refused while bound).

use super::Control;
use super::ControlError;
use crate::domain::principal::Principal;
use crate::registry::Added;
use crate::registry::PluginRecord;

impl Control {
    /// Stores a plugin for the caller (blocking: compiles).
    pub fn add_plugin(
        &self,
        who: &Principal,
        bytes: &[u8],
        name: Option<String>,
        version: Option<String>,
    ) -> Result<Added, ControlError> {
        Ok(self.registry.add(bytes, name, version, who.clone())?)
    }

    /// The plugins the caller may see: the admin's (shared with every tenant) and its own.
    pub fn plugins(&self, who: &Principal) -> Result<Vec<PluginRecord>, ControlError> {
        Ok(self.registry.list(&who.clone())?)
    }

    /// One plugin, if the caller may see it.
    pub fn plugin(&self, who: &Principal, digest: &str) -> Result<PluginRecord, ControlError> {
        self.registry
            .get(digest, &who.clone())?
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
        let claimant = who.clone();
        let last = matches!(claimant, Principal::Admin)
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
    pub(super) fn bound_anywhere(&self, digest: &str) -> Result<bool, ControlError> {
        Ok(self.binding_records()?.values().any(|binding| {
            [Some(binding.active), binding.shadow]
                .into_iter()
                .flatten()
                .filter_map(|n| binding.revision(n))
                .any(|r| r.digest == digest)
        }))
    }

    /// Refuses to activate a revision whose plugin the caller can no longer see.
    pub(super) fn check_visible(&self, who: &Principal, digest: &str) -> Result<(), ControlError> {
        match self.registry.get(digest, &who.clone())? {
            Some(_) => Ok(()),
            None => Err(ControlError::NotFound(format!("no plugin {digest}"))),
        }
    }

    // ----- bindings -----

    pub(super) fn resolve_plugin(
        &self,
        who: &Principal,
        reference: &str,
    ) -> Result<String, ControlError> {
        Ok(self.registry.resolve(reference, &who.clone())?)
    }
}
