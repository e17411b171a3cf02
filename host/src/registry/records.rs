//! The registry's records in the control database: who may see a plugin, its labels and their rules.

use serde::{Deserialize, Serialize};

use super::{PluginRecord, PluginRegistry, RegistryError};
use crate::domain::principal::Principal;
use crate::store::JsonTable;

/// Plugin records by digest.
pub(super) const PLUGINS: JsonTable<&str, Stored> = JsonTable::new("plugins");

/// A record with who may see it, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stored {
    #[serde(flatten)]
    pub(super) record: PluginRecord,
    /// Uploaded by the admin: visible to all.
    pub(super) shared: bool,
    /// Tenants that uploaded it.
    pub(super) tenants: Vec<String>,
}

impl Stored {
    pub(super) fn visible_to(&self, owner: &Principal) -> bool {
        match owner {
            Principal::Admin => true,
            Principal::Tenant(t) => self.shared || self.tenants.contains(t),
        }
    }

    pub(super) fn claim(&mut self, owner: &Principal) {
        match owner {
            Principal::Admin => self.shared = true,
            Principal::Tenant(t) if !self.tenants.contains(t) => self.tenants.push(t.clone()),
            Principal::Tenant(_) => {}
        }
    }

    pub(super) fn unclaimed(&self) -> bool {
        !self.shared && self.tenants.is_empty()
    }
}

pub(super) fn check_labels(name: Option<&str>, version: Option<&str>) -> Result<(), RegistryError> {
    const NAME_RULE: &str = "1 to 63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit";
    const VERSION_RULE: &str = "1 to 64 of A-Z, a-z, 0-9, '-', '_', '.', '+'";
    if let Some(name) = name {
        let ok = (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            return Err(RegistryError::Label {
                field: "name",
                value: name.to_owned(),
                rule: NAME_RULE,
            });
        }
    }
    if let Some(version) = version {
        let ok = (1..=64).contains(&version.len())
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
        if !ok {
            return Err(RegistryError::Label {
                field: "version",
                value: version.to_owned(),
                rule: VERSION_RULE,
            });
        }
        if name.is_none() {
            return Err(RegistryError::Label {
                field: "version",
                value: version.to_owned(),
                rule: "a version needs a name",
            });
        }
    }
    Ok(())
}

impl PluginRegistry {
    pub(super) fn stored(&self, digest: &str) -> Result<Option<Stored>, RegistryError> {
        Ok(PLUGINS.get(&self.db, digest)?)
    }

    pub(super) fn all(&self) -> Result<Vec<Stored>, RegistryError> {
        Ok(PLUGINS
            .all(&self.db, |_digest| ())?
            .into_iter()
            .map(|((), stored)| stored)
            .collect())
    }

    pub(super) fn put(&self, stored: &Stored) -> Result<(), RegistryError> {
        Ok(PLUGINS.put(&self.db, stored.record.digest.as_str(), stored)?)
    }

    pub(super) fn remove(&self, digest: &str) -> Result<(), RegistryError> {
        Ok(PLUGINS.remove(&self.db, digest)?)
    }
}
