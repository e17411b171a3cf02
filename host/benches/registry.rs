//! Live swap costs: upload → first tick on the new version, and reloading a compiled artifact.
//!
//! - `upload_to_first_tick`: a new build of the shipped `opportunistic-miner-fill` (the same code
//!   under a new digest) is uploaded (validated, compiled, stored durably), bound over the
//!   running binding (checked, its config validated, committed), and the binding's next tick
//!   runs it. What a client waits for, minus the wait for the binding's next scheduled tick.
//! - `reload_artifact`: a registry opened afresh (as after a restart) loads the compiled
//!   artifact of a stored plugin: no compilation.
//!
//! `cargo bench -p scalehost --bench registry` (see docs/benchmarks.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use scalehost::Host;
use scalehost::config::HostConfig;
use scalehost::control::Principal;
use scalehost::registry::PluginRegistry;
use scalehost::tick::{BindingSpec, FallbackSpec, Outcome, TargetSpec};

/// The component with a custom section appended: the same code under another digest.
fn variant(bytes: &[u8], tag: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let name = b"bench";
    let payload = tag.to_le_bytes();
    out.push(0);
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn request(plugin: &str) -> BindingSpec {
    BindingSpec {
        tenant: String::new(),
        name: String::new(),
        plugin: plugin.to_owned(),
        config: serde_json::json!({
            "filler": { "namespace": "batch", "name": "worker" },
            "reserve": { "percent": 10.0 },
        }),
        interval: Duration::from_secs(15),
        targets: vec![TargetSpec {
            kind: Default::default(),
            namespace: "batch".into(),
            name: "worker".into(),
            min_replicas: 0,
            max_replicas: 100,
            max_step_up: None,
            max_step_down: None,
            cooldown_up: Duration::ZERO,
            cooldown_down: Duration::ZERO,
            stabilization_down: Duration::ZERO,
        }],
        vm_pools: vec![],
        limits: Default::default(),
        fallback: FallbackSpec::default(),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = HostConfig::embedded_default();
    config.data_dir = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let host = runtime
        .block_on(Host::from_config(config))
        .expect("host starts");
    let control = host.control().clone();
    let admin = Principal::Admin;
    control
        .create_tenant(
            &admin,
            scalehost::domain::scope::TenantSpec {
                name: "bench".into(),
                namespaces: vec!["batch".into()],
                workloads: vec![],
                vm_pools: vec![],
                backend: None,
                ..Default::default()
            },
        )
        .expect("tenant");
    let bytes = std::fs::read(scalehost_test_artifacts::OPPORTUNISTIC_MINER_FILL).expect("plugin");
    let first = control
        .add_plugin(&admin, &bytes, None, None)
        .expect("uploads")
        .record
        .digest;
    // A change runs the policy's validate-config outside the change lock, as the API does.
    let put = |digest: &str| {
        let digest = digest.to_owned();
        runtime
            .block_on(control.with_validation(move |control| {
                control.put_binding(&Principal::Admin, "bench", "fill", request(&digest))
            }))
            .map(|_| ())
    };
    put(&first).expect("binds");
    let engine = control.engine().clone();

    let mut group = c.benchmark_group("registry");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));
    let mut tag = 0u64;
    group.bench_function("upload_to_first_tick", |b| {
        b.iter_batched(
            || {
                tag += 1;
                variant(&bytes, tag)
            },
            |bytes| {
                let digest = control
                    .add_plugin(&admin, &bytes, None, None)
                    .expect("uploads")
                    .record
                    .digest;
                put(&digest).expect("swaps");
                let binding = engine.binding("bench", "fill").expect("bound");
                let record = runtime.block_on(engine.tick(&binding));
                assert_eq!(
                    (record.plugin.as_str(), &record.outcome),
                    (digest.as_str(), &Outcome::Ok)
                );
            },
            BatchSize::PerIteration,
        )
    });

    let reload_dir = dir.path().join("data");
    group.bench_function("reload_artifact", |b| {
        b.iter_batched(
            || {
                // A fresh registry over the same files, as after a restart.
                PluginRegistry::open(
                    control.registry().runtime().clone(),
                    control.registry().database().clone(),
                    Path::new(&reload_dir),
                    64 << 20,
                )
                .expect("opens")
            },
            |registry: PluginRegistry| {
                let policy = registry.load(&first).expect("loads");
                assert_eq!(registry.compilations(), 0, "loaded, not compiled");
                Arc::clone(&policy)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
