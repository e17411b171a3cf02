//! `threshold-cooldown` in Rust, Python, JavaScript and C: component size, compile time, reload
//! of the compiled artifact from the registry's disk cache, and the cost of one tick.
//!
//! A plain bench binary (not criterion): compiling an 18 MB component takes seconds, so each
//! figure is the median of a few runs, printed as a Markdown table for docs/benchmarks.md.
//!
//! `cargo xtask plugins && cargo bench -p scalehost --bench languages`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalehost::backends::Clock;
use scalehost::backends::simulated::{
    LoadSpec, NodeSpec, SimSpec, SimWorkloadSpec, SimulatedCluster,
};
use scalehost::domain::cluster::WorkloadKind;
use scalehost::domain::principal::Principal;
use scalehost::domain::scope::{Scope, TenantSpec};
use scalehost::registry::PluginRegistry;
use scalehost::runtime::{Access, CompiledPolicy, EngineConfig, Limits, PolicyEngine, StagedState};
use scalehost::store::StateStore;

const COMPILES: usize = 3;
const RELOADS: usize = 20;
const TICKS: usize = 200;

fn component(language: &str) -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    match language {
        "rust" => PathBuf::from(scalehost_test_artifacts::THRESHOLD_COOLDOWN),
        other => built.join(format!("threshold-cooldown-{other}.wasm")),
    }
}

/// A web workload whose 4 pods push request events every 10 s.
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
            events: true,
        }],
        ..SimSpec::default()
    };
    Arc::new(SimulatedCluster::new(spec, Path::new(".")).expect("sim"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} µs", ms * 1000.0)
    }
}

/// Median of fresh-instance ticks: each reads the clock, the cooldown state, a minute of events
/// from 4 hosts and the workload, as the policy does every 15 s (the thresholds never fire, so
/// every tick does the same work).
fn tick_cost(policy: &CompiledPolicy, sim: &Arc<SimulatedCluster>) -> (Duration, u32) {
    let config = serde_json::json!({
        "target": { "namespace": "web", "name": "api" },
        "source": { "events": { "service": "web/api/requests" } },
        "rules": [
            { "direction": "up", "threshold": 1e9, "step": { "by": 1 }, "limit": 10 },
            { "direction": "down", "threshold": -1.0, "step": { "by": -1 }, "limit": 1 },
        ],
    })
    .to_string();
    let scope = Arc::new(Scope {
        tenant: TenantSpec {
            name: "t".into(),
            namespaces: vec!["web".into()],
            workloads: vec![],
            vm_pools: vec![],
            backend: None,
            ..Default::default()
        },
        targets: vec![],
        pools: vec![],
        quotas: Default::default(),
    });
    let state = Arc::new(StateStore::in_memory().expect("state"));
    let now = sim.now_ms();
    let mut samples = Vec::with_capacity(TICKS);
    let mut host_calls = 0;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for _ in 0..TICKS {
        let started = Instant::now();
        let invocation = rt.block_on(policy.tick(
            &config,
            Limits {
                deadline: Duration::from_secs(5),
                ..Limits::default()
            },
            "t".into(),
            "b".into(),
            now,
            Access::new(sim.clone(), scope.clone()),
            StagedState::new(state.clone(), "t/b".into()),
        ));
        samples.push(started.elapsed());
        assert_eq!(invocation.result, Ok(()), "{:?}", invocation.logs);
        host_calls = invocation.host_calls;
    }
    (median(samples), host_calls)
}

fn main() {
    let runtime = Arc::new(PolicyEngine::new(&EngineConfig::default()).expect("engine"));
    let sim = cluster();
    // Two minutes of pushed events.
    sim.advance_to(sim.now_ms() + 120_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let database = Arc::new(redb::Database::create(dir.path().join("db.redb")).expect("db"));
    let registry = PluginRegistry::open(runtime.clone(), database.clone(), dir.path(), 64 << 20)
        .expect("registry");

    println!(
        "| language | component | compile | reload from cache | tick (fresh instance) | host calls per tick |"
    );
    println!("|---|---|---|---|---|---|");
    for language in ["rust", "c", "js", "python"] {
        let path = component(language);
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("{} is missing: run `cargo xtask plugins`", path.display());
            std::process::exit(1);
        };
        let compile = median(
            (0..COMPILES)
                .map(|_| {
                    let started = Instant::now();
                    runtime.compile(&bytes).expect("compiles");
                    started.elapsed()
                })
                .collect(),
        );
        let digest = registry
            .add(&bytes, None, None, Principal::Admin)
            .expect("stored")
            .record
            .digest;
        let reload = median(
            (0..RELOADS)
                .map(|_| {
                    // A fresh registry over the same files, as after a restart.
                    let fresh = PluginRegistry::open(
                        runtime.clone(),
                        database.clone(),
                        dir.path(),
                        64 << 20,
                    )
                    .expect("opens");
                    let started = Instant::now();
                    fresh.load(&digest).expect("loads");
                    started.elapsed()
                })
                .collect(),
        );
        let policy = registry.load(&digest).expect("loads");
        let (tick, host_calls) = tick_cost(&policy, &sim);
        println!(
            "| {language} | {:.2} MB | {} | {} | {} | {host_calls} |",
            bytes.len() as f64 / 1e6,
            millis(compile),
            millis(reload),
            millis(tick)
        );
    }
}
