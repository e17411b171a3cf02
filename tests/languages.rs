//! `threshold-cooldown` in Rust, Python, JavaScript and C decides the same, tick for tick.
//!
//! The three ports live in `examples/{python,js,c}/`; `cargo xtask plugins` (and so
//! `cargo xtask test`) builds them into `target/plugins/threshold-cooldown-<lang>.wasm`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use scalehost::backends::simulated::read_trace;
use scalehost::backtest::run::{Backtest, BacktestSpec};
use scalehost::cmd::simulate::default_config;
use scalehost::runtime::{CompiledPolicy, GuestStream, Limits, StagedState, ValidateError};
use scalehost::store::StateStore;
use scalehost::tick::{AuditRecord, Outcome};
use serde_json::{Value, json};

const LANGUAGES: [&str; 3] = ["python", "js", "c"];

fn built(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask plugins`",
        path.display()
    );
    path
}

/// Each implementation, Rust first, compiled once for this test binary.
fn implementations() -> Vec<(&'static str, Arc<CompiledPolicy>)> {
    let mut all = vec![(
        "rust",
        compiled(scalehost_test_artifacts::THRESHOLD_COOLDOWN),
    )];
    for language in LANGUAGES {
        let path = built(&format!("threshold-cooldown-{language}"));
        let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
        all.push((language, compiled(path)));
    }
    all
}

/// Minutes `from..from + minutes` of the NASA trace (15 s ticks: 4 per minute).
fn nasa(from: usize, minutes: usize) -> Backtest {
    let trace = read_trace(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(scalehost::cmd::demo::DEFAULT_TRACE),
    )
    .expect("the NASA trace");
    let spec = BacktestSpec {
        from_minute: from,
        to_minute: Some(from + minutes),
        ..BacktestSpec::default()
    };
    Backtest::new(&trace, &spec).expect("window")
}

/// What one tick decided, everything but timing and bookkeeping.
#[derive(Debug, PartialEq)]
struct Decision {
    at: u64,
    outcome: String,
    intents: Value,
    actions: Value,
    state_writes: usize,
    host_calls: u32,
}

impl Decision {
    fn of(record: &AuditRecord) -> Self {
        Decision {
            at: record.at,
            outcome: match &record.outcome {
                Outcome::Ok => "ok".into(),
                Outcome::Failed { error } => error.to_string(),
            },
            intents: serde_json::to_value(&record.intents).expect("serializes"),
            actions: serde_json::to_value(&record.actions).expect("serializes"),
            state_writes: record.state_writes,
            host_calls: record.host_calls,
        }
    }
}

/// Replays `backtest` with `config` through every implementation and asserts that each decides
/// exactly as the Rust one; returns the Rust decisions.
fn assert_identical(backtest: &Backtest, config: &Value) -> Vec<Decision> {
    let mut runs = Vec::new();
    for (language, policy) in implementations() {
        let mut decisions = Vec::new();
        backtest
            .run_policy_observed(
                "threshold-cooldown",
                policy,
                config.clone(),
                &mut |_| {},
                &mut |record| decisions.push(Decision::of(record)),
            )
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        runs.push((language, decisions));
    }
    let (_, rust) = runs.remove(0);
    for (language, decisions) in &runs {
        assert_eq!(decisions.len(), rust.len(), "{language}: number of ticks");
        for (tick, (theirs, ours)) in decisions.iter().zip(&rust).enumerate() {
            assert_eq!(theirs, ours, "{language} differs from rust at tick {tick}");
        }
    }
    rust
}

fn scaled(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| d.intents.as_array().is_some_and(|i| !i.is_empty()))
        .count()
}

#[test]
fn events_source_with_signed_steps_decides_identically() {
    // Day 4 from 6:00 to 24:00: the morning ramp and the evening fall, so up and down rules
    // both fire.
    let backtest = nasa(3 * 1440 + 360, 1080);
    let config = default_config("threshold-cooldown", &backtest).expect("a default config");
    let rust = assert_identical(&backtest, &config);
    eprintln!("events source: {} scalings", scaled(&rust));
    assert!(scaled(&rust) > 20, "the window must exercise the rules");
    let reasons: Vec<&str> = rust
        .iter()
        .flat_map(|d| d.intents.as_array().into_iter().flatten())
        .filter_map(|i| i["reason"].as_str())
        .collect();
    assert!(reasons.iter().any(|r| r.contains(" > threshold ")));
    assert!(reasons.iter().any(|r| r.contains(" < threshold ")));
}

#[test]
fn query_source_with_absolute_steps_and_no_cooldown_decides_identically() {
    // Day 6, 6:00 to 12:00: the morning ramp.
    let backtest = nasa(5 * 1440 + 360, 360);
    let capacity = backtest.capacity_per_replica();
    let (min, max) = backtest.bounds();
    // Range queries over two minutes at 15 s steps: the per-host value sums 9 samples of the
    // workload's requests per minute, so `9 * n * capacity` is n replicas' worth of demand.
    let worth = |replicas: f64| 9.0 * replicas * capacity;
    let config = json!({
        "target": { "kind": "deployment", "namespace": "backtest", "name": "app" },
        "source": { "query": "scalehost_requests_per_minute{namespace=\"backtest\",workload=\"app\"}" },
        "window_secs": 120,
        "cooldown_secs": 0,
        "rules": [
            { "direction": "up", "threshold": worth(16.0), "step": { "to": max }, "limit": max },
            { "direction": "up", "threshold": worth(10.0), "step": { "by": 3 }, "limit": max / 2 },
            { "direction": "down", "threshold": worth(5.0), "step": { "to": 0 }, "limit": min + 1 },
            { "direction": "down", "threshold": worth(8.0) + 0.0625, "step": { "by": -1 }, "limit": min },
        ],
    });
    let rust = assert_identical(&backtest, &config);
    let fired = |rule: &str| {
        rust.iter()
            .flat_map(|d| d.intents.as_array().into_iter().flatten())
            .filter(|i| i["reason"].as_str().is_some_and(|r| r.starts_with(rule)))
            .count()
    };
    eprintln!(
        "query source: {} scalings; by rule: {} {} {} {}",
        scaled(&rust),
        fired("rule 0:"),
        fired("rule 1:"),
        fired("rule 2:"),
        fired("rule 3:")
    );
    assert!(
        (0..4).all(|i| fired(&format!("rule {i}:")) > 0),
        "every rule fires in the window"
    );
}

#[test]
fn host_errors_fail_the_tick_identically() {
    let backtest = nasa(1440, 30);
    // Another tenant's events: the host refuses, the tick fails with the host's message.
    let config = json!({
        "target": { "namespace": "backtest", "name": "app" },
        "source": { "events": { "service": "kube-system/app/requests" } },
        "rules": [{ "direction": "up", "threshold": 1, "step": { "by": 1 }, "limit": 3 }],
    });
    let rust = assert_identical(&backtest, &config);
    assert!(
        rust.iter()
            .all(|d| d.outcome.starts_with("policy error: forbidden: ")),
        "{:?}",
        rust.first()
    );
}

async fn validate(policy: &CompiledPolicy, config: &str) -> Result<(), String> {
    let state = Arc::new(StateStore::in_memory().expect("state"));
    policy
        .validate_config(
            config,
            Limits::default(),
            "t".into(),
            "b".into(),
            0,
            StagedState::new(state, "t/b".into()),
        )
        .await
        .map_err(|e| match e {
            ValidateError::Rejected(message) => message,
            other => panic!("validation itself failed: {other}"),
        })
}

#[tokio::test]
async fn configs_are_checked_identically() {
    let base = json!({
        "target": { "namespace": "web", "name": "api" },
        "source": { "events": { "service": "web/api/requests" } },
        "rules": [{ "direction": "up", "threshold": 500, "step": { "by": 1 }, "limit": 10 }],
    });
    // `base` with the field at `pointer` set (added when missing).
    let with = |pointer: &str, value: Value| {
        let mut c = base.clone();
        let (parent, field) = pointer.rsplit_once('/').expect("a pointer");
        let parent = c.pointer_mut(parent).expect("the parent exists");
        match parent {
            Value::Object(map) => {
                map.insert(field.to_owned(), value);
            }
            Value::Array(items) => items[field.parse::<usize>().expect("an index")] = value,
            _ => panic!("{pointer} is not in an object or array"),
        }
        c.to_string()
    };
    let accepted = [
        base.to_string(),
        with("/target", json!({ "kind": "stateful-set", "namespace": "web", "name": "db" })),
        with("/source", json!({ "query": "sum(rate(x[1m]))" })),
        with(
            "/rules",
            json!([{ "direction": "down", "threshold": -1.5e3, "step": { "to": 0 }, "limit": 0 }]),
        ),
        json!({ "target": { "namespace": "w", "name": "a" }, "source": { "query": "q" },
                "window_secs": 18_446_744_073_709_551_615u64, "cooldown_secs": 0,
                "rules": [{ "direction": "up", "threshold": 1, "step": { "by": 2_147_483_647 }, "limit": 4_294_967_295u32 }] })
        .to_string(),
    ];
    // Refused after parsing: the policy's own messages, identical in every language.
    let refused = [
        (
            with("/target/name", json!("")),
            "target must name a namespace and a workload",
        ),
        (
            with("/source", json!({ "events": { "service": "" } })),
            "source.events.service must not be empty",
        ),
        (
            with("/source", json!({ "query": "  " })),
            "source.query must not be empty",
        ),
        (with("/rules", json!([])), "rules must not be empty"),
        (
            with(
                "/rules",
                json!([{ "direction": "up", "threshold": 1, "step": { "by": 1 }, "limit": 3 },
                       { "direction": "down", "threshold": 1, "step": { "by": 1 }, "limit": 3 }]),
            ),
            "rules[1].step.by must be negative for a down rule",
        ),
        (
            with("/rules/0/step", json!({ "by": 0 })),
            "rules[0].step.by must be positive for an up rule",
        ),
        (
            {
                let mut c = base.clone();
                c["window_secs"] = json!(0);
                c.to_string()
            },
            "window_secs must be at least 1",
        ),
    ];
    // Malformed: each language words the parse error its own way, after the same prefix.
    let malformed = [
        "not json".to_owned(),
        "[]".to_owned(),
        format!("{base} trailing"),
        with("/target/extra", json!(1)),
        with("/rules/0/step", json!({ "by": 1, "to": 2 })),
        with("/rules/0/step", json!({ "up": 1 })),
        with("/rules/0/limit", json!(-1)),
        with("/rules/0/limit", json!(4_294_967_296u64)),
        with("/rules/0/limit", json!(2.5)),
        with("/rules/0/step", json!({ "by": 2_147_483_648u64 })),
        with("/rules/0/direction", json!("sideways")),
        with("/rules/0/threshold", json!("high")),
        with("/target/kind", json!("daemon-set")),
        with(
            "/source",
            json!({ "events": { "service": "a" }, "query": "b" }),
        ),
        with("/source", json!({})),
        {
            let mut c = base.clone();
            c["surprise"] = json!(true);
            c.to_string()
        },
        {
            let mut c = base.clone();
            c.as_object_mut().expect("object").remove("rules");
            c.to_string()
        },
    ];
    for (language, policy) in implementations() {
        for config in &accepted {
            assert_eq!(
                validate(&policy, config).await,
                Ok(()),
                "{language} refused {config}"
            );
        }
        for (config, message) in &refused {
            assert_eq!(
                validate(&policy, config).await,
                Err((*message).to_owned()),
                "{language} on {config}"
            );
        }
        for config in &malformed {
            match validate(&policy, config).await {
                Err(message) if message.starts_with("invalid config: ") => {}
                other => panic!("{language} on {config}: {other:?}"),
            }
        }
    }
}

/// A Python policy sees WASI with an empty context: no file, no directory, no socket, no
/// environment; what it prints lands in the host log, tagged with its stream.
#[tokio::test]
async fn python_policy_gets_errors_not_access_and_its_prints_reach_the_log() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listens");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();
    let path = built("python-escape");
    let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
    let policy = compiled(path);
    let sim = sim();
    let state = Arc::new(StateStore::in_memory().expect("state"));
    let invocation = policy
        .tick(
            &json!({ "port": port }).to_string(),
            Limits {
                deadline: std::time::Duration::from_secs(5),
                ..Limits::default()
            },
            "t".into(),
            "escape".into(),
            0,
            tenant_access(&sim),
            StagedState::new(state, "t/escape".into()),
        )
        .await;
    assert_eq!(invocation.result, Ok(()), "{:?}", invocation.logs);
    let lines = |stream: GuestStream| -> Vec<&str> {
        invocation
            .logs
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.message.as_str())
            .collect()
    };
    let stdout = lines(GuestStream::Stdout);
    for attempt in [
        "open /etc/passwd",
        "listdir /",
        "create_connection",
        "socket.connect",
        "os.environ",
    ] {
        assert!(
            stdout
                .iter()
                .any(|l| l.starts_with(&format!("escape: {attempt}")) && l.contains(": refused: ")),
            "no refusal of {attempt} in {stdout:?}"
        );
    }
    assert!(stdout.iter().all(|l| !l.contains("ALLOWED")), "{stdout:?}");
    assert!(
        lines(GuestStream::Stderr).contains(&"escape: stderr works"),
        "{:?}",
        invocation.logs
    );
    assert!(
        listener.accept().is_err(),
        "the policy reached a socket on the host"
    );
}

/// A Python policy's `time.sleep` and a JavaScript policy's awaited `setTimeout` (both a WASI
/// poll) end at the invocation's deadline, in `validate-config` as at tick.
#[tokio::test]
async fn a_python_sleep_and_a_js_timer_end_at_the_deadline() {
    for component in ["python-escape", "js-timer"] {
        sleep_ends_at_the_deadline(component).await;
    }
}

async fn sleep_ends_at_the_deadline(component: &str) {
    let path = built(component);
    let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
    let policy = compiled(path);
    let sim = sim();
    let state = Arc::new(StateStore::in_memory().expect("state"));
    let limits = Limits {
        deadline: std::time::Duration::from_secs(1),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let invocation = policy
        .tick(
            &json!({ "sleep": 60 }).to_string(),
            limits,
            "t".into(),
            "sleepy".into(),
            0,
            tenant_access(&sim),
            StagedState::new(state.clone(), "t/sleepy".into()),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        invocation.result,
        Err(scalehost::runtime::InvocationError::Deadline("1s".into())),
        "{component}"
    );
    assert!(
        took < std::time::Duration::from_secs(3),
        "{component}: the tick took {took:?}"
    );
    let started = std::time::Instant::now();
    let checked = policy
        .validate_config(
            &json!({ "sleep_in_validate": 60 }).to_string(),
            limits,
            "t".into(),
            "sleepy".into(),
            0,
            StagedState::new(state.clone(), "t/sleepy".into()),
        )
        .await;
    let took = started.elapsed();
    assert!(
        matches!(
            &checked,
            Err(scalehost::runtime::ValidateError::Failed(
                scalehost::runtime::InvocationError::Deadline(d)
            )) if d == "1s"
        ),
        "{component}: {checked:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(3),
        "{component}: the check took {took:?}"
    );
    // Told not to sleep, it answers: the deadline was the sleep's, not the runtime's.
    let quick = policy
        .validate_config(
            "{}",
            limits,
            "t".into(),
            "sleepy".into(),
            0,
            StagedState::new(state, "t/sleepy".into()),
        )
        .await;
    assert!(quick.is_ok(), "{component}: {quick:?}");
}

/// With WIT 0.2.0 every port reads back what became of its scale: a change the host applied
/// starts the cooldown, one the rails held at the current count (here `max_replicas` 4 = the
/// current replicas) does not, and the next tick decides again.
#[tokio::test]
async fn the_cooldown_starts_only_after_an_applied_change_in_every_language() {
    let config = json!({
        "target": { "namespace": "web", "name": "api" },
        "source": { "events": { "service": "web/api/requests" } },
        "window_secs": 60,
        "cooldown_secs": 60,
        "rules": [{ "direction": "up", "threshold": 0.0, "step": { "by": 2 }, "limit": 30 }]
    });
    for (language, policy) in implementations() {
        for (max_replicas, cools_down) in [(4, false), (10, true)] {
            let sim = sim();
            sim.advance_to(sim.now() + 60_000);
            let engine = tick_engine(&sim);
            let mut spec =
                fixture_binding("tc", "ok", json!({}), vec![target(&api(), 1, max_replicas)]);
            spec.config = config.clone();
            let binding = engine.bind(spec, policy.clone()).await.expect(language);
            let first = engine.tick(&binding).await;
            assert_eq!(first.outcome, Outcome::Ok, "{language}");
            assert_eq!(first.intents.len(), 1, "{language}: the rule fires");
            let second = engine.tick(&binding).await;
            assert_eq!(second.outcome, Outcome::Ok, "{language}");
            assert_eq!(
                second.intents.len(),
                usize::from(!cools_down),
                "{language}, max_replicas {max_replicas}: {:?}",
                second.intents
            );
        }
    }
}
