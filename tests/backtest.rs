//! Backtests: parity of hpa-classic with the native hpa, determinism, reports, bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::compiled;
use scalehost::backends::simulated::read_trace;
use scalehost::backtest::baselines::{self, BaselineBounds};
use scalehost::backtest::run::{Backtest, BacktestSpec};
use scalehost::cmd::simulate::default_config;
use scalehost_test_artifacts as artifacts;

fn nasa() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(scalehost::cmd::demo::DEFAULT_TRACE)
}

fn scalehost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalehost"))
        .args(args)
        .output()
        .expect("scalehost runs")
}

/// A plugins folder holding the shipped policies under their names.
fn plugins() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (from, name) in [
        (artifacts::HPA_CLASSIC, "hpa-classic"),
        (artifacts::PREDICTIVE_FORECAST, "predictive-forecast"),
        (artifacts::THRESHOLD_COOLDOWN, "threshold-cooldown"),
    ] {
        std::fs::copy(from, dir.path().join(format!("{name}.wasm"))).expect("copies");
    }
    dir
}

#[test]
fn hpa_classic_gives_exactly_the_native_hpa_numbers() {
    let trace = read_trace(&nasa()).expect("the NASA trace");
    // Two days with the July 4th holiday in them: scale-ups, stabilized scale-downs, quiet nights.
    let spec = BacktestSpec {
        from_minute: 3 * 1440,
        to_minute: Some(5 * 1440),
        ..BacktestSpec::default()
    };
    let backtest = Backtest::new(&trace, &spec).expect("window");
    let config = default_config("hpa-classic", &backtest).expect("a default config");
    let plugin = backtest
        .run_policy(
            "hpa-classic",
            compiled(artifacts::HPA_CLASSIC),
            config,
            &mut |_| {},
        )
        .expect("runs");
    let (min_replicas, max_replicas) = backtest.bounds();
    let native = baselines::by_name(
        "hpa",
        BaselineBounds {
            min_replicas,
            max_replicas,
        },
        backtest.peak_replicas(),
    )
    .expect("hpa exists");
    let native = backtest.run_baseline(native, &mut |_| {});
    assert_eq!(plugin.report.failed_ticks, 0);
    assert!(
        plugin.report.scale_actions > 20,
        "the window makes HPA work: {:?}",
        plugin.report
    );
    let (p, n) = (&plugin.report, &native.report);
    assert_eq!(
        (
            p.violation_minutes,
            p.scale_actions,
            p.max_replicas,
            p.ticks
        ),
        (
            n.violation_minutes,
            n.scale_actions,
            n.max_replicas,
            n.ticks
        )
    );
    assert_eq!(p.replica_hours.to_bits(), n.replica_hours.to_bits());
    assert_eq!(p.dropped_share.to_bits(), n.dropped_share.to_bits());
    assert_eq!(
        plugin.ready_by_minute, native.ready_by_minute,
        "tick for tick"
    );
}

#[test]
fn the_same_inputs_give_byte_identical_json_and_a_chart() {
    let plugins = plugins();
    let out = tempfile::tempdir().expect("tempdir");
    let run = |name: &str| {
        let json = out.path().join(name);
        let result = scalehost(&[
            "simulate",
            "--trace",
            nasa().to_str().expect("utf-8"),
            "--from",
            "0",
            "--to",
            "1440",
            "--policy",
            "predictive-forecast",
            "--policy",
            "threshold-cooldown",
            "--baseline",
            "hpa,kpa,static-peak",
            "--plugins",
            plugins.path().to_str().expect("utf-8"),
            "--json",
            json.to_str().expect("utf-8"),
            "--chart",
            out.path().join("chart.svg").to_str().expect("utf-8"),
        ]);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        (
            std::fs::read(json).expect("json written"),
            String::from_utf8_lossy(&result.stdout).into_owned(),
        )
    };
    let (first, table) = run("a.json");
    let (second, _) = run("b.json");
    assert_eq!(first, second, "byte-identical");
    let report: serde_json::Value = serde_json::from_slice(&first).expect("JSON");
    let names: Vec<&str> = report["policies"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "predictive-forecast",
            "threshold-cooldown",
            "hpa",
            "kpa",
            "static-peak"
        ]
    );
    for policy in report["policies"].as_array().expect("list") {
        for field in [
            "violation_minutes",
            "dropped_share",
            "replica_hours",
            "cost_vs_oracle",
            "scale_actions",
            "max_replicas",
            "ticks",
            "failed_ticks",
        ] {
            assert!(policy.get(field).is_some(), "{field} missing in {policy}");
        }
        assert_eq!(policy["ticks"], 5760);
        assert_eq!(policy["failed_ticks"], 0);
    }
    assert!(report["oracle"]["replica_hours"].as_f64().expect("number") > 0.0);
    let static_peak = &report["policies"][4];
    assert_eq!(
        static_peak["violation_minutes"], 0,
        "static-peak never lacks capacity"
    );
    assert!(static_peak["cost_vs_oracle"].as_f64().expect("number") > 1.0);
    assert!(
        table.contains("oracle") && table.contains("predictive-forecast"),
        "{table}"
    );
    let svg = std::fs::read_to_string(out.path().join("chart.svg")).expect("chart written");
    assert!(
        svg.starts_with("<svg") && svg.contains("predictive-forecast") && svg.contains("demand"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn a_png_chart_zoomed_into_a_window_is_a_png() {
    let out = tempfile::tempdir().expect("tempdir");
    let png = out.path().join("chart.png");
    let result = scalehost(&[
        "simulate",
        "--trace",
        nasa().to_str().expect("utf-8"),
        "--to",
        "600",
        "--baseline",
        "static-peak",
        "--chart",
        png.to_str().expect("utf-8"),
        "--chart-window",
        "120:240",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let bytes = std::fs::read(&png).expect("written");
    assert!(bytes.starts_with(b"\x89PNG"), "PNG magic");
}

/// Runs `simulate` expecting failure; returns its stderr.
fn refusal(args: &[&str]) -> String {
    let result = scalehost(args);
    assert!(!result.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&result.stderr).into_owned()
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("writes");
        path.to_str().expect("utf-8").to_owned()
    };
    let good = write("good.csv", "minute,requests\n0,10\n1,20\n2,30\n");
    let missing = dir
        .path()
        .join("missing.csv")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let header = write("header.csv", "minute,count\n0,10\n");
    let not_number = write("nan.csv", "minute,requests\n0,10\n1,lots\n");
    let plugins = plugins();
    let plugins = plugins.path().to_str().expect("utf-8");
    let bad_config = write(
        "bad.json",
        r#"{"target": {"namespace": "backtest", "name": "app"}, "max_replicas": 0}"#,
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--trace", &missing, "--baseline", "hpa"],
            "cannot read trace",
        ),
        (vec!["--trace", &header, "--baseline", "hpa"], "bad header"),
        (
            vec!["--trace", &not_number, "--baseline", "hpa"],
            "nan.csv:3: requests is not a non-negative number: \"lots\"",
        ),
        (
            vec!["--trace", &good, "--from", "3", "--baseline", "hpa"],
            "empty window",
        ),
        (
            vec!["--trace", &good, "--baseline", "magic"],
            "unknown baseline \"magic\"",
        ),
        (
            vec!["--trace", &good, "--policy", "nope", "--plugins", plugins],
            "unknown policy \"nope\"",
        ),
        (vec!["--trace", &good], "nothing to simulate"),
        (
            vec![
                "--trace",
                &good,
                "--baseline",
                "hpa",
                "--chart-window",
                "1:9",
            ],
            "--chart-window 1:9 must be a non-empty range inside the replayed minutes 0:3",
        ),
        (
            vec!["--trace", &good, "--baseline", "hpa", "--chart-window", "x"],
            "expected FROM:TO",
        ),
        (
            vec!["--trace", &good, "--baseline", "hpa", "--chart", "c.gif"],
            "must end in .svg or .png",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["simulate"];
        all.extend(args);
        let stderr = refusal(&all);
        assert!(
            stderr.contains(expected),
            "{all:?}: expected {expected:?} in {stderr}"
        );
    }
    let refused = format!("hpa-classic={bad_config}");
    let stderr = refusal(&[
        "simulate",
        "--trace",
        &good,
        "--policy",
        &refused,
        "--plugins",
        plugins,
    ]);
    assert!(stderr.contains("config refused by the policy"), "{stderr}");
}
