//! Loading a plugin from a file: read, then compile (the registry keeps uploaded ones).

use std::path::{Path, PathBuf};

use super::{CompileError, CompiledPolicy, PolicyEngine};

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not a policy component.
    #[error("{path}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CompileError,
    },
}

/// Reads a plugin file's bytes.
pub fn read_plugin(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads and compiles a plugin file.
pub fn load_plugin(engine: &PolicyEngine, path: &Path) -> Result<CompiledPolicy, PluginError> {
    compile_plugin(engine, path, &read_plugin(path)?)
}

/// Compiles the bytes read from `path` (CPU-heavy: call it off the async workers).
pub fn compile_plugin(
    engine: &PolicyEngine,
    path: &Path,
    bytes: &[u8],
) -> Result<CompiledPolicy, PluginError> {
    engine
        .compile(bytes)
        .map_err(|source| PluginError::Compile {
            path: path.to_owned(),
            source,
        })
}
