//! Per-binding key/value state in the host's data dir (redb), surviving restarts.
//!
//! Keys are namespaced by tenant and binding ([`namespace`]); a tick's writes arrive as one
//! batch ([`StateStore::apply`], or [`StateStore::apply_async`] on the tick path) and are
//! durable when it returns, all of them or none. Batches go through one committer thread, in
//! the order they arrive: the batches that queued while the previous transaction committed
//! (and, under load, those that arrive within a short window) are committed together (a group
//! commit), so that thousands of ticks a second cost at most ~50 fsyncs, a lone writer is not
//! held back, and no runtime thread waits on the disk.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

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
    /// The transaction that carried this batch (with others) failed.
    #[error("state store commit failed: {0}")]
    Commit(String),
    /// The committer is gone (the store is shutting down).
    #[error("state store is closed")]
    Closed,
    /// Too much state waits to be committed (all tenants' together: the host is overloaded).
    #[error("state store busy: {0} MiB of state waits to be committed; try at a later tick")]
    Busy(usize),
    /// Too much of this tenant's state waits to be committed: its own share is full.
    #[error(
        "state store busy: the tenant's share of {0} MiB of state waiting to be committed is full; try at a later tick"
    )]
    TenantBusy(usize),
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
    Redb {
        db: Arc<Database>,
        committer: Committer,
    },
    Memory(Mutex<MemoryMap>),
}

/// Writes of one namespace.
type Writes = BTreeMap<String, Option<Vec<u8>>>;

/// Where a committed batch's outcome goes.
enum Reply {
    Blocking(mpsc::SyncSender<Result<(), String>>),
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// One batch on its way to the committer.
struct Batch {
    namespace: String,
    /// Delete every key of the namespace first (the writes then apply to an empty one).
    clear: bool,
    writes: Writes,
    reply: Reply,
    /// Its share of [`MAX_QUEUED_KIB`] and of its tenant's [`MAX_QUEUED_KIB_PER_TENANT`],
    /// given back once it is committed (dropped with the batch).
    _queued: Option<[tokio::sync::OwnedSemaphorePermit; 2]>,
}

/// The committer thread and its queue; dropping it ends the thread once the queue is empty.
struct Committer {
    /// KiB of async batches queued and not yet committed, at most [`MAX_QUEUED_KIB`].
    queued: Arc<tokio::sync::Semaphore>,
    /// The same per tenant (a namespace's part before its `/`), at most
    /// [`MAX_QUEUED_KIB_PER_TENANT`] each: one tenant's flood of state cannot fill the queue
    /// for all.
    tenant_queued: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    queue: Option<mpsc::Sender<Batch>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// redb's page cache.
const CACHE_BYTES: usize = 256 << 20;

/// How long a busy committer gathers batches after the first: at most this much is added to
/// a tick's commit under load, and there are then at most 1 / window commits a second.
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);

/// At most this much of ticks' state (KiB) waits for the committer; a tick whose batch would
/// pass it fails with `state store busy` rather than grow the host's memory.
const MAX_QUEUED_KIB: usize = 256 << 10;

/// At most this much of one tenant's state waits for the committer (a quarter of the queue).
const MAX_QUEUED_KIB_PER_TENANT: usize = MAX_QUEUED_KIB / 4;

/// At most this many batches go into one transaction.
const MAX_GROUP: usize = 4096;

impl Committer {
    fn start(db: Arc<Database>) -> Self {
        let (queue, batches) = mpsc::channel::<Batch>();
        let thread = std::thread::Builder::new()
            .name("state-commit".into())
            .spawn(move || {
                // Under load (the last group held several batches) the committer gathers what
                // arrives within the window: each commit is an fsync and a rewrite of the
                // B-tree's upper pages, so fewer, larger ones cost less. A lone writer (the
                // demo's sequential ticks, the control plane) and any blocking caller are
                // committed at once.
                let mut busy = false;
                while let Ok(first) = batches.recv() {
                    let until = std::time::Instant::now() + GROUP_WINDOW;
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        let waits =
                            busy && !group.iter().any(|b| matches!(b.reply, Reply::Blocking(_)));
                        let next = if waits {
                            let left = until.saturating_duration_since(std::time::Instant::now());
                            batches.recv_timeout(left).ok()
                        } else {
                            batches.try_recv().ok()
                        };
                        match next {
                            Some(batch) => group.push(batch),
                            None => break,
                        }
                    }
                    busy = group.len() > 1;
                    let results = commit_or_split(&db, &group);
                    for (batch, result) in group.into_iter().zip(results) {
                        // Its share of the queue back before its caller goes on.
                        let Batch { reply, _queued, .. } = batch;
                        drop(_queued);
                        match reply {
                            Reply::Blocking(tx) => drop(tx.send(result)),
                            Reply::Async(tx) => drop(tx.send(result)),
                        }
                    }
                }
            })
            .expect("the state committer thread starts");
        Committer {
            queued: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_KIB)),
            tenant_queued: Mutex::default(),
            queue: Some(queue),
            thread: Some(thread),
        }
    }

    fn send(&self, batch: Batch) -> Result<(), StateError> {
        self.queue
            .as_ref()
            .ok_or(StateError::Closed)?
            .send(batch)
            .map_err(|_| StateError::Closed)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // The thread commits what is queued, then ends and releases the database file.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits `group` in one transaction; if that fails, each batch alone, so that one batch the
/// store refuses fails only its own caller. A panic in redb is caught and answered as an error
/// (the committer thread lives on). Returns one result per batch.
fn commit_or_split(db: &Database, group: &[Batch]) -> Vec<Result<(), String>> {
    let attempt = |batches: &[Batch]| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_group(db, batches)))
            .unwrap_or_else(|_| Err(redb::Error::Corrupted("the commit panicked".into())))
            .map_err(|e| e.to_string())
    };
    match attempt(group) {
        Ok(()) => vec![Ok(()); group.len()],
        Err(error) if group.len() == 1 => {
            tracing::error!(%error, "state commit failed");
            vec![Err(error)]
        }
        Err(error) => {
            tracing::warn!(%error, batches = group.len(), "state group commit failed; committing its batches one by one");
            group
                .iter()
                .map(|batch| {
                    attempt(std::slice::from_ref(batch)).inspect_err(|error| {
                        tracing::error!(namespace = %batch.namespace, %error, "state commit failed");
                    })
                })
                .collect()
        }
    }
}

/// Commits a group of batches in one write transaction.
fn commit_group(db: &Database, group: &[Batch]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(STATE)?;
        for batch in group {
            if batch.clear {
                let ns = batch.namespace.as_str();
                // Every key of `ns` sorts in [(ns, ""), (ns + "\0", "")).
                let past = format!("{ns}\0");
                table.retain_in((ns, "")..(past.as_str(), ""), |_, _| false)?;
            }
            for (key, value) in &batch.writes {
                match value {
                    Some(v) => table
                        .insert((batch.namespace.as_str(), key.as_str()), v.as_slice())
                        .map(drop)?,
                    None => table
                        .remove((batch.namespace.as_str(), key.as_str()))
                        .map(drop)?,
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
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
        // redb's page cache defaults to 1 GiB; what ticks read back is small and hot.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StateError::Open {
                path: path.display().to_string(),
                source: e.into(),
            })?;
        let txn = db.begin_write().map_err(|e| io("create")(e.into()))?;
        txn.open_table(STATE).map_err(|e| io("create")(e.into()))?;
        txn.commit().map_err(|e| io("create")(e.into()))?;
        let db = Arc::new(db);
        Ok(StateStore {
            backend: Backend::Redb {
                committer: Committer::start(db.clone()),
                db,
            },
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
            Backend::Redb { db, .. } => db,
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
            Backend::Redb { db, .. } => db,
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

    /// Sets (`Some`) or deletes (`None`) keys of `namespace`, durably, all or none; blocks
    /// until committed (on a runtime thread, call it under `block_in_place`, or use
    /// [`apply_async`](Self::apply_async)).
    pub fn apply(&self, namespace: &str, writes: Writes) -> Result<(), StateError> {
        let committer = match &self.backend {
            Backend::Redb { committer, .. } => committer,
            Backend::Memory(map) => {
                apply_to_map(map, namespace, writes);
                return Ok(());
            }
        };
        let (tx, rx) = mpsc::sync_channel(1);
        committer.send(Batch {
            namespace: namespace.to_owned(),
            clear: false,
            writes,
            reply: Reply::Blocking(tx),
            _queued: None,
        })?;
        rx.recv()
            .map_err(|_| StateError::Closed)?
            .map_err(StateError::Commit)
    }

    /// [`apply`](Self::apply) for async callers: the batch is queued at once (so batches keep
    /// the order of the calls) and the returned future resolves when it is durable.
    pub fn apply_async(
        &self,
        namespace: &str,
        writes: Writes,
    ) -> impl std::future::Future<Output = Result<(), StateError>> + Send + use<> {
        let queued = match &self.backend {
            Backend::Redb { committer, .. } => {
                let kib = writes
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 32)
                    .sum::<usize>()
                    .div_ceil(1024)
                    .clamp(1, MAX_QUEUED_KIB_PER_TENANT);
                let kib = u32::try_from(kib).unwrap_or(u32::MAX);
                let tenant = namespace.split_once('/').map_or(namespace, |(t, _)| t);
                let share = committer
                    .tenant_queued
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(tenant.to_owned())
                    .or_insert_with(|| {
                        Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_KIB_PER_TENANT))
                    })
                    .clone();
                let permits = share
                    .try_acquire_many_owned(kib)
                    .map_err(|_| StateError::TenantBusy(MAX_QUEUED_KIB_PER_TENANT / 1024))
                    .and_then(|own| {
                        committer
                            .queued
                            .clone()
                            .try_acquire_many_owned(kib)
                            .map(|all| [own, all])
                            .map_err(|_| StateError::Busy(MAX_QUEUED_KIB / 1024))
                    });
                match permits {
                    Err(busy) => Err(busy),
                    Ok(permit) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        committer
                            .send(Batch {
                                namespace: namespace.to_owned(),
                                clear: false,
                                writes,
                                reply: Reply::Async(tx),
                                _queued: Some(permit),
                            })
                            .map(|()| Some(rx))
                    }
                }
            }
            Backend::Memory(map) => {
                apply_to_map(map, namespace, writes);
                Ok(None)
            }
        };
        async move {
            match queued? {
                None => Ok(()),
                Some(rx) => rx
                    .await
                    .map_err(|_| StateError::Closed)?
                    .map_err(StateError::Commit),
            }
        }
    }

    /// Deletes every key of `namespace`, durably; in queue order with every other write, so
    /// a batch queued before it (a tick that passed its commit gate) cannot outlive it.
    pub fn clear(&self, namespace: &str) -> Result<(), StateError> {
        let committer = match &self.backend {
            Backend::Redb { committer, .. } => committer,
            Backend::Memory(map) => {
                let mut map = lock(map);
                map.retain(|(ns, _), _| ns != namespace);
                return Ok(());
            }
        };
        let (tx, rx) = mpsc::sync_channel(1);
        committer.send(Batch {
            namespace: namespace.to_owned(),
            clear: true,
            writes: Writes::new(),
            reply: Reply::Blocking(tx),
            _queued: None,
        })?;
        rx.recv()
            .map_err(|_| StateError::Closed)?
            .map_err(StateError::Commit)
    }
}

fn apply_to_map(map: &Mutex<MemoryMap>, namespace: &str, writes: Writes) {
    let mut map = lock(map);
    for (key, value) in writes {
        let key = (namespace.to_owned(), key);
        match value {
            Some(v) => map.insert(key, v),
            None => map.remove(&key),
        };
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

    /// A tenant whose queued state fills its share gets `TenantBusy` while another tenant's
    /// batches still go through; only a full queue (all tenants') is `Busy`.
    #[tokio::test]
    async fn one_tenants_queued_state_is_held_to_its_share() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("state.redb")).expect("opens");
        let Backend::Redb { committer, .. } = &store.backend else {
            panic!("redb")
        };
        let small = || BTreeMap::from([("k".to_owned(), Some(vec![1u8; 10]))]);
        store
            .apply_async("a/x", small())
            .await
            .expect("a's first write");
        let share = committer
            .tenant_queued
            .lock()
            .expect("shares")
            .get("a")
            .cloned()
            .expect("a has a share");
        let held = share
            .try_acquire_many_owned(MAX_QUEUED_KIB_PER_TENANT as u32)
            .expect("the whole share");
        assert!(matches!(
            store.apply_async("a/x", small()).await,
            Err(StateError::TenantBusy(_))
        ));
        store
            .apply_async("b/y", small())
            .await
            .expect("another tenant is not held up");
        drop(held);
        store.apply_async("a/x", small()).await.expect("a again");
        let all = committer
            .queued
            .clone()
            .try_acquire_many_owned(MAX_QUEUED_KIB as u32)
            .expect("the whole queue");
        assert!(matches!(
            store.apply_async("b/y", small()).await,
            Err(StateError::Busy(_))
        ));
        drop(all);
        store.apply_async("b/y", small()).await.expect("b again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_are_committed_in_groups_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let store = Arc::new(StateStore::open(&path).expect("opens"));
        let mut pending = Vec::new();
        for i in 0..2000u32 {
            let writes = BTreeMap::from([
                ("n".to_owned(), Some(i.to_le_bytes().to_vec())),
                (format!("k{i}"), Some(vec![1])),
            ]);
            pending.push(store.apply_async("t/x", writes));
        }
        for done in pending {
            done.await.expect("committed");
        }
        // The last batch queued is the last applied.
        assert_eq!(
            store.get("t/x", "n").expect("reads"),
            Some(1999u32.to_le_bytes().to_vec())
        );
        assert_eq!(store.list("t/x").expect("lists").len(), 2001);
        // A clear queued after a batch removes that batch's keys too, committed or not.
        let late = store.apply_async("t/x", BTreeMap::from([("late".to_owned(), Some(vec![2]))]));
        store.clear("t/x").expect("clears");
        late.await.expect("committed before the clear");
        assert!(store.list("t/x").expect("lists").is_empty());
        store
            .apply("t/x", BTreeMap::from([("kept".to_owned(), Some(vec![3]))]))
            .expect("writes");
        drop(store);
        let store = StateStore::open(&path).expect("reopens after the committer ended");
        assert_eq!(store.list("t/x").expect("lists").len(), 1);
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
