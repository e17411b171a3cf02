//! The bindings the engine runs, indexed by what they own: the one-writer rule in O(1).
//!
//! Every binding's targets and pools are in the owner maps, kept under the same lock as the
//! bindings themselves, so that checking a new binding costs its own targets and pools, not
//! the number of bindings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::binding::Binding;
use super::error::BindError;
use crate::domain::cluster::WorkloadRef;
use crate::domain::scope::Scope;

/// A binding's key: (tenant, name).
pub(super) type Key = (String, String);

/// What a binding acts on: its backend's identity (the cluster behind it, whatever name the
/// config gives it) and the workload or pool there. Two names for one cluster are one writer.
type Owned<T> = (Arc<str>, T);

/// The bindings, who scales each target, who powers each pool, and how many each tenant has.
#[derive(Default)]
pub(super) struct Registry {
    bindings: BTreeMap<Key, Arc<Binding>>,
    /// The backend identity each binding was installed on.
    backends: HashMap<Key, Arc<str>>,
    target_owners: HashMap<Owned<WorkloadRef>, Key>,
    pool_owners: HashMap<Owned<String>, Key>,
    per_tenant: HashMap<String, usize>,
}

impl Registry {
    pub(super) fn get(&self, key: &Key) -> Option<&Arc<Binding>> {
        self.bindings.get(key)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Binding>> {
        self.bindings.values()
    }

    /// How many bindings `tenant` has.
    pub(super) fn count_of(&self, tenant: &str) -> usize {
        self.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Refuses `scope` for binding `key` on the backend `backend` (its identity) when another
    /// binding already scales one of its targets or powers one of its pools there.
    pub(super) fn check_owners(
        &self,
        key: &Key,
        backend: &Arc<str>,
        scope: &Scope,
        id: &str,
    ) -> Result<(), BindError> {
        let owner = |k: &Key| format!("{}/{}", k.0, k.1);
        for target in &scope.targets {
            let owned = (backend.clone(), target.clone());
            if let Some(other) = self.target_owners.get(&owned).filter(|k| *k != key) {
                return Err(BindError::TargetTaken {
                    binding: id.to_owned(),
                    target: target.clone(),
                    owner: owner(other),
                });
            }
        }
        for pool in &scope.pools {
            let owned = (backend.clone(), pool.clone());
            if let Some(other) = self.pool_owners.get(&owned).filter(|k| *k != key) {
                return Err(BindError::Invalid {
                    binding: id.to_owned(),
                    message: format!(
                        "vm pool {pool} is already powered by binding {}",
                        owner(other)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Installs `binding` under `key` on the backend `backend`, replacing the revision there;
    /// returns that one.
    pub(super) fn insert(
        &mut self,
        key: Key,
        backend: Arc<str>,
        binding: Arc<Binding>,
    ) -> Option<Arc<Binding>> {
        let old = self.remove(&key);
        for target in &binding.scope.targets {
            self.target_owners
                .insert((backend.clone(), target.clone()), key.clone());
        }
        for pool in &binding.scope.pools {
            self.pool_owners
                .insert((backend.clone(), pool.clone()), key.clone());
        }
        self.backends.insert(key.clone(), backend);
        *self.per_tenant.entry(key.0.clone()).or_default() += 1;
        self.bindings.insert(key, binding);
        old
    }

    /// Removes the binding under `key`.
    pub(super) fn remove(&mut self, key: &Key) -> Option<Arc<Binding>> {
        let old = self.bindings.remove(key)?;
        let backend = self.backends.remove(key).unwrap_or_else(|| Arc::from(""));
        for target in &old.scope.targets {
            let owned = (backend.clone(), target.clone());
            if self.target_owners.get(&owned) == Some(key) {
                self.target_owners.remove(&owned);
            }
        }
        for pool in &old.scope.pools {
            let owned = (backend.clone(), pool.clone());
            if self.pool_owners.get(&owned) == Some(key) {
                self.pool_owners.remove(&owned);
            }
        }
        if let Some(count) = self.per_tenant.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.per_tenant.remove(&key.0);
            }
        }
        Some(old)
    }
}
