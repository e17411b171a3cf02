//! A policy compiled once per plugin digest, invoked in a fresh store each time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use super::bindings::{v0_1, v0_2};
use super::sandbox::{Access, GuestLine, GuestStream, Intent, Sandbox, StagedState, clip};
use super::{Limits, PolicyEngine};
use crate::domain::cluster::TimestampMs;

/// The newest world a policy may be a component of.
pub const WORLD: &str = "scalehost:policy/policy@0.2.0";
/// Every world version the host runs, newest first.
pub const WORLDS: [&str; 2] = [WORLD, "scalehost:policy/policy@0.1.0"];

/// Why bytes could not become a [`CompiledPolicy`]. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (no \\0asm header)")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// wasmtime could not compile it.
    #[error("does not compile: {0}")]
    Invalid(String),
    /// A component, but not of the policy world.
    #[error("not a component of world {WORLD} (nor of @0.1.0): {0}")]
    WrongWorld(String),
}

/// Why an invocation failed. Whatever the cause, only that invocation is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum InvocationError {
    /// The policy returned an error.
    #[error("policy error: {0}")]
    Policy(String),
    /// The guest trapped (a panic, an out-of-bounds access, a stack overflow, ...).
    #[error("trap: {0}")]
    Trap(String),
    /// The invocation ran past its deadline.
    #[error("deadline of {0} exceeded")]
    Deadline(String),
    /// The guest asked for more memory than its limit.
    #[error("{0}")]
    MemoryLimit(String),
    /// Too many host calls or bytes passed.
    #[error("{0}")]
    HostLimit(String),
    /// The instance could not be created.
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// The tick's state could not be committed.
    #[error("state store: {0}")]
    State(String),
    /// No sandbox instance was free in time in the tenant's own share.
    #[error("{0}")]
    Busy(String),
    /// The host is overloaded (its instance pool or its state store full with other tenants'
    /// work): the tick failed, but it is no fault of the binding's and does not count toward
    /// its fallback.
    #[error("host overloaded: {0}")]
    Overloaded(String),
}

impl InvocationError {
    /// Whether the failure is the host's, not the binding's: it does not count toward the
    /// binding's fallback.
    pub fn is_host_overload(&self) -> bool {
        matches!(self, InvocationError::Overloaded(_))
    }
}

/// Why a configuration was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValidateError {
    /// The policy refused it; its own message.
    #[error("{0}")]
    Rejected(String),
    /// The check itself failed.
    #[error("validate-config failed")]
    Failed(#[source] InvocationError),
}

/// What one tick invocation did: its result, what it asked for, what it used.
pub struct Invocation {
    /// Ok, or why the tick failed.
    pub result: Result<(), InvocationError>,
    /// Recorded intents; apply them only if `result` is Ok.
    pub intents: Vec<Intent>,
    /// Staged state writes; commit them only if `result` is Ok.
    pub state: StagedState,
    /// Guest output and log lines.
    pub logs: Vec<GuestLine>,
    /// Host calls made.
    pub host_calls: u32,
    /// Wall time of instantiation and call.
    pub elapsed: Duration,
}

impl Invocation {
    /// An invocation that never ran because `why`; `state` is handed back unused.
    pub fn refused(why: InvocationError, state: StagedState) -> Self {
        Invocation {
            result: Err(why),
            intents: Vec::new(),
            state,
            logs: Vec::new(),
            host_calls: 0,
            elapsed: Duration::ZERO,
        }
    }
}

/// A policy component, compiled once and pre-linked.
///
/// Compilation and import resolution happen once per plugin digest, here; every invocation
/// ([`tick`](Self::tick), [`validate_config`](Self::validate_config)) instantiates the cached
/// `InstancePre` into a **fresh `Store`**, so guest memory never survives a call and a trap
/// (which poisons its store) costs only that call. Cheap to share: clone the `Arc`.
pub struct CompiledPolicy {
    digest: String,
    size: usize,
    imports: Vec<String>,
    pre: Pre,
    engine: wasmtime::Engine,
}

/// The pre-linked instance of a component of one world version.
enum Pre {
    V0_1(v0_1::PolicyPre<Sandbox>),
    V0_2(v0_2::PolicyPre<Sandbox>),
}

impl Pre {
    fn instance_pre(&self) -> &wasmtime::component::InstancePre<Sandbox> {
        match self {
            Pre::V0_1(pre) => pre.instance_pre(),
            Pre::V0_2(pre) => pre.instance_pre(),
        }
    }
}

/// Calls `export` of `instance` with `config`: both exports of every world version are
/// `func(config: string) -> result<_, string>`. The policy's error message is charged to the
/// byte limit (its copy is bounded by the guest's own memory) and clipped for the records.
///
/// The error is lifted as a `String`, not a `WasmStr` view: wasmtime runs the guest's
/// post-return (which frees the message) before the caller could read a view.
async fn call_export(
    store: &mut Store<Sandbox>,
    instance: &wasmtime::component::Instance,
    export: Export,
    config: &str,
) -> wasmtime::Result<Result<(), InvocationError>> {
    let func =
        instance.get_typed_func::<(&str,), (Result<(), String>,)>(&mut *store, export.name())?;
    let (result,) = func.call_async(&mut *store, (config,)).await?;
    Ok(match result {
        Ok(()) => Ok(()),
        Err(message) => {
            let len = message.len();
            match store.data_mut().charge_bytes(len) {
                Err(limit) => Err(InvocationError::HostLimit(format!(
                    "the policy's error message of {len} bytes: {limit}"
                ))),
                Ok(()) => Err(InvocationError::Policy(clip(message, MAX_ERROR_CHARS))),
            }
        }
    })
}

impl CompiledPolicy {
    pub(super) fn compile(engine: &PolicyEngine, bytes: &[u8]) -> Result<Self, CompileError> {
        if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
            return Err(CompileError::NotWasm);
        }
        // Core modules carry version 1, layer 0; components a different version and layer 1.
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(CompileError::CoreModule);
        }
        let component = Component::new(engine.engine(), bytes)
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        Self::from_component(engine, component, digest_of(bytes), bytes.len())
    }

    /// Wraps an already compiled (or deserialized) component, checking it against the world.
    pub fn from_component(
        engine: &PolicyEngine,
        component: Component,
        digest: String,
        size: usize,
    ) -> Result<Self, CompileError> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(engine.engine())
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(engine.engine())
            .map(|(name, _)| name.to_owned())
            .collect();
        for needed in ["tick", "validate-config"] {
            if !exports.iter().any(|e| e == needed) {
                return Err(CompileError::WrongWorld(format!(
                    "it does not export `{needed}`"
                )));
            }
        }
        let instance_pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| CompileError::WrongWorld(one_line(&e)))?;
        // The version is the one its imports name; a component that imports none of the
        // world's interfaces runs as the newest.
        let wrong = |e: wasmtime::Error| CompileError::WrongWorld(one_line(&e));
        let pre = if imports_version(&imports, "0.1.0") && !imports_version(&imports, "0.2.0") {
            Pre::V0_1(v0_1::PolicyPre::new(instance_pre).map_err(wrong)?)
        } else {
            Pre::V0_2(v0_2::PolicyPre::new(instance_pre).map_err(wrong)?)
        };
        Ok(CompiledPolicy {
            digest,
            size,
            imports,
            pre,
            engine: engine.engine().clone(),
        })
    }

    /// The world version it is a component of.
    pub fn world(&self) -> &'static str {
        match self.pre {
            Pre::V0_1(_) => WORLDS[1],
            Pre::V0_2(_) => WORLDS[0],
        }
    }

    /// `sha256:<hex>` of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Size of the component's bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The compiled code in wasmtime's artifact format, for [`crate::registry`]'s disk cache.
    pub fn serialize(&self) -> Result<Vec<u8>, wasmtime::Error> {
        self.pre.instance_pre().component().serialize()
    }

    /// The component's imports (interfaces of the world, and WASI where a runtime needs it).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Runs the policy's `validate-config` on `config` in a fresh sandbox with no cluster access,
    /// under the same deadline and limits as a tick.
    pub async fn validate_config(
        &self,
        config: &str,
        limits: Limits,
        tenant: Arc<str>,
        binding: Arc<str>,
        now: TimestampMs,
        state: StagedState,
    ) -> Result<(), ValidateError> {
        let sandbox = Sandbox::new(tenant, binding, now, limits, None, state);
        let (result, _) = self.invoke(sandbox, config, Export::ValidateConfig).await;
        result.map_err(|e| match e {
            InvocationError::Policy(message) => ValidateError::Rejected(message),
            other => ValidateError::Failed(other),
        })
    }

    /// Runs one tick in a fresh sandbox. Nothing is applied here: the caller applies the returned
    /// intents and commits the staged state only if the result is Ok.
    #[allow(clippy::too_many_arguments)]
    pub async fn tick(
        &self,
        config: &str,
        limits: Limits,
        tenant: Arc<str>,
        binding: Arc<str>,
        now: TimestampMs,
        access: Access,
        state: StagedState,
    ) -> Invocation {
        let started = Instant::now();
        let sandbox = Sandbox::new(tenant, binding, now, limits, Some(access), state);
        let (result, sandbox) = self.invoke(sandbox, config, Export::Tick).await;
        Invocation {
            result,
            intents: sandbox.intents,
            state: sandbox.state,
            logs: sandbox.logs,
            host_calls: sandbox.host_calls,
            elapsed: started.elapsed(),
        }
    }

    /// Instantiates and calls one export under one wall-clock deadline that covers everything
    /// the invocation does: instantiation, guest code (it yields to the runtime at every epoch),
    /// WASI waits (a sleep is an await) and host calls (their backend requests are awaited
    /// inside). When the deadline passes, the whole future is dropped wherever it is: the
    /// invocation fails with `deadline` and its intents and staged state are discarded by the
    /// caller, who only applies an Ok.
    async fn invoke(
        &self,
        mut sandbox: Sandbox,
        config: &str,
        export: Export,
    ) -> (Result<(), InvocationError>, Sandbox) {
        let limits = sandbox.limits;
        sandbox.bytes = config.len() as u64;
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| &mut s.memory);
        // Yield to the runtime at every epoch (2 ms): a guest spinning in wasm code never holds
        // a runtime thread, and the deadline below is checked between its slices. The epoch
        // also stops guest code at the deadline itself, should the runtime's timer lag (a busy
        // runtime polls its timers only every so many tasks).
        let hard_deadline = Instant::now() + limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= hard_deadline {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });
        let pre = self.pre.instance_pre();
        let run = async {
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(Failure::Instantiate)?;
            call_export(&mut store, &instance, export, config)
                .await
                .map_err(Failure::Call)
        };
        let outcome = tokio::time::timeout(limits.deadline, run).await;
        let result = match outcome {
            Err(_elapsed) => Err(InvocationError::Deadline(crate::domain::duration::format(
                limits.deadline,
            ))),
            Ok(Ok(result)) => result,
            Ok(Err(Failure::Call(error))) => Err(classify(&error, store.data(), limits)),
            Ok(Err(Failure::Instantiate(error))) if store.data().memory.exceeded => {
                Err(classify(&error, store.data(), limits))
            }
            Ok(Err(Failure::Instantiate(error))) => {
                Err(InvocationError::Instantiate(one_line(&error)))
            }
        };
        let mut sandbox = store.into_data();
        let result = match result {
            Err(InvocationError::Trap(_)) if sandbox.output_full() => {
                Err(InvocationError::HostLimit(format!(
                    "output limit of {} bytes per stream exceeded",
                    super::sandbox::OUTPUT_CAPACITY
                )))
            }
            other => other,
        };
        let output = sandbox.collect_output();
        let result = result.and_then(|()| output);
        (result, sandbox)
    }
}

/// Which export an invocation calls.
#[derive(Debug, Clone, Copy)]
enum Export {
    Tick,
    ValidateConfig,
}

impl Export {
    fn name(self) -> &'static str {
        match self {
            Export::Tick => "tick",
            Export::ValidateConfig => "validate-config",
        }
    }
}

/// Where an invocation stopped short of a result.
enum Failure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

/// One instance kept alive across calls: for benchmarks measuring the call alone. The tick path
/// never uses it (it would let guest memory survive a tick).
pub struct WarmPolicy {
    store: Store<Sandbox>,
    instance: wasmtime::component::Instance,
}

impl WarmPolicy {
    /// Calls `tick` again on the same instance, discarding intents and staged state.
    pub async fn call_tick(&mut self, config: &str) -> Result<(), InvocationError> {
        let sandbox = self.store.data_mut();
        sandbox.host_calls = 0;
        sandbox.bytes = 0;
        sandbox.clear_intents();
        match call_export(&mut self.store, &self.instance, Export::Tick, config).await {
            Ok(result) => result,
            Err(error) => Err(InvocationError::Trap(one_line(&error))),
        }
    }
}

impl CompiledPolicy {
    /// Instantiates once for repeated calls; see [`WarmPolicy`].
    #[doc(hidden)]
    pub async fn instantiate_warm(
        &self,
        limits: Limits,
        access: Access,
        state: StagedState,
    ) -> Result<WarmPolicy, InvocationError> {
        let sandbox = Sandbox::new(
            "bench".into(),
            "bench".into(),
            0,
            limits,
            Some(access),
            state,
        );
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_async_yield_and_update(1);
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| InvocationError::Instantiate(one_line(&e)))?;
        Ok(WarmPolicy { store, instance })
    }
}

impl Sandbox {
    /// Moves captured stdout/stderr into the log lines and the host log, charging their bytes
    /// to the invocation's byte limit.
    fn collect_output(&mut self) -> Result<(), InvocationError> {
        let mut result = Ok(());
        for (stream, pipe) in [
            (GuestStream::Stdout, self.stdout.clone()),
            (GuestStream::Stderr, self.stderr.clone()),
        ] {
            let bytes = pipe.contents();
            if result.is_ok() {
                result = self
                    .charge_bytes(bytes.len())
                    .map_err(|e| InvocationError::HostLimit(e.to_string()));
            }
            if result.is_err() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.is_empty())
            {
                self.forward_to_host_log(stream, line);
                self.logs.push(GuestLine {
                    stream,
                    message: line.to_owned(),
                });
            }
        }
        self.report_held_back();
        result
    }
}

/// How much of a policy's error message is kept in audit records and health.
const MAX_ERROR_CHARS: usize = 4096;

fn classify(error: &wasmtime::Error, sandbox: &Sandbox, limits: Limits) -> InvocationError {
    if let Some(why) = &sandbox.limit_exceeded {
        return InvocationError::HostLimit(why.clone());
    }
    if sandbox.memory.exceeded {
        return InvocationError::MemoryLimit(format!(
            "memory limit of {} bytes exceeded",
            limits.memory_bytes
        ));
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            InvocationError::Deadline(crate::domain::duration::format(limits.deadline))
        }
        Some(trap) => InvocationError::Trap(trap.to_string()),
        None => InvocationError::Trap(one_line(error)),
    }
}

/// Whether any of `imports` is an interface of `scalehost:policy` at `version`.
fn imports_version(imports: &[String], version: &str) -> bool {
    imports
        .iter()
        .any(|i| i.starts_with("scalehost:policy/") && i.ends_with(&format!("@{version}")))
}

/// An error and its causes on one line, clipped like a policy's own error: a trap's backtrace
/// carries the component's own (guest-chosen) function names.
fn one_line(error: &wasmtime::Error) -> String {
    clip(format!("{error:#}").replace('\n', " "), MAX_ERROR_CHARS)
}

/// `sha256:<hex>` of bytes: a plugin's identity.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
