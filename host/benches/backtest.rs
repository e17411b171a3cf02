//! Backtest speed: the whole NASA trace at 15 s ticks, one Rust policy, wall time per run.
//!
//! A bench binary rather than criterion: one sample is several seconds. Each shipped Rust policy
//! (default config, as `scalehost simulate` binds it) replays the trace `RUNS` times; the median
//! and the per-tick cost are printed. The component is compiled once, outside the timing, as
//! `scalehost simulate` does before its first tick. See docs/benchmarks.md.
//!
//! `cargo bench -p scalehost --bench backtest` (set `SCALEHOST_BENCH_RUNS` to change `RUNS`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalehost::backends::simulated::read_trace;
use scalehost::backtest::run::{Backtest, BacktestSpec};
use scalehost::cmd::simulate::default_config;
use scalehost::runtime::{EngineConfig, PolicyEngine};
use scalehost_test_artifacts as artifacts;

const RUNS: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks policies by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs = std::env::var("SCALEHOST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    let trace_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(scalehost::cmd::demo::DEFAULT_TRACE);
    let trace = read_trace(&trace_path).expect("the NASA trace");
    let backtest = Backtest::new(&trace, &BacktestSpec::default()).expect("the whole trace");
    let runtime = PolicyEngine::new(&EngineConfig::default()).expect("engine");
    println!(
        "NASA trace: {} minutes, {} ticks of 15 s per run",
        backtest.requests().len(),
        backtest.ticks()
    );
    for (name, path) in [
        ("predictive-forecast", artifacts::PREDICTIVE_FORECAST),
        ("hpa-classic", artifacts::HPA_CLASSIC),
        ("threshold-cooldown", artifacts::THRESHOLD_COOLDOWN),
    ] {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let policy =
            Arc::new(scalehost::runtime::load_plugin(&runtime, Path::new(path)).expect(name));
        let config = default_config(name, &backtest).expect("a default config");
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                let run = backtest
                    .run_policy(name, policy.clone(), config.clone(), &mut |_| {})
                    .expect("runs");
                let elapsed = started.elapsed();
                assert_eq!(run.report.failed_ticks, 0, "{name}: no tick fails");
                assert_eq!(run.report.ticks, backtest.ticks());
                elapsed
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "{name:<22} median {:>6.2} s  ({:>5.1} µs/tick; runs: {})",
            median.as_secs_f64(),
            median.as_secs_f64() * 1e6 / backtest.ticks() as f64,
            times
                .iter()
                .map(|t| format!("{:.2} s", t.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
