//! Paths of the plugin and fixture components, built from `plugins/` by this crate's build script.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// Reads a component's bytes.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}
