//! One Rust policy tick: a fresh instance, 3 host calls and its intent applied through the tick
//! engine, against the same call on a warm instance. See docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use scalehost::backends::simulated::{
    LoadSpec, NodeSpec, SimSpec, SimWorkloadSpec, SimulatedCluster,
};
use scalehost::model::{WorkloadKind, WorkloadRef};
use scalehost::runtime::{Access, EngineConfig, Limits, PolicyEngine, StagedState};
use scalehost::state::StateStore;
use scalehost::tick::{
    AuditLog, BindingSpec, FallbackSpec, Outcome, Scope, TargetSpec, TenantSpec, TickEngine,
};

fn cluster() -> Arc<SimulatedCluster> {
    let spec = SimSpec {
        nodes: vec![NodeSpec {
            name: "n".into(),
            cpu_millis: 64_000,
            memory_bytes: 64 << 30,
        }],
        workloads: vec![SimWorkloadSpec {
            kind: WorkloadKind::Deployment,
            namespace: "web".into(),
            name: "api".into(),
            replicas: 4,
            cpu_request_millis: 500,
            memory_request_bytes: 256 << 20,
            startup_delay: Duration::from_secs(30),
            priority: 0,
            capacity_per_replica: 100.0,
            load: Some(LoadSpec::Constant { value: 300.0 }),
        }],
        ..SimSpec::default()
    };
    Arc::new(SimulatedCluster::new(spec, Path::new(".")).expect("sim"))
}

fn tick(c: &mut Criterion) {
    let runtime = PolicyEngine::new(&EngineConfig::default()).expect("engine");
    let policy = Arc::new(
        scalehost::load_plugin(
            &runtime,
            Path::new(scalehost_test_artifacts::POLICY_FIXTURE),
        )
        .expect("fixture"),
    );
    let sim = cluster();
    let api = WorkloadRef::deployment("web", "api");
    let tenant = TenantSpec {
        name: "t".into(),
        namespaces: vec!["web".into()],
        vm_pools: vec![],
    };
    let engine = TickEngine::new(
        sim.clone(),
        sim.clone(),
        Arc::new(StateStore::in_memory().expect("state")),
        Arc::new(AuditLog::in_memory(0)),
        256 << 20,
    );
    engine.add_tenant(tenant.clone());
    // `three-calls`: clock.now, metrics.workload, actuation.scale (alternating 5 and 6 replicas,
    // so every tick applies a change).
    let config = serde_json::json!({
        "mode": "three-calls",
        "target": { "namespace": "web", "name": "api" },
    });
    let binding = engine
        .bind(
            BindingSpec {
                tenant: "t".into(),
                name: "bench".into(),
                plugin: "fixture".into(),
                interval: Duration::from_secs(15),
                config: config.clone(),
                targets: vec![TargetSpec {
                    kind: WorkloadKind::Deployment,
                    namespace: "web".into(),
                    name: "api".into(),
                    min_replicas: 1,
                    max_replicas: 10,
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
        )
        .expect("binds");
    let record = engine.tick(&binding);
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.host_calls, 3);
    assert!(
        record.actions.iter().any(|a| a.changed()),
        "the intent is applied"
    );

    let mut group = c.benchmark_group("tick");
    group.bench_function("full: fresh instance, 3 host calls, intent applied", |b| {
        b.iter(|| black_box(engine.tick(&binding)))
    });
    let access = Access {
        cluster: sim.clone(),
        scope: Arc::new(Scope {
            tenant,
            targets: vec![api],
            pools: vec![],
        }),
    };
    let state = StagedState::new(
        Arc::new(StateStore::in_memory().expect("state")),
        "t/warm".into(),
    );
    let mut warm = policy
        .instantiate_warm(Limits::default(), access, state)
        .expect("instantiates");
    let config = config.to_string();
    warm.call_tick(&config).expect("ticks");
    group.bench_function("call alone: warm instance, 3 host calls", |b| {
        b.iter(|| black_box(warm.call_tick(&config)))
    });
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
