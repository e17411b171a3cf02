//! The plugin registry: components stored by sha256, compiled once, the compiled artifact kept.
//!
//! Start with [`PluginRegistry::add`] (an upload) and [`PluginRegistry::load`] (a binding needs
//! a digest). Under the data dir:
//!
//! - `plugins/<hex>.wasm`: the component's bytes, content-addressed;
//! - `artifacts/<hex>-<engine>.cwasm`: wasmtime's compiled form, keyed by digest and by the
//!   engine's compatibility hash, loaded by mmap ([`Component::deserialize_file`]) so that a
//!   restart or a swap never recompiles;
//! - the records, in the control database's `plugins` table ([`crate::control`]).
//!
//! Files are written to a temporary name, fsynced, renamed and the folder fsynced before the
//! record that points at them is committed: a crash leaves at worst an unreferenced file.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::Database;
use serde::{Deserialize, Serialize};

use crate::domain::principal::Principal;
use crate::runtime::{CompileError, CompiledPolicy, PolicyEngine, digest_of};

mod files;
mod records;

use records::{PLUGINS, Stored, check_labels};

/// Default largest component accepted, bytes.
pub const DEFAULT_MAX_PLUGIN_BYTES: usize = 64 << 20;

/// A stored plugin, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Size of the component, bytes.
    pub size: u64,
    /// The world it is a component of.
    pub world: String,
    /// Its imports: the policy world's interfaces, and WASI where a language runtime needs it.
    pub imports: Vec<String>,
    /// Optional name label.
    pub name: Option<String>,
    /// Optional version label (needs a name).
    pub version: Option<String>,
    /// When it was first uploaded, Unix milliseconds.
    pub uploaded_at: u64,
}

impl PluginRecord {
    /// `name@version`, when both labels are set.
    pub fn reference(&self) -> Option<String> {
        Some(format!(
            "{}@{}",
            self.name.as_ref()?,
            self.version.as_ref()?
        ))
    }
}

/// Why the registry refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Larger than the configured limit.
    #[error("plugin of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a policy component.
    #[error("not a policy component")]
    Invalid(#[source] CompileError),
    /// A label is malformed.
    #[error("invalid {field} {value:?}: {rule}")]
    Label {
        /// `name` or `version`.
        field: &'static str,
        /// As given.
        value: String,
        /// What is allowed.
        rule: &'static str,
    },
    /// `name@version` already names other bytes: labels are immutable.
    #[error("{reference} already names another plugin; upload under another version")]
    LabelTaken {
        /// `name@version`.
        reference: String,
    },
    /// These bytes already carry other labels, which never change.
    #[error("this plugin is already labelled {current}; labels do not change")]
    Relabel {
        /// Its labels, `name@version` or `name`.
        current: String,
    },
    /// No such digest or `name@version`.
    #[error("no plugin {0}")]
    NotFound(String),
    /// A digest that is not `sha256:` and 64 hex digits.
    #[error("{0:?} is not a digest (sha256:<64 hex digits>) or a name@version")]
    BadReference(String),
    /// The stored bytes are missing or do not match their digest.
    #[error("stored plugin {digest} is damaged: {message}")]
    Damaged {
        /// The digest.
        digest: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be written or read.
    #[error("plugin storage: {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The compiler is taken and enough uploads already wait for it.
    #[error("{waiting} uploads already wait for the compiler; try again shortly")]
    CompilerBusy {
        /// Uploads waiting.
        waiting: usize,
    },
    /// The control database failed, or a plugin record in it is damaged.
    #[error(transparent)]
    Store(#[from] crate::store::TableError),
}

/// Where and how plugins are stored; see the module docs.
///
/// Compiled policies are cached in memory by digest: each digest is compiled (or its artifact
/// deserialized) once per process, however many bindings and revisions use it.
pub struct PluginRegistry {
    runtime: Arc<PolicyEngine>,
    db: Arc<Database>,
    blobs: PathBuf,
    artifacts: PathBuf,
    engine_key: String,
    max_bytes: usize,
    compiled: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
    /// Components compiled from bytes by this registry (not loaded from an artifact).
    compilations: std::sync::atomic::AtomicU64,
    /// Serializes the check-then-insert of records.
    write: Mutex<()>,
    /// Held while compiling: one compile at a time (wasmtime's parallel compilation already
    /// uses every core), so uploads cannot take the host's CPU and memory from its ticks.
    compiler: Mutex<()>,
    /// Compiles waiting for [`compiler`](Self::compiler); past [`COMPILE_QUEUE`] an upload is
    /// refused as busy instead of holding its bytes in memory while it waits.
    waiting: std::sync::atomic::AtomicUsize,
}

/// Compiles that may wait for the compiler; one more is refused.
pub const COMPILE_QUEUE: usize = 4;

/// The result of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The record.
    pub record: PluginRecord,
    /// False when the same bytes were already stored.
    pub created: bool,
}

impl PluginRegistry {
    /// Opens the registry under `data_dir`, its records in `db`.
    pub fn open(
        runtime: Arc<PolicyEngine>,
        db: Arc<Database>,
        data_dir: &Path,
        max_bytes: usize,
    ) -> Result<Self, RegistryError> {
        let blobs = data_dir.join("plugins");
        let artifacts = data_dir.join("artifacts");
        for dir in [&blobs, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        PLUGINS.create(&db)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        runtime
            .engine()
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Ok(PluginRegistry {
            engine_key: format!("{:016x}", hasher.finish()),
            runtime,
            db,
            blobs,
            artifacts,
            max_bytes,
            compiled: Mutex::default(),
            compilations: std::sync::atomic::AtomicU64::new(0),
            write: Mutex::default(),
            compiler: Mutex::default(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The wasm engine it compiles with.
    pub fn runtime(&self) -> &Arc<PolicyEngine> {
        &self.runtime
    }

    /// The database its records live in.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// How many components this registry compiled from their bytes since it was opened; loads
    /// from a cached artifact do not count.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The largest component accepted, bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Validates and stores a component for `owner`: a component of the world that compiles.
    /// The same bytes twice give the same record; labels given again replace the old ones.
    /// Blocking: compiling takes from milliseconds to seconds; call it off the async workers.
    pub fn add(
        &self,
        bytes: &[u8],
        name: Option<String>,
        version: Option<String>,
        owner: Principal,
    ) -> Result<Added, RegistryError> {
        if bytes.len() > self.max_bytes {
            return Err(RegistryError::TooLarge {
                size: bytes.len(),
                limit: self.max_bytes,
            });
        }
        check_labels(name.as_deref(), version.as_deref())?;
        let digest = digest_of(bytes);
        // Compiled even when stored already: the bytes are checked, and the cache makes the
        // second time free.
        let policy = match self.stored(&digest)? {
            Some(_) => self.load(&digest)?,
            None => self.compile_and_keep(&digest, bytes)?,
        };
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let existing = self.stored(&digest)?;
        let created = existing.is_none();
        if created {
            // A delete may have taken the files since they were written above: they must be
            // there before the record that points at them.
            self.write_files(&digest, bytes, &policy)?;
        }
        let mut stored = existing.unwrap_or_else(|| Stored {
            record: PluginRecord {
                digest: digest.clone(),
                size: bytes.len() as u64,
                world: policy.world().to_owned(),
                imports: policy.imports().to_vec(),
                name: None,
                version: None,
                uploaded_at: unix_ms(),
            },
            shared: false,
            tenants: Vec::new(),
        });
        if name.is_some() {
            let labelled = stored.record.name.is_some();
            if labelled && (stored.record.name != name || stored.record.version != version) {
                return Err(RegistryError::Relabel {
                    current: stored
                        .record
                        .reference()
                        .or_else(|| stored.record.name.clone())
                        .unwrap_or_default(),
                });
            }
            stored.record.name = name;
            stored.record.version = version;
        }
        stored.claim(&owner);
        if let Some(reference) = stored.record.reference()
            && self.all()?.iter().any(|o| {
                o.record.digest != digest && o.record.reference() == Some(reference.clone())
            })
        {
            return Err(RegistryError::LabelTaken { reference });
        }
        self.put(&stored)?;
        Ok(Added {
            record: stored.record,
            created,
        })
    }

    /// The record of `digest`, if `owner` may see it.
    pub fn get(
        &self,
        digest: &str,
        owner: &Principal,
    ) -> Result<Option<PluginRecord>, RegistryError> {
        Ok(self
            .stored(digest)?
            .filter(|s| s.visible_to(owner))
            .map(|s| s.record))
    }

    /// Every record `owner` may see, by digest.
    pub fn list(&self, owner: &Principal) -> Result<Vec<PluginRecord>, RegistryError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|s| s.visible_to(owner))
            .map(|s| s.record)
            .collect())
    }

    /// The digest a reference names for `owner`: `sha256:<hex>` as is (if stored and visible),
    /// or `name@version`.
    pub fn resolve(&self, reference: &str, owner: &Principal) -> Result<String, RegistryError> {
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RegistryError::BadReference(reference.to_owned()));
            }
            return match self.get(reference, owner)? {
                Some(record) => Ok(record.digest),
                None => Err(RegistryError::NotFound(reference.to_owned())),
            };
        }
        if !reference.contains('@') {
            return Err(RegistryError::BadReference(reference.to_owned()));
        }
        self.list(owner)?
            .into_iter()
            .find(|r| r.reference().as_deref() == Some(reference))
            .map(|r| r.digest)
            .ok_or_else(|| RegistryError::NotFound(reference.to_owned()))
    }

    /// The compiled policy of `digest`: from memory, else from its artifact on disk (no
    /// compilation), else compiled from its bytes (and the artifact written). Blocking.
    pub fn load(&self, digest: &str) -> Result<Arc<CompiledPolicy>, RegistryError> {
        if let Some(policy) = self.cached(digest) {
            return Ok(policy);
        }
        let record = self
            .stored(digest)?
            .ok_or_else(|| RegistryError::NotFound(digest.to_owned()))?
            .record;
        let artifact = self.artifact_path(digest);
        if artifact.exists() {
            match self.deserialize(&artifact) {
                Ok(component) => {
                    let policy = Arc::new(
                        CompiledPolicy::from_component(
                            &self.runtime,
                            component,
                            record.digest.clone(),
                            record.size as usize,
                        )
                        .map_err(RegistryError::Invalid)?,
                    );
                    return Ok(self.keep(digest, policy));
                }
                // A damaged or foreign artifact is rebuilt from the bytes below.
                Err(error) => tracing::warn!(%digest, %error, "artifact unusable; recompiling"),
            }
        }
        let blob = self.blob_path(digest);
        let bytes = std::fs::read(&blob).map_err(|source| RegistryError::Io {
            path: blob.clone(),
            source,
        })?;
        if digest_of(&bytes) != digest {
            return Err(RegistryError::Damaged {
                digest: digest.to_owned(),
                message: format!("{} does not hash to its name", blob.display()),
            });
        }
        self.compile_and_keep(digest, &bytes)
    }

    /// Whether `owner` holds the only claim on `digest` (its release would delete it).
    pub fn claimed_only_by(&self, digest: &str, owner: &Principal) -> Result<bool, RegistryError> {
        Ok(self.stored(digest)?.is_some_and(|s| match owner {
            Principal::Admin => s.shared && s.tenants.is_empty(),
            Principal::Tenant(t) => !s.shared && s.tenants == [t.clone()],
        }))
    }

    /// Drops `owner`'s claim on a plugin (the admin drops every claim); the record, bytes and
    /// artifact go with the last claim. The caller checks that nothing binds it.
    pub fn release(&self, digest: &str, owner: &Principal) -> Result<(), RegistryError> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut stored = self
            .stored(digest)?
            .filter(|s| s.visible_to(owner))
            .ok_or_else(|| RegistryError::NotFound(digest.to_owned()))?;
        match owner {
            Principal::Admin => {
                stored.shared = false;
                stored.tenants.clear();
            }
            Principal::Tenant(t) => stored.tenants.retain(|x| x != t),
        }
        if !stored.unclaimed() {
            return self.put(&stored);
        }
        self.remove(digest)?;
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        // The record is gone; files left by a crash here are unreferenced and harmless.
        for path in [self.blob_path(digest), self.artifact_path(digest)] {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "cannot delete plugin file");
            }
        }
        Ok(())
    }

    fn cached(&self, digest: &str) -> Option<Arc<CompiledPolicy>> {
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    fn keep(&self, digest: &str, policy: Arc<CompiledPolicy>) -> Arc<CompiledPolicy> {
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.to_owned())
            .or_insert(policy)
            .clone()
    }

    /// Compiles `bytes`, checks the world, writes bytes and artifact durably, caches the result.
    fn compile_and_keep(
        &self,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Arc<CompiledPolicy>, RegistryError> {
        use std::sync::atomic::Ordering;
        if let Some(policy) = self.cached(digest) {
            return Ok(policy);
        }
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= COMPILE_QUEUE {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(RegistryError::CompilerBusy { waiting });
        }
        let compiler = self.compiler.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        // The same bytes uploaded twice at once compile once: the second finds the first's.
        if let Some(policy) = self.cached(digest) {
            return Ok(policy);
        }
        let policy = self
            .runtime
            .compile(bytes)
            .map_err(RegistryError::Invalid)?;
        drop(compiler);
        self.compilations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.write_files(digest, bytes, &policy)?;
        Ok(self.keep(digest, Arc::new(policy)))
    }
}

/// Now, Unix milliseconds (wall clock: records are about the real world).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::EngineConfig;

    /// With the compiler taken and [`COMPILE_QUEUE`] uploads waiting, one more upload is
    /// refused at once as busy: it does not hold its bytes (and a blocking thread) in line.
    #[test]
    fn an_upload_past_the_compile_queue_is_refused_as_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(PolicyEngine::new(&EngineConfig::default()).expect("engine"));
        let db = Arc::new(Database::create(dir.path().join("control.redb")).expect("db"));
        let registry = PluginRegistry::open(engine, db, dir.path(), 1 << 20).expect("opens");
        let _compiling = registry.compiler.lock().expect("lock");
        registry
            .waiting
            .store(COMPILE_QUEUE, std::sync::atomic::Ordering::SeqCst);
        let refused = registry
            .add(b"\0asm not really", None, None, Principal::Admin)
            .expect_err("busy");
        assert!(
            matches!(refused, RegistryError::CompilerBusy { waiting } if waiting == COMPILE_QUEUE),
            "{refused}"
        );
        assert_eq!(
            registry.waiting.load(std::sync::atomic::Ordering::SeqCst),
            COMPILE_QUEUE,
            "the refused upload left the queue as it found it"
        );
    }
}
