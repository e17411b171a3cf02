//! Creating many bindings through the HTTP API, over a real socket: how long 10,000 `PUT`s
//! take. See docs/benchmarks.md ("Many bindings").
//!
//! ```text
//! cargo bench -p scalehost --bench api_bindings -- [--bindings 10000] [--concurrency 16]
//! ```
//!
//! A host with the embedded simulated cluster and a data dir in a temp dir (control store,
//! registry and state on disk, as `scalehost serve` keeps them), one tenant, the fixture
//! component uploaded once; then N bindings (`counter` mode, 1 h interval, so that ticks do not
//! compete) are created with C requests in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scalehost::Host;
use scalehost::config::HostConfig;

const ADMIN: &str = "bench-admin-token-0123456789abcdef";

fn main() {
    let mut bindings = 10_000usize;
    let mut concurrency = 16usize;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bindings" => {
                bindings = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--bindings N")
            }
            "--concurrency" => {
                concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency C")
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, ADMIN).expect("writes");
        let mut config = HostConfig::embedded_default();
        config.data_dir = dir.path().join("data");
        config.api.admin_token_file = Some(token_file);
        config.api.listen = Some("127.0.0.1:0".parse().expect("addr"));
        let host = Host::from_config(config).await.expect("host starts");
        let base = format!("http://{}", host.local_addr().expect("listens"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            host.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("runs");
        });
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        {
            assert!(started.elapsed() < Duration::from_secs(30), "not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tenant: serde_json::Value = client
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "name": "bulk", "namespaces": ["default"] }))
            .send()
            .await
            .expect("creates the tenant")
            .json()
            .await
            .expect("JSON");
        let token = tenant["token"]["token"].as_str().expect("token").to_owned();
        let plugin: serde_json::Value = client
            .post(format!("{base}/v1/plugins"))
            .bearer_auth(&token)
            .body(std::fs::read(scalehost_test_artifacts::POLICY_FIXTURE).expect("fixture"))
            .send()
            .await
            .expect("uploads")
            .json()
            .await
            .expect("JSON");
        let digest = plugin["digest"].as_str().expect("digest").to_owned();
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut puts = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..bindings {
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            let (client, base, token, digest) =
                (client.clone(), base.clone(), token.clone(), digest.clone());
            puts.spawn(async move {
                let sent = Instant::now();
                let response = client
                    .put(format!("{base}/v1/tenants/bulk/bindings/b{i}"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({
                        "plugin": digest,
                        "config": { "mode": "counter" },
                        "interval": "1h",
                    }))
                    .send()
                    .await
                    .expect("sends");
                let status = response.status();
                assert!(
                    status.is_success(),
                    "b{i}: {status} {}",
                    response.text().await.unwrap_or_default()
                );
                drop(permit);
                sent.elapsed()
            });
        }
        let mut latencies = Vec::with_capacity(bindings);
        while let Some(took) = puts.join_next().await {
            latencies.push(took.expect("a put"));
        }
        let wall = started.elapsed();
        latencies.sort();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        println!(
            "| {bindings} | {concurrency} | {:.1} s | {:.0} | {:.1} ms | {:.1} ms |",
            wall.as_secs_f64(),
            bindings as f64 / wall.as_secs_f64(),
            at(0.5).as_secs_f64() * 1000.0,
            at(0.99).as_secs_f64() * 1000.0,
        );
        println!("(bindings | requests in flight | all created in | per second | PUT p50 | p99)");
        let _ = stop.send(());
        served.await.expect("stops");
    });
}
