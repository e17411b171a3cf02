//! Why a binding was refused: the one error the registry, the binder and the API share.

use crate::domain::cluster::WorkloadRef;

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// No such tenant.
    #[error("binding {binding}: unknown tenant {tenant:?}")]
    UnknownTenant {
        /// The binding.
        binding: String,
        /// The tenant named.
        tenant: String,
    },
    /// A target or pool outside the tenant's scope.
    #[error("binding {binding}: {message}")]
    OutOfScope {
        /// The binding.
        binding: String,
        /// What is outside.
        message: String,
    },
    /// Another binding already actuates the target.
    #[error(
        "binding {binding}: {target} is already a target of binding {owner} (one writer per target)"
    )]
    TargetTaken {
        /// The binding.
        binding: String,
        /// The target.
        target: WorkloadRef,
        /// The binding that owns it.
        owner: String,
    },
    /// Bad rails, interval or limits.
    #[error("binding {binding}: {message}")]
    Invalid {
        /// The binding.
        binding: String,
        /// What is wrong.
        message: String,
    },
    /// The policy's `validate-config` refused the config or failed.
    #[error("binding {binding}: config refused by the policy: {message}")]
    Config {
        /// The binding.
        binding: String,
        /// The policy's own message (or why its check failed).
        message: String,
    },
    /// The config could not be checked now: no sandbox instance was free for its check in
    /// time. Nothing is wrong with it; the same request may succeed later.
    #[error("binding {binding}: its config could not be checked now: {message}; try again")]
    Busy {
        /// The binding.
        binding: String,
        /// Which allowance was in use.
        message: String,
    },
}
