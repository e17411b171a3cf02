//! The registry's files: a component's bytes and its compiled artifact, each written durably.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use super::{PluginRegistry, RegistryError};
use crate::runtime::CompiledPolicy;
use crate::store::write_durably;

impl PluginRegistry {
    /// Writes the bytes and the compiled artifact, each durably.
    pub(super) fn write_files(
        &self,
        digest: &str,
        bytes: &[u8],
        policy: &CompiledPolicy,
    ) -> Result<(), RegistryError> {
        let artifact = policy.serialize().map_err(|e| RegistryError::Damaged {
            digest: digest.to_owned(),
            message: format!("cannot serialize the compiled component: {e}"),
        })?;
        let durably = |path: PathBuf, bytes: &[u8]| {
            write_durably(&path, bytes).map_err(|source| RegistryError::Io { path, source })
        };
        durably(self.blob_path(digest), bytes)?;
        durably(self.artifact_path(digest), &artifact)
    }

    #[expect(
        unsafe_code,
        reason = "wasmtime can only load compiled code through an unsafe deserialize"
    )]
    pub(super) fn deserialize(&self, path: &Path) -> Result<Component, wasmtime::Error> {
        // SAFETY: the file is one this host wrote from `Component::serialize` into its own data
        // dir (never from an upload) and is named by the engine's compatibility hash; wasmtime
        // also checks its header and refuses artifacts of another engine configuration.
        unsafe { Component::deserialize_file(self.runtime.engine(), path) }
    }

    pub(super) fn hex(digest: &str) -> &str {
        digest.strip_prefix("sha256:").unwrap_or(digest)
    }

    pub(super) fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs.join(format!("{}.wasm", Self::hex(digest)))
    }

    pub(super) fn artifact_path(&self, digest: &str) -> PathBuf {
        self.artifacts
            .join(format!("{}-{}.cwasm", Self::hex(digest), self.engine_key))
    }
}
