//! The WebAssembly runtime: compiles policies once and runs each invocation in a fresh sandbox.
//!
//! Start with [`PolicyEngine`] (one per host: wasmtime engine, pooling allocator, linker, epoch
//! ticker), then [`CompiledPolicy`] (one per plugin digest) and [`Sandbox`] (the store data of one
//! invocation). The host side of every WIT interface is in `host/`, one file each.

mod bindings;
mod host;
mod limits;
mod policy;
mod sandbox;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use limits::Limits;
pub use policy::{
    CompileError, CompiledPolicy, GuestLine, GuestStream, Invocation, InvocationError,
    ValidateError, WORLD, WarmPolicy, digest_of,
};
pub use sandbox::{Access, Intent, Sandbox, StagedState};

/// How often the epoch advances: the resolution of tick deadlines.
const EPOCH_PERIOD: Duration = Duration::from_millis(2);

/// Engine-wide settings: the pool that every sandbox draws from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Instances that may run at once.
    pub max_concurrent_instances: u32,
    /// The largest memory any binding may be granted, bytes.
    pub max_memory_bytes: u64,
    /// Guest wasm stack, bytes.
    pub max_wasm_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_instances: 64,
            max_memory_bytes: 256 << 20,
            max_wasm_stack: 512 << 10,
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
/// with the `scalehost:policy` imports and an empty WASI, and a thread that advances the epoch
/// every 2 ms so that per-invocation deadlines fire.
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<Linker<Sandbox>>,
    max_memory_bytes: u64,
    _epoch: EpochTicker,
}

impl PolicyEngine {
    /// Builds the engine and links the host interfaces.
    pub fn new(config: &EngineConfig) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_concurrent_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(16))
            .total_memories(instances.saturating_mul(4))
            .total_tables(instances.saturating_mul(8))
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
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
            max_memory_bytes: config.max_memory_bytes,
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The largest memory limit a binding may ask for.
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes
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

/// Epoch ticks for a deadline, rounded up, plus one for the tick in progress.
fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() as u64).div_ceil(EPOCH_PERIOD.as_micros() as u64) + 1
}
