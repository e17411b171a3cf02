//! A binding: a tenant's policy, its config, targets, rails, limits and fallback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::guard::{RailHistory, Rails};
use crate::domain::cluster::{TimestampMs, WorkloadKind, WorkloadRef};
use crate::domain::scope::Scope;
use crate::runtime::{CompiledPolicy, Limits};

/// A binding: what it runs, on what, within which limits. One type for both ways in: an entry of
/// `[[bindings]]` in the config file (which names its tenant and itself) and the body of
/// `PUT …/tenants/{tenant}/bindings/{name}` (where the path names them, and a body that names
/// others is refused: [`BindingSpec::claimed_by`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    /// The tenant that owns it (in the API, the path's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// Its name, unique within the tenant (in the API, the path's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The plugin: in a config file a component file (`.wasm`, relative to the file's folder);
    /// through the API a digest (`sha256:<hex>`), `name@version` resolved when bound.
    pub plugin: String,
    /// Time between ticks (default 15 s).
    #[serde(default = "default_interval", with = "crate::domain::duration")]
    pub interval: Duration,
    /// The policy's configuration, handed to it as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Workloads it may scale, each with its guard rails.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    /// VM pools it may power.
    #[serde(default)]
    pub vm_pools: Vec<String>,
    /// Sandbox limits of each invocation.
    #[serde(default)]
    pub limits: Limits,
    /// What happens after repeated failures.
    #[serde(default)]
    pub fallback: FallbackSpec,
}

/// Why a spec does not belong where it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body names {field} `{given}` but the path names `{path}`")]
pub struct MisnamedSpec {
    /// `tenant` or `name`.
    pub field: &'static str,
    /// What the body says.
    pub given: String,
    /// What the path says.
    pub path: String,
}

impl BindingSpec {
    /// A spec for `plugin` with every other field at its default, owned by no one yet.
    pub fn for_plugin(plugin: impl Into<String>) -> Self {
        BindingSpec {
            tenant: String::new(),
            name: String::new(),
            plugin: plugin.into(),
            interval: default_interval(),
            config: empty_object(),
            targets: Vec::new(),
            vm_pools: Vec::new(),
            limits: Limits::default(),
            fallback: FallbackSpec::default(),
        }
    }

    /// The spec as `tenant`'s binding `name`: fills in a tenant or name the body left out, and
    /// refuses one that names another (as Kubernetes refuses a body whose name is not the path's).
    pub fn claimed_by(mut self, tenant: &str, name: &str) -> Result<Self, MisnamedSpec> {
        for (field, given, path) in [
            ("tenant", &mut self.tenant, tenant),
            ("name", &mut self.name, name),
        ] {
            if given.is_empty() {
                path.clone_into(given);
            } else if given != path {
                return Err(MisnamedSpec {
                    field,
                    given: given.clone(),
                    path: path.to_owned(),
                });
            }
        }
        Ok(self)
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A target workload and its guard rails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Deployment (default) or stateful-set.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Never fewer replicas (default 1).
    #[serde(default = "one")]
    pub min_replicas: u32,
    /// Never more replicas.
    pub max_replicas: u32,
    /// At most this many added per tick.
    #[serde(default)]
    pub max_step_up: Option<u32>,
    /// At most this many removed per tick.
    #[serde(default)]
    pub max_step_down: Option<u32>,
    /// No scale-up within this long of the last change (default 0s).
    #[serde(default = "zero", with = "crate::domain::duration")]
    pub cooldown_up: Duration,
    /// No scale-down within this long of the last change (default 0s).
    #[serde(default = "zero", with = "crate::domain::duration")]
    pub cooldown_down: Duration,
    /// Scale down only to the highest recommendation within this window (default 0s: off).
    #[serde(default = "zero", with = "crate::domain::duration")]
    pub stabilization_down: Duration,
}

fn one() -> u32 {
    1
}

fn zero() -> Duration {
    Duration::ZERO
}

impl TargetSpec {
    /// The workload.
    pub fn workload(&self) -> WorkloadRef {
        WorkloadRef {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Its guard rails.
    pub fn rails(&self) -> Rails {
        Rails {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            max_step_up: self.max_step_up,
            max_step_down: self.max_step_down,
            cooldown_up: self.cooldown_up,
            cooldown_down: self.cooldown_down,
            stabilization_down: self.stabilization_down,
        }
    }
}

/// When and how a failing binding falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    /// Consecutive failed ticks before the fallback applies (default 3).
    #[serde(default = "three")]
    pub after_failures: u32,
    /// What it does (default hold).
    #[serde(default)]
    pub action: FallbackAction,
}

impl Default for FallbackSpec {
    fn default() -> Self {
        FallbackSpec {
            after_failures: 3,
            action: FallbackAction::Hold,
        }
    }
}

fn three() -> u32 {
    3
}

/// The fallback of a failing binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackAction {
    /// Leave every target as it is.
    #[default]
    Hold,
    /// Scale every target to this many replicas (within its min/max).
    Fixed(u32),
}

/// How a binding is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that failed (nothing applied).
    pub failed_ticks: u64,
    /// Ticks that succeeded but whose actuation a backend refused.
    pub failed_actuations: u64,
    /// Failures in a row now, of either kind (the host's overload not counted).
    pub consecutive_failures: u32,
    /// Ticks in a row that failed because the host was overloaded: not the binding's fault,
    /// but visible, and a long enough run of them falls back too.
    pub consecutive_overloaded: u32,
    /// True from the fallback until the next successful tick.
    pub failing: bool,
    /// The latest failure.
    pub last_error: Option<String>,
    /// Host time of the latest tick.
    pub last_tick_at: Option<TimestampMs>,
}

/// A binding bound to its compiled policy, with the rails' memory and its health.
///
/// A new revision of the same binding (a live swap) is a new `Binding` that shares the rails'
/// memory, the health, the last applied actions, the pause switch and the generation of the
/// one it replaces, so a tick in
/// flight on the old revision is not lost and the scheduler keeps one rhythm.
pub struct Binding {
    /// As configured.
    pub spec: BindingSpec,
    /// The compiled plugin.
    pub policy: Arc<CompiledPolicy>,
    /// The control plane's revision number, for bindings managed through the API.
    pub revision: Option<u64>,
    /// A revision that runs on the same ticks, dry.
    pub shadow: Option<Shadow>,
    pub(crate) config_json: String,
    pub(crate) tenant: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) scope: Arc<Scope>,
    pub(crate) generation: u64,
    pub(crate) paused: Arc<AtomicBool>,
    /// Held for the length of a tick: one tick of a binding at a time, across revisions.
    pub(crate) ticking: Arc<tokio::sync::Mutex<()>>,
    /// Where a tick commits: removal and state clearing go through it too.
    pub(crate) gate: Arc<Mutex<CommitGate>>,
    pub(crate) rails: Arc<Mutex<HashMap<WorkloadRef, RailHistory>>>,
    pub(crate) health: Arc<Mutex<Health>>,
    /// The actions of the last tick that applied, for the policy's `outcomes`.
    pub(crate) last_applied: Arc<Mutex<Option<Arc<super::outcomes::LastApplied>>>>,
}

/// What a tick checks at its commit point, shared by every revision of a binding.
#[derive(Debug, Default)]
pub(crate) struct CommitGate {
    /// The binding was removed: a tick in flight commits and applies nothing.
    pub(crate) retired: bool,
    /// Bumped when the binding's state is cleared: a tick that began before commits nothing.
    pub(crate) state_epoch: u64,
}

/// A shadow revision: ticks with its binding, its intents recorded in the audit and never
/// applied, its state kept apart (namespace `<tenant>/<binding>#shadow`).
pub struct Shadow {
    /// Its spec (config, limits; targets and rails as the active one's).
    pub spec: BindingSpec,
    /// Its compiled plugin.
    pub policy: Arc<CompiledPolicy>,
    /// Its revision number.
    pub revision: Option<u64>,
    pub(crate) config_json: String,
    pub(crate) scope: Arc<Scope>,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("plugin", &self.policy.digest())
            .finish_non_exhaustive()
    }
}

impl Binding {
    /// Tenant name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Binding name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the binding is paused: its ticks are skipped.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Which instance of `tenant/name` this is: the same across revisions, new when the binding
    /// is removed and created again (the scheduler stops the old one's task).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Health now.
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
