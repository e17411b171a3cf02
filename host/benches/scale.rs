//! Many bindings on the simulated cluster, ticking in real time: CPU, RSS, threads and how late
//! ticks start. See docs/benchmarks.md ("Many bindings").
//!
//! ```text
//! cargo bench -p scalehost --bench scale -- --bindings 100000 [--seconds 60] [--interval 15s] [--seasons 1]
//! ```
//!
//! Each binding is the shipped `predictive-forecast` with a workload of its own (one metric
//! query, one workload read, its model read from and written to state every tick, an intent
//! through the rails), ten thousand bindings per tenant, start times spread over the interval,
//! state in redb and the audit in a file, as `scalehost serve` keeps them. The runtime has one
//! worker per core. After one interval of warm-up, the next `--seconds` are measured.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalehost::backends::simulated::{
    LoadSpec, NodeSpec, SimSpec, SimWorkloadSpec, SimulatedCluster,
};
use scalehost::domain::cluster::WorkloadKind;
use scalehost::domain::scope::TenantSpec;
use scalehost::runtime::{EngineConfig, Limits, PolicyEngine};
use scalehost::store::StateStore;
use scalehost::tick::{AuditLog, BindingSpec, FallbackSpec, Scheduler, TargetSpec, TickEngine};

const PER_TENANT: usize = 10_000;

struct Args {
    bindings: usize,
    seconds: u64,
    interval: Duration,
    /// The forecast's `seasons_kept`: its state is 97 bytes + 1,152 bytes per season.
    seasons: u32,
}

fn args() -> Args {
    let mut args = Args {
        bindings: 10_000,
        seconds: 60,
        interval: Duration::from_secs(15),
        seasons: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bindings" => args.bindings = value().parse().expect("--bindings N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--seasons" => args.seasons = value().parse().expect("--seasons N"),
            "--interval" => {
                args.interval =
                    scalehost::domain::duration::parse(&value()).expect("--interval 15s")
            }
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// CPU time of this process so far (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args = args();
    let n = args.bindings;
    let dir = tempfile::tempdir().expect("tempdir");
    // The host's own runtime: one worker per core.
    let runtime = scalehost::runtime().expect("runtime");
    let _guard = runtime.enter();

    // 640 pods of 100m fit a 64-core node; room for 4 replicas a workload (the most the
    // policy asks for at these loads), and a quarter more.
    let nodes = (n * 4 / 640 + 1) * 5 / 4 + 1;
    let spec = SimSpec {
        nodes: (0..nodes)
            .map(|i| NodeSpec {
                name: format!("node-{i}"),
                cpu_millis: 64_000,
                memory_bytes: 256 << 30,
            })
            .collect(),
        workloads: (0..n)
            .map(|i| SimWorkloadSpec {
                kind: WorkloadKind::Deployment,
                namespace: format!("t{}", i / PER_TENANT),
                name: format!("w{i}"),
                replicas: 1,
                cpu_request_millis: 100,
                memory_request_bytes: 64 << 20,
                startup_delay: Duration::from_secs(10),
                priority: 0,
                capacity_per_replica: 100.0,
                load: Some(LoadSpec::Constant {
                    value: 50.0 + (i % 200) as f64,
                }),
                events: false,
            })
            .collect(),
        ..SimSpec::default()
    };
    let started = Instant::now();
    let sim = Arc::new(SimulatedCluster::new(spec, Path::new(".")).expect("sim"));
    let engine_config = EngineConfig::default();
    let policies = PolicyEngine::new(&engine_config).expect("engine");
    let policy = Arc::new(
        scalehost::runtime::load_plugin(
            &policies,
            Path::new(scalehost_test_artifacts::PREDICTIVE_FORECAST),
        )
        .expect("predictive-forecast"),
    );
    let state = Arc::new(StateStore::open(&dir.path().join("state.redb")).expect("state"));
    let audit =
        Arc::new(AuditLog::with_file(1024, &dir.path().join("audit.jsonl")).expect("audit"));
    let engine = Arc::new(TickEngine::new(
        sim.clone(),
        sim.clone(),
        state,
        audit,
        &engine_config,
    ));
    for t in 0..n.div_ceil(PER_TENANT) {
        engine.add_tenant(TenantSpec {
            name: format!("t{t}"),
            namespaces: vec![format!("t{t}")],
            workloads: vec![],
            vm_pools: vec![],
            backend: None,
            ..Default::default()
        });
    }
    runtime.block_on(async {
        for i in 0..n {
            let (tenant, name) = (format!("t{}", i / PER_TENANT), format!("w{i}"));
            let config = serde_json::json!({
                "target": { "namespace": tenant, "name": name },
                "metric": format!("scalehost_requests_per_minute{{namespace=\"{tenant}\",workload=\"{name}\"}}"),
                "capacity_per_replica": 100.0,
                "max_replicas": 10,
                "seasons_kept": args.seasons,
            });
            engine
                .bind(
                    BindingSpec {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        plugin: "predictive-forecast".into(),
                        interval: args.interval,
                        config,
                        targets: vec![TargetSpec {
                            kind: WorkloadKind::Deployment,
                            namespace: tenant,
                            name,
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
                .await
                .expect("binds");
        }
    });
    let bound_in = started.elapsed();

    // The simulated cluster follows the wall clock, 10 times a second.
    let follower = {
        let sim = sim.clone();
        let (origin, origin_ms) = (Instant::now(), sim.now());
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                sim.advance_to(origin_ms + origin.elapsed().as_millis() as u64);
            }
        })
    };
    let mut scheduler = Scheduler::new(engine.clone());
    runtime.block_on(async { scheduler.start_all() });
    runtime.block_on(tokio::time::sleep(args.interval));
    engine.lateness().reset();
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut peak_rss_kib = 0;
    runtime.block_on(async {
        for _ in 0..args.seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak_rss_kib = peak_rss_kib.max(status_field("VmRSS:"));
        }
    });
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    let threads = status_field("Threads:");
    let lateness = engine.lateness().summary();
    follower.abort();
    runtime.block_on(scheduler.shutdown());
    let ticks_expected = (n as f64 * wall.as_secs_f64() / args.interval.as_secs_f64()) as u64;
    println!(
        "| {n} | {:?} | {} | {:.1} s | {} ({} expected) | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} |",
        args.interval,
        args.seasons,
        bound_in.as_secs_f64(),
        lateness.ticks,
        ticks_expected,
        cpu.as_secs_f64() / wall.as_secs_f64(),
        peak_rss_kib / 1024,
        threads,
        lateness.p50_us as f64 / 1000.0,
        lateness.p99_us as f64 / 1000.0,
        lateness.max_us as f64 / 1000.0,
    );
    println!(
        "(bindings | interval | seasons kept | bound in | ticks measured | cores | peak RSS MiB | threads | lateness p50 ms | p99 ms | max ms)"
    );
}
