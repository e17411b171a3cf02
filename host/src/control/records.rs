//! The control database's typed tables: tenants (with their token hashes) and binding records (with every revision).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::domain::scope::TenantSpec;

use super::Activation;
use super::Control;
use super::ControlError;
use super::Revision;
use super::TokenRecord;
use serde::{Deserialize, Serialize};

pub(super) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");

pub(super) const BINDINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bindings");

pub(super) fn db_error(operation: &'static str) -> impl Fn(redb::Error) -> ControlError {
    move |source| ControlError::Db { operation, source }
}

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

/// Opens (or creates) the control database in `data_dir`.
pub fn open_database(data_dir: &Path) -> Result<Arc<Database>, ControlError> {
    let path = data_dir.join("control.redb");
    Database::create(&path)
        .map(Arc::new)
        .map_err(|e| db_error("open control.redb")(e.into()))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| ControlError::Corrupt(e.to_string()))
}

impl Control {
    pub(super) fn tenant_record(&self, name: &str) -> Result<Option<TenantRecord>, ControlError> {
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

    pub(super) fn tenant_records(&self) -> Result<BTreeMap<String, TenantRecord>, ControlError> {
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

    pub(super) fn put_tenant(&self, record: &TenantRecord) -> Result<(), ControlError> {
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

    pub(super) fn binding_record(
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

    pub(super) fn binding_records(
        &self,
    ) -> Result<BTreeMap<(String, String), BindingRecord>, ControlError> {
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

    pub(super) fn put_binding_record(
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
