//! The WebAssembly runtime: compiles policies once and runs each invocation in a fresh sandbox.
//!
//! Start with [`PolicyEngine`] (one per host: wasmtime engine, pooling allocator, linker, epoch
//! ticker), then [`CompiledPolicy`] (one per plugin digest) and [`Sandbox`] (the store data of one
//! invocation). The host side of every WIT interface is in `host/`, one file each.

mod bindings;
mod host;
mod limits;
mod load;
mod policy;
mod sandbox;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use limits::{DEFAULT_DEADLINE, Limits};
pub use load::{PluginError, compile_plugin, load_plugin, read_plugin};
pub use policy::{
    CompileError, CompiledPolicy, Invocation, InvocationError, ValidateError, WORLD, WORLDS,
    WarmPolicy, digest_of,
};
pub use sandbox::{
    Access, ActuationView, GuestLine, GuestStream, Intent, NoHistory, Sandbox, StagedState,
};

/// The most core instances, memories and tables one policy component may have.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MEMORIES_PER_COMPONENT: u32 = 8;
const TABLES_PER_COMPONENT: u32 = 16;

/// How often the epoch advances: how long a guest runs before it yields to the runtime.
const EPOCH_PERIOD: Duration = Duration::from_millis(2);

/// Engine-wide settings: the pool every sandbox draws from, and the operator's ceilings that no
/// binding's limits may exceed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Instances that may run at once, over all tenants.
    pub max_concurrent_instances: u32,
    /// Instances one tenant's invocations may hold at once (its fair share of the pool).
    pub max_instances_per_tenant: u32,
    /// Bindings one tenant may have.
    pub max_bindings_per_tenant: u32,
    /// Targets one binding may list, and VM pools: every host call checks its scope against
    /// them and a failing binding's fallback acts on each.
    pub max_targets_per_binding: u32,
    /// The shortest interval between a binding's ticks.
    #[serde(with = "crate::domain::duration")]
    pub min_interval: Duration,
    /// The longest deadline a binding may ask for.
    #[serde(with = "crate::domain::duration")]
    pub max_deadline: Duration,
    /// The largest memory any binding may be granted, bytes (summed over its memories and
    /// tables).
    pub max_memory_bytes: u64,
    /// The most host calls a binding may be granted per invocation.
    pub max_host_calls: u32,
    /// The most bytes a binding may be granted to pass per invocation.
    pub max_bytes: u64,
    /// Guest wasm stack, bytes.
    pub max_wasm_stack: usize,
    /// The Kubernetes node this host runs on (default: `$SCALEHOST_NODE_NAME`, which a pod
    /// sets from the downward API's `spec.nodeName`). The node view marks it, so that no policy
    /// powers off the host under itself.
    pub node_name: Option<String>,
    /// What each tenant may consume, unless its record says otherwise.
    pub quotas: crate::domain::quota::Quotas,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_instances: 64,
            max_instances_per_tenant: 16,
            max_bindings_per_tenant: 10_000,
            max_targets_per_binding: 256,
            min_interval: Duration::from_millis(10),
            max_deadline: Duration::from_secs(30),
            max_memory_bytes: 256 << 20,
            max_host_calls: 100_000,
            max_bytes: 64 << 20,
            max_wasm_stack: 512 << 10,
            node_name: std::env::var("SCALEHOST_NODE_NAME")
                .ok()
                .filter(|n| !n.is_empty()),
            quotas: crate::domain::quota::Quotas::default(),
        }
    }
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasm engine")]
    Config(#[source] wasmtime::Error),
    /// The host imports could not be linked.
    #[error("cannot link the host interfaces")]
    Link(#[source] wasmtime::Error),
}

/// The host's wasmtime engine: compiles policies and hands out sandboxes.
///
/// One per process. It owns the pooling allocator (instances reuse pre-mapped slots), the linker
/// with the `scalehost:policy` imports and an empty WASI (all async), and a thread that
/// advances the epoch every 2 ms so that running guests yield to the runtime and their
/// deadlines are checked.
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<Linker<Sandbox>>,
    config: EngineConfig,
    _epoch: EpochTicker,
}

impl PolicyEngine {
    /// Builds the engine and links the host interfaces.
    pub fn new(config: &EngineConfig) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_concurrent_instances.max(1);
        // Every sandbox may use its component's maximum of each: the totals are instances ×
        // the per-component maxima, so that a tenant holding its share of instances with
        // components built to the maxima cannot exhaust the core instances, memories or tables
        // the other tenants' sandboxes need (the slots are address space, reserved, not RSS).
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            .table_elements(100_000)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            // Keep the first pages of each slot mapped: a Rust policy's stack, data and working
            // heap fit in 512 KiB, and re-faulting them on every tick would dominate a fresh
            // instance's cost (docs/benchmarks.md).
            .linear_memory_keep_resident(512 << 10)
            .table_keep_resident(64 << 10);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(EngineError::Config)?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(EngineError::Link)?;
        Ok(PolicyEngine {
            _epoch: EpochTicker::start(engine.clone()),
            engine,
            linker: Arc::new(linker),
            config: config.clone(),
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The operator's settings: the pool and the ceilings of every binding's limits.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Compiles a component and checks it against the world; see [`CompiledPolicy`].
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPolicy, CompileError> {
        CompiledPolicy::compile(self, bytes)
    }

    pub(crate) fn linker(&self) -> &Linker<Sandbox> {
        &self.linker
    }
}

/// Advances the engine's epoch on a background thread until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("scalehost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_PERIOD);
                    engine.increment_epoch();
                }
            })
            .expect("the OS can start the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
