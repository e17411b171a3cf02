//! The store data of one invocation: what the policy may reach, what it asked for, what it used.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, format_err};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::Limits;
use crate::backends::Cluster;
use crate::domain::cluster::{
    PowerOperation, PowerState, ScaleChange, TickOutcomes, TimestampMs, WorkloadRef,
};
use crate::domain::promql::QueryRate;
use crate::domain::scope::Scope;
use crate::store::StateStore;

/// Which guest stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestStream {
    /// WASI stdout.
    Stdout,
    /// WASI stderr.
    Stderr,
    /// `log` at debug.
    Debug,
    /// `log` at info.
    Info,
    /// `log` at warn.
    Warn,
    /// `log` at error.
    Error,
}

/// One line the guest printed or logged; each also goes to the host log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestLine {
    /// Where it came from.
    pub stream: GuestStream,
    /// The text.
    pub message: String,
}

/// Captured guest output per stream; a write beyond it fails in the guest (Rust's `println!`
/// then panics, ending the tick, which is then reported as a limit).
pub(crate) const OUTPUT_CAPACITY: usize = 256 << 10;

/// The cluster and the grants a ticking policy reads and acts through. Absent while a config is
/// being validated: then every read is refused and no intent may be recorded.
#[derive(Clone)]
pub struct Access {
    /// The backend.
    pub cluster: Arc<dyn Cluster>,
    /// What the binding may read and act on.
    pub scope: Arc<Scope>,
    /// What became of the binding's earlier intents (WIT 0.2.0 `outcomes`, `nodes`).
    pub actuation: Arc<dyn ActuationView>,
    /// The node the host runs on, if it knows (a policy must not power it off).
    pub host_node: Option<Arc<str>>,
    /// The tenant's query rate, shared by all its bindings.
    pub query_rate: Arc<Mutex<QueryRate>>,
}

impl Access {
    /// Access to `cluster` within `scope`, for a binding with no actuation history (a bench, a
    /// one-off run).
    pub fn new(cluster: Arc<dyn Cluster>, scope: Arc<Scope>) -> Self {
        Access {
            cluster,
            scope,
            actuation: Arc::new(NoHistory),
            host_node: None,
            query_rate: Arc::default(),
        }
    }
}

/// What the tick engine remembers of a binding's actuation, read only when the policy asks.
pub trait ActuationView: Send + Sync {
    /// The outcomes of the binding's last applied tick, power progress as of now.
    fn previous(&self) -> Option<TickOutcomes>;
    /// The power operation in flight on VM `vm_id` of `pool` (the binding's backend).
    fn in_flight(&self, pool: &str, vm_id: &str) -> Option<PowerOperation>;
}

/// An [`ActuationView`] of a binding that has not applied anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

impl ActuationView for NoHistory {
    fn previous(&self) -> Option<TickOutcomes> {
        None
    }

    fn in_flight(&self, _pool: &str, _vm_id: &str) -> Option<PowerOperation> {
        None
    }
}

/// An actuation call recorded during a tick, applied only if the tick succeeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Intent {
    /// Scale a target.
    Scale {
        /// The target.
        target: WorkloadRef,
        /// As the policy asked.
        change: ScaleChange,
        /// Replicas this intent asks for, after composing with earlier intents of the tick.
        requested: u32,
        /// The policy's reason.
        reason: String,
    },
    /// Power a pool VM on or off.
    Power {
        /// The pool.
        pool: String,
        /// The VM.
        vm_id: String,
        /// On or off.
        state: PowerState,
        /// The policy's reason.
        reason: String,
    },
}

/// Per-binding state as one invocation sees it: the store underneath, writes staged on top.
pub struct StagedState {
    store: Arc<StateStore>,
    namespace: String,
    writes: BTreeMap<String, Option<Vec<u8>>>,
}

impl StagedState {
    /// Stages over the state of `namespace` (tenant and binding) in `store`.
    pub fn new(store: Arc<StateStore>, namespace: String) -> Self {
        StagedState {
            store,
            namespace,
            writes: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::store::StateError> {
        match self.writes.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.store.get(&self.namespace, key),
        }
    }

    pub(crate) fn set(&mut self, key: String, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: String) {
        self.writes.insert(key, None);
    }

    /// Queues the staged changes for the store's next group commit now, in call order; the
    /// future resolves with their count once they are durable.
    pub fn commit_async(
        self,
    ) -> impl std::future::Future<Output = Result<usize, crate::store::StateError>> + Send + 'static
    {
        let count = self.writes.len();
        let done = (count > 0).then(|| self.store.apply_async(&self.namespace, self.writes));
        async move {
            if let Some(done) = done {
                done.await?;
            }
            Ok(count)
        }
    }
}

/// Caps what an instance may hold: the sum over all its linear memories and tables (a component
/// may have several of each), not each one alone.
pub(crate) struct MemoryCap {
    limit: usize,
    /// Bytes granted so far: memories' sizes plus tables' elements at [`TABLE_ELEMENT_BYTES`].
    used: usize,
    pub(crate) exceeded: bool,
}

/// What one table element is charged: a function reference's size in the host.
const TABLE_ELEMENT_BYTES: usize = 16;

impl MemoryCap {
    fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            used: 0,
            exceeded: false,
        }
    }

    /// Grants `more` bytes if the sum stays within the limit.
    fn grow(&mut self, more: usize, what: &str) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(more);
        if total > self.limit {
            self.exceeded = true;
            return Err(format_err!(
                "memory limit of {} bytes exceeded ({what} would bring the sandbox to {total})",
                self.limit
            ));
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current), "a memory's growth")
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.grow(
            elements.saturating_mul(TABLE_ELEMENT_BYTES),
            "a table's growth",
        )
    }
}

/// `text`, cut to at most `max` bytes on a character boundary, saying how long it was.
pub(crate) fn clip(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… ({total} bytes)"));
    text
}

/// Store data of one invocation, fresh each time: an empty WASI, the policy's grants, its staged
/// intents and state writes, and the counters its limits are checked against.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) memory: MemoryCap,
    pub(crate) limits: Limits,
    pub(crate) host_calls: u32,
    pub(crate) bytes: u64,
    /// Set when a host limit ended the invocation.
    pub(crate) limit_exceeded: Option<String>,
    pub(crate) tenant: Arc<str>,
    pub(crate) binding: Arc<str>,
    pub(crate) now: TimestampMs,
    pub(crate) access: Option<Access>,
    pub(crate) state: StagedState,
    /// At most one per target and per VM: see [`record_intent`](Self::record_intent).
    pub(crate) intents: Vec<Intent>,
    /// Where each target's or VM's intent is in `intents`.
    intent_index: HashMap<IntentKey, usize>,
    pub(crate) logs: Vec<GuestLine>,
    /// Guest bytes put into the host's own log so far, and held back past
    /// [`MAX_FORWARDED_LOG_BYTES`].
    forwarded: usize,
    held_back: usize,
    /// The distinct VMs this invocation named in `set-power` (each costs a backend lookup).
    power_targets: HashSet<(String, String)>,
}

/// What an intent is about: one scale intent per target, one power intent per VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IntentKey {
    Scale(WorkloadRef),
    Power { pool: String, vm_id: String },
}

/// The most WASI resources (streams, pollables) one invocation may hold at once.
const MAX_WASI_RESOURCES: usize = 1024;

/// The most guest bytes (log lines, stdout, stderr) one invocation puts into the host's own log:
/// a flood within the tick's byte limit must not flood (or block on) the operator's log. The
/// invocation's own result keeps every line.
const MAX_FORWARDED_LOG_BYTES: usize = 64 << 10;

/// The most random bytes one WASI `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// The most distinct VMs one tick may name in `set-power`.
pub const MAX_POWER_TARGETS: usize = 1024;

impl Sandbox {
    /// A sandbox for one invocation at host time `now`.
    pub fn new(
        tenant: Arc<str>,
        binding: Arc<str>,
        now: TimestampMs,
        limits: Limits,
        access: Option<Access>,
        state: StagedState,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        // No preopens, no sockets, no environment, no arguments: WASI is linked only so that
        // components built by language runtimes load. Its clocks read the tick's instant and its
        // randomness is seeded from the binding and the instant: no ambient time, and a replay
        // (a backtest) sees exactly the same values.
        let seed = fnv1a(&[tenant.as_bytes(), binding.as_bytes(), &now.to_le_bytes()]);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(TickClock(now))
            .monotonic_clock(TickClock(now))
            .secure_random(SmallRng::seed_from_u64(seed))
            .insecure_random(SmallRng::seed_from_u64(seed.rotate_left(17)))
            .insecure_random_seed(u128::from(seed))
            // Per call: seeding a hash map takes 16 bytes; the host builds the answer before
            // the guest sees it, so a large one is host memory the tick's limits do not see.
            .max_random_size(MAX_RANDOM_BYTES.min(limits.max_bytes))
            .build();
        // WASI resources (streams, pollables) live in host memory outside the memory cap: a
        // policy needs a handful.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_WASI_RESOURCES);
        Sandbox {
            wasi,
            table,
            stdout,
            stderr,
            memory: MemoryCap::new(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX)),
            limits,
            host_calls: 0,
            bytes: 0,
            limit_exceeded: None,
            tenant,
            binding,
            now,
            access,
            state,
            intents: Vec::new(),
            intent_index: HashMap::new(),
            logs: Vec::new(),
            forwarded: 0,
            held_back: 0,
            power_targets: HashSet::new(),
        }
    }

    /// Records an intent in place of this tick's earlier one for the same target (scale: its
    /// `requested` is already composed with the earlier ones) or VM (power: the last state
    /// asked wins). However often a policy calls, an invocation holds one intent per target
    /// and per VM, and so does its audit record.
    pub(crate) fn record_intent(&mut self, intent: Intent) {
        let key = match &intent {
            Intent::Scale { target, .. } => IntentKey::Scale(target.clone()),
            Intent::Power { pool, vm_id, .. } => IntentKey::Power {
                pool: pool.clone(),
                vm_id: vm_id.clone(),
            },
        };
        match self.intent_index.get(&key) {
            Some(&at) => self.intents[at] = intent,
            None => {
                self.intent_index.insert(key, self.intents.len());
                self.intents.push(intent);
            }
        }
    }

    /// Forgets the intents recorded so far (a warm instance called again).
    pub(crate) fn clear_intents(&mut self) {
        self.intents.clear();
        self.intent_index.clear();
    }

    /// The replicas this tick's intents so far ask of `target`, if any.
    pub(crate) fn requested_of(&self, target: &WorkloadRef) -> Option<u32> {
        let at = *self.intent_index.get(&IntentKey::Scale(target.clone()))?;
        match &self.intents[at] {
            Intent::Scale { requested, .. } => Some(*requested),
            Intent::Power { .. } => None,
        }
    }

    /// Puts a guest line into the host's log at its level, tagged with tenant and binding, up to
    /// [`MAX_FORWARDED_LOG_BYTES`] per invocation; past it, counts what it held back.
    pub(crate) fn forward_to_host_log(&mut self, stream: GuestStream, message: &str) {
        use GuestStream as S;
        if self.forwarded + message.len() > MAX_FORWARDED_LOG_BYTES {
            self.held_back += message.len();
            return;
        }
        self.forwarded += message.len();
        let (tenant, binding) = (&*self.tenant, &*self.binding);
        match stream {
            S::Debug => tracing::debug!(target: "scalehost::guest", tenant, binding, "{message}"),
            S::Info => tracing::info!(target: "scalehost::guest", tenant, binding, "{message}"),
            S::Warn => tracing::warn!(target: "scalehost::guest", tenant, binding, "{message}"),
            S::Error => tracing::error!(target: "scalehost::guest", tenant, binding, "{message}"),
            S::Stdout | S::Stderr => {
                tracing::info!(target: "scalehost::guest", tenant, binding, ?stream, "{message}")
            }
        }
    }

    /// Says, once, how much guest output the host's log did not get.
    pub(crate) fn report_held_back(&mut self) {
        if self.held_back > 0 {
            tracing::warn!(target: "scalehost::guest", tenant = %self.tenant, binding = %self.binding, held_back = self.held_back, "guest output past {MAX_FORWARDED_LOG_BYTES} bytes not forwarded to the host log");
            self.held_back = 0;
        }
    }

    /// Counts a VM named in `set-power`; traps past [`MAX_POWER_TARGETS`] distinct ones.
    pub(crate) fn name_power_target(&mut self, pool: &str, vm_id: &str) -> wasmtime::Result<()> {
        let key = (pool.to_owned(), vm_id.to_owned());
        if self.power_targets.contains(&key) {
            return Ok(());
        }
        if self.power_targets.len() >= MAX_POWER_TARGETS {
            let why =
                format!("a tick may name at most {MAX_POWER_TARGETS} distinct VMs in set-power");
            self.limit_exceeded = Some(why.clone());
            return Err(format_err!(why));
        }
        self.power_targets.insert(key);
        Ok(())
    }

    /// Whether the guest filled a captured output stream (its next write failed).
    pub(crate) fn output_full(&self) -> bool {
        self.stdout.contents().len() >= OUTPUT_CAPACITY
            || self.stderr.contents().len() >= OUTPUT_CAPACITY
    }

    /// Counts one host call moving `bytes` across the boundary; traps past the limits.
    pub(crate) fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.limits.max_host_calls {
            let why = format!(
                "host-call limit of {} per invocation exceeded",
                self.limits.max_host_calls
            );
            self.limit_exceeded = Some(why.clone());
            return Err(format_err!(why));
        }
        self.charge_bytes(bytes)
    }

    /// Whether `bytes` more would still be within the byte limit; traps (as the charge would)
    /// if not. Nothing is counted: the host call that follows charges them.
    pub(crate) fn check_room(&mut self, bytes: usize) -> wasmtime::Result<()> {
        if self.bytes.saturating_add(bytes as u64) > self.limits.max_bytes {
            let why = format!(
                "limit of {} bytes passed per invocation exceeded",
                self.limits.max_bytes
            );
            self.limit_exceeded = Some(why.clone());
            return Err(format_err!(why));
        }
        Ok(())
    }

    /// Counts `bytes` crossing the boundary outside a host call's arguments (an answer, the
    /// guest's output, its error message); traps past the limit.
    pub(crate) fn charge_bytes(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.bytes = self.bytes.saturating_add(bytes as u64);
        if self.bytes > self.limits.max_bytes {
            let why = format!(
                "limit of {} bytes passed per invocation exceeded",
                self.limits.max_bytes
            );
            self.limit_exceeded = Some(why.clone());
            return Err(format_err!(why));
        }
        Ok(())
    }
}

/// WASI's wall and monotonic clocks inside a sandbox: the tick's instant, standing still.
struct TickClock(TimestampMs);

impl HostWallClock for TickClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl HostMonotonicClock for TickClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.0.saturating_mul(1_000_000)
    }
}

/// FNV-1a over byte strings: a stable seed (std's hasher is randomized per process).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
