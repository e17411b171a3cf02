//! The `scalehost` binary: `validate` refuses bad plugins in one line; `demo` runs to the end.

use std::path::Path;
use std::process::{Command, Output};

use scalehost_test_artifacts as artifacts;

fn scalehost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalehost"))
        .args(args)
        .output()
        .expect("scalehost runs")
}

/// The one line `validate` printed to stderr, after checking it failed.
fn refusal(args: &[&str]) -> String {
    let out = scalehost(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn validate_accepts_a_policy_and_checks_its_config() {
    let out = scalehost(&[
        "validate",
        artifacts::POLICY_FIXTURE,
        "--config",
        r#"{"mode":"ok"}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: ")
            && stdout.contains("sha256:")
            && stdout.contains("config accepted"),
        "{stdout}"
    );
}

#[test]
fn validate_rejects_each_bad_input_with_a_one_line_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "this is not wasm").expect("writes");
    let core = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("writes");
    let missing = dir.path().join("missing.wasm");

    let line = refusal(&["validate", text.to_str().expect("utf-8")]);
    assert!(line.contains("not a WebAssembly binary"), "{line}");
    let line = refusal(&["validate", core.to_str().expect("utf-8")]);
    assert!(
        line.contains("core WebAssembly module, not a component"),
        "{line}"
    );
    let line = refusal(&["validate", artifacts::OTHER_WORLD]);
    assert!(
        line.contains("not a component of world scalehost:policy/policy@0.2.0 (nor of @0.1.0)"),
        "{line}"
    );
    let line = refusal(&[
        "validate",
        artifacts::POLICY_FIXTURE,
        "--config",
        r#"{"mode":"reject"}"#,
    ]);
    assert!(
        line.contains("config refused: this fixture rejects every config"),
        "{line}"
    );
    let line = refusal(&[
        "validate",
        artifacts::POLICY_FIXTURE,
        "--config",
        "{not json",
    ]);
    assert!(line.contains("config is not JSON"), "{line}");
    let line = refusal(&["validate", missing.to_str().expect("utf-8")]);
    assert!(line.contains("cannot read"), "{line}");
}

#[test]
fn the_demo_runs_to_the_end_with_decisions_from_every_seed_policy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let trace = root.join(scalehost::cmd::demo::DEFAULT_TRACE);
    if !trace.is_file() {
        panic!("the NASA trace is missing at {}", trace.display());
    }
    let plugins = tempfile::tempdir().expect("tempdir");
    for (from, name) in [
        (artifacts::THRESHOLD_COOLDOWN, "threshold-cooldown"),
        (
            artifacts::OPPORTUNISTIC_MINER_FILL,
            "opportunistic-miner-fill",
        ),
        (artifacts::PREDICTIVE_FORECAST, "predictive-forecast"),
    ] {
        std::fs::copy(from, plugins.path().join(format!("{name}.wasm"))).expect("copies");
    }
    let out = scalehost(&[
        "demo",
        "--speed",
        "0",
        "--trace",
        trace.to_str().expect("utf-8"),
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for binding in ["frontend-forecast", "api-threshold", "miner-fill"] {
        let decisions = stdout
            .lines()
            .filter(|l| l.contains(binding) && l.contains('→'))
            .count();
        assert!(decisions > 0, "no decision from {binding}:\n{stdout}");
    }
    assert!(!stdout.contains("tick failed"), "{stdout}");
    assert!(stdout.contains("SLO-miss minutes"), "a summary is printed");
}

#[test]
fn serve_ticks_until_sigterm_then_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("scalehost.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[cluster.simulated]
nodes = [{{ name = "n", cpu_millis = 8000 }}]
workloads = [{{ namespace = "web", name = "api", replicas = 2, cpu_request_millis = 100 }}]
[[tenants]]
name = "t"
namespaces = ["web"]
[[bindings]]
tenant = "t"
name = "counter"
plugin = "{plugin}"
interval = "100ms"
config = {{ mode = "counter" }}
"#,
            plugin = artifacts::POLICY_FIXTURE
        ),
    )
    .expect("writes");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalehost"))
        .args(["serve", "--config", config.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    // The data dir defaults to `scalehost-data` beside the config.
    let audit = dir.path().join("scalehost-data/audit.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ticks = || {
        std::fs::read_to_string(&audit)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    while ticks() < 5 {
        assert!(std::time::Instant::now() < deadline, "no ticks within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let stop_deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        assert!(
            std::time::Instant::now() < stop_deadline,
            "did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let text = std::fs::read_to_string(&audit).expect("audit log");
    for line in text.lines() {
        let record: serde_json::Value =
            serde_json::from_str(line).expect("each line is a JSON record");
        assert_eq!(record["outcome"]["status"], "ok", "{line}");
    }
}

/// Kills the child when dropped, so a failing test leaves no server behind.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_client_commands_drive_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "cli-admin\n").expect("writes");
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_scalehost"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                dir.path().join("data").to_str().expect("utf-8"),
                "--admin-token-file",
                token_file.to_str().expect("utf-8"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts"),
    );
    let server = format!("http://127.0.0.1:{port}");
    let client = |token: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_scalehost"))
            .args(args)
            .env("SCALEHOST_SERVER", &server)
            .env("SCALEHOST_TOKEN", token)
            .output()
            .expect("runs")
    };
    let ok = |token: &str, args: &[&str]| -> String {
        let out = client(token, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !client("cli-admin", &["tenant", "ls"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "server not up in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let created: serde_json::Value = serde_json::from_str(&ok(
        "cli-admin",
        &["tenant", "create", "shop", "--namespace", "default"],
    ))
    .expect("JSON");
    let token = created["token"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(ok("cli-admin", &["tenant", "ls"]).contains("shop"));
    let pushed: serde_json::Value = serde_json::from_str(&ok(
        &token,
        &[
            "plugin",
            "push",
            artifacts::POLICY_FIXTURE,
            "--name",
            "fixture",
            "--version",
            "1",
        ],
    ))
    .expect("JSON");
    let digest = pushed["digest"].as_str().expect("digest").to_owned();
    assert!(ok(&token, &["plugin", "ls"]).contains(&digest));
    let binding = dir.path().join("binding.json");
    std::fs::write(
        &binding,
        r#"{"plugin": "fixture@1", "config": {"mode": "counter"}, "interval": "200ms",
            "targets": [{"namespace": "default", "name": "web", "max_replicas": 8}]}"#,
    )
    .expect("writes");
    let file = binding.to_str().expect("utf-8");
    ok(
        &token,
        &["binding", "set", "shop", "counter", "--file", file],
    );
    ok(
        &token,
        &["binding", "set", "shop", "counter", "--file", file],
    );
    let listed = ok(&token, &["binding", "ls", "shop"]);
    assert!(
        listed.contains("counter") && listed.contains(&digest),
        "{listed}"
    );
    let history: serde_json::Value =
        serde_json::from_str(&ok(&token, &["binding", "history", "shop", "counter"]))
            .expect("JSON");
    assert_eq!(history["active"], 2);
    let rolled: serde_json::Value = serde_json::from_str(&ok(
        &token,
        &["binding", "rollback", "shop", "counter", "--revision", "1"],
    ))
    .expect("JSON");
    assert_eq!(rolled["revision"], 1);
    ok(
        &token,
        &[
            "binding", "set", "shop", "counter", "--file", file, "--shadow",
        ],
    );
    let promoted: serde_json::Value =
        serde_json::from_str(&ok(&token, &["binding", "promote", "shop", "counter"]))
            .expect("JSON");
    assert_eq!(promoted["revision"], 3);
    let paused: serde_json::Value =
        serde_json::from_str(&ok(&token, &["binding", "pause", "shop", "counter"])).expect("JSON");
    assert_eq!(paused["paused"], true);
    ok(&token, &["binding", "resume", "shop", "counter"]);
    let operations: serde_json::Value =
        serde_json::from_str(&ok(&token, &["binding", "operations", "shop", "counter"]))
            .expect("JSON");
    assert_eq!(operations["operations"], serde_json::json!([]));
    let none = client(
        &token,
        &["binding", "operations", "shop", "counter", "--cancel", "7"],
    );
    assert!(String::from_utf8_lossy(&none.stderr).contains("no operation 7 in flight"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let decisions = ok(&token, &["decisions", "shop", "--binding", "counter"]);
        if decisions.lines().count() >= 2 {
            let record: serde_json::Value =
                serde_json::from_str(decisions.lines().next().expect("a line")).expect("JSON");
            assert_eq!(record["binding"], "counter");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no decisions in 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Errors: the API's code and message, non-zero exit.
    let refused = client(&token, &["plugin", "rm", &digest]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("conflict"),
        "{stderr}"
    );
    let unauthorized = client("wrong", &["plugin", "ls"]);
    assert!(String::from_utf8_lossy(&unauthorized.stderr).contains("unauthorized"));
    let missing = client(
        &token,
        &["binding", "set", "shop", "x", "--file", "/nonexistent.json"],
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.json"));
}
