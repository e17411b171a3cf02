//! What the control plane stores: tenants (with their token hashes) and binding records (with
//! every revision), each kind in one table of `control.redb`.

use std::collections::BTreeMap;

use crate::domain::scope::TenantSpec;
use crate::store::JsonTable;
use crate::tick::BindingSpec;

use super::Control;
use super::ControlError;
use super::auth::TokenRecord;
use serde::{Deserialize, Serialize};

/// Tenants by name.
pub(super) const TENANTS: JsonTable<&str, TenantRecord> = JsonTable::new("tenants");

/// Bindings by (tenant, name).
pub(super) const BINDINGS: JsonTable<(&str, &str), BindingRecord> = JsonTable::new("bindings");

/// A tenant as stored: its grants and its tokens' hashes (never the tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TenantRecord {
    pub(super) spec: TenantSpec,
    pub(super) tokens: Vec<TokenRecord>,
    pub(super) created_at: u64,
}

/// A binding as stored: every revision, which one is active, the shadow, the pause switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct BindingRecord {
    pub(super) revisions: Vec<Revision>,
    pub(super) activations: Vec<Activation>,
    pub(super) active: u64,
    pub(super) shadow: Option<u64>,
    pub(super) paused: bool,
}

impl BindingRecord {
    pub(super) fn revision(&self, n: u64) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.revision == n)
    }

    pub(super) fn next_revision(&self) -> u64 {
        self.revisions.last().map_or(1, |r| r.revision + 1)
    }
}

/// One immutable revision of a binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, … per binding.
    pub revision: u64,
    /// The plugin digest it runs (a `name@version` is resolved when the revision is made).
    pub digest: String,
    /// The spec as the client gave it (`plugin` unresolved), its tenant and name filled in.
    pub request: BindingSpec,
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

impl Control {
    pub(super) fn tenant_record(&self, name: &str) -> Result<Option<TenantRecord>, ControlError> {
        Ok(TENANTS.get(&self.db, name)?)
    }

    pub(super) fn tenant_records(&self) -> Result<BTreeMap<String, TenantRecord>, ControlError> {
        Ok(TENANTS.all(&self.db, str::to_owned)?.into_iter().collect())
    }

    pub(super) fn put_tenant(&self, record: &TenantRecord) -> Result<(), ControlError> {
        Ok(TENANTS.put(&self.db, record.spec.name.as_str(), record)?)
    }

    pub(super) fn remove_tenant_record(&self, name: &str) -> Result<(), ControlError> {
        Ok(TENANTS.remove(&self.db, name)?)
    }

    pub(super) fn binding_record(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<BindingRecord>, ControlError> {
        Ok(BINDINGS.get(&self.db, (tenant, name))?)
    }

    pub(super) fn binding_records(
        &self,
    ) -> Result<BTreeMap<(String, String), BindingRecord>, ControlError> {
        Ok(BINDINGS
            .all(&self.db, |(tenant, name)| {
                (tenant.to_owned(), name.to_owned())
            })?
            .into_iter()
            .collect())
    }

    pub(super) fn put_binding_record(
        &self,
        tenant: &str,
        name: &str,
        record: &BindingRecord,
    ) -> Result<(), ControlError> {
        Ok(BINDINGS.put(&self.db, (tenant, name), record)?)
    }

    pub(super) fn remove_binding_record(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(), ControlError> {
        Ok(BINDINGS.remove(&self.db, (tenant, name))?)
    }
}
