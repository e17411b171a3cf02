//! The sandbox: a misbehaving policy costs only its own tick, and a failed tick applies nothing.

mod common;

use std::time::Duration;

use common::*;
use scalehost::backends::Cluster;
use scalehost::runtime::{GuestStream, InvocationError, Limits};
use scalehost::tick::Outcome;
use serde_json::json;

fn failure(outcome: &Outcome) -> &InvocationError {
    match outcome {
        Outcome::Failed { error } => error,
        Outcome::Ok => panic!("the tick should have failed"),
    }
}

#[test]
fn each_misbehaving_fixture_fails_only_its_own_tick() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let healthy = engine
        .bind(
            fixture_binding("healthy", "counter", json!({}), vec![]),
            fixture(),
        )
        .expect("binds");
    let cases: [(&str, fn(&InvocationError) -> bool); 6] = [
        ("trap", |e| matches!(e, InvocationError::Trap(_))),
        (
            "endless-loop",
            |e| matches!(e, InvocationError::Deadline(d) if d == "200ms"),
        ),
        ("memory-hog", |e| {
            matches!(e, InvocationError::MemoryLimit(_))
        }),
        // Rust keeps its frames on a shadow stack at the bottom of linear memory: overflowing it
        // runs below address 0, which wasm reports as an out-of-bounds access (a deeper wasm
        // call stack would report "call stack exhausted").
        (
            "deep-recursion",
            |e| matches!(e, InvocationError::Trap(m) if m.contains("out of bounds memory access") || m.contains("call stack exhausted")),
        ),
        (
            "host-call-flood",
            |e| matches!(e, InvocationError::HostLimit(m) if m.contains("host-call limit")),
        ),
        (
            "error",
            |e| matches!(e, InvocationError::Policy(m) if m == "fixture error"),
        ),
    ];
    for (mode, expected) in cases {
        let bad = engine
            .bind(fixture_binding(mode, mode, json!({}), vec![]), fixture())
            .expect("binds");
        let record = engine.tick(&bad);
        let error = failure(&record.outcome);
        assert!(expected(error), "{mode}: unexpected failure {error:?}");
        // The host is unharmed: the next tick of another binding runs normally.
        let after = engine.tick(&healthy);
        assert_eq!(after.outcome, Outcome::Ok, "healthy binding after {mode}");
    }
    assert_eq!(healthy.health().ticks, 6);
    assert_eq!(healthy.health().failed_ticks, 0);
}

#[test]
fn a_tick_that_recorded_intents_and_then_trapped_applies_none() {
    let sim = sim();
    let engine = tick_engine(&sim);
    for mode in ["scale-then-trap", "scale-then-error"] {
        let spec = fixture_binding(
            mode,
            mode,
            json!({ "target": workload_json(&api()), "replicas": 9 }),
            vec![target(&api(), 1, 20)],
        );
        let binding = engine.bind(spec, fixture()).expect("binds");
        let record = engine.tick(&binding);
        assert!(matches!(record.outcome, Outcome::Failed { .. }), "{mode}");
        assert_eq!(
            record.intents.len(),
            1,
            "{mode}: the intent is recorded in the audit"
        );
        assert!(record.actions.is_empty(), "{mode}: but nothing is applied");
        assert_eq!(sim.workload(&api()).expect("status").replicas, 4, "{mode}");
        engine.unbind("t", mode);
    }
    // The same intent from a tick that succeeds is applied.
    let spec = fixture_binding(
        "scale",
        "scale",
        json!({ "target": workload_json(&api()), "replicas": 9 }),
        vec![target(&api(), 1, 20)],
    );
    let binding = engine.bind(spec, fixture()).expect("binds");
    assert_eq!(engine.tick(&binding).outcome, Outcome::Ok);
    assert_eq!(sim.workload(&api()).expect("status").replicas, 9);
}

#[test]
fn deadline_and_memory_are_configurable_per_binding() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("loop", "endless-loop", json!({}), vec![]);
    spec.limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let binding = engine.bind(spec, fixture()).expect("binds");
    let started = std::time::Instant::now();
    let record = engine.tick(&binding);
    assert_eq!(
        failure(&record.outcome),
        &InvocationError::Deadline("50ms".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "interrupted near its deadline: {:?}",
        started.elapsed()
    );

    let mut spec = fixture_binding("hog", "memory-hog", json!({}), vec![]);
    spec.limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let binding = engine.bind(spec, fixture()).expect("binds");
    let error = failure(&engine.tick(&binding).outcome).clone();
    assert_eq!(
        error,
        InvocationError::MemoryLimit(format!("memory limit of {} bytes exceeded", 8 << 20))
    );
}

#[test]
fn wasi_is_linked_empty_and_output_lands_in_the_host_log() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let binding = engine
        .bind(
            fixture_binding("escape", "escape", json!({}), vec![]),
            fixture(),
        )
        .expect("binds");
    let record = engine.tick(&binding);
    assert_eq!(
        record.outcome,
        Outcome::Ok,
        "no file, socket or environment was reachable"
    );

    let runtime_policy = fixture();
    let state = std::sync::Arc::new(scalehost::state::StateStore::in_memory().expect("state"));
    let access = scalehost::runtime::Access {
        cluster: sim.clone(),
        scope: std::sync::Arc::new(scalehost::tick::Scope {
            tenant: tenant(),
            targets: vec![],
            pools: vec![],
        }),
    };
    let invocation = runtime_policy.tick(
        &json!({ "mode": "print" }).to_string(),
        Limits::default(),
        "t".into(),
        "print".into(),
        0,
        access,
        scalehost::runtime::StagedState::new(state, "t/print".into()),
    );
    assert_eq!(invocation.result, Ok(()));
    let lines: Vec<_> = invocation
        .logs
        .iter()
        .map(|l| (l.stream, l.message.as_str()))
        .collect();
    assert!(
        lines.contains(&(GuestStream::Stdout, "fixture stdout line")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(GuestStream::Stderr, "fixture stderr line")),
        "{lines:?}"
    );
}

#[test]
fn bytes_passed_are_capped() {
    let sim = sim();
    let engine = tick_engine(&sim);
    let mut spec = fixture_binding("big", "big-state", json!({ "bytes": 2 << 20 }), vec![]);
    spec.limits = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let binding = engine.bind(spec, fixture()).expect("binds");
    let record = engine.tick(&binding);
    assert!(
        matches!(failure(&record.outcome), InvocationError::HostLimit(m) if m.contains("bytes")),
        "{:?}",
        record.outcome
    );
    assert_eq!(
        engine.state().get("t/big", "big").expect("reads"),
        None,
        "a failed tick writes no state"
    );
}
