//! The tick engine end to end: rails, fallback, scope, state across restarts, scheduling.

mod common;

use std::time::{Duration, Instant};

use common::*;
use scalehost::Host;
use scalehost::backends::{VmInventory as _, WorkloadReader as _};
use scalehost::config::HostConfig;
use scalehost::domain::cluster::PowerState;
use scalehost::runtime::{GuestStream, InvocationError};
use scalehost::store::StateStore;
use scalehost::tick::{Action, BindError, FallbackAction, FallbackSpec, Outcome};
use serde_json::json;

#[tokio::test]
async fn guard_rails_clamp_out_of_bounds_intents_and_the_audit_says_so() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut rails = target(&api(), 2, 10);
    rails.max_step_up = Some(3);
    let spec = fixture_binding(
        "scale",
        "scale",
        json!({ "target": workload_json(&api()), "replicas": 50 }),
        vec![rails],
    );
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let record = engine.tick(&binding).await;
    assert_eq!(record.outcome, Outcome::Ok);
    let Action::Scale {
        current,
        requested,
        applied,
        adjustments,
        error,
        ..
    } = &record.actions[0]
    else {
        panic!("a scale action: {:?}", record.actions)
    };
    assert_eq!(
        (*current, *requested, *applied, error.as_deref()),
        (4, 50, 7, None)
    );
    let said: Vec<_> = adjustments
        .iter()
        .map(|a| (a.rail.as_str(), a.from, a.to))
        .collect();
    assert_eq!(said, [("max-replicas", 50, 10), ("max-step-up", 10, 7)]);
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 7);
    let json = serde_json::to_value(&record).expect("serializes");
    assert_eq!(json["actions"][0]["adjustments"][0]["rail"], "max-replicas");
}

#[tokio::test]
async fn a_binding_that_fails_n_times_applies_its_fallback() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("flaky", "error", json!({}), vec![target(&api(), 1, 10)]);
    spec.fallback = FallbackSpec {
        after_failures: 3,
        action: FallbackAction::Fixed(6),
    };
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    for attempt in 1..=2 {
        let record = engine.tick(&binding).await;
        assert_eq!(record.consecutive_failures, attempt);
        assert!(record.fallback.is_none() && record.actions.is_empty());
        assert!(!binding.health().failing);
    }
    let record = engine.tick(&binding).await;
    assert_eq!(record.fallback.as_deref(), Some("fixed 6"));
    assert!(
        matches!(&record.actions[0], Action::Scale { applied: 6, .. }),
        "{:?}",
        record.actions
    );
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 6);
    assert!(
        binding.health().failing,
        "the binding reports itself failing"
    );

    // A successful tick (the same binding, now with a working config) clears it.
    let mut healed = fixture_binding("flaky", "ok", json!({}), vec![target(&api(), 1, 10)]);
    healed.fallback = binding.spec.fallback;
    let healed = engine.bind(healed, fixture()).await.expect("rebinds");
    assert_eq!(engine.tick(&healed).await.outcome, Outcome::Ok);
    assert!(!healed.health().failing);
    assert_eq!(
        healed.health().failed_ticks,
        3,
        "health carries over a rebind"
    );
}

#[tokio::test]
async fn hold_fallback_leaves_targets_alone() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("holding", "trap", json!({}), vec![target(&api(), 1, 10)]);
    spec.fallback = FallbackSpec {
        after_failures: 1,
        action: FallbackAction::Hold,
    };
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let record = engine.tick(&binding).await;
    assert_eq!(record.fallback.as_deref(), Some("hold"));
    assert!(record.actions.is_empty());
    assert!(binding.health().failing);
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 4);
}

#[tokio::test]
async fn bindings_are_checked_when_bound() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let err = engine
        .bind(fixture_binding("r", "reject", json!({}), vec![]), fixture())
        .await
        .unwrap_err();
    assert!(matches!(err, BindError::Config { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("this fixture rejects every config"),
        "the policy's own message: {err}"
    );
    let err = engine
        .bind(
            fixture_binding("u", "no-such-mode", json!({}), vec![]),
            fixture(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown mode 'no-such-mode'"),
        "{err}"
    );

    engine
        .bind(
            fixture_binding("first", "ok", json!({}), vec![target(&api(), 1, 10)]),
            fixture(),
        )
        .await
        .expect("binds");
    let err = engine
        .bind(
            fixture_binding("second", "ok", json!({}), vec![target(&api(), 1, 10)]),
            fixture(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, BindError::TargetTaken { .. }),
        "one writer per target: {err}"
    );

    let foreign = scalehost::domain::cluster::WorkloadRef::deployment("kube-system", "coredns");
    let err = engine
        .bind(
            fixture_binding("x", "ok", json!({}), vec![target(&foreign, 1, 2)]),
            fixture(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BindError::OutOfScope { .. }), "{err}");

    let mut unknown = fixture_binding("y", "ok", json!({}), vec![]);
    unknown.tenant = "nobody".into();
    assert!(matches!(
        engine.bind(unknown, fixture()).await,
        Err(BindError::UnknownTenant { .. })
    ));
}

#[tokio::test]
async fn scope_is_enforced_at_every_call() {
    let sim = sim();
    let engine = tick_engine(&sim);
    // The miner is readable by the tenant but is not a target of this binding.
    let spec = fixture_binding(
        "sneaky",
        "scale",
        json!({ "target": workload_json(&miner()), "replicas": 3 }),
        vec![target(&api(), 1, 10)],
    );
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let record = engine.tick(&binding).await;
    let Outcome::Failed {
        error: InvocationError::Policy(message),
    } = &record.outcome
    else {
        panic!("{:?}", record.outcome)
    };
    assert!(
        message.contains("forbidden") && message.contains("not a target of this binding"),
        "{message}"
    );
    assert_eq!(sim.workload(&miner()).await.expect("status").replicas, 0);
}

#[tokio::test]
async fn powering_off_a_pool_vm_cordons_drains_then_powers_off() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding(
        "power",
        "set-power",
        json!({ "pool": "pool", "vm": "vm-1", "state": "off" }),
        vec![],
    );
    spec.vm_pools = vec!["pool".into()];
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let record = engine.tick(&binding).await;
    assert_eq!(record.outcome, Outcome::Ok);
    assert!(matches!(
        &record.actions[0],
        Action::Power {
            state: PowerState::Off,
            error: None,
            ..
        }
    ));
    // The power-off runs off the tick path, as an operation of its own.
    engine.operations().idle().await;
    let steps: Vec<_> = sim.lifecycle().into_iter().map(|e| e.step).collect();
    assert_eq!(steps, ["cordon", "drain", "power-off"]);
    assert_eq!(
        sim.vms("pool").await.expect("vms")[0].power,
        PowerState::Off
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_host_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
data_dir = "{data}"
[cluster.simulated]
nodes = [{{ name = "n", cpu_millis = 8000 }}]
[[tenants]]
name = "t"
[[bindings]]
tenant = "t"
name = "counter"
plugin = "{plugin}"
config = {{ mode = "counter" }}
"#,
        data = dir.path().join("data").display(),
        plugin = scalehost_test_artifacts::POLICY_FIXTURE
    );
    let run_host = |ticks: usize| {
        let config = HostConfig::from_toml(
            &config,
            std::path::Path::new("test.toml"),
            dir.path().to_owned(),
        )
        .expect("config");
        async move {
            let host = Host::from_config(config).await.expect("host starts");
            let engine = host.engine().clone();
            let binding = engine.binding("t", "counter").expect("bound");
            tokio::spawn(async move {
                for _ in 0..ticks {
                    let record = engine.tick(&binding).await;
                    assert_eq!(record.outcome, Outcome::Ok);
                    assert_eq!(record.state_writes, 1);
                }
            })
            .await
            .expect("ticks");
            // Dropping the host closes its store, as a stopped process would.
        }
    };
    run_host(3).await;
    run_host(2).await;
    let store = StateStore::open(&dir.path().join("data/state.redb")).expect("opens");
    assert_eq!(
        store.get("t/counter", "ticks").expect("reads").as_deref(),
        Some(&b"5"[..]),
        "the second host continued from 3"
    );
}

#[tokio::test]
async fn cooldown_and_stabilization_hold_through_the_engine_and_the_audit_says_so() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut rails = target(&api(), 1, 20);
    rails.cooldown_up = Duration::from_secs(60);
    rails.stabilization_down = Duration::from_secs(300);
    let scale_to = async |replicas: u32| {
        let spec = fixture_binding(
            "rails",
            "scale",
            json!({ "target": workload_json(&api()), "replicas": replicas }),
            vec![rails.clone()],
        );
        engine.bind(spec, fixture()).await.expect("binds")
    };
    let record = engine.tick(&*scale_to(8).await).await;
    assert!(matches!(
        &record.actions[0],
        Action::Scale { applied: 8, .. }
    ));
    sim.advance_to(sim.now() + 10_000);
    let record = engine.tick(&*scale_to(12).await).await;
    let Action::Scale {
        applied,
        adjustments,
        ..
    } = &record.actions[0]
    else {
        panic!("{:?}", record.actions)
    };
    assert_eq!(*applied, 8, "held by the up cooldown");
    assert_eq!(adjustments[0].rail.as_str(), "cooldown-up");
    // The recommendations at 0 s and 10 s hold a scale-down at 260 s.
    let silent = engine
        .bind(
            fixture_binding("rails", "ok", json!({}), vec![rails.clone()]),
            fixture(),
        )
        .await
        .expect("binds");
    sim.advance_to(sim.now() + 240_000);
    engine.tick(&silent).await;
    sim.advance_to(sim.now() + 10_000);
    let record = engine.tick(&*scale_to(3).await).await;
    let Action::Scale {
        applied,
        adjustments,
        ..
    } = &record.actions[0]
    else {
        panic!("{:?}", record.actions)
    };
    assert_eq!(*applied, 8, "held by the recommendations inside the window");
    assert_eq!(adjustments[0].rail.as_str(), "stabilization-down");
    // At 320 s they have left the 300 s window; the silent tick at 250 s recommended nothing
    // (a policy that leaves a target alone has no opinion), so the scale-down goes through.
    sim.advance_to(sim.now() + 60_000);
    let record = engine.tick(&*scale_to(3).await).await;
    assert!(
        matches!(&record.actions[0], Action::Scale { applied: 3, .. }),
        "{:?}",
        record.actions
    );
}

/// On the host's own runtime (as `scalehost serve` runs), a binding beside four misbehaving
/// ones (a guest that spins to its deadline, one that eats memory, one that traps, one that
/// floods host calls) misses no tick: no gap between its ticks reaches two intervals, and its
/// ticks span the whole run.
#[test]
fn misbehaving_bindings_do_not_delay_the_others() {
    scalehost::runtime()
        .expect("runtime")
        .block_on(misbehaving_bindings_do_not_delay_the_others_on_the_host_runtime());
}

async fn misbehaving_bindings_do_not_delay_the_others_on_the_host_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
data_dir = "{data}"
[cluster.simulated]
nodes = [{{ name = "n", cpu_millis = 8000 }}]
workloads = [{{ namespace = "web", name = "api", replicas = 2, cpu_request_millis = 100 }}]
[[tenants]]
name = "t"
namespaces = ["web"]
{bindings}
"#,
        data = dir.path().display(),
        bindings = ["counter", "endless-loop", "memory-hog", "trap", "host-call-flood"]
            .iter()
            .map(|mode| format!(
                "[[bindings]]\ntenant = \"t\"\nname = \"{mode}\"\nplugin = \"{plugin}\"\ninterval = \"100ms\"\nconfig = {{ mode = \"{mode}\" }}\nlimits = {{ deadline = \"200ms\" }}\n",
                plugin = scalehost_test_artifacts::POLICY_FIXTURE
            ))
            .collect::<String>()
    );
    let config = HostConfig::from_toml(
        &config,
        std::path::Path::new("test.toml"),
        dir.path().to_owned(),
    )
    .expect("config");
    let host = Host::from_config(config).await.expect("host starts");
    let engine = host.engine().clone();
    let mut records = engine.audit().subscribe();
    let run = tokio::spawn(host.run_until(tokio::time::sleep(Duration::from_secs(3))));
    let mut healthy_at = Vec::new();
    let mut failures = std::collections::BTreeMap::<String, u32>::new();
    loop {
        let record = match tokio::time::timeout(Duration::from_millis(100), records.recv()).await {
            Ok(Ok(record)) => record,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
            Err(_) if run.is_finished() => break,
            Err(_) => continue,
        };
        if record.binding == "counter" {
            assert_eq!(record.outcome, Outcome::Ok);
            healthy_at.push(record.at);
        } else {
            assert!(
                matches!(record.outcome, Outcome::Failed { .. }),
                "{}: {:?}",
                record.binding,
                record.outcome
            );
            *failures.entry(record.binding.clone()).or_default() += 1;
        }
    }
    run.await.expect("joins").expect("runs and stops cleanly");
    // Times are the host's clock when each tick started (the simulated cluster follows real
    // time), so they include any lateness.
    let gaps: Vec<u64> = healthy_at.windows(2).map(|w| w[1] - w[0]).collect();
    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        worst < 190,
        "a gap of {worst} ms between healthy ticks at 100 ms (a missed tick is 200): {gaps:?}"
    );
    let span = healthy_at.last().copied().unwrap_or(0) - healthy_at.first().copied().unwrap_or(0);
    assert!(
        span >= 2600,
        "the healthy binding's {} ticks span {span} ms of the 3 s run",
        healthy_at.len()
    );
    for mode in ["endless-loop", "memory-hog", "trap", "host-call-flood"] {
        assert!(
            failures.get(mode).copied().unwrap_or(0) >= 3,
            "{mode} kept ticking and failing: {failures:?}"
        );
    }
}

#[tokio::test]
async fn guest_logs_are_captured() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let binding = engine
        .bind(
            fixture_binding("counter", "counter", json!({}), vec![]),
            fixture(),
        )
        .await
        .expect("binds");
    engine.tick(&binding).await;
    let invocation_logs = fixture()
        .tick(
            &json!({ "mode": "counter" }).to_string(),
            Default::default(),
            "t".into(),
            "counter".into(),
            0,
            tenant_access(&sim),
            scalehost::runtime::StagedState::new(engine.state().clone(), "t/counter".into()),
        )
        .await;
    assert!(
        invocation_logs
            .logs
            .iter()
            .any(|l| l.stream == GuestStream::Info && l.message.contains('2')),
        "{:?}",
        invocation_logs.logs
    );
}

/// The simulated cluster, but every power operation first waits for a permit of `gate`: a
/// drain that takes as long as the test wants. Settling what an operation left is logged in
/// `settled`, and fails while `settle_failures` is above 0.
struct SlowPower {
    sim: std::sync::Arc<scalehost::backends::simulated::SimulatedCluster>,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
    settled: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    settle_failures: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Every power change fails (a VM whose host refuses them).
    power_fails: bool,
}

impl SlowPower {
    fn new(
        sim: std::sync::Arc<scalehost::backends::simulated::SimulatedCluster>,
        gate: std::sync::Arc<tokio::sync::Semaphore>,
    ) -> Self {
        SlowPower {
            sim,
            gate,
            settled: Default::default(),
            settle_failures: Default::default(),
            power_fails: false,
        }
    }
}

#[async_trait::async_trait]
impl scalehost::backends::MetricSource for SlowPower {
    async fn query(
        &self,
        promql: &str,
        at: u64,
    ) -> Result<Vec<scalehost::domain::cluster::Series>, scalehost::domain::cluster::BackendError>
    {
        scalehost::backends::MetricSource::query(&*self.sim, promql, at).await
    }
    async fn query_range(
        &self,
        promql: &str,
        start: u64,
        end: u64,
        step_ms: u64,
    ) -> Result<Vec<scalehost::domain::cluster::Series>, scalehost::domain::cluster::BackendError>
    {
        scalehost::backends::MetricSource::query_range(&*self.sim, promql, start, end, step_ms)
            .await
    }
    async fn events(
        &self,
        service: &str,
        window_ms: u64,
        now: u64,
    ) -> Result<Vec<scalehost::domain::cluster::Series>, scalehost::domain::cluster::BackendError>
    {
        scalehost::backends::MetricSource::events(&*self.sim, service, window_ms, now).await
    }
}

#[async_trait::async_trait]
impl scalehost::backends::WorkloadReader for SlowPower {
    async fn workload(
        &self,
        target: &scalehost::domain::cluster::WorkloadRef,
    ) -> Result<scalehost::domain::cluster::WorkloadStatus, scalehost::domain::cluster::BackendError>
    {
        self.sim.workload(target).await
    }
    async fn capacity(
        &self,
        exclude: &[scalehost::domain::cluster::WorkloadRef],
    ) -> Result<scalehost::domain::cluster::Capacity, scalehost::domain::cluster::BackendError>
    {
        self.sim.capacity(exclude).await
    }
}

#[async_trait::async_trait]
impl scalehost::backends::VmInventory for SlowPower {
    async fn vms(
        &self,
        pool: &str,
    ) -> Result<Vec<scalehost::domain::cluster::Vm>, scalehost::domain::cluster::BackendError> {
        self.sim.vms(pool).await
    }
}

#[async_trait::async_trait]
impl scalehost::backends::Actuator for SlowPower {
    async fn scale(
        &self,
        target: &scalehost::domain::cluster::WorkloadRef,
        replicas: u32,
    ) -> Result<(), scalehost::domain::cluster::BackendError> {
        scalehost::backends::Actuator::scale(&*self.sim, target, replicas).await
    }
    async fn set_power(
        &self,
        pool: &str,
        vm_id: &str,
        state: PowerState,
    ) -> Result<(), scalehost::domain::cluster::BackendError> {
        self.gate.acquire().await.expect("open").forget();
        if self.power_fails {
            return Err(scalehost::domain::cluster::BackendError::Invalid(
                "the VM's host refuses every power change".into(),
            ));
        }
        scalehost::backends::Actuator::set_power(&*self.sim, pool, vm_id, state).await
    }
    async fn abandon_power(
        &self,
        pool: &str,
        vm_id: &str,
        _state: PowerState,
    ) -> Result<(), scalehost::domain::cluster::BackendError> {
        self.settled
            .lock()
            .expect("log")
            .push(format!("{pool}/{vm_id}"));
        let failing = self
            .settle_failures
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if failing {
            return Err(scalehost::domain::cluster::BackendError::Unavailable(
                "vCenter is down".into(),
            ));
        }
        Ok(())
    }
}

fn power_binding(name: &str, state: &str) -> scalehost::tick::BindingSpec {
    let mut spec = fixture_binding(
        name,
        "set-power",
        json!({ "pool": "pool", "vm": "vm-1", "state": state }),
        vec![],
    );
    spec.vm_pools = vec!["pool".into()];
    spec
}

fn power_of(record: &scalehost::tick::AuditRecord) -> (Option<u64>, Option<String>) {
    match &record.actions[..] {
        [
            Action::Power {
                operation, error, ..
            },
        ] => (*operation, error.clone()),
        other => panic!("one power action expected: {other:?}"),
    }
}

/// A power-off whose drain does not end (a disruption budget, a slow guest) never holds up the
/// binding's ticks: the next intent joins the operation, the opposite one waits, a restart
/// resumes it, and it can be cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_operations_run_off_the_tick_path_and_survive_a_restart() {
    let sim = sim();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let state = std::sync::Arc::new(StateStore::in_memory().expect("state"));
    let settled = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let settle_failures = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let engine_on = |gate: std::sync::Arc<tokio::sync::Semaphore>| {
        let engine = scalehost::tick::TickEngine::new(
            std::sync::Arc::new(SlowPower {
                sim: sim.clone(),
                gate,
                settled: settled.clone(),
                settle_failures: settle_failures.clone(),
                power_fails: false,
            }),
            sim.clone(),
            state.clone(),
            std::sync::Arc::new(scalehost::tick::AuditLog::in_memory(100)),
            &scalehost::runtime::EngineConfig::default(),
        );
        engine.add_tenant(tenant());
        engine
    };
    let engine = engine_on(gate.clone());
    let off = engine
        .bind(power_binding("power", "off"), fixture())
        .await
        .expect("binds");
    let started = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(5), engine.tick(&off))
        .await
        .expect("the tick waited for its operation");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the tick waited for its operation"
    );
    assert_eq!(first.outcome, Outcome::Ok);
    let (id, error) = power_of(&first);
    let id = id.expect("an operation started");
    assert_eq!(error, None);
    // The same intent again joins the operation in flight.
    let again = engine.tick(&off).await;
    assert_eq!(power_of(&again), (Some(id), None));
    let running = engine.operations().of_binding("t", "power");
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].id, running[0].state), (id, PowerState::Off));
    // The opposite intent waits for it: nothing is started.
    let on = engine
        .bind(power_binding("power", "on"), fixture())
        .await
        .expect("a new revision");
    let waiting = engine.tick(&on).await;
    let (operation, error) = power_of(&waiting);
    assert_eq!(operation, None);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with(&format!("waiting: operation {id} "))),
        "{error:?}"
    );
    assert_eq!(sim.vms("pool").await.expect("vms")[0].power, PowerState::On);

    // The host stops mid-operation; a new one over the same state store, with the binding
    // installed again (as the host does from its records), resumes it.
    drop(engine);
    let restarted = engine_on(std::sync::Arc::new(tokio::sync::Semaphore::new(1)));
    restarted
        .bind(power_binding("power", "off"), fixture())
        .await
        .expect("binds");
    assert_eq!(restarted.resume_operations().expect("resumes"), 1);
    restarted.operations().idle().await;
    assert_eq!(
        sim.vms("pool").await.expect("vms")[0].power,
        PowerState::Off
    );
    assert!(restarted.operations().of_binding("t", "power").is_empty());
    assert_eq!(restarted.resume_operations().expect("nothing left"), 0);

    // An operation can be cancelled; then nothing of it is left to resume.
    let stuck = engine_on(std::sync::Arc::new(tokio::sync::Semaphore::new(0)));
    let on = stuck
        .bind(power_binding("power", "on"), fixture())
        .await
        .expect("binds");
    let (id, _) = power_of(&stuck.tick(&on).await);
    let id = id.expect("started");
    assert!(
        !stuck.operations().cancel("other", "power", id),
        "only its own binding's"
    );
    assert!(stuck.operations().cancel("t", "power", id));
    stuck.operations().idle().await;
    assert!(stuck.operations().of_binding("t", "power").is_empty());
    let ended = stuck.operations().finished_of_binding("t", "power");
    assert_eq!((ended[0].operation.id, ended[0].outcome), (id, "cancelled"));
    assert_eq!(stuck.resume_operations().expect("resumes"), 0);

    // One left over from a binding that is gone is not resumed: what it left is settled (a
    // VM that runs gets its node back) and it is recorded as failed.
    let (id, _) = power_of(&stuck.tick(&on).await);
    let id = id.expect("started");
    settled.lock().expect("log").clear();
    let orphaned = engine_on(std::sync::Arc::new(tokio::sync::Semaphore::new(1)));
    assert_eq!(orphaned.resume_operations().expect("resumes"), 0);
    orphaned.operations().idle().await;
    assert_eq!(*settled.lock().expect("log"), vec!["pool/vm-1".to_string()]);
    let ended = orphaned.operations().finished_of_binding("t", "power");
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].operation.id, ended[0].outcome), (id, "failed"));
    assert!(
        ended[0].error.as_deref().is_some_and(
            |e| e.contains("its binding is gone") && e.contains("what it left was settled")
        ),
        "{:?}",
        ended[0].error
    );
    assert_eq!(orphaned.resume_operations().expect("nothing left"), 0);
    // Removing a binding cancels its operations.
    stuck.unbind("t", "power");
    stuck.operations().idle().await;
    let ended = stuck.operations().finished_of_binding("t", "power");
    assert_eq!(
        (
            ended[ended.len() - 1].operation.id,
            ended[ended.len() - 1].outcome
        ),
        (id, "cancelled")
    );

    // A cancel is persisted before it is answered: a host restarted before the settling ended
    // settles the operation again and never runs its power-off.
    let never = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let cancelling = engine_on(never.clone());
    let off = cancelling
        .bind(power_binding("power", "off"), fixture())
        .await
        .expect("binds");
    let (id, _) = power_of(&cancelling.tick(&off).await);
    let id = id.expect("started");
    // Settling fails every time here: the record is kept for the next start.
    settle_failures.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    settled.lock().expect("log").clear();
    assert!(cancelling.operations().cancel("t", "power", id));
    cancelling.operations().idle().await;
    let ended = cancelling.operations().finished_of_binding("t", "power");
    let last = &ended[ended.len() - 1];
    assert_eq!((last.operation.id, last.outcome), (id, "cancelled"));
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("kept to settle at the next start")),
        "{:?}",
        last.error
    );
    assert_eq!(settled.lock().expect("log").len(), 3, "three attempts");
    drop(cancelling);
    settle_failures.store(0, std::sync::atomic::Ordering::SeqCst);
    settled.lock().expect("log").clear();
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let restarted = engine_on(open.clone());
    restarted
        .bind(power_binding("power", "off"), fixture())
        .await
        .expect("binds");
    assert_eq!(
        restarted.resume_operations().expect("resumes"),
        0,
        "a cancelled operation is never resumed"
    );
    restarted.operations().idle().await;
    assert_eq!(*settled.lock().expect("log"), vec!["pool/vm-1".to_string()]);
    assert_eq!(
        open.available_permits(),
        1,
        "the cancelled power-off never ran again"
    );
    let ended = restarted.operations().finished_of_binding("t", "power");
    assert_eq!((ended[0].operation.id, ended[0].outcome), (id, "cancelled"));
    assert_eq!(restarted.resume_operations().expect("nothing left"), 0);
    drop(gate);
}

/// A tick whose policy succeeded but whose actuation a backend refused counts toward the
/// fallback; a rail clamp (a peak held at max_replicas) never does.
#[tokio::test]
async fn failed_actuation_counts_toward_the_fallback_and_a_clamp_does_not() {
    let sim = sim();
    let engine = tick_engine(&sim);
    // Held at max_replicas 10, every tick: no failure, however long.
    let clamped = engine
        .bind(
            fixture_binding(
                "peak",
                "scale",
                json!({ "target": workload_json(&api()), "replicas": 50 }),
                vec![target(&api(), 1, 10)],
            ),
            fixture(),
        )
        .await
        .expect("binds");
    for _ in 0..3 {
        let record = engine.tick(&clamped).await;
        assert_eq!(record.consecutive_failures, 0, "{:?}", record.actions);
        assert!(record.fallback.is_none());
    }
    assert_eq!(clamped.health().failed_actuations, 0);
    // A target the backend does not know: the tick succeeds, its scale fails.
    let ghost = scalehost::domain::cluster::WorkloadRef::deployment("web", "ghost");
    let mut spec = fixture_binding(
        "ghost",
        "scale",
        json!({ "target": workload_json(&ghost), "replicas": 3 }),
        vec![target(&ghost, 1, 10)],
    );
    spec.fallback = FallbackSpec {
        after_failures: 2,
        action: FallbackAction::Hold,
    };
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let first = engine.tick(&binding).await;
    assert_eq!(first.outcome, Outcome::Ok);
    assert_eq!(first.consecutive_failures, 1);
    assert!(first.fallback.is_none());
    let second = engine.tick(&binding).await;
    assert_eq!(second.consecutive_failures, 2);
    assert_eq!(second.fallback.as_deref(), Some("hold"));
    let health = binding.health();
    assert_eq!((health.failed_actuations, health.failed_ticks), (2, 0));
    assert!(health.failing);
    assert!(
        health
            .last_error
            .is_some_and(|e| e.starts_with("actuation failed: deployment/web/ghost")),
        "{:?}",
        binding.health().last_error
    );
}

/// WIT 0.2.0 `outcomes`: the next tick reads what became of the last applied tick's scale,
/// rails and all; a failed tick leaves it as it was.
#[tokio::test]
async fn a_policy_reads_what_became_of_its_previous_intents() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut rails = target(&api(), 2, 10);
    rails.max_step_up = Some(3);
    let spec = fixture_binding(
        "report",
        "report",
        json!({ "target": workload_json(&api()), "replicas": 50 }),
        vec![rails],
    );
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let report = |key: &str| {
        String::from_utf8(
            engine
                .state()
                .get("t/report", key)
                .expect("reads")
                .expect("written"),
        )
        .expect("utf-8")
    };
    let first = engine.tick(&binding).await;
    assert_eq!(first.outcome, Outcome::Ok);
    assert_eq!(report("previous"), "None", "nothing before the first tick");
    engine.tick(&binding).await;
    let previous = report("previous");
    assert!(
        previous.starts_with(&format!("Some(TickOutcomes {{ at: {}, scales: [ScaleOutcome {{ target: WorkloadRef {{ kind: Deployment, namespace: \"web\", name: \"api\" }}, current: 4, requested: 50, applied: 7, adjustments: [Adjustment {{ rail: MaxReplicas, from: 50, to: 10 }}, Adjustment {{ rail: MaxStepUp, from: 10, to: 7 }}], error: None }}]", first.at)),
        "{previous}"
    );
}

/// WIT 0.2.0 `nodes`: every node with its pods (other tenants' pods counted, not named), the
/// VM of a granted pool under its node, pending pods, and a pool's VMs.
#[tokio::test]
async fn the_node_view_shows_pods_vms_and_pending_pods_within_the_tenant_scope() {
    let sim = sim();
    let engine = tick_engine(&sim);
    engine.add_tenant(scalehost::domain::scope::TenantSpec {
        name: "w".into(),
        namespaces: vec!["web".into()],
        workloads: vec![],
        vm_pools: vec!["pool".into()],
        backend: None,
        // The node view is cluster-wide.
        cluster_metrics: true,
        ..Default::default()
    });
    // The filler fills the spare CPU, and then some: pods of it wait.
    scalehost::backends::Actuator::scale(&*sim, &miner(), 40)
        .await
        .expect("scales");
    let mut spec = fixture_binding("nodes", "report", json!({ "pool": "pool" }), vec![]);
    spec.tenant = "w".into();
    spec.vm_pools = vec!["pool".into()];
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    assert_eq!(engine.tick(&binding).await.outcome, Outcome::Ok);
    let read = |key: &str| {
        String::from_utf8(
            engine
                .state()
                .get("w/nodes", key)
                .expect("reads")
                .expect(key),
        )
        .expect("utf-8")
    };
    let nodes = read("nodes");
    for node in ["node-a", "node-b", "worker-1"] {
        assert!(
            nodes.contains(&format!("name: \"{node}\", ready: true, schedulable: true")),
            "{nodes}"
        );
    }
    assert!(nodes.contains("vm: Some((\"pool\", \"vm-1\"))"), "{nodes}");
    assert!(
        nodes.contains("name: (\"web\", \"api-"),
        "web's pods are named: {nodes}"
    );
    assert!(!nodes.contains("batch"), "batch's are not: {nodes}");
    // The filler's 22 placed pods, first fit: 6 beside web's 4 on node-a, 8 on each other.
    assert!(
        nodes.contains("others: PodSummary { pods: 6, expendable: 6, refusing_drain: 0, cpu_request_millis: 6000, expendable_cpu_millis: 6000, memory_request_bytes: 1610612736 }"),
        "other tenants' pods are summed: {nodes}"
    );
    assert_eq!(
        nodes
            .matches("others: PodSummary { pods: 8, expendable: 8")
            .count(),
        2,
        "{nodes}"
    );
    assert!(
        !nodes.contains("priority: -100"),
        "and not shown one by one: {nodes}"
    );
    assert!(nodes.contains("runs_host: false"), "{nodes}");
    let pending = read("pending");
    assert!(
        pending.starts_with("Ok(Pending { pods: [], others: PodSummary { pods: 18, expendable: 18, refusing_drain: 0, cpu_request_millis: 18000, expendable_cpu_millis: 18000"),
        "{pending}"
    );
    let pool = read("pool");
    assert!(
        pool.starts_with("Ok([PoolVm { vm: Vm { id: \"vm-1\", name: \"vm-1\", power: On, node_name: Some(\"worker-1\") }, maintenance: false, operation: None }])"),
        "{pool}"
    );
}

/// A component of WIT 0.1.0, built without the SDK, binds, ticks and keeps its state on the
/// host that speaks 0.2.0.
#[tokio::test]
async fn a_wit_0_1_0_component_keeps_working() {
    let old = compiled(scalehost_test_artifacts::POLICY_V0_1);
    assert_eq!(old.world(), "scalehost:policy/policy@0.1.0");
    assert_eq!(fixture().world(), "scalehost:policy/policy@0.2.0");
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("old", "ok", json!({}), vec![target(&api(), 1, 10)]);
    spec.config = json!({ "target": { "namespace": "web", "name": "api" }, "replicas": 6 });
    let binding = engine.bind(spec, old.clone()).await.expect("binds");
    for _ in 0..2 {
        assert_eq!(engine.tick(&binding).await.outcome, Outcome::Ok);
    }
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 6);
    assert_eq!(
        engine
            .state()
            .get("t/old", "ticks")
            .expect("reads")
            .as_deref(),
        Some(&b"2"[..])
    );
    let refused = engine
        .bind(
            {
                let mut spec = fixture_binding("old2", "ok", json!({}), vec![]);
                spec.config = json!({});
                spec
            },
            old,
        )
        .await;
    assert!(refused.is_err(), "its validate-config still runs");
}

/// However a policy asks, the host does not power off the VM of the node it runs on.
#[tokio::test]
async fn the_host_refuses_to_power_off_its_own_node() {
    let sim = sim();
    let engine = std::sync::Arc::new(scalehost::tick::TickEngine::new(
        sim.clone(),
        sim.clone(),
        std::sync::Arc::new(StateStore::in_memory().expect("state")),
        std::sync::Arc::new(scalehost::tick::AuditLog::in_memory(16)),
        &scalehost::runtime::EngineConfig {
            node_name: Some("worker-1".into()),
            ..Default::default()
        },
    ));
    engine.add_tenant(tenant());
    let binding = engine
        .bind(power_binding("own-node", "off"), fixture())
        .await
        .expect("binds");
    let record = engine.tick(&binding).await;
    match &record.outcome {
        Outcome::Failed { error } => assert!(
            error
                .to_string()
                .contains("vm vm-1 runs the node this host runs on"),
            "{error}"
        ),
        Outcome::Ok => panic!("powering off the host's own node was accepted"),
    }
    assert!(record.actions.is_empty());
    assert_eq!(sim.vms("pool").await.expect("vms")[0].power, PowerState::On);
}

/// A power operation that fails off the tick path is a failed actuation of its binding's:
/// counted at the binding's next tick, toward its fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_power_operation_counts_toward_the_fallback_at_the_next_tick() {
    let sim = sim();
    let engine = scalehost::tick::TickEngine::new(
        std::sync::Arc::new(SlowPower {
            power_fails: true,
            ..SlowPower::new(
                sim.clone(),
                std::sync::Arc::new(tokio::sync::Semaphore::new(100)),
            )
        }),
        sim.clone(),
        std::sync::Arc::new(StateStore::in_memory().expect("state")),
        std::sync::Arc::new(scalehost::tick::AuditLog::in_memory(100)),
        &scalehost::runtime::EngineConfig::default(),
    );
    engine.add_tenant(tenant());
    let mut spec = fixture_binding(
        "power",
        "set-power",
        json!({ "pool": "pool", "vm": "vm-1", "state": "off" }),
        vec![],
    );
    spec.vm_pools = vec!["pool".into()];
    spec.fallback.after_failures = 2;
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let first = engine.tick(&binding).await;
    assert_eq!(first.outcome, Outcome::Ok);
    assert_eq!(first.consecutive_failures, 0, "the operation only started");
    engine.operations().idle().await;
    // Its ending is counted at the next tick (which starts a new operation, failing again).
    let second = engine.tick(&binding).await;
    assert_eq!(second.consecutive_failures, 1, "{second:?}");
    let health = binding.health();
    assert_eq!(health.failed_actuations, 1);
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("refuses every power change")),
        "{:?}",
        health.last_error
    );
    assert_eq!(second.fallback, None);
    engine.operations().idle().await;
    let third = engine.tick(&binding).await;
    assert_eq!(third.consecutive_failures, 2);
    assert_eq!(third.fallback.as_deref(), Some("hold"), "{third:?}");
}

/// The one-writer rule follows the cluster, not the name a config gives it: two `[[backends]]`
/// names for one API server cannot both scale one workload, nor grant one namespace twice;
/// the same names on another cluster are another workload.
#[tokio::test]
async fn two_names_for_one_cluster_are_one_writer() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let prod = "kubernetes:https://10.0.0.1:6443";
    engine.add_backend_at("prod", prod, sim.clone());
    engine.add_backend_at("prod-again", prod, sim.clone());
    engine.add_backend_at("staging", "kubernetes:https://10.9.9.9:6443", sim.clone());
    let on = |name: &str, backend: &str| scalehost::domain::scope::TenantSpec {
        name: name.into(),
        workloads: vec![api()],
        backend: Some(backend.into()),
        ..Default::default()
    };
    for (tenant, backend) in [("a", "prod"), ("b", "prod-again"), ("c", "staging")] {
        engine.add_tenant(on(tenant, backend));
    }
    let binding = |tenant: &str| {
        let mut spec = fixture_binding(
            "scaler",
            "scale",
            json!({ "target": workload_json(&api()), "replicas": 5 }),
            vec![target(&api(), 1, 10)],
        );
        spec.tenant = tenant.into();
        spec
    };
    engine
        .bind(binding("a"), fixture())
        .await
        .expect("a scales web/api on prod");
    match engine.bind(binding("b"), fixture()).await {
        Err(BindError::TargetTaken { owner, .. }) => assert_eq!(owner, "a/scaler"),
        other => panic!(
            "prod-again is prod: expected target taken, got {:?}",
            other.err()
        ),
    }
    engine
        .bind(binding("c"), fixture())
        .await
        .expect("staging's web/api is another workload");
    // Namespaces too: prod's web, once granted, is not prod-again's to grant.
    engine.add_tenant(scalehost::domain::scope::TenantSpec {
        name: "owner".into(),
        namespaces: vec!["shop".into()],
        backend: Some("prod".into()),
        ..Default::default()
    });
    let second = scalehost::domain::scope::TenantSpec {
        name: "second".into(),
        namespaces: vec!["shop".into()],
        backend: Some("prod-again".into()),
        ..Default::default()
    };
    let refused = engine.check_namespaces(&second).expect_err("one cluster");
    assert!(
        refused.contains("tenant owner on the same cluster"),
        "{refused}"
    );
    assert!(
        engine
            .check_namespaces(&scalehost::domain::scope::TenantSpec {
                backend: Some("staging".into()),
                ..second
            })
            .is_ok()
    );
}
