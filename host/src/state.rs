//! Per-binding key/value state in the host's data dir (redb), surviving restarts.
//!
//! Keys are namespaced by tenant and binding ([`namespace`]); a tick's writes arrive as one
//! batch ([`StateStore::apply`]) committed in one durable transaction, so a crash leaves either
//! all of a tick's state or none.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

const STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("state");

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened or created.
    #[error("cannot open the state store at {path}")]
    Open {
        /// Its file.
        path: String,
        /// The cause.
        #[source]
        source: redb::Error,
    },
    /// A read or a write failed.
    #[error("state store {operation} failed")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: redb::Error,
    },
}

/// The state namespace of a tenant's binding.
pub fn namespace(tenant: &str, binding: &str) -> String {
    format!("{tenant}/{binding}")
}

/// The embedded key/value store behind the `state` interface.
pub struct StateStore {
    db: Database,
}

fn io(operation: &'static str) -> impl Fn(redb::Error) -> StateError {
    move |source| StateError::Io { operation, source }
}

impl StateStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = Database::create(path).map_err(|e| StateError::Open {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        Self::init(db)
    }

    /// A store that lives in memory only (backtests, tests).
    pub fn in_memory() -> Result<Self, StateError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StateError::Open {
                path: "memory".into(),
                source: e.into(),
            })?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StateError> {
        let txn = db.begin_write().map_err(|e| io("create")(e.into()))?;
        txn.open_table(STATE).map_err(|e| io("create")(e.into()))?;
        txn.commit().map_err(|e| io("create")(e.into()))?;
        Ok(StateStore { db })
    }

    /// The value of `key` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read().map_err(|e| io("read")(e.into()))?;
        let table = txn.open_table(STATE).map_err(|e| io("read")(e.into()))?;
        let value = table
            .get((namespace, key))
            .map_err(|e| io("read")(e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every key and value of `namespace`, by key.
    pub fn list(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let txn = self.db.begin_read().map_err(|e| io("read")(e.into()))?;
        let table = txn.open_table(STATE).map_err(|e| io("read")(e.into()))?;
        let mut out = Vec::new();
        for entry in table
            .range((namespace, "")..)
            .map_err(|e| io("read")(e.into()))?
        {
            let (k, v) = entry.map_err(|e| io("read")(e.into()))?;
            let (ns, key) = k.value();
            if ns != namespace {
                break;
            }
            out.push((key.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Sets (`Some`) or deletes (`None`) keys of `namespace` in one durable transaction.
    pub fn apply(
        &self,
        namespace: &str,
        writes: BTreeMap<String, Option<Vec<u8>>>,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(|e| io("write")(e.into()))?;
        {
            let mut table = txn.open_table(STATE).map_err(|e| io("write")(e.into()))?;
            for (key, value) in &writes {
                match value {
                    Some(v) => table
                        .insert((namespace, key.as_str()), v.as_slice())
                        .map(drop),
                    None => table.remove((namespace, key.as_str())).map(drop),
                }
                .map_err(|e| io("write")(e.into()))?;
            }
        }
        txn.commit().map_err(|e| io("commit")(e.into()))
    }

    /// Deletes every key of `namespace`.
    pub fn clear(&self, namespace: &str) -> Result<(), StateError> {
        let keys = self.list(namespace)?;
        self.apply(
            namespace,
            keys.into_iter().map(|(k, _)| (k, None)).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopening_and_namespaces_stay_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        {
            let store = StateStore::open(&path).expect("opens");
            let writes = BTreeMap::from([
                ("a".to_owned(), Some(b"1".to_vec())),
                ("b".to_owned(), Some(b"2".to_vec())),
            ]);
            store.apply("t/x", writes).expect("writes");
            store
                .apply(
                    "t/y",
                    BTreeMap::from([("a".to_owned(), Some(b"other".to_vec()))]),
                )
                .expect("writes");
            store
                .apply("t/x", BTreeMap::from([("b".to_owned(), None)]))
                .expect("deletes");
        }
        let store = StateStore::open(&path).expect("reopens");
        assert_eq!(store.get("t/x", "a").expect("reads"), Some(b"1".to_vec()));
        assert_eq!(store.get("t/x", "b").expect("reads"), None);
        assert_eq!(
            store.list("t/x").expect("lists"),
            vec![("a".to_owned(), b"1".to_vec())]
        );
        store.clear("t/x").expect("clears");
        assert!(store.list("t/x").expect("lists").is_empty());
        assert_eq!(
            store.get("t/y", "a").expect("reads"),
            Some(b"other".to_vec())
        );
    }
}
