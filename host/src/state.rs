//! Per-binding key/value state in the host's data dir (redb), surviving restarts.
//!
//! Keys are namespaced by tenant and binding ([`namespace`]); a tick's writes arrive as one
//! batch ([`StateStore::apply`]) committed in one durable transaction, so a crash leaves either
//! all of a tick's state or none.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

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

/// The state namespace of a binding's shadow revision, kept apart from the active one's.
pub fn shadow_namespace(tenant: &str, binding: &str) -> String {
    format!("{tenant}/{binding}#shadow")
}

type MemoryMap = BTreeMap<(String, String), Vec<u8>>;

/// The embedded key/value store behind the `state` interface: redb in the data dir, or a plain
/// map for backtests and tests (nothing to persist, and a backtest commits state every tick).
pub struct StateStore {
    backend: Backend,
}

enum Backend {
    Redb(Database),
    Memory(Mutex<MemoryMap>),
}

fn io(operation: &'static str) -> impl Fn(redb::Error) -> StateError {
    move |source| StateError::Io { operation, source }
}

fn lock(map: &Mutex<MemoryMap>) -> MutexGuard<'_, MemoryMap> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

impl StateStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = Database::create(path).map_err(|e| StateError::Open {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        let txn = db.begin_write().map_err(|e| io("create")(e.into()))?;
        txn.open_table(STATE).map_err(|e| io("create")(e.into()))?;
        txn.commit().map_err(|e| io("create")(e.into()))?;
        Ok(StateStore {
            backend: Backend::Redb(db),
        })
    }

    /// A store that lives in memory only (backtests, tests).
    pub fn in_memory() -> Result<Self, StateError> {
        Ok(StateStore {
            backend: Backend::Memory(Mutex::default()),
        })
    }

    /// The value of `key` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let db = match &self.backend {
            Backend::Redb(db) => db,
            Backend::Memory(map) => {
                return Ok(lock(map)
                    .get(&(namespace.to_owned(), key.to_owned()))
                    .cloned());
            }
        };
        let txn = db.begin_read().map_err(|e| io("read")(e.into()))?;
        let table = txn.open_table(STATE).map_err(|e| io("read")(e.into()))?;
        let value = table
            .get((namespace, key))
            .map_err(|e| io("read")(e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every key and value of `namespace`, by key.
    pub fn list(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let db = match &self.backend {
            Backend::Redb(db) => db,
            Backend::Memory(map) => {
                return Ok(lock(map)
                    .range((namespace.to_owned(), String::new())..)
                    .take_while(|((ns, _), _)| ns == namespace)
                    .map(|((_, key), value)| (key.clone(), value.clone()))
                    .collect());
            }
        };
        let txn = db.begin_read().map_err(|e| io("read")(e.into()))?;
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
        let db = match &self.backend {
            Backend::Redb(db) => db,
            Backend::Memory(map) => {
                let mut map = lock(map);
                for (key, value) in writes {
                    let key = (namespace.to_owned(), key);
                    match value {
                        Some(v) => map.insert(key, v),
                        None => map.remove(&key),
                    };
                }
                return Ok(());
            }
        };
        let txn = db.begin_write().map_err(|e| io("write")(e.into()))?;
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

    fn exercise(store: &StateStore) {
        let writes = BTreeMap::from([
            ("a".to_owned(), Some(b"1".to_vec())),
            ("b".to_owned(), Some(b"2".to_vec())),
        ]);
        store.apply("t/x", writes).expect("writes");
        store
            .apply(
                "t/xy",
                BTreeMap::from([("a".to_owned(), Some(b"other".to_vec()))]),
            )
            .expect("writes");
        store
            .apply("t/x", BTreeMap::from([("b".to_owned(), None)]))
            .expect("deletes");
        assert_eq!(store.get("t/x", "a").expect("reads"), Some(b"1".to_vec()));
        assert_eq!(store.get("t/x", "b").expect("reads"), None);
        assert_eq!(
            store.list("t/x").expect("lists"),
            vec![("a".to_owned(), b"1".to_vec())]
        );
    }

    #[test]
    fn the_memory_backend_behaves_like_redb() {
        let store = StateStore::in_memory().expect("opens");
        exercise(&store);
        store.clear("t/x").expect("clears");
        assert!(store.list("t/x").expect("lists").is_empty());
        assert_eq!(
            store.get("t/xy", "a").expect("reads"),
            Some(b"other".to_vec())
        );
    }

    #[test]
    fn writes_survive_reopening_and_namespaces_stay_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        exercise(&StateStore::open(&path).expect("opens"));
        let store = StateStore::open(&path).expect("reopens");
        assert_eq!(store.get("t/x", "a").expect("reads"), Some(b"1".to_vec()));
        assert_eq!(
            store.list("t/x").expect("lists"),
            vec![("a".to_owned(), b"1".to_vec())]
        );
        store.clear("t/x").expect("clears");
        assert!(store.list("t/x").expect("lists").is_empty());
        assert_eq!(
            store.get("t/xy", "a").expect("reads"),
            Some(b"other".to_vec())
        );
    }
}
