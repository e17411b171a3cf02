//! Where bytes persist: per-binding policy state, and the control database's typed tables.
//!
//! Start with [`StateStore`]: one database per host, a namespace per binding
//! ([`namespace`]) and per shadow revision ([`shadow_namespace`]), committed in groups. The
//! control plane's and the registry's records live in `control.redb`, each kind in one
//! [`JsonTable`].

mod files;
mod state;
mod tables;

pub use files::{prune_older_than, rotate, rotated, write_durably};
pub use state::{StateError, StateStore, namespace, shadow_namespace};
pub use tables::{JsonTable, TableError, open_database};
