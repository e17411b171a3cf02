//! Per-binding key/value state that survives ticks, restarts and plugin swaps.
//!
//! Writes are staged during a tick and kept only if the tick succeeds.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::state as w;

/// Returns the bytes stored under `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    w::get(key)
}

/// Stores bytes under `key`.
pub fn set(key: &str, value: &[u8]) {
    w::set(key, value)
}

/// Removes `key`.
pub fn delete(key: &str) {
    w::delete(key)
}

/// Returns the JSON value stored under `key`; `None` if absent or no longer parses as `T`
/// (after a plugin upgrade changed its shape, say).
pub fn get_json<T: DeserializeOwned>(key: &str) -> Option<T> {
    get(key).and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// Stores `value` as JSON under `key`.
pub fn set_json<T: Serialize>(key: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| format!("cannot encode state {key}: {e}"))?;
    set(key, &bytes);
    Ok(())
}
