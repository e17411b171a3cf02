//! The Prometheus backend against the real Prometheus (Debian's `prometheus` package, started on
//! a free loopback port with a temporary storage dir) scraping an exporter the test serves; and
//! a policy reading it through the tick engine.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{api, compiled, tenant};
use scalehost::backends::prometheus::{Prometheus, PrometheusConfig};
use scalehost::backends::simulated::{SimSpec, SimulatedCluster};
use scalehost::backends::{
    Actuator, Clock, MetricSource, SystemClock, VmInventory, WorkloadReader,
};
use scalehost::domain::cluster::{
    BackendError, Capacity, PowerState, Series, TimestampMs, Vm, WorkloadRef, WorkloadStatus,
};
use scalehost::store::StateStore;
use scalehost::tick::{Action, AuditLog, BindingSpec, Outcome, TargetSpec, TickEngine};
use serde_json::json;

/// The Prometheus server; killed when dropped.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> &'static str {
    for candidate in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!(
        "the prometheus binary is not installed: `apt-get install -y prometheus` (cargo xtask test installs it)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Serves `/metrics`: one series in a namespace the tenant has, one in another.
async fn exporter(value: Arc<AtomicU64>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let value = value.load(Ordering::Relaxed);
            async move {
                format!(
                    "# TYPE app_requests_per_second gauge\n\
                     app_requests_per_second{{namespace=\"web\",workload=\"api\"}} {value}\n\
                     app_requests_per_second{{namespace=\"secret\",workload=\"db\"}} 7\n"
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn start_prometheus(target: SocketAddr) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("writes");
    let port = free_port();
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    // Ready, and the exporter scraped.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scraped = client
            .get(format!("{}/api/v1/query", server.url))
            .query(&[("query", "up == 1")])
            .send()
            .await
            .ok();
        if let Some(response) = scraped
            && let Ok(body) = response.json::<serde_json::Value>().await
            && body["data"]["result"]
                .as_array()
                .is_some_and(|r| r.len() == 1)
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Made on the test's runtime (call from the async test, not from a blocking closure).
fn client(url: &str, timeout: Duration) -> Prometheus {
    Prometheus::new(&PrometheusConfig {
        max_answer_bytes: 16 << 20,
        url: url.to_owned(),
        bearer_token_file: None,
        ca_file: None,
        timeout,
    })
    .expect("client")
}

/// Queries go to Prometheus; workloads and scaling to the simulated cluster.
struct PrometheusAndSim {
    prometheus: Prometheus,
    sim: Arc<SimulatedCluster>,
}

#[async_trait::async_trait]
impl MetricSource for PrometheusAndSim {
    async fn query(&self, promql: &str, at: TimestampMs) -> Result<Vec<Series>, BackendError> {
        self.prometheus.query(promql, at).await
    }

    async fn query_range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: u64,
    ) -> Result<Vec<Series>, BackendError> {
        self.prometheus
            .query_range(promql, start, end, step_ms)
            .await
    }

    async fn events(&self, s: &str, w: u64, now: TimestampMs) -> Result<Vec<Series>, BackendError> {
        self.sim.events(s, w, now).await
    }
}

#[async_trait::async_trait]
impl WorkloadReader for PrometheusAndSim {
    async fn workload(&self, target: &WorkloadRef) -> Result<WorkloadStatus, BackendError> {
        self.sim.workload(target).await
    }

    async fn capacity(&self, exclude: &[WorkloadRef]) -> Result<Capacity, BackendError> {
        self.sim.capacity(exclude).await
    }
}

#[async_trait::async_trait]
impl VmInventory for PrometheusAndSim {
    async fn vms(&self, pool: &str) -> Result<Vec<Vm>, BackendError> {
        self.sim.vms(pool).await
    }
}

#[async_trait::async_trait]
impl Actuator for PrometheusAndSim {
    async fn scale(&self, target: &WorkloadRef, replicas: u32) -> Result<(), BackendError> {
        self.sim.scale(target, replicas).await
    }

    async fn set_power(&self, pool: &str, vm: &str, state: PowerState) -> Result<(), BackendError> {
        self.sim.set_power(pool, vm, state).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_prometheus_answers_queries_errors_and_a_policy() {
    let value = Arc::new(AtomicU64::new(420));
    let server = start_prometheus(exporter(value.clone()).await).await;
    let url = server.url.clone();
    let prometheus = client(&url, Duration::from_secs(5));
    // A few scrapes, so a range has several points.
    tokio::time::sleep(Duration::from_millis(3000)).await;

    let checks = tokio::spawn(async move {
        let now = SystemClock.now_ms();
        // A vector: one series per label set, labels sorted.
        let vector = prometheus
            .query("app_requests_per_second", now)
            .await
            .expect("vector");
        assert_eq!(vector.len(), 2);
        let web = vector
            .iter()
            .find(|s| s.labels.contains(&("namespace".into(), "web".into())))
            .expect("the web series");
        assert_eq!(web.samples[0].value, 420.0);
        assert!(
            web.labels
                .contains(&("__name__".into(), "app_requests_per_second".into()))
        );
        // An aggregation and a scalar.
        let sum = prometheus
            .query("sum(app_requests_per_second)", now)
            .await
            .expect("sum");
        assert_eq!((sum[0].labels.len(), sum[0].samples[0].value), (0, 427.0));
        let scalar = prometheus
            .query("scalar(sum(app_requests_per_second)) * 2", now)
            .await
            .expect("scalar");
        assert_eq!(scalar[0].samples[0].value, 854.0);
        // A matrix.
        let range = prometheus
            .query_range(
                "app_requests_per_second{namespace=\"web\"}",
                now - 3000,
                now,
                1000,
            )
            .await
            .expect("matrix");
        assert_eq!(range.len(), 1);
        assert!(range[0].samples.len() >= 2, "{:?}", range[0].samples);
        // Prometheus's own message for bad PromQL, as `invalid`.
        match prometheus.query("sum(app_requests_per_second", now).await {
            Err(BackendError::Invalid(message)) => {
                assert!(message.contains("parse error"), "{message}")
            }
            other => panic!("expected invalid, got {other:?}"),
        }
        assert!(matches!(
            prometheus.query_range("up", now, now - 1, 1000).await,
            Err(BackendError::Invalid(_))
        ));
    })
    .await;
    checks.expect("checks pass");

    // Unreachable, and a server that never answers: `unavailable`, within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let dead_url = format!("http://127.0.0.1:{}", free_port());
    let (silent_client, dead_client) = (
        client(&silent_url, Duration::from_millis(300)),
        client(&dead_url, Duration::from_secs(1)),
    );
    tokio::spawn(async move {
        let started = Instant::now();
        match silent_client.query("up", 0).await {
            Err(BackendError::Unavailable(message)) => {
                assert!(message.contains("did not answer within"), "{message}")
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(
            dead_client.query("up", 0).await,
            Err(BackendError::Unavailable(_))
        ));
        drop(silent);
    })
    .await
    .expect("timeouts");

    // A policy reading Prometheus through the engine: threshold-cooldown over the requests of
    // its namespace. The series of a namespace the tenant lacks is dropped by the host: with it
    // the per-host value would be (420 + 7) / 2, under the threshold.
    let sim = Arc::new(
        SimulatedCluster::new(
            SimSpec {
                start_ms: SystemClock.now_ms(),
                ..common::sim_spec()
            },
            Path::new("."),
        )
        .expect("sim"),
    );
    let cluster = Arc::new(PrometheusAndSim {
        prometheus: client(&url, Duration::from_secs(5)),
        sim: sim.clone(),
    });
    let engine = TickEngine::new(
        cluster,
        sim.clone(),
        Arc::new(StateStore::in_memory().expect("state")),
        Arc::new(AuditLog::in_memory(100)),
        &scalehost::runtime::EngineConfig::default(),
    );
    engine.add_tenant(tenant());
    let spec = BindingSpec {
        tenant: "t".into(),
        name: "from-prometheus".into(),
        plugin: "threshold-cooldown".into(),
        interval: Duration::from_secs(15),
        config: json!({
            "target": { "namespace": "web", "name": "api" },
            "source": { "query": "app_requests_per_second" },
            "window_secs": 1,
            "cooldown_secs": 0,
            "rules": [{ "direction": "up", "threshold": 300.0, "step": { "by": 2 }, "limit": 10 }],
        }),
        targets: vec![TargetSpec {
            kind: Default::default(),
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
        limits: Default::default(),
        fallback: Default::default(),
    };
    let record = tokio::spawn(async move {
        let binding = engine
            .bind(spec, compiled(scalehost_test_artifacts::THRESHOLD_COOLDOWN))
            .await
            .expect("binds");
        engine.tick(&binding).await
    })
    .await
    .expect("ticks");
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert!(
        matches!(record.actions.first(), Some(Action::Scale { target, applied: 6, .. }) if *target == api()),
        "420 per host > 300: 4 -> 6; {:?}",
        record.actions
    );

    // End to end through the host's config: a tenant on a real backend (this Prometheus and the
    // Kubernetes test server), threshold-cooldown scaling a Deployment there.
    let fake = Arc::new(std::sync::Mutex::new(common::apiserver::sample()));
    let (api_server, _) = common::apiserver::serve(fake.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_text = format!(
        r#"
data_dir = "{data}"
[[backends]]
name = "prod"
prometheus = {{ url = "{url}", timeout = "5s" }}
kubernetes = {{ url = "{api_server}", timeout = "5s" }}
[[tenants]]
name = "shop"
namespaces = ["web"]
backend = "prod"
[[bindings]]
tenant = "shop"
name = "api"
plugin = "{plugin}"
config = {{ target = {{ namespace = "web", name = "api" }}, source = {{ query = "app_requests_per_second" }}, window_secs = 1, cooldown_secs = 0, rules = [{{ direction = "up", threshold = 300.0, step = {{ by = 2 }}, limit = 10 }}] }}
targets = [{{ namespace = "web", name = "api", min_replicas = 1, max_replicas = 10 }}]
"#,
        data = dir.path().join("data").display(),
        plugin = scalehost_test_artifacts::THRESHOLD_COOLDOWN,
    );
    let config = scalehost::config::HostConfig::from_toml(
        &config_text,
        Path::new("scalehost.toml"),
        dir.path().to_owned(),
    )
    .expect("config");
    let host = scalehost::Host::from_config(config).await.expect("host");
    let engine = host.engine().clone();
    let record = tokio::spawn(async move {
        let binding = engine.binding("shop", "api").expect("bound");
        engine.tick(&binding).await
    })
    .await
    .expect("ticks");
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    let fake = fake.lock().expect("state");
    assert_eq!(
        fake.deployments[&("web".to_owned(), "api".to_owned())].replicas,
        6,
        "scaled through the scale subresource: {:?}",
        fake.log
    );
    assert!(
        fake.log
            .iter()
            .any(|l| l == "PUT deployments/web/api/scale")
    );
    drop(fake);

    // Behind TLS: the configured CA is trusted, nothing else is.
    let addr: SocketAddr = server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let tls = common::tls::front(addr).await;
    let token = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(token.path(), "prometheus-token\n").expect("writes");
    let over_tls = |ca_file: Option<std::path::PathBuf>| {
        Prometheus::new(&PrometheusConfig {
            max_answer_bytes: 16 << 20,
            url: tls.url.clone(),
            bearer_token_file: Some(token.path().to_owned()),
            ca_file,
            timeout: Duration::from_secs(5),
        })
    };
    let trusted = over_tls(Some(tls.ca_file.clone())).expect("client");
    let untrusted = over_tls(None).expect("client");
    let (ok, refused) = tokio::spawn(async move {
        let now = SystemClock.now_ms();
        (
            trusted.query("app_requests_per_second", now).await,
            untrusted.query("app_requests_per_second", now).await,
        )
    })
    .await
    .expect("queries");
    assert_eq!(ok.expect("trusted CA").len(), 2);
    assert!(
        matches!(&refused, Err(BackendError::Unavailable(_))),
        "an unknown CA must be refused: {refused:?}"
    );
    let missing = over_tls(Some("/nonexistent/prom-ca.pem".into()))
        .map(|_| ())
        .expect_err("a missing CA file");
    assert!(
        scalehost::domain::display_chain(&missing).contains("/nonexistent/prom-ca.pem"),
        "{missing}"
    );
    drop(server);
}

/// A Prometheus that accepts connections and never answers (its client would wait 60 s) costs
/// a tick its deadline, not more: the request is dropped with the invocation, and the next tick
/// runs on time and meets the same fate, no worse.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_prometheus_costs_a_tick_its_deadline() {
    // Connections complete in the kernel's backlog; nothing ever reads or answers them.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}", stalled.local_addr().expect("addr"));
    let sim = common::sim();
    let cluster = Arc::new(PrometheusAndSim {
        prometheus: client(&url, Duration::from_secs(60)),
        sim: sim.clone(),
    });
    let engine = TickEngine::new(
        cluster,
        sim.clone(),
        Arc::new(StateStore::in_memory().expect("state")),
        Arc::new(AuditLog::in_memory(100)),
        &scalehost::runtime::EngineConfig::default(),
    );
    engine.add_tenant(tenant());
    let mut spec = common::fixture_binding("stalled", "ok", json!({}), vec![]);
    spec.plugin = "threshold-cooldown".into();
    spec.config = json!({
        "target": { "namespace": "web", "name": "api" },
        "source": { "query": "app_requests_per_second" },
        "window_secs": 1,
        "cooldown_secs": 0,
        "rules": [{ "direction": "up", "threshold": 300.0, "step": { "by": 2 }, "limit": 10 }],
    });
    spec.limits.deadline = Duration::from_millis(500);
    let binding = engine
        .bind(spec, compiled(scalehost_test_artifacts::THRESHOLD_COOLDOWN))
        .await
        .expect("binds");
    for tick in 0..2 {
        let started = Instant::now();
        let record = engine.tick(&binding).await;
        let took = started.elapsed();
        assert!(
            matches!(&record.outcome, Outcome::Failed { error: scalehost::runtime::InvocationError::Deadline(d) } if d == "500ms"),
            "tick {tick}: {:?}",
            record.outcome
        );
        assert!(record.actions.is_empty(), "tick {tick}: nothing applied");
        assert!(took < Duration::from_secs(2), "tick {tick} took {took:?}");
    }
    drop(stalled);
}

/// Beta's sentinel: every value of beta's is this number, or grows by it each second.
const BETA: f64 = 8_675_309.0;

/// Serves two tenants' series with distinctive values: `alpha`'s are small (111, 222, a counter
/// at 3/s, a histogram), `beta`'s are [`BETA`] (a gauge, a counter at `BETA`/s, buckets), and
/// cluster-wide series carry no namespace.
async fn tenants_exporter() -> SocketAddr {
    let started = Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let secs = started.elapsed().as_secs_f64();
            async move {
                format!(
                    "# TYPE app_requests_per_second gauge\n\
                     app_requests_per_second{{namespace=\"alpha\",workload=\"api\"}} 111\n\
                     app_requests_per_second{{namespace=\"alpha\",workload=\"web\"}} 222\n\
                     app_requests_per_second{{namespace=\"beta\",workload=\"db\"}} {BETA}\n\
                     # TYPE app_requests_total counter\n\
                     app_requests_total{{namespace=\"alpha\"}} {alpha}\n\
                     app_requests_total{{namespace=\"beta\"}} {beta}\n\
                     # TYPE app_latency_seconds histogram\n\
                     app_latency_seconds_bucket{{namespace=\"alpha\",le=\"0.1\"}} 10\n\
                     app_latency_seconds_bucket{{namespace=\"alpha\",le=\"1\"}} 20\n\
                     app_latency_seconds_bucket{{namespace=\"alpha\",le=\"+Inf\"}} 20\n\
                     app_latency_seconds_bucket{{namespace=\"beta\",le=\"0.1\"}} 0\n\
                     app_latency_seconds_bucket{{namespace=\"beta\",le=\"1\"}} {BETA}\n\
                     app_latency_seconds_bucket{{namespace=\"beta\",le=\"+Inf\"}} {BETA}\n\
                     # TYPE scalehost_cluster_allocatable_cpu_millis gauge\n\
                     scalehost_cluster_allocatable_cpu_millis 64000\n\
                     # TYPE node_cpu_total gauge\n\
                     node_cpu_total 64\n",
                    alpha = 3.0 * secs,
                    beta = BETA * secs,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn tenant_named(name: &str, cluster_metrics: bool) -> scalehost::domain::scope::TenantSpec {
    scalehost::domain::scope::TenantSpec {
        name: name.into(),
        namespaces: vec![name.into()],
        cluster_metrics,
        ..Default::default()
    }
}

fn scope_of(tenant: scalehost::domain::scope::TenantSpec) -> scalehost::domain::scope::Scope {
    scalehost::domain::scope::Scope {
        tenant,
        targets: vec![],
        pools: vec![],
        quotas: Default::default(),
    }
}

/// Every value in `series`.
fn values_of(series: &[Series]) -> Vec<f64> {
    series
        .iter()
        .flat_map(|s| s.samples.iter().map(|p| p.value))
        .collect()
}

/// Two tenants on one real Prometheus: every shape of query returns only the caller's series
/// (with the right values) or a clear `forbidden`; no value of the other tenant ever appears,
/// neither in an answer nor, through a policy, in its state, intents or audit record.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_on_one_prometheus_see_only_their_own_series() {
    use scalehost::domain::promql::QueryWindow;
    let server = start_prometheus(tenants_exporter().await).await;
    let url = server.url.clone();
    // Enough scrapes (1 s apart) for rates, offsets and subqueries.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let prometheus = client(&url, Duration::from_secs(5));
    let alpha = scope_of(tenant_named("alpha", false));
    let beta = scope_of(tenant_named("beta", false));
    let operator = scope_of(tenant_named("gamma", true));
    let checks = tokio::spawn(async move {
        let now = SystemClock.now_ms();
        let ask = |scope: &scalehost::domain::scope::Scope, text: &str| {
            scope.scoped_query(text, now, QueryWindow::Instant(now))
        };
        let run = async |scope: &scalehost::domain::scope::Scope, text: &str| {
            let scoped = ask(scope, text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let series = prometheus
                .query(&scoped, now)
                .await
                .unwrap_or_else(|e| panic!("{text} (sent as {scoped}): {e}"));
            // Alpha's values are all small; any of beta's, or a sum with one, is not.
            for value in values_of(&series) {
                assert!(
                    value < 1e6,
                    "{text} (sent as {scoped}) leaked another tenant's value {value}: {series:?}"
                );
            }
            series
        };
        let one = async |text: &str| -> f64 {
            let series = run(&alpha, text).await;
            assert_eq!(series.len(), 1, "{text}: {series:?}");
            series[0].samples[0].value
        };
        // Aggregations over the tenant's own series: its values, not the cluster's.
        assert_eq!(one("sum(app_requests_per_second)").await, 333.0);
        // `without (namespace)` keeps the other labels: one sum per workload, alpha's.
        let without = run(&alpha, "sum without (namespace) (app_requests_per_second)").await;
        assert_eq!(values_of(&without), [111.0, 222.0]);
        assert_eq!(one("count(app_requests_per_second)").await, 2.0);
        assert_eq!(
            one("sum(app_requests_per_second) / count(app_requests_per_second)").await,
            166.5
        );
        let by_workload = run(&alpha, "sum by (workload) (app_requests_per_second)").await;
        assert_eq!(values_of(&by_workload), [111.0, 222.0]);
        // Relabelling cannot fetch another namespace: the input is scoped first.
        let relabelled = run(
            &alpha,
            "sum by (namespace) (label_replace(app_requests_per_second, \"namespace\", \"beta\", \"\", \"\"))",
        )
        .await;
        assert_eq!(values_of(&relabelled), [333.0]);
        assert_eq!(
            relabelled[0].labels,
            [("namespace".to_owned(), "beta".to_owned())]
        );
        // Everything at once is everything of the tenant's.
        let everything = run(&alpha, "{__name__=~\".+\"}").await;
        assert!(!everything.is_empty());
        for s in &everything {
            assert!(
                s.labels.contains(&("namespace".into(), "alpha".into())),
                "{:?}",
                s.labels
            );
        }
        // rate, histogram_quantile, offset, @, subqueries over granted selectors.
        let rate = one("sum(rate(app_requests_total[5s]))").await;
        assert!(
            (rate - 3.0).abs() < 0.3,
            "alpha's counter grows 3/s: {rate}"
        );
        assert_eq!(
            one("histogram_quantile(0.5, sum by (le) (app_latency_seconds_bucket))").await,
            0.1
        );
        assert_eq!(one("sum(app_requests_per_second offset 2s)").await, 333.0);
        assert_eq!(
            one(&format!(
                "sum(app_requests_per_second @ {})",
                now / 1000 - 2
            ))
            .await,
            333.0
        );
        assert_eq!(
            one("max_over_time(sum(app_requests_per_second)[4s:1s])").await,
            333.0
        );
        // absent() and vector() answer for the tenant alone: beta's db does not exist for alpha.
        assert_eq!(
            one("absent(app_requests_per_second{workload=\"db\"})").await,
            1.0
        );
        assert!(
            run(&alpha, "absent(app_requests_per_second)")
                .await
                .is_empty()
        );
        assert_eq!(one("vector(1)").await, 1.0);
        // A selector naming no namespace reads only the tenant's: no db series.
        assert!(
            run(&alpha, "app_requests_per_second{workload=\"db\"}")
                .await
                .is_empty()
        );
        // The other tenant sees its own, and none of alpha's.
        let scoped = ask(&beta, "sum(app_requests_per_second)").expect("scoped");
        let theirs = prometheus.query(&scoped, now).await.expect("query");
        assert_eq!(values_of(&theirs), [BETA]);
        // A range query: every step the tenant's sum.
        let scoped = alpha
            .scoped_query(
                "sum(app_requests_per_second)",
                now,
                QueryWindow::Range {
                    start: now - 3000,
                    end: now,
                    step_ms: 1000,
                },
            )
            .expect("scoped");
        let range = prometheus
            .query_range(&scoped, now - 3000, now, 1000)
            .await
            .expect("range");
        assert!(values_of(&range).iter().all(|v| *v == 333.0), "{range:?}");

        // What cannot be scoped is forbidden, with the reason.
        for (text, why) in [
            (
                "sum(app_requests_per_second{namespace=\"beta\"})",
                "namespace \"beta\" is not granted to tenant alpha",
            ),
            (
                "count by (workload) (app_requests_per_second{namespace=\"beta\"})",
                "not granted",
            ),
            (
                "sum(app_requests_per_second) + sum(app_requests_per_second{namespace=\"beta\"})",
                "not granted",
            ),
            (
                "absent(app_requests_per_second{namespace=\"beta\"})",
                "not granted",
            ),
            (
                "scalehost_cluster_allocatable_cpu_millis",
                "cluster_metrics",
            ),
            ("node_cpu_total", "cluster_metrics"),
            (
                "{__name__=\"scalehost_cluster_allocatable_cpu_millis\"}",
                "cluster_metrics",
            ),
        ] {
            match ask(&alpha, text) {
                Err(BackendError::Forbidden(message)) => {
                    assert!(message.contains(why), "{text}: {message}")
                }
                other => panic!("{text}: expected forbidden, got {other:?}"),
            }
        }
        // Cluster-wide series are a grant of their own.
        let scoped = ask(&operator, "scalehost_cluster_allocatable_cpu_millis").expect("granted");
        let cluster = prometheus.query(&scoped, now).await.expect("query");
        assert_eq!(values_of(&cluster), [64000.0]);
    });
    checks.await.expect("every shape is scoped");

    // Through a policy: alpha's probe asks the same shapes; nothing of beta's reaches its state,
    // its intents or its audit record.
    let sim = Arc::new(
        SimulatedCluster::new(
            SimSpec {
                start_ms: SystemClock.now_ms(),
                ..common::sim_spec()
            },
            Path::new("."),
        )
        .expect("sim"),
    );
    let state = Arc::new(StateStore::in_memory().expect("state"));
    let audit = Arc::new(AuditLog::in_memory(100));
    let engine = TickEngine::new(
        Arc::new(PrometheusAndSim {
            prometheus: client(&url, Duration::from_secs(5)),
            sim: sim.clone(),
        }),
        sim.clone(),
        state.clone(),
        audit.clone(),
        &scalehost::runtime::EngineConfig::default(),
    );
    engine.add_tenant(scalehost::domain::scope::TenantSpec {
        namespaces: vec!["alpha".into(), "web".into()],
        ..tenant_named("alpha", false)
    });
    let queries = [
        "sum(app_requests_per_second)",
        "sum without (namespace, instance, job) (app_requests_per_second)",
        "count({__name__=~\".+\"})",
        "sum(rate(app_requests_total[5s]))",
        "histogram_quantile(0.5, sum by (le) (app_latency_seconds_bucket))",
        "sum by (namespace) (label_replace(app_requests_per_second, \"namespace\", \"beta\", \"\", \"\"))",
        "sum(app_requests_per_second{namespace=\"beta\"})",
        "scalehost_cluster_allocatable_cpu_millis",
    ];
    let mut spec = common::fixture_binding(
        "probe",
        "probe",
        json!({ "queries": queries, "target": { "namespace": "web", "name": "api" }, "replicas": 5 }),
        vec![common::target(&common::api(), 1, 10)],
    );
    spec.tenant = "alpha".into();
    spec.limits.deadline = Duration::from_secs(5);
    let record = tokio::spawn(async move {
        let binding = engine.bind(spec, common::fixture()).await.expect("binds");
        engine.tick(&binding).await
    })
    .await
    .expect("ticks");
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    let answers = String::from_utf8(
        state
            .get(&scalehost::store::namespace("alpha", "probe"), "answers")
            .expect("state")
            .expect("answers kept"),
    )
    .expect("utf-8");
    for exact in [
        "sum(app_requests_per_second) => ok [([], [333.0])]",
        "sum without (namespace, instance, job) (app_requests_per_second) => ok [([(\"workload\", \"api\")], [111.0]), ([(\"workload\", \"web\")], [222.0])]",
        // Relabelled to beta's namespace, the value is still alpha's own.
        "=> ok [([(\"namespace\", \"beta\")], [333.0])]",
        // Two gauges, a counter and three buckets: alpha's series, and no cluster-wide one.
        "count({__name__=~\".+\"}) => ok [([], [6.0])]",
        "histogram_quantile(0.5, sum by (le) (app_latency_seconds_bucket)) => ok [([], [0.1])]",
    ] {
        assert!(answers.contains(exact), "{exact} in {answers}");
    }
    assert!(answers.contains("not granted to tenant alpha"), "{answers}");
    assert!(answers.contains("cluster_metrics"), "{answers}");
    // The audit record's intents carry the answers in their reason.
    let audited = serde_json::to_string(
        &audit
            .recent()
            .iter()
            .map(|r| (&r.intents, &r.actions))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(
        audited.contains("=> ok [([], [333.0])]"),
        "the reason holds the answers: {audited}"
    );
    for text in [&answers, &audited] {
        assert!(
            !text.contains("8675"),
            "another tenant's value reached the policy: {text}"
        );
    }
    drop(server);
}
