//! Per-invocation sandbox limits: deadline, memory, host calls and bytes passed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one invocation of a policy (a tick or a config check) may use. Configurable per binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time before the invocation is interrupted.
    #[serde(with = "crate::domain::duration")]
    pub deadline: Duration,
    /// Linear memory of the instance, bytes.
    pub memory_bytes: u64,
    /// Calls to the `scalehost:policy` imports.
    pub max_host_calls: u32,
    /// Bytes crossing the boundary through host imports, both ways, plus the config.
    pub max_bytes: u64,
}

/// The default deadline: room for a handful of host calls to a real cluster (a Prometheus
/// range query or a Kubernetes list takes milliseconds to a second) plus the guest's own work.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: DEFAULT_DEADLINE,
            memory_bytes: 64 << 20,
            max_host_calls: 10_000,
            max_bytes: 16 << 20,
        }
    }
}
