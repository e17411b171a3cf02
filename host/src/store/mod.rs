//! Where bytes persist: per-binding policy state, in redb, committed in groups.
//!
//! Start with [`StateStore`]: one database per host, a namespace per binding
//! ([`namespace`]) and per shadow revision ([`shadow_namespace`]).

mod state;

pub use state::{StateError, StateStore, namespace, shadow_namespace};
