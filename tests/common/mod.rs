//! Shared set-up for the integration tests: an engine, a simulated cluster, a tenant, bindings.
#![allow(dead_code, unreachable_pub)]

pub mod apiserver;
pub mod control_plane;
pub mod tls;
pub mod vcenter;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use scalehost::backends::simulated::{
    LoadSpec, NodeSpec, SimSpec, SimVmSpec, SimWorkloadSpec, SimulatedCluster, VmPoolSpec,
};
use scalehost::domain::cluster::{PowerState, WorkloadKind, WorkloadRef};
use scalehost::domain::scope::{Scope, TenantSpec};
use scalehost::runtime::{Access, CompiledPolicy, EngineConfig, Limits, PolicyEngine};
use scalehost::store::StateStore;
use scalehost::tick::{AuditLog, BindingSpec, FallbackSpec, TargetSpec, TickEngine};
use serde_json::{Value, json};

/// One wasm engine for the whole test binary, as in the host.
pub fn runtime() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::new(&EngineConfig::default()).expect("engine"))
}

/// Compiles a component once per test binary.
pub fn compiled(path: &'static str) -> Arc<CompiledPolicy> {
    static CACHE: OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, Arc<CompiledPolicy>>>,
    > = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().expect("cache");
    cache
        .entry(path)
        .or_insert_with(|| {
            Arc::new(
                scalehost::runtime::load_plugin(runtime(), Path::new(path))
                    .expect("plugin compiles"),
            )
        })
        .clone()
}

pub fn fixture() -> Arc<CompiledPolicy> {
    compiled(scalehost_test_artifacts::POLICY_FIXTURE)
}

pub fn api() -> WorkloadRef {
    WorkloadRef::deployment("web", "api")
}

pub fn miner() -> WorkloadRef {
    WorkloadRef::deployment("batch", "miner")
}

/// Two always-on nodes, a pool with one VM, `web/api` (4 replicas, constant 300 rpm) and a
/// low-priority `batch/miner`.
pub fn sim_spec() -> SimSpec {
    SimSpec {
        start_ms: 1_767_571_200_000,
        report_interval: Duration::from_secs(10),
        nodes: vec![
            NodeSpec {
                name: "node-a".into(),
                cpu_millis: 8000,
                memory_bytes: 16 << 30,
            },
            NodeSpec {
                name: "node-b".into(),
                cpu_millis: 8000,
                memory_bytes: 16 << 30,
            },
        ],
        vm_pools: vec![VmPoolSpec {
            name: "pool".into(),
            boot_delay: Duration::from_secs(60),
            vms: vec![SimVmSpec {
                id: "vm-1".into(),
                node: NodeSpec {
                    name: "worker-1".into(),
                    cpu_millis: 8000,
                    memory_bytes: 16 << 30,
                },
                power: PowerState::On,
                maintenance: false,
            }],
        }],
        workloads: vec![
            SimWorkloadSpec {
                kind: WorkloadKind::Deployment,
                namespace: "web".into(),
                name: "api".into(),
                replicas: 4,
                cpu_request_millis: 500,
                memory_request_bytes: 256 << 20,
                startup_delay: Duration::from_secs(30),
                priority: 100,
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
                startup_delay: Duration::from_secs(10),
                priority: -100,
                capacity_per_replica: 100.0,
                load: None,
                events: true,
            },
        ],
    }
}

pub fn sim() -> Arc<SimulatedCluster> {
    Arc::new(SimulatedCluster::new(sim_spec(), Path::new(".")).expect("sim builds"))
}

pub fn tenant() -> TenantSpec {
    TenantSpec {
        name: "t".into(),
        namespaces: vec!["web".into(), "batch".into()],
        workloads: vec![],
        vm_pools: vec!["pool".into()],
        backend: None,
        ..Default::default()
    }
}

/// What a policy invoked directly (not through the engine) reads through: `sim`, with tenant
/// `t`'s grants and no targets.
pub fn tenant_access(sim: &Arc<SimulatedCluster>) -> Access {
    Access::new(
        sim.clone(),
        Arc::new(Scope {
            tenant: tenant(),
            targets: vec![],
            pools: vec![],
            quotas: Default::default(),
        }),
    )
}

/// A tick engine on `sim` with tenant `t` and an in-memory state store.
pub fn tick_engine(sim: &Arc<SimulatedCluster>) -> Arc<TickEngine> {
    tick_engine_with_state(sim, Arc::new(StateStore::in_memory().expect("state")))
}

pub fn tick_engine_with_state(
    sim: &Arc<SimulatedCluster>,
    state: Arc<StateStore>,
) -> Arc<TickEngine> {
    tick_engine_with(sim, state, &scalehost::runtime::EngineConfig::default())
}

/// An engine held to the operator's `ceilings` (pool and shares included).
pub fn tick_engine_with(
    sim: &Arc<SimulatedCluster>,
    state: Arc<StateStore>,
    ceilings: &scalehost::runtime::EngineConfig,
) -> Arc<TickEngine> {
    let engine = TickEngine::new(
        sim.clone(),
        sim.clone(),
        state,
        Arc::new(AuditLog::in_memory(1000)),
        ceilings,
    );
    engine.add_tenant(tenant());
    Arc::new(engine)
}

pub fn target(workload: &WorkloadRef, min: u32, max: u32) -> TargetSpec {
    TargetSpec {
        kind: workload.kind,
        namespace: workload.namespace.clone(),
        name: workload.name.clone(),
        min_replicas: min,
        max_replicas: max,
        max_step_up: None,
        max_step_down: None,
        cooldown_up: Duration::ZERO,
        cooldown_down: Duration::ZERO,
        stabilization_down: Duration::ZERO,
    }
}

/// A binding of the fixture in `mode` (plus `extra` config fields) for tenant `t`.
pub fn fixture_binding(
    name: &str,
    mode: &str,
    extra: Value,
    targets: Vec<TargetSpec>,
) -> BindingSpec {
    let mut config = json!({ "mode": mode });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    BindingSpec {
        tenant: "t".into(),
        name: name.into(),
        plugin: scalehost_test_artifacts::POLICY_FIXTURE.to_owned(),
        interval: Duration::from_millis(100),
        config,
        targets,
        vm_pools: vec![],
        // Short, so that the tests of misbehaving modes end quickly.
        limits: Limits {
            deadline: Duration::from_millis(200),
            ..Limits::default()
        },
        fallback: FallbackSpec::default(),
    }
}

pub fn workload_json(w: &WorkloadRef) -> Value {
    json!({ "kind": "deployment", "namespace": w.namespace, "name": w.name })
}
