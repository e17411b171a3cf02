//! The sandbox: a misbehaving policy costs only its own tick, and a failed tick applies nothing.

mod common;

use std::time::Duration;

use common::*;
use scalehost::backends::WorkloadReader as _;
use scalehost::runtime::{GuestStream, InvocationError, Limits};
use scalehost::tick::Outcome;
use serde_json::json;

/// A well-behaved binding of tenant `t` to tick beside a misbehaving one.
async fn healthy_counter(
    engine: &scalehost::tick::TickEngine,
) -> std::sync::Arc<scalehost::tick::Binding> {
    engine
        .bind(
            fixture_binding("healthy", "counter", json!({}), vec![]),
            fixture(),
        )
        .await
        .expect("binds")
}

fn failure(outcome: &Outcome) -> &InvocationError {
    match outcome {
        Outcome::Failed { error } => error,
        Outcome::Ok => panic!("the tick should have failed"),
    }
}

#[tokio::test]
async fn each_misbehaving_fixture_fails_only_its_own_tick() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let healthy = healthy_counter(&engine).await;
    let cases: [(&str, fn(&InvocationError) -> bool); 6] = [
        ("trap", |e| matches!(e, InvocationError::Trap(_))),
        (
            "endless-loop",
            |e| matches!(e, InvocationError::Deadline(d) if d == "200ms"),
        ),
        ("memory-hog", |e| {
            matches!(e, InvocationError::MemoryLimit(_))
        }),
        // Rust keeps its frames on a shadow stack at the bottom of linear memory: overflowing it
        // runs below address 0, which wasm reports as an out-of-bounds access (a deeper wasm
        // call stack would report "call stack exhausted").
        (
            "deep-recursion",
            |e| matches!(e, InvocationError::Trap(m) if m.contains("out of bounds memory access") || m.contains("call stack exhausted")),
        ),
        (
            "host-call-flood",
            |e| matches!(e, InvocationError::HostLimit(m) if m.contains("host-call limit")),
        ),
        (
            "error",
            |e| matches!(e, InvocationError::Policy(m) if m == "fixture error"),
        ),
    ];
    for (mode, expected) in cases {
        let bad = engine
            .bind(fixture_binding(mode, mode, json!({}), vec![]), fixture())
            .await
            .expect("binds");
        let record = engine.tick(&bad).await;
        let error = failure(&record.outcome);
        assert!(expected(error), "{mode}: unexpected failure {error:?}");
        // The host is unharmed: the next tick of another binding runs normally.
        let after = engine.tick(&healthy).await;
        assert_eq!(after.outcome, Outcome::Ok, "healthy binding after {mode}");
    }
    assert_eq!(healthy.health().ticks, 6);
    assert_eq!(healthy.health().failed_ticks, 0);
}

#[tokio::test]
async fn a_tick_that_recorded_intents_and_then_trapped_applies_none() {
    let sim = sim();
    let engine = tick_engine(&sim);
    for mode in ["scale-then-trap", "scale-then-error"] {
        let spec = fixture_binding(
            mode,
            mode,
            json!({ "target": workload_json(&api()), "replicas": 9 }),
            vec![target(&api(), 1, 20)],
        );
        let binding = engine.bind(spec, fixture()).await.expect("binds");
        let record = engine.tick(&binding).await;
        assert!(matches!(record.outcome, Outcome::Failed { .. }), "{mode}");
        assert_eq!(
            record.intents.len(),
            1,
            "{mode}: the intent is recorded in the audit"
        );
        assert!(record.actions.is_empty(), "{mode}: but nothing is applied");
        assert_eq!(
            sim.workload(&api()).await.expect("status").replicas,
            4,
            "{mode}"
        );
        engine.unbind("t", mode);
    }
    // The same intent from a tick that succeeds is applied.
    let spec = fixture_binding(
        "scale",
        "scale",
        json!({ "target": workload_json(&api()), "replicas": 9 }),
        vec![target(&api(), 1, 20)],
    );
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    assert_eq!(engine.tick(&binding).await.outcome, Outcome::Ok);
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 9);
}

#[tokio::test]
async fn deadline_and_memory_are_configurable_per_binding() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("loop", "endless-loop", json!({}), vec![]);
    spec.limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let started = std::time::Instant::now();
    let record = engine.tick(&binding).await;
    assert_eq!(
        failure(&record.outcome),
        &InvocationError::Deadline("50ms".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "interrupted near its deadline: {:?}",
        started.elapsed()
    );

    let mut spec = fixture_binding("hog", "memory-hog", json!({}), vec![]);
    spec.limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let error = failure(&engine.tick(&binding).await.outcome).clone();
    assert_eq!(
        error,
        InvocationError::MemoryLimit(format!("memory limit of {} bytes exceeded", 8 << 20))
    );
}

#[tokio::test]
async fn wasi_is_linked_empty_and_output_lands_in_the_host_log() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let binding = engine
        .bind(
            fixture_binding("escape", "escape", json!({}), vec![]),
            fixture(),
        )
        .await
        .expect("binds");
    let record = engine.tick(&binding).await;
    assert_eq!(
        record.outcome,
        Outcome::Ok,
        "no file, socket or environment was reachable"
    );

    let runtime_policy = fixture();
    let state = std::sync::Arc::new(scalehost::store::StateStore::in_memory().expect("state"));
    let access = scalehost::runtime::Access::new(
        sim.clone(),
        std::sync::Arc::new(scalehost::domain::scope::Scope {
            tenant: tenant(),
            targets: vec![],
            pools: vec![],
            quotas: Default::default(),
        }),
    );
    let invocation = runtime_policy
        .tick(
            &json!({ "mode": "print" }).to_string(),
            Limits::default(),
            "t".into(),
            "print".into(),
            0,
            access,
            scalehost::runtime::StagedState::new(state, "t/print".into()),
        )
        .await;
    assert_eq!(invocation.result, Ok(()));
    let lines: Vec<_> = invocation
        .logs
        .iter()
        .map(|l| (l.stream, l.message.as_str()))
        .collect();
    assert!(
        lines.contains(&(GuestStream::Stdout, "fixture stdout line")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(GuestStream::Stderr, "fixture stderr line")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn bytes_passed_are_capped() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("big", "big-state", json!({ "bytes": 2 << 20 }), vec![]);
    spec.limits = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let record = engine.tick(&binding).await;
    assert!(
        matches!(failure(&record.outcome), InvocationError::HostLimit(m) if m.contains("bytes")),
        "{:?}",
        record.outcome
    );
    assert_eq!(
        engine.state().get("t/big", "big").expect("reads"),
        None,
        "a failed tick writes no state"
    );
}

/// Fails `binding`'s tick and returns its error.
async fn failed_tick(
    engine: &scalehost::tick::TickEngine,
    binding: &scalehost::tick::Binding,
) -> InvocationError {
    failure(&engine.tick(binding).await.outcome).clone()
}

#[tokio::test]
async fn a_tick_that_sleeps_fails_at_its_deadline() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("sleepy", "sleep", json!({}), vec![]);
    spec.limits.deadline = Duration::from_millis(300);
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let started = std::time::Instant::now();
    let error = failed_tick(&engine, &binding).await;
    let took = started.elapsed();
    assert!(
        matches!(&error, InvocationError::Deadline(d) if d == "300ms"),
        "{error:?}"
    );
    // The WASI sleep is an await that the deadline drops: the tick ends at its deadline, not
    // after the guest's 60 s.
    assert!(
        took < Duration::from_secs(2),
        "the sleeping tick took {took:?}"
    );
}

#[tokio::test]
async fn a_config_check_that_sleeps_fails_at_its_deadline() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("sleepy", "sleep-in-validate", json!({}), vec![]);
    spec.limits.deadline = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let refused = engine.bind(spec, fixture()).await;
    let took = started.elapsed();
    let message = refused.expect_err("a config check past its deadline refuses the binding");
    assert!(
        scalehost::domain::display_chain(&message).contains("deadline of 300ms exceeded"),
        "{}",
        scalehost::domain::display_chain(&message)
    );
    assert!(took < Duration::from_secs(2), "the check took {took:?}");
}

#[tokio::test]
async fn limits_above_the_operators_ceilings_are_refused() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let ceilings = scalehost::runtime::EngineConfig::default();
    let mut calls = fixture_binding("calls", "ok", json!({}), vec![]);
    calls.limits.max_host_calls = ceilings.max_host_calls + 1;
    let mut bytes = fixture_binding("bytes", "ok", json!({}), vec![]);
    bytes.limits.max_bytes = ceilings.max_bytes + 1;
    let mut deadline = fixture_binding("deadline", "ok", json!({}), vec![]);
    deadline.limits.deadline = ceilings.max_deadline + Duration::from_millis(1);
    for (spec, needle) in [
        (calls, "max_host_calls"),
        (bytes, "max_bytes"),
        (deadline, "max_deadline"),
    ] {
        let refused = engine.bind(spec, fixture()).await.expect_err("refused");
        assert!(refused.to_string().contains(needle), "{refused}");
    }
}

/// One tenant's 64 endless bindings, ticking all at once, hold at most its share of the pool:
/// another tenant's ticks meanwhile neither fail nor wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_floods_the_pool_fails_only_its_own_ticks() {
    let sim = sim();
    let engine = tick_engine(&sim);
    engine.add_tenant(scalehost::domain::scope::TenantSpec {
        name: "hog".into(),
        ..tenant()
    });
    let mut hogs = Vec::new();
    for i in 0..64 {
        let mut spec = fixture_binding(&format!("spin-{i}"), "endless-loop", json!({}), vec![]);
        spec.tenant = "hog".into();
        spec.limits.deadline = Duration::from_secs(2);
        hogs.push(engine.bind(spec, fixture()).await.expect("binds"));
    }
    let healthy = healthy_counter(&engine).await;
    let flood: Vec<_> = hogs
        .into_iter()
        .map(|binding| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.tick(&binding).await })
        })
        .collect();
    // Let the hog's ticks take their instances.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let record = engine.tick(&healthy).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unshared, the pool would be full (the tick fails) or the spinning guests would hold the
    // workers (it waits for their 2 s deadline); 500 ms leaves room for a loaded CI machine.
    assert!(
        slowest < Duration::from_millis(500),
        "the other tenant's slowest tick took {slowest:?}"
    );
    let mut deadlines = 0;
    let mut busy = 0;
    for tick in flood {
        match failure(&tick.await.expect("ticks").outcome) {
            InvocationError::Deadline(_) => deadlines += 1,
            InvocationError::Busy(m) if m.contains("tenant's share") => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The share is 16 instances: 16 ran to their deadline, the rest waited theirs for an
    // instance; when the first 16 gave theirs back, at most 16 more could start.
    let share = scalehost::runtime::EngineConfig::default().max_instances_per_tenant as usize;
    assert_eq!(deadlines + busy, 64);
    assert!(
        (share..=2 * share).contains(&deadlines),
        "{deadlines} ran, {busy} found the share in use"
    );
}

/// On the scheduler and the host's runtime, as in production: one tenant's 64 endless bindings
/// (1 s deadlines, 10 ms intervals, always ticking, 16 of them spinning at once on 2 cores)
/// beside another tenant's binding at 200 ms. The other tenant's ticks all succeed, none is
/// missed, and they start on time: p99 lateness under 100 ms.
#[test]
fn another_tenants_endless_bindings_do_not_make_ticks_fail_or_start_late() {
    let runtime = scalehost::runtime().expect("runtime");
    runtime.block_on(async {
        let sim = sim();
        let engine = tick_engine(&sim);
        engine.add_tenant(scalehost::domain::scope::TenantSpec {
            name: "hog".into(),
            ..tenant()
        });
        for i in 0..64 {
            let mut spec = fixture_binding(&format!("spin-{i}"), "endless-loop", json!({}), vec![]);
            spec.tenant = "hog".into();
            spec.interval = Duration::from_millis(10);
            spec.limits.deadline = Duration::from_secs(1);
            engine.bind(spec, fixture()).await.expect("binds");
        }
        let mut spec = fixture_binding("healthy", "counter", json!({}), vec![]);
        spec.interval = Duration::from_millis(200);
        let healthy = engine.bind(spec, fixture()).await.expect("binds");
        let mut scheduler = scalehost::tick::Scheduler::new(engine.clone());
        scheduler.start_all();
        tokio::time::sleep(Duration::from_secs(4)).await;
        scheduler.shutdown().await;
        let health = healthy.health();
        let lateness = engine.lateness_of("t").summary();
        assert_eq!(
            (health.failed_ticks, health.failed_actuations),
            (0, 0),
            "{health:?}"
        );
        // Due at phase + k × 200 ms, phase in [0, 200 ms): 20 ticks in 4 s; the last may fall
        // on the shutdown. (With tokio's default event interval: 16, as late ticks delay the
        // rhythm.)
        assert!(
            health.ticks >= 19,
            "only {} ticks in 4 s at 200 ms: {lateness:?}",
            health.ticks
        );
        assert_eq!(lateness.ticks, health.ticks, "every tick counted once");
        assert!(
            lateness.p99_us < 100_000,
            "the other tenant's p99 lateness {lateness:?} (the hog's: {:?})",
            engine.lateness_of("hog").summary()
        );
    });
}

/// A small pool: 4 instances (so config checks may hold 1 of them), 4 per tenant.
fn small_pool() -> scalehost::runtime::EngineConfig {
    scalehost::runtime::EngineConfig {
        max_concurrent_instances: 4,
        max_instances_per_tenant: 4,
        ..Default::default()
    }
}

fn other_tenant(name: &str) -> scalehost::domain::scope::TenantSpec {
    scalehost::domain::scope::TenantSpec {
        name: name.into(),
        ..tenant()
    }
}

/// A tenant that floods PUTs of a policy whose `validate-config` sleeps holds its own check
/// allowance and the host's (a quarter of the pool), never the pool: another tenant's ticks
/// meanwhile all run. Without the allowance the six checks would take all four instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_checks_that_sleep_cannot_take_the_pool_from_other_tenants_ticks() {
    let sim = sim();
    let state = std::sync::Arc::new(scalehost::store::StateStore::in_memory().expect("state"));
    let engine = tick_engine_with(&sim, state, &small_pool());
    engine.add_tenant(other_tenant("flooder"));
    let healthy = healthy_counter(&engine).await;
    let policy = fixture();
    // The first check holds its permits for 3 s; the five after it give up after 1 s, while it
    // still holds them.
    let check = |i: usize, deadline: Duration| {
        let engine = engine.clone();
        let policy = policy.clone();
        let mut spec =
            fixture_binding(&format!("slow-{i}"), "sleep-in-validate", json!({}), vec![]);
        spec.tenant = "flooder".into();
        spec.limits.deadline = deadline;
        tokio::spawn(async move { engine.check_binding(&spec, &policy).await })
    };
    let mut checks = vec![check(0, Duration::from_secs(3))];
    tokio::time::sleep(Duration::from_millis(100)).await;
    checks.extend((1..6).map(|i| check(i, Duration::from_secs(1))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let record = engine.tick(&healthy).await;
        assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    }
    let mut allowance_refusals = 0;
    for check in checks {
        let refused = check
            .await
            .expect("no panic")
            .expect_err("every check fails");
        let message = refused.to_string();
        if message.contains("config checks are in use") {
            allowance_refusals += 1;
        } else {
            assert!(message.contains("deadline"), "{message}");
        }
    }
    // The first check held the host's allowance until its deadline; the other five waited and
    // were refused (one by the host's allowance of 1, four by the tenant's own of 2).
    assert_eq!(allowance_refusals, 5);
}

/// When the host's pool is full with another tenant's work, a tick fails as "host
/// overloaded": recorded, but no failure of the binding's, so its fallback does not fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_host_fails_a_tick_without_counting_it_toward_the_fallback() {
    let sim = sim();
    let state = std::sync::Arc::new(scalehost::store::StateStore::in_memory().expect("state"));
    let ceilings = scalehost::runtime::EngineConfig {
        max_concurrent_instances: 2,
        max_instances_per_tenant: 2,
        ..Default::default()
    };
    let engine = tick_engine_with(&sim, state, &ceilings);
    engine.add_tenant(other_tenant("hog"));
    let mut spins = Vec::new();
    for i in 0..2 {
        let mut spec = fixture_binding(&format!("spin-{i}"), "endless-loop", json!({}), vec![]);
        spec.tenant = "hog".into();
        spec.limits.deadline = Duration::from_secs(5);
        let binding = engine.bind(spec, fixture()).await.expect("binds");
        let engine = engine.clone();
        spins.push(tokio::spawn(async move { engine.tick(&binding).await }));
    }
    let mut spec = fixture_binding("victim", "counter", json!({}), vec![target(&api(), 1, 20)]);
    spec.fallback.after_failures = 1;
    spec.fallback.action = scalehost::tick::FallbackAction::Fixed(7);
    let victim = engine.bind(spec, fixture()).await.expect("binds");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let record = engine.tick(&victim).await;
    let error = failure(&record.outcome);
    assert!(error.is_host_overload(), "{error}");
    assert!(error.to_string().contains("host overloaded"), "{error}");
    assert_eq!(record.consecutive_failures, 0);
    assert_eq!(record.fallback, None, "no fallback for the host's overload");
    assert_eq!(victim.health().consecutive_failures, 0);
    assert_eq!(victim.health().consecutive_overloaded, 1);
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 4);
    // An outage of it is a reason, though: at ten times its own patience (here 10 ticks in a
    // row) the binding falls back.
    for n in 2..10 {
        let record = engine.tick(&victim).await;
        assert!(failure(&record.outcome).is_host_overload());
        assert_eq!(record.fallback, None, "tick {n}");
    }
    let tenth = engine.tick(&victim).await;
    assert!(failure(&tenth.outcome).is_host_overload());
    assert_eq!(tenth.fallback.as_deref(), Some("fixed 7"), "{tenth:?}");
    assert_eq!(sim.workload(&api()).await.expect("status").replicas, 7);
    for spin in spins {
        spin.await.expect("ticks");
    }
    // Once the pool is free again the victim ticks.
    assert_eq!(engine.tick(&victim).await.outcome, Outcome::Ok);
}

/// However often a tick calls `scale` for one target, it holds one intent (the last), and so
/// does its audit record.
#[tokio::test]
async fn a_flood_of_scale_calls_for_one_target_is_one_intent() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let spec = fixture_binding(
        "flood",
        "scale-flood",
        json!({ "target": workload_json(&api()), "bytes": 5000 }),
        vec![target(&api(), 1, 20)],
    );
    let binding = engine.bind(spec, fixture()).await.expect("binds");
    let record = engine.tick(&binding).await;
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(record.intents.len(), 1, "{} intents", record.intents.len());
    match &record.intents[0] {
        scalehost::runtime::Intent::Scale { requested, .. } => {
            assert_eq!(*requested, 1 + (4999 % 7), "the last call wins")
        }
        other => panic!("{other:?}"),
    }
    let size = serde_json::to_vec(&record).expect("serializes").len();
    assert!(size < 4096, "the record is {size} bytes");
}

/// A binding may list at most `max_targets_per_binding` targets and pools, each once.
#[tokio::test]
async fn a_binding_with_too_many_targets_or_a_pool_twice_is_refused() {
    let sim = sim();
    let ceilings = scalehost::runtime::EngineConfig {
        max_targets_per_binding: 3,
        ..Default::default()
    };
    let state = std::sync::Arc::new(scalehost::store::StateStore::in_memory().expect("state"));
    let engine = tick_engine_with(&sim, state, &ceilings);
    let targets: Vec<_> = (0..4)
        .map(|i| {
            target(
                &scalehost::domain::cluster::WorkloadRef::deployment("web", &format!("w{i}")),
                1,
                5,
            )
        })
        .collect();
    let spec = fixture_binding("many", "ok", json!({}), targets);
    let refused = engine.bind(spec, fixture()).await.expect_err("refused");
    assert!(
        refused.to_string().contains("at most 3 targets"),
        "{refused}"
    );
    let mut spec = fixture_binding("pools", "ok", json!({}), vec![]);
    spec.vm_pools = vec!["pool".into(), "pool".into()];
    let refused = engine.bind(spec, fixture()).await.expect_err("refused");
    assert!(refused.to_string().contains("listed twice"), "{refused}");
}

/// Two tenants on the embedded cluster, `web` (300 rpm on `web/api`) and `batch` (whose
/// `batch/miner` demands 8675309 rpm, the sentinel): each of web's queries answers web's
/// series with the right values, or `forbidden`; batch's number never reaches web's state,
/// intents or audit record.
#[tokio::test]
async fn tenants_on_the_embedded_cluster_see_only_their_own_series() {
    use scalehost::backends::{Clock, MetricSource};
    let mut spec = common::sim_spec();
    spec.workloads[1].load =
        Some(scalehost::backends::simulated::LoadSpec::Constant { value: 8_675_309.0 });
    spec.workloads[1].replicas = 1;
    let sim = std::sync::Arc::new(
        scalehost::backends::simulated::SimulatedCluster::new(spec, std::path::Path::new("."))
            .expect("sim"),
    );
    let state = std::sync::Arc::new(scalehost::store::StateStore::in_memory().expect("state"));
    let engine = common::tick_engine_with_state(&sim, state.clone());
    engine.add_tenant(scalehost::domain::scope::TenantSpec {
        name: "web".into(),
        namespaces: vec!["web".into()],
        ..Default::default()
    });
    // Batch's number is there to be found, unscoped.
    let all = sim
        .query("sum(scalehost_requests_per_minute)", sim.now_ms())
        .await
        .expect("query");
    assert_eq!(all[0].samples[0].value, 8_675_609.0);
    let queries = [
        "sum(scalehost_requests_per_minute)",
        "sum without (namespace) (scalehost_requests_per_minute)",
        "sum by (workload) (scalehost_requests_per_minute)",
        "count({__name__=~\".+\"})",
        "scalehost_requests_per_minute / scalehost_replicas",
        "sum(scalehost_requests_per_minute{namespace=\"batch\"})",
        "scalehost_requests_per_minute{workload=\"miner\"}",
        "sum(scalehost_requests_per_minute) + sum(scalehost_requests_per_minute{namespace=\"batch\"})",
        "scalehost_cluster_requested_cpu_millis",
        "rate(scalehost_replicas[5m])",
    ];
    let mut binding = common::fixture_binding(
        "probe",
        "probe",
        json!({ "queries": queries, "target": common::workload_json(&common::api()), "replicas": 4 }),
        vec![common::target(&common::api(), 1, 10)],
    );
    binding.tenant = "web".into();
    binding.limits.deadline = Duration::from_secs(5);
    let bound = engine
        .bind(binding, common::fixture())
        .await
        .expect("binds");
    let record = engine.tick(&bound).await;
    assert_eq!(record.outcome, scalehost::tick::Outcome::Ok, "{record:?}");
    let answers = String::from_utf8(
        state
            .get(&scalehost::store::namespace("web", "probe"), "answers")
            .expect("state")
            .expect("answers kept"),
    )
    .expect("utf-8");
    let lines: Vec<&str> = answers.lines().collect();
    let expected = [
        "sum(scalehost_requests_per_minute) => ok [([], [300.0])]",
        "sum without (namespace) (scalehost_requests_per_minute) => ok [([(\"workload\", \"api\")], [300.0])]",
        "sum by (workload) (scalehost_requests_per_minute) => ok [([(\"workload\", \"api\")], [300.0])]",
        // Web's five workload metrics of web/api.
        "count({__name__=~\".+\"}) => ok [([], [5.0])]",
        // Matched on every label but the name: 300 rpm over 4 replicas.
        "scalehost_requests_per_minute / scalehost_replicas => ok [([(\"namespace\", \"web\"), (\"workload\", \"api\")], [75.0])]",
        "sum(scalehost_requests_per_minute{namespace=\"batch\"}) => err Forbidden(\"namespace \\\"batch\\\" is not granted to tenant web\")",
        "scalehost_requests_per_minute{workload=\"miner\"} => ok []",
        "sum(scalehost_requests_per_minute) + sum(scalehost_requests_per_minute{namespace=\"batch\"}) => err Forbidden(\"namespace \\\"batch\\\" is not granted to tenant web\")",
        "scalehost_cluster_requested_cpu_millis => err Forbidden(\"scalehost_cluster_requested_cpu_millis is a cluster-wide series: tenant web needs the cluster_metrics grant to read it\")",
    ];
    assert_eq!(lines.len(), queries.len(), "{answers}");
    for (line, want) in lines.iter().zip(expected) {
        assert_eq!(*line, want);
    }
    assert!(
        lines[9].starts_with("rate(scalehost_replicas[5m]) => err Invalid(")
            && lines[9].contains("subset"),
        "{}",
        lines[9]
    );
    let audited = serde_json::to_string(&record.intents).expect("json");
    assert!(audited.contains("[300.0]"), "{audited}");
    for text in [&answers, &audited] {
        assert!(!text.contains("8675"), "batch's demand reached web: {text}");
    }
    // Without the grant, the cluster's capacity and node view are not web's either.
    let mut capacity = common::fixture_binding("capacity", "report", json!({}), vec![]);
    capacity.tenant = "web".into();
    let bound = engine
        .bind(capacity, common::fixture())
        .await
        .expect("binds");
    let record = engine.tick(&bound).await;
    let nodes = String::from_utf8(
        state
            .get(&scalehost::store::namespace("web", "capacity"), "nodes")
            .expect("state")
            .unwrap_or_default(),
    )
    .expect("utf-8");
    assert!(
        nodes.contains("Forbidden") && nodes.contains("cluster_metrics"),
        "{nodes} {record:?}"
    );
}
