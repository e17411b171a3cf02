//! Typed tables of the control database (`control.redb`): JSON values under redb keys, each read
//! one snapshot and each write one durable transaction.
//!
//! The records themselves are declared where they mean something (the control plane's tenants and
//! bindings in `control/records.rs`, the registry's plugins in `registry/records.rs`); this is the
//! one place that talks to redb for them:
//!
//! ```
//! # use scalehost::store::{JsonTable, TableError};
//! const NOTES: JsonTable<&str, Vec<String>> = JsonTable::new("notes");
//!
//! # fn main() -> Result<(), TableError> {
//! # let dir = tempfile::tempdir().unwrap();
//! let db = scalehost::store::open_database(&dir.path().join("control.redb"))?;
//! NOTES.create(&db)?;
//! NOTES.put(&db, "a", &vec!["first".to_owned()])?;
//! assert_eq!(NOTES.get(&db, "a")?, Some(vec!["first".to_owned()]));
//! assert_eq!(NOTES.all(&db, str::to_owned)?.len(), 1);
//! NOTES.remove(&db, "a")?;
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, Key, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The database failed.
    #[error("control database: cannot {operation} table {table}")]
    Db {
        /// The table.
        table: &'static str,
        /// `open`, `read`, `write` or `remove from`.
        operation: &'static str,
        /// The cause.
        #[source]
        source: redb::Error,
    },
    /// A stored value does not decode: the data dir is damaged (or was written by a newer host).
    #[error("control database: the record {key} of table {table} is damaged: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// What the decoder said.
        message: String,
    },
    /// A value could not be encoded (a map with non-string keys, say); nothing was written.
    #[error("control database: cannot encode a record of table {table}: {message}")]
    Encode {
        /// The table.
        table: &'static str,
        /// What the encoder said.
        message: String,
    },
}

/// Opens (or creates) a control database file.
pub fn open_database(path: &Path) -> Result<Arc<Database>, TableError> {
    Database::create(path)
        .map(Arc::new)
        .map_err(|e| TableError::Db {
            table: "(all)",
            operation: "open",
            source: e.into(),
        })
}

/// A table of `V`s (stored as JSON) under keys of type `K`; declare it as a `const`.
pub struct JsonTable<K: Key + 'static, V> {
    name: &'static str,
    definition: TableDefinition<'static, K, &'static [u8]>,
    value: PhantomData<fn() -> V>,
}

impl<K: Key + 'static, V: Serialize + DeserializeOwned> JsonTable<K, V> {
    /// The table named `name` (the name is its identity on disk: never rename one).
    pub const fn new(name: &'static str) -> Self {
        JsonTable {
            name,
            definition: TableDefinition::new(name),
            value: PhantomData,
        }
    }

    fn error(&self, operation: &'static str) -> impl Fn(redb::Error) -> TableError + '_ {
        move |source| TableError::Db {
            table: self.name,
            operation,
            source,
        }
    }

    fn decode(&self, key: impl std::fmt::Debug, bytes: &[u8]) -> Result<V, TableError> {
        serde_json::from_slice(bytes).map_err(|e| TableError::Corrupt {
            table: self.name,
            key: format!("{key:?}"),
            message: e.to_string(),
        })
    }

    /// Creates the table if it is not there yet, so that reads find it.
    pub fn create(&self, db: &Database) -> Result<(), TableError> {
        let fail = self.error("open");
        let txn = db.begin_write().map_err(|e| fail(e.into()))?;
        txn.open_table(self.definition)
            .map_err(|e| fail(e.into()))?;
        txn.commit().map_err(|e| fail(e.into()))
    }

    /// The value under `key`.
    pub fn get<'k>(&self, db: &Database, key: K::SelfType<'k>) -> Result<Option<V>, TableError> {
        let fail = self.error("read");
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let table = txn
            .open_table(self.definition)
            .map_err(|e| fail(e.into()))?;
        let value = table.get(&key).map_err(|e| fail(e.into()))?;
        value.map(|v| self.decode(&key, v.value())).transpose()
    }

    /// Every entry in key order, each key made owned by `owned`.
    pub fn all<T>(
        &self,
        db: &Database,
        owned: impl Fn(K::SelfType<'_>) -> T,
    ) -> Result<Vec<(T, V)>, TableError> {
        let fail = self.error("read");
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let table = txn
            .open_table(self.definition)
            .map_err(|e| fail(e.into()))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| fail(e.into()))? {
            let (key, value) = entry.map_err(|e| fail(e.into()))?;
            let value = self.decode(key.value(), value.value())?;
            out.push((owned(key.value()), value));
        }
        Ok(out)
    }

    /// Stores `value` under `key`, durably, before it returns.
    pub fn put<'k>(
        &self,
        db: &Database,
        key: K::SelfType<'k>,
        value: &V,
    ) -> Result<(), TableError> {
        let json = serde_json::to_vec(value).map_err(|e| TableError::Encode {
            table: self.name,
            message: e.to_string(),
        })?;
        let fail = self.error("write");
        let txn = db.begin_write().map_err(|e| fail(e.into()))?;
        {
            let mut table = txn
                .open_table(self.definition)
                .map_err(|e| fail(e.into()))?;
            table
                .insert(&key, json.as_slice())
                .map_err(|e| fail(e.into()))?;
        }
        txn.commit().map_err(|e| fail(e.into()))
    }

    /// Removes the value under `key` (none there is fine), durably, before it returns.
    pub fn remove<'k>(&self, db: &Database, key: K::SelfType<'k>) -> Result<(), TableError> {
        let fail = self.error("remove from");
        let txn = db.begin_write().map_err(|e| fail(e.into()))?;
        {
            let mut table = txn
                .open_table(self.definition)
                .map_err(|e| fail(e.into()))?;
            table.remove(&key).map_err(|e| fail(e.into()))?;
        }
        txn.commit().map_err(|e| fail(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: JsonTable<(&str, &str), u32> = JsonTable::new("pairs");

    #[test]
    fn a_damaged_record_names_its_table_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_database(&dir.path().join("c.redb")).expect("opens");
        PAIRS.create(&db).expect("creates");
        PAIRS.put(&db, ("t", "b"), &7).expect("writes");
        assert_eq!(PAIRS.get(&db, ("t", "b")).expect("reads"), Some(7));
        // Bytes that are not a u32 in JSON, written past the typed table.
        let raw: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pairs");
        let txn = db.begin_write().expect("txn");
        txn.open_table(raw)
            .expect("table")
            .insert(("t", "x"), b"{not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
        let error = PAIRS
            .all(&db, |(t, n)| (t.to_owned(), n.to_owned()))
            .unwrap_err();
        assert!(
            matches!(&error, TableError::Corrupt { table: "pairs", key, .. } if key == "(\"t\", \"x\")"),
            "{error}"
        );
        PAIRS.remove(&db, ("t", "x")).expect("removes");
        assert_eq!(
            PAIRS
                .all(&db, |(t, n)| (t.to_owned(), n.to_owned()))
                .expect("reads"),
            vec![(("t".to_owned(), "b".to_owned()), 7)]
        );
    }
}
