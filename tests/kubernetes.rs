//! The Kubernetes backend (kube) against an in-process server that answers as the API server
//! does (`common::apiserver`, which documents what it models): workload status with pod
//! metrics, capacity, scaling with 409 conflicts, cordon, drain with disruption budgets,
//! readiness, and the errors of each.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::apiserver::{self, FakeCustomMetric, FakeState};
use scalehost::backends::kubernetes::{Kubernetes, KubernetesConfig};
use scalehost::domain::cluster::{BackendError, WorkloadKind, WorkloadRef};

async fn connect(url: &str, drain_timeout: Duration) -> Kubernetes {
    Kubernetes::connect(&KubernetesConfig {
        in_cluster: false,
        kubeconfig: None,
        context: None,
        url: Some(url.to_owned()),
        token_file: None,
        ca_file: None,
        timeout: Duration::from_secs(5),
        drain_timeout,
    })
    .await
    .expect("connects")
}

async fn cluster(state: FakeState) -> (Arc<Mutex<FakeState>>, Kubernetes) {
    let shared = Arc::new(Mutex::new(state));
    let (url, _) = apiserver::serve(shared.clone()).await;
    let kubernetes = connect(&url, Duration::from_secs(5)).await;
    (shared, kubernetes)
}

fn stateful_set(ns: &str, name: &str) -> WorkloadRef {
    WorkloadRef {
        kind: WorkloadKind::StatefulSet,
        namespace: ns.into(),
        name: name.into(),
    }
}

/// Runs backend calls as a task of their own, as a tick does.
async fn blocking<T: Send + 'static, F: std::future::Future<Output = T> + Send + 'static>(
    work: impl FnOnce() -> F,
) -> T {
    tokio::spawn(work()).await.expect("no panic")
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_status_and_capacity() {
    let (state, k8s) = cluster(apiserver::sample()).await;
    let k8s = Arc::new(k8s);
    let k = k8s.clone();
    let (api, db, missing) = blocking(move || async move {
        (
            k.workload(&WorkloadRef::deployment("web", "api")).await,
            k.workload(&stateful_set("data", "db")).await,
            k.workload(&WorkloadRef::deployment("web", "nope")).await,
        )
    })
    .await;
    let api = api.expect("api");
    assert_eq!(
        (api.replicas, api.ready, api.cpu_request_millis),
        (4, 3, 250)
    );
    assert_eq!(
        api.cpu_usage_millis,
        Some(400),
        "4 pods at 100m, from metrics.k8s.io"
    );
    let db = db.expect("db");
    assert_eq!(
        (db.replicas, db.cpu_request_millis, db.cpu_usage_millis),
        (3, 1000, None)
    );
    match missing {
        Err(BackendError::NotFound(message)) => {
            assert!(
                message.contains("deployments.apps \"nope\" not found"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Without the metrics API, usage is unknown, not an error.
    state.lock().expect("state").metrics_api = false;
    let k = k8s.clone();
    let api =
        blocking(move || async move { k.workload(&WorkloadRef::deployment("web", "api")).await })
            .await
            .expect("api");
    assert_eq!(api.cpu_usage_millis, None);

    let k = k8s.clone();
    let (all, without_api) = blocking(move || async move {
        (
            k.capacity(&[]).await,
            k.capacity(&[WorkloadRef::deployment("web", "api")]).await,
        )
    })
    .await;
    let all = all.expect("capacity");
    assert_eq!((all.nodes, all.allocatable_cpu_millis), (2, 8000));
    assert_eq!(all.allocatable_memory_bytes, 32 << 30);
    // 4 × 250m + 50m (daemon) + 100m (mirror) + 500m (pending); the finished job not counted.
    assert_eq!(all.requested_cpu_millis, 1650);
    assert_eq!(all.requested_memory_bytes, 7 * (128 << 20));
    assert_eq!(all.pending_pods, 1);
    let without_api = without_api.expect("capacity");
    assert_eq!(
        without_api.requested_cpu_millis, 650,
        "the excluded workload's pods left out"
    );
    // A cordoned or NotReady node is not capacity.
    {
        let mut s = state.lock().expect("state");
        s.nodes.get_mut("node-b").expect("node").unschedulable = true;
    }
    let k = k8s.clone();
    let one = blocking(move || async move { k.capacity(&[]).await })
        .await
        .expect("capacity");
    assert_eq!((one.nodes, one.allocatable_cpu_millis), (1, 4000));
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_goes_through_the_scale_subresource_and_retries_conflicts() {
    let (state, k8s) = cluster(apiserver::sample()).await;
    let k8s = Arc::new(k8s);
    let k = k8s.clone();
    let before =
        blocking(move || async move { k.scale(&WorkloadRef::deployment("web", "api"), 7).await })
            .await
            .expect("scales");
    assert_eq!(before, 4);
    {
        let s = state.lock().expect("state");
        let api = &s.deployments[&("web".to_owned(), "api".to_owned())];
        assert_eq!((api.replicas, api.resource_version), (7, 101));
    }
    // Two writers get in first: read again, write again, done.
    state.lock().expect("state").conflicting_writes = 2;
    let k = k8s.clone();
    blocking(move || async move { k.scale(&WorkloadRef::deployment("web", "api"), 9).await })
        .await
        .expect("scales after two conflicts");
    {
        let s = state.lock().expect("state");
        assert_eq!(
            s.deployments[&("web".to_owned(), "api".to_owned())].replicas,
            9
        );
        let puts = s
            .log
            .iter()
            .filter(|l| l.starts_with("PUT deployments/web/api/scale"))
            .count();
        assert_eq!(puts, 4, "1 + 3 writes: {:?}", s.log);
    }
    // Conflicts without end: given up, with the API server's message.
    state.lock().expect("state").conflicting_writes = 100;
    let k = k8s.clone();
    match blocking(move || async move { k.scale(&WorkloadRef::deployment("web", "api"), 2).await })
        .await
    {
        Err(BackendError::Unavailable(message)) => {
            assert!(
                message.contains("409") && message.contains("has been modified"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    state.lock().expect("state").conflicting_writes = 0;
    // A StatefulSet, an unchanged count (no write), a missing workload.
    let k = k8s.clone();
    let (db, same, missing) = blocking(move || async move {
        (
            k.scale(&stateful_set("data", "db"), 5).await,
            k.scale(&stateful_set("data", "db"), 5).await,
            k.scale(&WorkloadRef::deployment("web", "nope"), 1).await,
        )
    })
    .await;
    assert_eq!(db.expect("db"), 3);
    assert_eq!(same.expect("same"), 5);
    assert!(
        matches!(missing, Err(BackendError::NotFound(_))),
        "{missing:?}"
    );
    let s = state.lock().expect("state");
    assert_eq!(
        s.stateful_sets[&("data".to_owned(), "db".to_owned())].replicas,
        5
    );
    let db_puts = s
        .log
        .iter()
        .filter(|l| l.starts_with("PUT statefulsets/data/db/scale"))
        .count();
    assert_eq!(db_puts, 1, "no write when the count is already right");
}

#[tokio::test(flavor = "multi_thread")]
async fn cordon_then_drain_honours_budgets_and_skips_daemon_and_mirror_pods() {
    let mut sample = apiserver::sample();
    sample
        .pods
        .iter_mut()
        .find(|p| p.name == "api-1")
        .expect("api-1")
        .budget_refusals = 2;
    let (state, k8s) = cluster(sample).await;
    let k8s = Arc::new(k8s);
    let k = k8s.clone();
    let evicted = blocking(move || async move {
        k.cordon("node-a").await?;
        k.drain("node-a").await
    })
    .await
    .expect("drains");
    assert_eq!(evicted, ["web/api-0", "web/api-1"]);
    let s = state.lock().expect("state");
    assert!(s.nodes["node-a"].unschedulable);
    let remaining: Vec<&str> = s
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some("node-a"))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        remaining,
        ["agent-a", "etcd-node-a"],
        "daemon and mirror pods stay"
    );
    let cordon = s
        .log
        .iter()
        .position(|l| l == "PATCH node/node-a unschedulable=true")
        .expect("cordoned");
    let first_eviction = s
        .log
        .iter()
        .position(|l| l.starts_with("POST eviction"))
        .expect("evicted");
    assert!(cordon < first_eviction, "cordon before drain: {:?}", s.log);
    let refused = s
        .log
        .iter()
        .filter(|l| *l == "POST eviction web/api-1")
        .count();
    assert_eq!(refused, 3, "two 429s, then evicted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_blocked_by_a_budget_times_out_and_readiness_is_awaited() {
    let mut sample = apiserver::sample();
    sample
        .pods
        .iter_mut()
        .find(|p| p.name == "api-2")
        .expect("api-2")
        .budget_refusals = u32::MAX;
    let shared = Arc::new(Mutex::new(sample));
    let (url, _) = apiserver::serve(shared.clone()).await;
    let k8s = Arc::new(connect(&url, Duration::from_millis(900)).await);
    let k = k8s.clone();
    match blocking(move || async move { k.drain("node-b").await }).await {
        Err(BackendError::Unavailable(message)) => {
            assert!(
                message.contains("disruption budget") && message.contains("web/api-2"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A node that is not Ready: waited for, up to the timeout.
    shared
        .lock()
        .expect("state")
        .nodes
        .get_mut("node-b")
        .expect("node")
        .ready = false;
    let k = k8s.clone();
    let not_ready =
        blocking(move || async move { k.wait_ready("node-b", Duration::from_millis(600)).await })
            .await;
    assert!(
        matches!(not_ready, Err(BackendError::Unavailable(_))),
        "{not_ready:?}"
    );
    let flip = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        flip.lock()
            .expect("state")
            .nodes
            .get_mut("node-b")
            .expect("node")
            .ready = true;
    });
    let k = k8s.clone();
    blocking(move || async move {
        k.wait_ready("node-b", Duration::from_secs(10)).await?;
        k.uncordon("node-b").await
    })
    .await
    .expect("ready, uncordoned");
    assert!(!shared.lock().expect("state").nodes["node-b"].unschedulable);
    // A missing node, and an unreachable API server.
    let k = k8s.clone();
    assert!(matches!(
        blocking(move || async move { k.cordon("node-z").await }).await,
        Err(BackendError::NotFound(_))
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let dead = Arc::new(connect(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1)).await);
    let unreachable =
        blocking(
            move || async move { dead.workload(&WorkloadRef::deployment("web", "api")).await },
        )
        .await;
    assert!(
        matches!(unreachable, Err(BackendError::Unavailable(_))),
        "{unreachable:?}"
    );
}

/// The backend of a tenant with only Kubernetes, authenticated by a bearer-token file.
async fn kubernetes_backend(
    state: FakeState,
    token_file: Option<std::path::PathBuf>,
) -> (Arc<Mutex<FakeState>>, Result<Arc<RealCluster>, String>) {
    let shared = Arc::new(Mutex::new(state));
    let (url, _) = apiserver::serve(shared.clone()).await;
    let config = BackendConfig {
        name: "prod".into(),
        prometheus: None,
        kubernetes: Some(KubernetesConfig {
            in_cluster: false,
            kubeconfig: None,
            context: None,
            url: Some(url),
            token_file,
            ca_file: None,
            timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
        }),
        vsphere: None,
        vm_pools: vec![],
    };
    let backend = RealCluster::connect(&config)
        .await
        .map(Arc::new)
        .map_err(|e| scalehost::domain::display_chain(&e));
    (shared, backend)
}

fn custom(
    ns: &str,
    kind: &str,
    name: &str,
    app: &str,
    metric: &str,
    value: &str,
) -> FakeCustomMetric {
    FakeCustomMetric {
        namespace: ns.into(),
        resource: format!("{}s", kind.to_lowercase()),
        kind: kind.into(),
        name: name.into(),
        labels: [("app".to_owned(), app.to_owned())].into(),
        metric: metric.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_metrics_reach_policies_through_metrics_query() {
    let mut state = apiserver::sample();
    state.custom_metrics_api = true;
    state.custom_metrics = vec![
        custom(
            "web",
            "Pod",
            "api-0",
            "api",
            "http_requests_per_second",
            "1500m",
        ),
        custom(
            "web",
            "Pod",
            "api-1",
            "api",
            "http_requests_per_second",
            "2",
        ),
        custom(
            "web",
            "Pod",
            "cache-0",
            "cache",
            "http_requests_per_second",
            "9k",
        ),
        custom(
            "web",
            "Service",
            "api",
            "api",
            "requests_per_second",
            "3500m",
        ),
    ];
    state.token = Some("s3cret-token".into());
    let token = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(token.path(), "s3cret-token\n").expect("writes");
    let (state, backend) = kubernetes_backend(state, Some(token.path().to_owned())).await;
    let backend = backend.expect("connects");
    let b = backend.clone();
    let (pods, service, missing, malformed, history) = blocking(move || async move {
        (
            b.query(
                "custom.metrics.k8s.io/web/pods/*/http_requests_per_second?app=api",
                0,
            )
            .await,
            b.query(
                "custom.metrics.k8s.io/web/services/api/requests_per_second",
                0,
            )
            .await,
            b.query("custom.metrics.k8s.io/web/pods/*/nope", 0).await,
            b.query("custom.metrics.k8s.io/web/pods/rps", 0).await,
            b.query_range(
                "custom.metrics.k8s.io/web/pods/*/http_requests_per_second",
                0,
                60_000,
                15_000,
            )
            .await,
        )
    })
    .await;
    let pods = pods.expect("pod values");
    let values: Vec<(&str, f64)> = pods
        .iter()
        .map(|s| {
            let name = &s.labels.iter().find(|(k, _)| k == "name").expect("name").1;
            (name.as_str(), s.samples[0].value)
        })
        .collect();
    assert_eq!(
        values,
        [("api-0", 1.5), ("api-1", 2.0)],
        "the selector keeps app=api"
    );
    assert_eq!(
        pods[0].labels,
        [
            ("kind".to_owned(), "Pod".to_owned()),
            ("metric".to_owned(), "http_requests_per_second".to_owned()),
            ("name".to_owned(), "api-0".to_owned()),
            ("namespace".to_owned(), "web".to_owned()),
        ]
    );
    assert_eq!(
        pods[0].samples[0].at, 1_795_514_400_000,
        "the adapter's timestamp"
    );
    let service = service.expect("service value");
    assert_eq!(service[0].samples[0].value, 3.5);
    match missing {
        Err(BackendError::NotFound(m)) => {
            assert!(m.contains("could not find the metric nope"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(malformed, Err(BackendError::Invalid(_))),
        "{malformed:?}"
    );
    assert!(
        matches!(history, Err(BackendError::Invalid(_))),
        "{history:?}"
    );
    assert!(
        !state
            .lock()
            .expect("state")
            .log
            .iter()
            .any(|l| l.starts_with("401")),
        "the token file's token was sent"
    );

    // Another tenant's namespace is refused before the API server is asked.
    let scope = scalehost::domain::scope::Scope {
        tenant: scalehost::domain::scope::TenantSpec {
            name: "shop".into(),
            namespaces: vec!["shop".into()],
            workloads: vec![],
            vm_pools: vec![],
            backend: Some("prod".into()),
            ..Default::default()
        },
        targets: vec![],
        pools: vec![],
        quotas: Default::default(),
    };
    assert!(matches!(
        scope.check_custom_metric("custom.metrics.k8s.io/web/pods/*/http_requests_per_second"),
        Err(BackendError::Forbidden(_))
    ));
    assert!(
        scope
            .check_custom_metric("custom.metrics.k8s.io/shop/pods/*/x")
            .is_ok()
    );
    assert!(scope.check_custom_metric("sum(up)").is_ok());

    // Without custom.metrics.k8s.io served: not found, not a crash.
    state.lock().expect("state").custom_metrics_api = false;
    let b = backend.clone();
    let off = blocking(move || async move {
        b.query(
            "custom.metrics.k8s.io/web/pods/*/http_requests_per_second",
            0,
        )
        .await
    })
    .await;
    assert!(matches!(off, Err(BackendError::NotFound(_))), "{off:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_bearer_token_is_refused_and_a_missing_token_file_named() {
    let mut state = apiserver::sample();
    state.token = Some("right".into());
    let wrong = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(wrong.path(), "wrong").expect("writes");
    let (_, backend) = kubernetes_backend(state, Some(wrong.path().to_owned())).await;
    let backend = backend.expect("connects: the token is checked on use");
    let b = backend.clone();
    let refused =
        blocking(move || async move { b.workload(&WorkloadRef::deployment("web", "api")).await })
            .await;
    match refused {
        Err(BackendError::Forbidden(m)) => {
            assert!(m.contains("refused scalehost's credentials"), "{m}");
            assert!(!m.contains("wrong"), "the token never shows: {m}");
        }
        other => panic!("{other:?}"),
    }
    let (_, missing) = kubernetes_backend(
        apiserver::sample(),
        Some("/nonexistent/scalehost/token".into()),
    )
    .await;
    let error = missing.expect_err("no token file");
    assert!(error.contains("/nonexistent/scalehost/token"), "{error}");
}

// ----- VM pools: vSphere and Kubernetes together -----

use common::vcenter::{self, FakeVcenter, FakeVm};
use scalehost::backends::real::{BackendConfig, PoolVm, RealCluster, VmPoolConfig};
use scalehost::backends::vsphere::VSphereConfig;
use scalehost::backends::{
    Actuator as _, MetricSource as _, VmInventory as _, WorkloadReader as _,
};
use scalehost::domain::cluster::PowerState;

async fn pool_backend(
    password: &str,
) -> (
    Arc<Mutex<FakeState>>,
    Arc<Mutex<FakeVcenter>>,
    Arc<RealCluster>,
) {
    let apiserver_state = Arc::new(Mutex::new(apiserver::sample()));
    let (api_url, _) = apiserver::serve(apiserver_state.clone()).await;
    let vcenter_state = Arc::new(Mutex::new(FakeVcenter {
        username: "scalehost@vsphere.local".into(),
        password: "right".into(),
        vms: [
            (
                "vm-101".to_owned(),
                FakeVm {
                    name: "worker-a-vm".into(),
                    on: true,
                    tools: true,
                    refuse_power: false,
                },
            ),
            (
                "vm-102".to_owned(),
                FakeVm {
                    name: "worker-b-vm".into(),
                    on: true,
                    tools: false,
                    refuse_power: false,
                },
            ),
            (
                "vm-900".to_owned(),
                FakeVm {
                    name: "not-in-pool".into(),
                    on: true,
                    tools: true,
                    refuse_power: false,
                },
            ),
        ]
        .into(),
        ..FakeVcenter::default()
    }));
    let vc_url = vcenter::serve(vcenter_state.clone(), Some(apiserver_state.clone())).await;
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), format!("{password}\n")).expect("writes");
    let config = BackendConfig {
        name: "prod".into(),
        prometheus: None,
        kubernetes: Some(KubernetesConfig {
            in_cluster: false,
            kubeconfig: None,
            context: None,
            url: Some(api_url),
            token_file: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
        }),
        vsphere: Some(VSphereConfig {
            url: vc_url,
            username: "scalehost@vsphere.local".into(),
            password_file: Some(secret.path().to_owned()),
            password_env: None,
            ca_file: None,
            insecure_skip_tls_verify: false,
            timeout: Duration::from_secs(5),
        }),
        vm_pools: vec![VmPoolConfig {
            name: "workers".into(),
            vms: vec![
                PoolVm {
                    name: "worker-a-vm".into(),
                    node: "node-a".into(),
                    maintenance: false,
                },
                PoolVm {
                    name: "worker-b-vm".into(),
                    node: "node-b".into(),
                    maintenance: false,
                },
            ],
            shutdown_timeout: Duration::from_secs(2),
            boot_timeout: Duration::from_secs(5),
        }],
    };
    let backend = Arc::new(RealCluster::connect(&config).await.expect("connects"));
    (apiserver_state, vcenter_state, backend)
}

#[tokio::test(flavor = "multi_thread")]
async fn powering_a_pool_vm_off_cordons_drains_then_shuts_the_guest_down_and_on_again() {
    let (k8s, vc, backend) = pool_backend("right").await;
    let b = backend.clone();
    let vms = blocking(move || async move { b.vms("workers").await })
        .await
        .expect("lists");
    assert_eq!(vms.len(), 2, "only the pool's VMs: {vms:?}");
    assert!(vms.iter().all(|v| v.power == PowerState::On));
    assert_eq!(vms[0].node_name.as_deref(), Some("node-a"));

    let b = backend.clone();
    blocking(move || async move { b.set_power("workers", "vm-101", PowerState::Off).await })
        .await
        .expect("powered off");
    {
        let log = k8s.lock().expect("state").log.clone();
        let at = |line: &str| {
            log.iter()
                .position(|l| l.starts_with(line))
                .unwrap_or_else(|| panic!("{line} missing in {log:?}"))
        };
        let cordon = at("PATCH node/node-a unschedulable=true");
        let drain = at("POST eviction web/api-0");
        let shutdown = at("vcenter POST guest shutdown vm-101");
        assert!(
            cordon < drain && drain < shutdown,
            "cordon → drain → guest shutdown: {log:?}"
        );
        assert!(
            !log.iter().any(|l| l.contains("power stop vm-101")),
            "no hard stop needed"
        );
    }
    assert!(!vc.lock().expect("state").vms["vm-101"].on);
    // Without VMware Tools the guest cannot be asked: drained, then stopped hard.
    let b = backend.clone();
    blocking(move || async move { b.set_power("workers", "vm-102", PowerState::Off).await })
        .await
        .expect("powered off");
    {
        let log = k8s.lock().expect("state").log.clone();
        let drained = log
            .iter()
            .position(|l| l == "GET pods on node-b")
            .expect("drained");
        let stopped = log
            .iter()
            .position(|l| l == "vcenter POST power stop vm-102")
            .expect("stopped hard");
        assert!(drained < stopped, "{log:?}");
    }
    // The session expires; the next call logs in again by itself.
    vc.lock().expect("state").sessions.clear();
    let b = backend.clone();
    blocking(move || async move { b.set_power("workers", "vm-101", PowerState::On).await })
        .await
        .expect("powered on");
    assert_eq!(vc.lock().expect("state").logins, 2);
    let log = k8s.lock().expect("state").log.clone();
    let start = log
        .iter()
        .position(|l| l == "vcenter POST power start vm-101")
        .expect("started");
    let uncordon = log
        .iter()
        .rposition(|l| l == "PATCH node/node-a unschedulable=false")
        .expect("uncordoned");
    assert!(start < uncordon, "start → Ready → uncordon: {log:?}");
    assert!(vc.lock().expect("state").vms["vm-101"].on);
    assert!(!k8s.lock().expect("state").nodes["node-a"].unschedulable);
    // A VM outside the pool, and a pool that does not exist.
    let b = backend.clone();
    let (outside, no_pool) = blocking(move || async move {
        (
            b.set_power("workers", "vm-900", PowerState::Off).await,
            b.vms("gpus").await,
        )
    })
    .await;
    assert!(
        matches!(outside, Err(BackendError::NotFound(_))),
        "{outside:?}"
    );
    assert!(
        matches!(no_pool, Err(BackendError::NotFound(_))),
        "{no_pool:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_vcenter_password_is_refused_and_not_shown() {
    let (_, _, backend) = pool_backend("wrong-secret").await;
    let b = backend.clone();
    match blocking(move || async move { b.vms("workers").await }).await {
        Err(BackendError::Forbidden(message)) => {
            assert!(message.contains("refused the login"), "{message}");
            assert!(
                !message.contains("wrong-secret"),
                "the password leaked: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{backend:?}").contains("wrong-secret"));
}

// ----- doctor -----

async fn doctor(config: String) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scalehost.toml");
    std::fs::write(&path, config).expect("writes");
    let out = blocking(move || async move {
        std::process::Command::new(env!("CARGO_BIN_EXE_scalehost"))
            .args(["doctor", "--config", path.to_str().expect("utf-8")])
            .output()
            .expect("runs")
    })
    .await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_prints_one_line_per_check_and_fails_when_one_fails() {
    let k8s = Arc::new(Mutex::new(apiserver::sample()));
    let (api_url, _) = apiserver::serve(k8s.clone()).await;
    let vc = Arc::new(Mutex::new(FakeVcenter {
        username: "u".into(),
        password: "p".into(),
        vms: [(
            "vm-1".to_owned(),
            FakeVm {
                name: "w1".into(),
                on: true,
                tools: true,
                refuse_power: false,
            },
        )]
        .into(),
        ..FakeVcenter::default()
    }));
    let vc_url = vcenter::serve(vc, None).await;
    let password = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(password.path(), "p").expect("writes");
    let config = |pool_vm: &str, prometheus: &str| {
        format!(
            r#"
[[backends]]
name = "prod"
kubernetes = {{ url = "{api_url}" }}
vsphere = {{ url = "{vc_url}", username = "u", password_file = "{password}" }}
{prometheus}
vm_pools = [{{ name = "workers", vms = [{{ name = "{pool_vm}", node = "node-a" }}] }}]
"#,
            password = password.path().display()
        )
    };
    let (ok, out) = doctor(config("w1", "")).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("ok   prod/kubernetes: reachable and authenticated; server v1.33.0-fake"),
        "{out}"
    );
    assert!(
        out.contains("ok   prod/kubernetes: create pods/eviction: allowed"),
        "{out}"
    );
    assert!(out.contains("ok   prod/vsphere: logged in"), "{out}");
    assert!(
        out.contains("ok   prod/vsphere: pool workers: 1 VMs found"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1 + 11 + 2, "one line per check: {out}");
    // A denied permission, a VM vCenter does not know, an unreachable Prometheus.
    k8s.lock().expect("state").denied = vec!["create pods/eviction".into()];
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let (ok, out) = doctor(config(
        "w9",
        &format!("prometheus = {{ url = \"http://127.0.0.1:{dead}\", timeout = \"1s\" }}"),
    ))
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL prod/kubernetes: create pods/eviction: denied: needed to drain"),
        "{out}"
    );
    assert!(
        out.contains("FAIL prod/vsphere: pool workers: VMs not found in vCenter: [\"w9\"]"),
        "{out}"
    );
    assert!(
        out.contains("FAIL prod/prometheus: unavailable: prometheus unreachable"),
        "{out}"
    );
    assert!(!out.contains("\"p\""), "no secret in the output");
}

// ----- TLS: the configured CA, and only by choice without it -----

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_and_vcenter_over_tls_trust_the_configured_ca_only() {
    use scalehost::backends::vsphere::VSphere;

    let shared = Arc::new(Mutex::new(apiserver::sample()));
    let (_, api_addr) = apiserver::serve(shared.clone()).await;
    let api_tls = common::tls::front(api_addr).await;
    let url = api_tls.url.clone();
    let kubernetes = move |ca_file: Option<std::path::PathBuf>| {
        let config = KubernetesConfig {
            in_cluster: false,
            kubeconfig: None,
            context: None,
            url: Some(url.clone()),
            token_file: None,
            ca_file,
            timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
        };
        async move { Kubernetes::connect(&config).await }
    };
    let trusted = Arc::new(
        kubernetes(Some(api_tls.ca_file.clone()))
            .await
            .expect("connects"),
    );
    let untrusted = Arc::new(kubernetes(None).await.expect("connects"));
    let (ok, refused) = blocking(move || async move {
        let api = WorkloadRef::deployment("web", "api");
        (trusted.workload(&api).await, untrusted.workload(&api).await)
    })
    .await;
    assert_eq!(ok.expect("trusted CA").replicas, 4);
    match refused {
        Err(BackendError::Unavailable(m)) => {
            assert!(m.to_lowercase().contains("certificate"), "{m}")
        }
        other => panic!("an unknown CA must be refused: {other:?}"),
    }
    assert!(
        matches!(
            kubernetes(Some("/nonexistent/ca.pem".into())).await,
            Err(e) if scalehost::domain::display_chain(&e).contains("/nonexistent/ca.pem")
        ),
        "a missing CA file is named"
    );

    let vcenter = Arc::new(Mutex::new(FakeVcenter {
        username: "u".into(),
        password: "p".into(),
        vms: [(
            "vm-1".to_owned(),
            FakeVm {
                name: "worker-a-vm".into(),
                on: true,
                tools: true,
                refuse_power: false,
            },
        )]
        .into(),
        ..FakeVcenter::default()
    }));
    let vc_url = vcenter::serve(vcenter, None).await;
    let vc_addr: std::net::SocketAddr = vc_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("address");
    let vc_tls = common::tls::front(vc_addr).await;
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), "p").expect("writes");
    let vsphere = |ca_file: Option<std::path::PathBuf>, insecure: bool| {
        VSphere::new(&VSphereConfig {
            url: vc_tls.url.clone(),
            username: "u".into(),
            password_file: Some(secret.path().to_owned()),
            password_env: None,
            ca_file,
            insecure_skip_tls_verify: insecure,
            timeout: Duration::from_secs(5),
        })
        .expect("client")
    };
    let trusted = vsphere(Some(vc_tls.ca_file.clone()), false);
    let untrusted = vsphere(None, false);
    let insecure = vsphere(None, true);
    let names = vec!["worker-a-vm".to_owned()];
    let (ok, refused, chosen) = blocking(move || async move {
        (
            trusted.vms(&names).await.map(|v| v.len()),
            untrusted.vms(&names).await.map(|v| v.len()),
            insecure.vms(&names).await.map(|v| v.len()),
        )
    })
    .await;
    assert_eq!(ok.expect("trusted CA"), 1);
    assert!(
        matches!(&refused, Err(BackendError::Unavailable(_))),
        "an unknown CA must be refused: {refused:?}"
    );
    assert_eq!(chosen.expect("verification off by choice"), 1);
}

// ----- actuation through the tick engine: retries, and errors in the audit -----

#[tokio::test(flavor = "multi_thread")]
async fn actuation_retries_an_unavailable_api_server_and_the_audit_carries_its_error() {
    use scalehost::tick::{Action, AuditLog, Outcome, TickEngine};

    let (state, backend) = kubernetes_backend(apiserver::sample(), None).await;
    let backend = backend.expect("connects");
    let store = Arc::new(scalehost::store::StateStore::in_memory().expect("state"));
    let engine = Arc::new(TickEngine::new(
        backend,
        Arc::new(scalehost::backends::SystemClock),
        store,
        Arc::new(AuditLog::in_memory(100)),
        &scalehost::runtime::EngineConfig::default(),
    ));
    engine.add_tenant(common::tenant());
    let api = common::api();
    let tick = |replicas: u32| {
        let engine = engine.clone();
        let api = api.clone();
        blocking(move || async move {
            let binding = engine
                .bind(
                    common::fixture_binding(
                        "scaler",
                        "scale",
                        serde_json::json!({ "target": common::workload_json(&api), "replicas": replicas }),
                        vec![common::target(&api, 1, 10)],
                    ),
                    common::fixture(),
                ).await
                .expect("binds");
            engine.tick(&binding).await
        })
    };

    // Two 503s, then the write goes through: the tick applies its intent.
    state.lock().expect("state").unavailable_writes = 2;
    let record = tick(6).await;
    assert_eq!(record.outcome, Outcome::Ok);
    assert!(
        matches!(
            &record.actions[..],
            [Action::Scale {
                applied: 6,
                error: None,
                ..
            }]
        ),
        "{:?}",
        record.actions
    );
    let puts = |state: &Arc<Mutex<FakeState>>| {
        state
            .lock()
            .expect("state")
            .log
            .iter()
            .filter(|l| *l == "PUT deployments/web/api/scale")
            .count()
    };
    assert_eq!(
        puts(&state),
        3,
        "two refused writes and one that went through"
    );

    // Still unavailable after every attempt: nothing applied, the audit says why.
    state.lock().expect("state").unavailable_writes = 100;
    let before = puts(&state);
    let record = tick(8).await;
    match &record.actions[..] {
        [
            Action::Scale {
                error: Some(error), ..
            },
        ] => {
            assert!(
                error.contains("503") || error.contains("unable to handle"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(puts(&state) - before >= 2, "retried before giving up");
    let fake = state.lock().expect("state");
    assert_eq!(
        fake.deployments[&("web".to_owned(), "api".to_owned())].replicas,
        6
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_cluster_config_outside_a_cluster_is_a_clear_error() {
    // No KUBERNETES_SERVICE_HOST and no service-account files here (unless this runs in a pod).
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return;
    }
    let error = Kubernetes::connect(&KubernetesConfig {
        in_cluster: true,
        kubeconfig: None,
        context: None,
        url: None,
        token_file: None,
        ca_file: None,
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
    })
    .await
    .map(|_| ())
    .expect_err("not in a cluster");
    let message = scalehost::domain::display_chain(&error);
    assert!(message.starts_with("kubernetes: "), "{message}");
    assert!(
        message.contains("KUBERNETES_SERVICE_HOST") || message.to_lowercase().contains("cluster"),
        "{message}"
    );
}

// ----- power operations off the tick path -----

/// A power-off whose drain a disruption budget blocks (5 s drain timeout) runs off the tick
/// path: the tick that starts it and the next one answer at once, the second joins it, and the
/// operation ends on its own with the budget's refusal.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_blocked_by_a_budget_does_not_delay_the_next_tick() {
    use scalehost::tick::{Action, AuditLog, Outcome, TickEngine};

    let (k8s, _vc, backend) = pool_backend("right").await;
    k8s.lock()
        .expect("state")
        .pods
        .iter_mut()
        .find(|p| p.name == "api-0")
        .expect("api-0 runs on node-a")
        .budget_refusals = u32::MAX;
    let engine = Arc::new(TickEngine::new(
        backend,
        Arc::new(scalehost::backends::SystemClock),
        Arc::new(scalehost::store::StateStore::in_memory().expect("state")),
        Arc::new(AuditLog::in_memory(100)),
        &scalehost::runtime::EngineConfig::default(),
    ));
    engine.add_tenant(scalehost::domain::scope::TenantSpec {
        vm_pools: vec!["workers".into()],
        ..common::tenant()
    });
    let mut spec = common::fixture_binding(
        "nodes",
        "set-power",
        serde_json::json!({ "pool": "workers", "vm": "vm-101", "state": "off" }),
        vec![],
    );
    spec.vm_pools = vec!["workers".into()];
    spec.limits.deadline = Duration::from_secs(2);
    let binding = engine.bind(spec, common::fixture()).await.expect("binds");
    let mut ids = Vec::new();
    for tick in 0..2 {
        let started = std::time::Instant::now();
        let record = tokio::time::timeout(Duration::from_secs(3), engine.tick(&binding))
            .await
            .unwrap_or_else(|_| panic!("tick {tick} waited for the drain"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "tick {tick} took {:?}",
            started.elapsed()
        );
        assert_eq!(record.outcome, Outcome::Ok);
        match &record.actions[..] {
            [
                Action::Power {
                    operation: Some(id),
                    error: None,
                    ..
                },
            ] => ids.push(*id),
            other => panic!("tick {tick}: {other:?}"),
        }
    }
    assert_eq!(
        ids[0], ids[1],
        "the second tick joined the operation in flight"
    );
    assert_eq!(engine.operations().of_binding("t", "nodes").len(), 1);
    // The drain gives up after its 5 s; the operation ends, the VM stays on and its node is
    // given back to the scheduler, not left cordoned.
    tokio::time::timeout(Duration::from_secs(30), engine.operations().idle())
        .await
        .expect("the operation ends by its drain timeout");
    assert!(engine.operations().of_binding("t", "nodes").is_empty());
    let log = k8s.lock().expect("state").log.clone();
    let cordon = log
        .iter()
        .position(|l| l == "PATCH node/node-a unschedulable=true")
        .expect("cordoned first");
    let uncordon = log
        .iter()
        .rposition(|l| l == "PATCH node/node-a unschedulable=false")
        .expect("uncordoned after the failed drain");
    assert!(cordon < uncordon, "{log:?}");
    assert!(
        !log.iter().any(|l| l.contains("guest shutdown vm-101")),
        "never shut down: {log:?}"
    );

    // Cancelled mid-drain: the step is dropped and the node given back at once.
    let record = engine.tick(&binding).await;
    let id = match &record.actions[..] {
        [
            Action::Power {
                operation: Some(id),
                ..
            },
        ] => *id,
        other => panic!("{other:?}"),
    };
    assert_ne!(id, ids[0], "a new operation");
    let cordoned = |k8s: &Arc<Mutex<FakeState>>| {
        k8s.lock()
            .expect("state")
            .log
            .iter()
            .rev()
            .find(|l| l.starts_with("PATCH node/node-a"))
            .cloned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cordoned(&k8s).as_deref() != Some("PATCH node/node-a unschedulable=true") {
        assert!(std::time::Instant::now() < deadline, "never cordoned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(engine.operations().cancel("t", "nodes", id));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cordoned(&k8s).as_deref() != Some("PATCH node/node-a unschedulable=false") {
        assert!(
            std::time::Instant::now() < deadline,
            "a cancelled power-off left its node cordoned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.operations().idle().await;
    assert!(engine.operations().of_binding("t", "nodes").is_empty());
    let ended = engine.operations().finished_of_binding("t", "nodes");
    assert_eq!(
        ended
            .iter()
            .map(|f| (f.operation.id, f.outcome))
            .collect::<Vec<_>>(),
        [(ids[0], "failed"), (id, "cancelled")]
    );
}

/// The node view (WIT 0.2.0 `nodes`): each node with its non-terminal pods and what they
/// request, DaemonSet and mirror pods not blocking a drain, and the pods the scheduler has not
/// placed.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_list_their_pods_and_pending_pods_are_the_unscheduled_ones() {
    let (_, k8s) = cluster(apiserver::sample()).await;
    let k8s = Arc::new(k8s);
    let k = k8s.clone();
    let (nodes, pending) =
        blocking(move || async move { (k.nodes().await, k.pending_pods().await) }).await;
    let nodes = nodes.expect("nodes");
    let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b"]);
    let a = &nodes[0];
    assert!(a.ready && a.schedulable);
    assert_eq!(
        (a.allocatable_cpu_millis, a.allocatable_memory_bytes),
        (4000, 16 << 30)
    );
    let pods: Vec<_> = a
        .pods
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.cpu_request_millis,
                p.drain_blocker.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        pods,
        [
            (
                "api-0",
                250,
                Some("not managed by a controller (a bare pod)")
            ),
            (
                "api-1",
                250,
                Some("not managed by a controller (a bare pod)")
            ),
            ("agent-a", 50, None),
            ("etcd-node-a", 100, None),
        ],
        "the double serves api pods without owners"
    );
    // The finished job is not listed on node-b.
    let b: Vec<_> = nodes[1].pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(b, ["api-2", "api-3"]);
    let pending = pending.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].namespace.as_str(),
            pending[0].name.as_str(),
            pending[0].cpu_request_millis
        ),
        ("batch", "job-0", 500)
    );
}

/// The same backend against a real kube-apiserver (`common::control_plane`): reads a
/// Deployment through its scale subresource, scales it, and gets `forbidden` for an identity
/// that RBAC grants nothing.
#[tokio::test(flavor = "multi_thread")]
async fn real_api_server_scales_a_deployment_and_refuses_a_user_without_rights() {
    let plane = common::control_plane::ControlPlane::shared();
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: real-web}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: real-web}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: example.invalid/api:1
        resources: {requests: {cpu: 250m}}
"#,
        ),
    );
    let connect_as = |token: &std::path::Path| KubernetesConfig {
        in_cluster: false,
        kubeconfig: None,
        context: None,
        url: Some(plane.url.clone()),
        token_file: Some(token.to_owned()),
        ca_file: Some(plane.ca.clone()),
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
    };
    let admin = Kubernetes::connect(&connect_as(&plane.admin_token_file))
        .await
        .expect("connects");
    let api = WorkloadRef::deployment("real-web", "api");

    let status = admin.workload(&api).await.expect("reads the deployment");
    assert_eq!(status.replicas, 2);
    assert_eq!(status.ready, 0, "no kubelet: nothing is ready");
    assert_eq!(status.cpu_request_millis, 250);

    assert_eq!(
        admin.scale(&api, 5).await.expect("scales"),
        2,
        "answers the count it replaced"
    );
    let replicas = plane.kubectl(
        &[
            "-n",
            "real-web",
            "get",
            "deployment",
            "api",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(replicas, "5");

    let tester = Kubernetes::connect(&connect_as(&plane.user_token_file))
        .await
        .expect("connects");
    let refused = tester
        .scale(&api, 1)
        .await
        .expect_err("RBAC grants nothing");
    assert!(
        matches!(refused, BackendError::Forbidden(_)),
        "a 403 is forbidden, got {refused:?}"
    );
    let missing = admin
        .workload(&WorkloadRef::deployment("real-web", "nope"))
        .await
        .expect_err("no such deployment");
    assert!(matches!(missing, BackendError::NotFound(_)), "{missing:?}");
}

/// A power-off whose vSphere step fails after the drain (no VMware Tools, and the hard stop
/// refused) leaves the VM on: its node is given back to the scheduler, not left cordoned.
#[tokio::test(flavor = "multi_thread")]
async fn a_power_off_that_fails_after_the_drain_uncordons_the_node() {
    let (k8s, vc, backend) = pool_backend("right").await;
    vc.lock()
        .expect("state")
        .vms
        .get_mut("vm-102")
        .expect("vm-102")
        .refuse_power = true;
    let b = backend.clone();
    let refused =
        blocking(move || async move { b.set_power("workers", "vm-102", PowerState::Off).await })
            .await
            .expect_err("vCenter refuses the stop");
    assert!(
        matches!(refused, BackendError::Unavailable(_)),
        "{refused:?}"
    );
    let log = k8s.lock().expect("state").log.clone();
    let cordon = log
        .iter()
        .position(|l| l == "PATCH node/node-b unschedulable=true")
        .expect("cordoned");
    let stop = log
        .iter()
        .position(|l| l == "vcenter POST power stop vm-102")
        .expect("the hard stop was tried");
    let uncordon = log
        .iter()
        .rposition(|l| l == "PATCH node/node-b unschedulable=false")
        .unwrap_or_else(|| panic!("uncordoned after the failed stop: {log:?}"));
    assert!(cordon < stop && stop < uncordon, "{log:?}");
    assert!(vc.lock().expect("state").vms["vm-102"].on);
    assert!(!k8s.lock().expect("state").nodes["node-b"].unschedulable);
}
