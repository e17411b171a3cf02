//! One Rust policy tick: a fresh instance, 3 host calls and its intent applied through the tick
//! engine, against the same call on a warm instance. See docs/benchmarks.md.
//!
//! The policy is the shipped `opportunistic-miner-fill`: each tick reads the filler's status and
//! the cluster's capacity, then scales the filler. Between iterations (untimed) a paid workload
//! moves between 4 and 6 replicas, so every tick applies a change.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use scalehost::backends::Actuator as _;
use scalehost::backends::simulated::{
    LoadSpec, NodeSpec, SimSpec, SimWorkloadSpec, SimulatedCluster,
};
use scalehost::domain::cluster::{WorkloadKind, WorkloadRef};
use scalehost::domain::scope::{Scope, TenantSpec};
use scalehost::runtime::{Access, EngineConfig, Limits, PolicyEngine, StagedState};
use scalehost::store::StateStore;
use scalehost::tick::{AuditLog, BindingSpec, FallbackSpec, Outcome, TargetSpec, TickEngine};

fn cluster() -> Arc<SimulatedCluster> {
    let spec = SimSpec {
        nodes: vec![NodeSpec {
            name: "n".into(),
            cpu_millis: 64_000,
            memory_bytes: 64 << 30,
        }],
        workloads: vec![
            SimWorkloadSpec {
                kind: WorkloadKind::Deployment,
                namespace: "web".into(),
                name: "api".into(),
                replicas: 4,
                cpu_request_millis: 4000,
                memory_request_bytes: 256 << 20,
                startup_delay: Duration::from_secs(30),
                priority: 0,
                capacity_per_replica: 100.0,
                load: Some(LoadSpec::Constant { value: 300.0 }),
                events: true,
            },
            SimWorkloadSpec {
                kind: WorkloadKind::Deployment,
                namespace: "batch".into(),
                name: "miner".into(),
                replicas: 0,
                cpu_request_millis: 1000,
                memory_request_bytes: 256 << 20,
                startup_delay: Duration::from_secs(20),
                priority: -100,
                capacity_per_replica: 1.0,
                load: None,
                events: true,
            },
        ],
        ..SimSpec::default()
    };
    Arc::new(SimulatedCluster::new(spec, Path::new(".")).expect("sim"))
}

fn tick(c: &mut Criterion) {
    // Ticks are async: each runs to completion on this current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let runtime = PolicyEngine::new(&EngineConfig::default()).expect("engine");
    let policy = Arc::new(
        scalehost::runtime::load_plugin(
            &runtime,
            Path::new(scalehost_test_artifacts::OPPORTUNISTIC_MINER_FILL),
        )
        .expect("opportunistic-miner-fill"),
    );
    let sim = cluster();
    let paid = WorkloadRef::deployment("web", "api");
    let miner = WorkloadRef::deployment("batch", "miner");
    let tenant = TenantSpec {
        name: "t".into(),
        namespaces: vec!["web".into(), "batch".into()],
        workloads: vec![],
        vm_pools: vec![],
        backend: None,
        // The miner fill reads the cluster's capacity.
        cluster_metrics: true,
        ..Default::default()
    };
    let engine = TickEngine::new(
        sim.clone(),
        sim.clone(),
        Arc::new(StateStore::in_memory().expect("state")),
        Arc::new(AuditLog::in_memory(0)),
        &scalehost::runtime::EngineConfig::default(),
    );
    engine.add_tenant(tenant.clone());
    // Three host calls: metrics.workload, metrics.capacity, actuation.scale.
    let config = serde_json::json!({
        "filler": { "namespace": "batch", "name": "miner" },
        "reserve": { "percent": 10.0 },
        "max_replicas": 60,
    });
    let binding = rt
        .block_on(engine.bind(
            BindingSpec {
                tenant: "t".into(),
                name: "bench".into(),
                plugin: "opportunistic-miner-fill".into(),
                interval: Duration::from_secs(15),
                config: config.clone(),
                targets: vec![TargetSpec {
                    kind: WorkloadKind::Deployment,
                    namespace: "batch".into(),
                    name: "miner".into(),
                    min_replicas: 0,
                    max_replicas: 60,
                    max_step_up: None,
                    max_step_down: None,
                    cooldown_up: Duration::ZERO,
                    cooldown_down: Duration::ZERO,
                    stabilization_down: Duration::ZERO,
                }],
                vm_pools: vec![],
                limits: Limits::default(),
                fallback: FallbackSpec::default(),
            },
            policy.clone(),
        ))
        .expect("binds");
    // The paid workload alternates between 4 and 6 replicas of 4 CPUs, so the spare CPU, and
    // with it the filler's size, changes at every tick.
    let paid_replicas = std::cell::Cell::new(4u32);
    let move_paid_load = || {
        paid_replicas.set(10 - paid_replicas.get());
        rt.block_on(sim.scale(&paid, paid_replicas.get()))
            .expect("scales the paid workload");
    };
    move_paid_load();
    let record = rt.block_on(engine.tick(&binding));
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.host_calls, 3);
    assert!(
        record.actions.iter().any(|a| a.changed()),
        "the intent is applied"
    );

    let mut group = c.benchmark_group("tick");
    group.bench_function("full: fresh instance, 3 host calls, intent applied", |b| {
        b.iter_batched(
            move_paid_load,
            |()| black_box(rt.block_on(engine.tick(&binding))),
            BatchSize::SmallInput,
        )
    });
    let access = Access::new(
        sim.clone(),
        Arc::new(Scope {
            tenant,
            targets: vec![miner],
            pools: vec![],
            quotas: Default::default(),
        }),
    );
    let state = StagedState::new(
        Arc::new(StateStore::in_memory().expect("state")),
        "t/warm".into(),
    );
    let mut warm = rt
        .block_on(policy.instantiate_warm(Limits::default(), access, state))
        .expect("instantiates");
    let config = config.to_string();
    rt.block_on(warm.call_tick(&config)).expect("ticks");
    group.bench_function("call alone: warm instance, 3 host calls", |b| {
        b.iter_batched(
            move_paid_load,
            |()| black_box(rt.block_on(warm.call_tick(&config))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
