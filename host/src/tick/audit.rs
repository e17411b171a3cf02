//! The audit trail: one record per tick (what was asked, what the rails changed, what happened).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::guard::RailAdjustment;
use crate::domain::cluster::{PowerState, TimestampMs, WorkloadRef};
use crate::runtime::{Intent, InvocationError};

/// How a tick ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The policy returned Ok; its intents went through the rails.
    Ok,
    /// Nothing of the tick was applied.
    Failed {
        /// Why.
        error: InvocationError,
    },
}

/// One change the host made (or tried to) after a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// A target's replicas.
    Scale {
        /// The target.
        target: WorkloadRef,
        /// Replicas before.
        current: u32,
        /// What the policy (or the fallback) asked for.
        requested: u32,
        /// What the rails let through and the host applied.
        applied: u32,
        /// Each rail that changed the value.
        adjustments: Vec<RailAdjustment>,
        /// The backend's error, if applying failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A pool VM's power.
    Power {
        /// The pool.
        pool: String,
        /// The VM.
        vm_id: String,
        /// The state asked for.
        state: PowerState,
        /// The power operation carrying it out (started by this tick or joined), which runs
        /// off the tick path; see `tick/operations.rs`.
        #[serde(skip_serializing_if = "Option::is_none")]
        operation: Option<u64>,
        /// Why nothing was started (another operation on the VM is in flight, the binding
        /// lost the pool).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Why a scale was not attempted because the binding lost its target while the tick ran.
pub(crate) const NO_LONGER_A_TARGET: &str = "no longer a target of this binding";
/// Why a power intent was not started because the binding lost its pool.
pub(crate) const NO_LONGER_A_POOL: &str = "no longer a pool of this binding";
/// How a power intent that waits for another operation on its VM starts its error.
pub(crate) const WAITING: &str = "waiting: ";

impl Action {
    /// What went wrong, when a backend refused or failed it: a failure that counts toward the
    /// binding's fallback. A rail clamp, a power intent waiting for an operation in flight and
    /// a target the binding lost while the tick ran are none.
    pub fn failure(&self) -> Option<String> {
        match self {
            Action::Scale {
                target,
                error: Some(error),
                ..
            } if error != NO_LONGER_A_TARGET => Some(format!("{target}: {error}")),
            Action::Power {
                vm_id,
                error: Some(error),
                ..
            } if error != NO_LONGER_A_POOL && !error.starts_with(WAITING) => {
                Some(format!("{vm_id}: {error}"))
            }
            _ => None,
        }
    }

    /// Whether this action changed something in the cluster.
    pub fn changed(&self) -> bool {
        match self {
            Action::Scale {
                current,
                applied,
                error,
                ..
            } => error.is_none() && current != applied,
            Action::Power { error, .. } => error.is_none(),
        }
    }
}

/// The audit record of one tick.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Sequence number, increasing within the process.
    pub seq: u64,
    /// Host time of the tick.
    pub at: TimestampMs,
    /// Tenant.
    pub tenant: String,
    /// Binding.
    pub binding: String,
    /// The plugin digest that ran.
    pub plugin: String,
    /// The binding's revision, for bindings managed through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// What the shadow revision would have done, when the binding has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowRecord>,
    /// How it ended.
    pub outcome: Outcome,
    /// What the policy asked for (also on failure: recorded, not applied).
    pub intents: Vec<Intent>,
    /// What the host did.
    pub actions: Vec<Action>,
    /// The fallback applied after too many failures, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// State keys written (0 on failure: writes are discarded).
    pub state_writes: usize,
    /// Host calls made.
    pub host_calls: u32,
    /// Wall time of the invocation, µs.
    pub elapsed_us: u64,
    /// Failures in a row, this one included.
    pub consecutive_failures: u32,
}

impl Written {
    /// Appends one whole line to the file, rotating it first when the line would take it past
    /// its size.
    fn write_line(&mut self, line: &[u8]) {
        let Some(file) = &mut self.file else {
            return;
        };
        if let Some(rotation) = &mut self.rotation
            && rotation.size > 0
            && rotation.size + line.len() as u64 > rotation.retention.max_file_bytes
        {
            let reopened = file
                .flush()
                .and_then(|()| {
                    crate::store::rotate(
                        &rotation.path,
                        rotation.retention.max_files,
                        rotation.retention.max_age,
                    )
                })
                .and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&rotation.path)
                });
            match reopened {
                Ok(new) => {
                    *file = BufWriter::new(new);
                    rotation.size = 0;
                }
                // Kept on the old file: a record is never dropped for a failed rotation.
                Err(error) => tracing::error!(%error, "cannot rotate the audit log"),
            }
        }
        match file.write_all(line).and_then(|()| file.flush()) {
            Ok(()) => {
                if let Some(rotation) = &mut self.rotation {
                    rotation.size += line.len() as u64;
                }
            }
            Err(error) => tracing::error!(%error, "cannot write the audit log"),
        }
    }
}

/// The last megabyte of a file: enough to hold its last whole records.
fn tail(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The `seq` of the last whole record in an audit file (a line cut by a crash is skipped).
fn last_seq(bytes: &[u8]) -> u64 {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|record| record["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// A shadow revision's run on a tick: recorded beside the active one's, never applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowRecord {
    /// Its plugin digest.
    pub plugin: String,
    /// Its revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// What it asked for.
    pub intents: Vec<Intent>,
}

/// Where audit records go: a bounded in-memory window, an optional JSON-lines file, and
/// subscribers.
pub struct AuditLog {
    /// Sequence numbers are given under this lock, in the order records are written.
    written: Mutex<Written>,
    capacity: usize,
    subscribers: broadcast::Sender<AuditRecord>,
}

struct Written {
    seq: u64,
    /// Where the file is, its size, and when it rotates.
    rotation: Option<Rotation>,
    /// Per tenant, its last records and their size: one tenant's many bindings (or big
    /// records) push out only its own.
    recent: HashMap<String, Recent>,
    file: Option<BufWriter<File>>,
}

/// One tenant's kept records, oldest first, with their serialized sizes.
#[derive(Default)]
struct Recent {
    records: VecDeque<(Arc<AuditRecord>, usize)>,
    bytes: usize,
}

/// How long and how big the audit file may grow: `audit.jsonl` rotates to `audit.jsonl.1` (and
/// so on) past `max_file_bytes`; at most `max_files` rotated files are kept, none older than
/// `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditRetention {
    /// The size at which the file rotates, bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept.
    pub max_files: u32,
    /// The age past which a rotated file is removed.
    #[serde(with = "crate::domain::duration")]
    pub max_age: std::time::Duration,
}

impl Default for AuditRetention {
    fn default() -> Self {
        AuditRetention {
            max_file_bytes: 64 << 20,
            max_files: 8,
            max_age: std::time::Duration::from_secs(30 * 86_400),
        }
    }
}

struct Rotation {
    path: std::path::PathBuf,
    size: u64,
    retention: AuditRetention,
}

/// The most bytes (serialized) of one tenant's records kept in memory.
pub const MAX_RECENT_BYTES_PER_TENANT: usize = 8 << 20;

/// Why the audit file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {path}")]
pub struct AuditError {
    path: String,
    #[source]
    source: std::io::Error,
}

impl AuditLog {
    /// Keeps the last `capacity` records of each tenant (and at most
    /// [`MAX_RECENT_BYTES_PER_TENANT`] of them) in memory only.
    pub fn in_memory(capacity: usize) -> Self {
        let (subscribers, _) = broadcast::channel(1024);
        AuditLog {
            written: Mutex::new(Written {
                seq: 0,
                rotation: None,
                recent: HashMap::new(),
                file: None,
            }),
            capacity,
            subscribers,
        }
    }

    /// Also appends every record as one JSON line to `path`, rotated as
    /// [`AuditRetention::default`] says.
    pub fn with_file(capacity: usize, path: &Path) -> Result<Self, AuditError> {
        Self::with_rotation(capacity, path, AuditRetention::default())
    }

    /// Also appends every record as one JSON line to `path`, rotated by `retention`. Sequence
    /// numbers continue from the last record already written (in the file, or in the newest
    /// rotated one), so they stay unique across rotations and restarts.
    pub fn with_rotation(
        capacity: usize,
        path: &Path,
        retention: AuditRetention,
    ) -> Result<Self, AuditError> {
        let error = |source| AuditError {
            path: path.display().to_string(),
            source,
        };
        let (mut last_seq, cut) = match tail(path) {
            Ok(bytes) => (last_seq(&bytes), bytes.last().is_some_and(|b| *b != b'\n')),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, false),
            Err(e) => return Err(error(e)),
        };
        if last_seq == 0 {
            // Rotated just before a stop: the numbers go on from the newest rotated file.
            last_seq = tail(&crate::store::rotated(path, 1)).map_or(0, |b| self::last_seq(&b));
        }
        crate::store::prune_older_than(path, retention.max_files, retention.max_age)
            .map_err(error)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;
        if cut {
            // A line cut by a crash stays alone on its line.
            file.write_all(b"\n").map_err(error)?;
        }
        let size = file.metadata().map_err(error)?.len();
        let log = Self::in_memory(capacity);
        {
            let mut written = log.lock();
            written.seq = last_seq;
            written.file = Some(BufWriter::new(file));
            written.rotation = Some(Rotation {
                path: path.to_owned(),
                size,
                retention,
            });
        }
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sequence number the next record will get.
    pub fn peek_seq(&self) -> u64 {
        self.lock().seq + 1
    }

    /// Records one tick: gives it the next sequence number, then writes it. Numbers follow the
    /// order of the file and of the memory window, so `since=` never skips a record.
    pub fn append(&self, record: &mut AuditRecord) {
        let mut written = self.lock();
        written.seq += 1;
        record.seq = written.seq;
        if written.file.is_none() && self.capacity == 0 {
            return self.publish(written, record);
        }
        let mut line = serde_json::to_vec(&*record).expect("an audit record serializes");
        line.push(b'\n');
        written.write_line(&line);
        if self.capacity > 0 {
            let kept = written.recent.entry(record.tenant.clone()).or_default();
            kept.records
                .push_back((Arc::new(record.clone()), line.len()));
            kept.bytes += line.len();
            while kept.records.len() > self.capacity
                || (kept.bytes > MAX_RECENT_BYTES_PER_TENANT && kept.records.len() > 1)
            {
                if let Some((_, size)) = kept.records.pop_front() {
                    kept.bytes -= size;
                }
            }
        }
        self.publish(written, record)
    }

    /// Lets go of the lock, then hands `record` to the subscribers.
    fn publish(&self, written: std::sync::MutexGuard<'_, Written>, record: &AuditRecord) {
        drop(written);
        if self.subscribers.receiver_count() > 0 {
            // A subscriber that went away meanwhile is fine.
            let _ = self.subscribers.send(record.clone());
        }
    }

    /// Appends one line that is not a tick's record (a power operation's progress, say) to the
    /// file, with the next sequence number, which `line` is given; not kept in memory, not sent
    /// to subscribers. Returns that number.
    pub fn append_line(&self, line: impl FnOnce(u64) -> serde_json::Value) -> u64 {
        let mut written = self.lock();
        written.seq += 1;
        let seq = written.seq;
        if written.file.is_some() {
            let mut bytes = serde_json::to_vec(&line(seq)).expect("a JSON value serializes");
            bytes.push(b'\n');
            written.write_line(&bytes);
        }
        seq
    }

    /// Forgets the kept records of a tenant (it was deleted; its name may be given again).
    pub fn forget_tenant(&self, tenant: &str) {
        self.lock().recent.remove(tenant);
    }

    /// The records of `tenant` kept in memory, oldest first (shared, not copied).
    pub fn recent_of(&self, tenant: &str) -> Vec<Arc<AuditRecord>> {
        self.lock()
            .recent
            .get(tenant)
            .map(|kept| kept.records.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Every tenant's records kept in memory, in sequence order.
    pub fn recent(&self) -> Vec<AuditRecord> {
        let written = self.lock();
        let mut all: Vec<AuditRecord> = written
            .recent
            .values()
            .flat_map(|kept| kept.records.iter().map(|(r, _)| (**r).clone()))
            .collect();
        drop(written);
        all.sort_by_key(|r| r.seq);
        all
    }

    /// Receives every record appended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AuditRecord> {
        self.subscribers.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_continue_after_a_restart_and_a_cut_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        std::fs::write(
            &path,
            "{\"seq\":41,\"x\":1}\n{\"seq\":42,\"x\":2}\n{\"seq\":43,\"x",
        )
        .expect("writes");
        let log = AuditLog::with_file(10, &path).expect("opens");
        assert_eq!(log.peek_seq(), 43, "the cut record 43 never counted");
        let fresh = AuditLog::with_file(10, &dir.path().join("new.jsonl")).expect("opens");
        assert_eq!(fresh.peek_seq(), 1);
    }

    #[test]
    fn the_file_rotates_at_its_size_and_numbers_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let retention = AuditRetention {
            max_file_bytes: 2000,
            max_files: 2,
            ..AuditRetention::default()
        };
        let log = AuditLog::with_rotation(0, &path, retention).expect("opens");
        let mut line_bytes = 0;
        for _ in 0..40 {
            let mut r = record("t", 0);
            log.append(&mut r);
            line_bytes = serde_json::to_vec(&r).expect("json").len() + 1;
        }
        let sizes: Vec<u64> = [
            path.clone(),
            crate::store::rotated(&path, 1),
            crate::store::rotated(&path, 2),
        ]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
        assert!(sizes.iter().all(|s| *s <= 2000), "{sizes:?}");
        assert!(
            sizes[1] > 2000 - line_bytes as u64,
            "rotated when the next line would not fit: {sizes:?}"
        );
        assert!(
            !crate::store::rotated(&path, 3).exists(),
            "at most 2 rotated files"
        );
        // Every number once, in order, over the files kept.
        let mut seqs = Vec::new();
        for p in [
            crate::store::rotated(&path, 2),
            crate::store::rotated(&path, 1),
            path.clone(),
        ] {
            for line in std::fs::read_to_string(&p).expect("reads").lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("whole line");
                seqs.push(v["seq"].as_u64().expect("seq"));
            }
        }
        assert_eq!(seqs.last(), Some(&40));
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        // A restart right after a rotation (the new file empty) goes on from the rotated one.
        drop(log);
        crate::store::rotate(&path, 2, retention.max_age).expect("rotates");
        let again = AuditLog::with_rotation(0, &path, retention).expect("opens");
        assert_eq!(again.peek_seq(), 41);
    }

    fn record(tenant: &str, error: usize) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at: 0,
            tenant: tenant.into(),
            binding: "b".into(),
            plugin: "sha256:x".into(),
            revision: None,
            shadow: None,
            outcome: if error == 0 {
                Outcome::Ok
            } else {
                Outcome::Failed {
                    error: InvocationError::Policy("e".repeat(error)),
                }
            },
            intents: Vec::new(),
            actions: Vec::new(),
            fallback: None,
            state_writes: 0,
            host_calls: 0,
            elapsed_us: 0,
            consecutive_failures: 0,
        }
    }

    /// A tenant's many records push out only its own, and a tenant's records are held to a
    /// byte budget as well as a count.
    #[test]
    fn each_tenant_keeps_its_own_recent_records_within_a_count_and_a_size() {
        let log = AuditLog::in_memory(3);
        log.append(&mut record("quiet", 0));
        for _ in 0..10 {
            log.append(&mut record("loud", 0));
        }
        assert_eq!(
            log.recent_of("quiet").len(),
            1,
            "not pushed out by another tenant"
        );
        let loud: Vec<u64> = log.recent_of("loud").iter().map(|r| r.seq).collect();
        assert_eq!(loud, vec![9, 10, 11], "its last three");
        assert_eq!(log.recent().len(), 4);

        let big = AuditLog::in_memory(1000);
        let size = MAX_RECENT_BYTES_PER_TENANT / 4;
        for _ in 0..10 {
            big.append(&mut record("big", size));
        }
        let kept = big.recent_of("big").len();
        assert_eq!(
            kept, 3,
            "three records of a quarter of the budget fit, not four"
        );
        log.forget_tenant("loud");
        assert!(log.recent_of("loud").is_empty());
    }
}
