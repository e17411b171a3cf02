//! Native baselines for backtests: `hpa`, `kpa`, `static-peak`.
//!
//! A baseline is an autoscaler built into the host and run tick by tick beside the policy
//! components, on the same observations a policy gets (see [`Observation`]), so that a report
//! compares each policy with what Kubernetes or Knative would have done on the same trace:
//!
//! - [`Hpa`]: the Kubernetes HPA v2 algorithm from the same crate as the `hpa-classic` plugin
//!   (`scalehost-hpa`, in `hpa/`), so the two give the same numbers;
//! - [`Kpa`]: the Knative Pod Autoscaler's stable/panic windows on the offered concurrency;
//! - [`StaticPeak`]: the replicas the run's peak needs, all the time.
//!
//! Every baseline returns the replicas it wants; the backtest bounds them to `[min, max]` and
//! applies them.

use std::collections::VecDeque;

use crate::domain::cluster::{TimestampMs, WorkloadStatus};

use scalehost_hpa::{History, ScalingRules, Spec};

/// What a baseline sees at one tick: exactly what a policy sees through `metrics.workload`,
/// plus the offered demand (what `scalehost_requests_per_minute` answers).
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The tick's instant, virtual host time.
    pub now: TimestampMs,
    /// The workload: spec replicas, ready replicas, CPU request per pod, CPU usage of all pods.
    pub status: WorkloadStatus,
    /// Offered requests per minute now.
    pub demand_per_minute: f64,
    /// Requests per minute one replica serves at 100 % CPU.
    pub capacity_per_replica: f64,
}

/// A native autoscaler run by the backtest beside the plugins, tick by tick.
pub trait Baseline: Send {
    /// Its name in reports (`hpa`, `kpa`, `static-peak`).
    fn name(&self) -> &str;
    /// The replicas it wants now; the backtest applies it (bounded to [min, max] by the caller).
    fn decide(&mut self, observation: &Observation) -> u32;
}

/// Parameters shared by baselines.
#[derive(Debug, Clone, Copy)]
pub struct BaselineBounds {
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
}

impl BaselineBounds {
    /// `replicas` within the bounds (never panics, even if min > max: max wins).
    fn bound(&self, replicas: u32) -> u32 {
        replicas.max(self.min_replicas).min(self.max_replicas)
    }
}

/// A baseline name that is none of [`NAMES`].
#[derive(Debug, thiserror::Error)]
#[error("unknown baseline {0:?}: expected hpa, kpa or static-peak")]
pub struct UnknownBaseline(pub String);

/// The baselines [`by_name`] knows.
pub const NAMES: &[&str] = &["hpa", "kpa", "static-peak"];

/// Builds a baseline by name; `peak_replicas` is ceil(max demand / capacity_per_replica) over the
/// run (for static-peak).
pub fn by_name(
    name: &str,
    bounds: BaselineBounds,
    peak_replicas: u32,
) -> Result<Box<dyn Baseline>, UnknownBaseline> {
    match name {
        "hpa" => Ok(Box::new(Hpa::new(bounds))),
        "kpa" => Ok(Box::new(Kpa::new(bounds))),
        "static-peak" => Ok(Box::new(StaticPeak::new(bounds, peak_replicas))),
        other => Err(UnknownBaseline(other.to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// hpa

/// The `hpa` baseline's CPU utilization target, integer percent: the `hpa-classic` plugin's
/// default `target_utilization` 0.7 as it passes it on, `(0.7 * 100).round()`.
pub const HPA_TARGET_UTILIZATION_PCT: i32 = scalehost_hpa::DEFAULT_TARGET_UTILIZATION_PCT;

/// The `hpa` baseline's tolerance: kube-controller-manager's
/// `--horizontal-pod-autoscaler-tolerance` default, and the plugin's default.
pub const HPA_TOLERANCE: f64 = scalehost_hpa::DEFAULT_TOLERANCE;

/// The Kubernetes HPA v2 (`autoscaling/v2`) controller on CPU utilization, as the `hpa-classic`
/// plugin runs it with its default configuration (`metric: "cpu"`, min/max from the bounds).
///
/// Parameters and where they come from (Kubernetes `pkg/controller/podautoscaler`, defaults in
/// `pkg/apis/autoscaling/v2/defaults.go` and kube-controller-manager's flags):
///
/// - target CPU utilization 70 % of the pods' request ([`HPA_TARGET_UTILIZATION_PCT`]; HPA has
///   no default target, 70 % is the project's choice and the plugin's default);
/// - tolerance 0.1 ([`HPA_TOLERANCE`], `--horizontal-pod-autoscaler-tolerance`): no change while
///   `|utilization / target - 1| <= 0.1`, else `ceil(utilization / target × ready)`;
///   utilization is `usage × 100 / (ready × request)` truncated to an integer percent, as in
///   `replica_calculator.go`;
/// - sync period 15 s (`--horizontal-pod-autoscaler-sync-period`): here the reconcile runs once
///   per backtest tick, whose default is 15 s;
/// - scale-up: no stabilization, policies Pods 4 and Percent 100 per 15 s, selectPolicy Max
///   (`GenerateHPAScaleUpRules`);
/// - scale-down: stabilization 300 s (`--horizontal-pod-autoscaler-downscale-stabilization`),
///   policy Percent 100 per 15 s (`GenerateHPAScaleDownRules`);
/// - min/max replicas from [`BaselineBounds`].
///
/// The algorithm itself (stabilization, rate limits, scale events, bounds) is the shared
/// `hpa.rs` of the plugin; this type only does what the plugin's `tick` does around it: reads the
/// workload, computes the CPU proposal from the ready pods (none when no pod is ready or no
/// usage is reported: then only the bounds apply), reconciles, and keeps the controller's
/// recommendations and scale events between ticks (the plugin keeps them in its state).
#[derive(Debug, Clone)]
pub struct Hpa {
    spec: Spec,
    history: History,
}

impl Hpa {
    /// An HPA with upstream's default behaviour between `bounds`.
    pub fn new(bounds: BaselineBounds) -> Self {
        Hpa {
            spec: Spec {
                // The plugin converts its u32 config with `as i32` after checking it fits.
                min_replicas: i32::try_from(bounds.min_replicas).unwrap_or(i32::MAX),
                max_replicas: i32::try_from(bounds.max_replicas).unwrap_or(i32::MAX),
                scale_up: ScalingRules::default_scale_up(),
                scale_down: ScalingRules::default_scale_down(),
            },
            history: History::default(),
        }
    }

    /// The plugin's `metric_proposal` for the `cpu` metric: `None` when no pod is ready, no
    /// usage is reported or a value does not fit.
    fn cpu_proposal(status: &WorkloadStatus) -> Option<i32> {
        let current = status.replicas as i32;
        let ready = i32::try_from(status.ready).ok()?;
        scalehost_hpa::resource_replicas(
            current,
            ready,
            i64::try_from(status.cpu_usage_millis?).ok()?,
            i64::try_from(status.cpu_request_millis).ok()?,
            HPA_TARGET_UTILIZATION_PCT,
            HPA_TOLERANCE,
        )
    }
}

impl Baseline for Hpa {
    fn name(&self) -> &str {
        "hpa"
    }

    fn decide(&mut self, observation: &Observation) -> u32 {
        // The same conversions as the plugin's tick: `clock::now_ms() as i64`,
        // `status.replicas as i32`.
        let now = observation.now as i64;
        let current = observation.status.replicas as i32;
        let proposal = Self::cpu_proposal(&observation.status);
        let outcome =
            scalehost_hpa::reconcile(&self.spec, &mut self.history, now, current, proposal);
        // `None`: the plugin asks for nothing and the replicas stay as they are.
        match outcome.desired {
            Some(desired) => u32::try_from(desired).unwrap_or(observation.status.replicas),
            None => observation.status.replicas,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kpa

/// Knative's `stable-window` default, milliseconds.
pub const KPA_STABLE_WINDOW_MS: u64 = 60_000;

/// Knative's `panic-window-percentage` default: the panic window is 10 % of the stable window.
pub const KPA_PANIC_WINDOW_PERCENT: f64 = 10.0;

/// Knative's `panic-threshold-percentage` default (200 %), as a ratio.
pub const KPA_PANIC_THRESHOLD: f64 = 2.0;

/// Knative's `container-concurrency-target-percentage` default (70 %): the per-pod target is
/// 0.7 of what one pod serves, i.e. 0.7 replica units of offered load.
pub const KPA_TARGET_UTILIZATION: f64 = 0.7;

/// Knative's `max-scale-up-rate` default.
pub const KPA_MAX_SCALE_UP_RATE: f64 = 1000.0;

/// Knative's `max-scale-down-rate` default.
pub const KPA_MAX_SCALE_DOWN_RATE: f64 = 2.0;

/// The Knative Pod Autoscaler's decider (knative.dev/serving
/// `pkg/autoscaler/scaling/autoscaler.go`, `autoscaler.Scale`) with the defaults of the
/// `config-autoscaler` ConfigMap.
///
/// Parameters: stable window 60 s ([`KPA_STABLE_WINDOW_MS`]); panic window 10 % of it = 6 s
/// ([`KPA_PANIC_WINDOW_PERCENT`]); panic threshold 200 % ([`KPA_PANIC_THRESHOLD`]); target 70 %
/// of a pod's capacity ([`KPA_TARGET_UTILIZATION`]); max scale-up rate 1000 and max scale-down
/// rate 2 ([`KPA_MAX_SCALE_UP_RATE`], [`KPA_MAX_SCALE_DOWN_RATE`]); scale to zero off (the
/// backtest's min bounds it).
///
/// The metric is concurrency: the offered load in replica units,
/// `demand_per_minute / capacity_per_replica`, whether or not the pods are ready (KPA counts
/// requests in flight, queued ones included). Each tick, as upstream:
///
/// - `readyPods = max(1, ready)`; `maxScaleUp = ceil(1000 × readyPods)`,
///   `maxScaleDown = floor(readyPods / 2)` (the revision is taken as reachable);
/// - `dspc = ceil(stableAvg / 0.7)`, `dppc = ceil(panicAvg / 0.7)`, each clamped to
///   `[maxScaleDown, maxScaleUp]`;
/// - panic starts, or is extended, when `dppc / readyPods >= 2` (unclamped `dppc`); it ends at
///   the first tick strictly more than 60 s after it was last extended, when not over the
///   threshold then;
/// - in panic the result is `max(stable, panic, the highest panic result so far)`: it never
///   decreases until panic ends; otherwise it is the stable result.
///
/// Simplifications: upstream scrapes concurrency every second into 1 s buckets; here there is
/// one sample per tick, and a window's average is the mean of the samples taken less than the
/// window ago (the current one included). With 15 s ticks the stable window holds 4 samples and
/// the panic window only the latest, so the panic value is the current load. At the start of a
/// run the average is over the samples there are, as upstream averages a partial window. Not
/// modelled: scale-to-zero and its grace period, the activator and target burst capacity (they
/// do not change the desired count), `scale-down-delay` (0 by default), `activation-scale` (1 by
/// default), and the "no data yet" case (every tick has a sample). An invalid observation
/// (capacity not positive, demand not finite) is like upstream's missing metric: the replicas
/// stay as they are.
#[derive(Debug, Clone)]
pub struct Kpa {
    bounds: BaselineBounds,
    /// `(at, concurrency)`, oldest first; nothing older than the stable window.
    samples: VecDeque<(TimestampMs, f64)>,
    /// `panicTime`: when the threshold was last crossed while panicking; `None` in stable mode.
    panic_time: Option<TimestampMs>,
    /// `maxPanicPods`: the highest result in the current panic.
    max_panic_pods: u32,
}

impl Kpa {
    /// A KPA with Knative's defaults between `bounds`.
    pub fn new(bounds: BaselineBounds) -> Self {
        Kpa {
            bounds,
            samples: VecDeque::new(),
            panic_time: None,
            max_panic_pods: 0,
        }
    }

    /// The panic window, milliseconds.
    fn panic_window_ms() -> u64 {
        (KPA_STABLE_WINDOW_MS as f64 * KPA_PANIC_WINDOW_PERCENT / 100.0) as u64
    }

    /// Mean of the samples taken less than `window_ms` before `now`.
    fn window_average(&self, now: TimestampMs, window_ms: u64) -> f64 {
        let (sum, n) = self
            .samples
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) < window_ms)
            .fold((0.0, 0u32), |(sum, n), (_, v)| (sum + v, n + 1));
        if n == 0 { 0.0 } else { sum / f64::from(n) }
    }
}

impl Baseline for Kpa {
    fn name(&self) -> &str {
        "kpa"
    }

    fn decide(&mut self, observation: &Observation) -> u32 {
        let now = observation.now;
        let capacity = observation.capacity_per_replica;
        let demand = observation.demand_per_minute;
        if !(capacity.is_finite() && capacity > 0.0 && demand.is_finite()) {
            return self.bounds.bound(observation.status.replicas);
        }
        // Record this tick's concurrency and forget what left the stable window.
        self.samples.push_back((now, demand.max(0.0) / capacity));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) >= KPA_STABLE_WINDOW_MS)
        {
            self.samples.pop_front();
        }
        let stable = self.window_average(now, KPA_STABLE_WINDOW_MS);
        let panic = self.window_average(now, Self::panic_window_ms());

        let ready_pods = f64::from(observation.status.ready.max(1));
        let max_scale_up = (KPA_MAX_SCALE_UP_RATE * ready_pods).ceil();
        let max_scale_down = (ready_pods / KPA_MAX_SCALE_DOWN_RATE).floor();
        let dspc = (stable / KPA_TARGET_UTILIZATION).ceil();
        let dppc = (panic / KPA_TARGET_UTILIZATION).ceil();
        // Float to u32 saturates (and NaN is 0): no undefined conversion.
        let desired_stable = dspc.max(max_scale_down).min(max_scale_up) as u32;
        let desired_panic = dppc.max(max_scale_down).min(max_scale_up) as u32;

        let over_threshold = dppc / ready_pods >= KPA_PANIC_THRESHOLD;
        match self.panic_time {
            _ if over_threshold => self.panic_time = Some(now),
            Some(since) if since.saturating_add(KPA_STABLE_WINDOW_MS) < now => {
                self.panic_time = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }

        let desired = if self.panic_time.is_some() {
            // Provision for the larger of the two; never scale down while panicking.
            let wanted = desired_stable.max(desired_panic);
            self.max_panic_pods = self.max_panic_pods.max(wanted);
            self.max_panic_pods
        } else {
            desired_stable
        };
        self.bounds.bound(desired)
    }
}

// ---------------------------------------------------------------------------------------------
// static-peak

/// Provisions for the run's peak all the time: `ceil(max demand / capacity_per_replica)` over
/// the run, within the bounds. No violations if the peak fits, at the highest cost.
#[derive(Debug, Clone)]
pub struct StaticPeak {
    replicas: u32,
}

impl StaticPeak {
    /// Always `peak_replicas`, within `bounds`.
    pub fn new(bounds: BaselineBounds, peak_replicas: u32) -> Self {
        StaticPeak {
            replicas: bounds.bound(peak_replicas),
        }
    }
}

impl Baseline for StaticPeak {
    fn name(&self) -> &str {
        "static-peak"
    }

    fn decide(&mut self, _observation: &Observation) -> u32 {
        self.replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic epoch (2023-11-14), so the i64 conversions see large values.
    const T0: TimestampMs = 1_700_000_000_000;
    const S: u64 = 1000;
    const REQUEST: u64 = 1000;

    fn bounds(min: u32, max: u32) -> BaselineBounds {
        BaselineBounds {
            min_replicas: min,
            max_replicas: max,
        }
    }

    /// An observation for the HPA: only replicas, ready and usage matter.
    fn cpu(at: u64, replicas: u32, ready: u32, usage: Option<u64>) -> Observation {
        Observation {
            now: T0 + at,
            status: WorkloadStatus {
                replicas,
                ready,
                cpu_request_millis: REQUEST,
                cpu_usage_millis: usage,
            },
            demand_per_minute: 0.0,
            capacity_per_replica: 100.0,
        }
    }

    /// An observation for the KPA: `load` replica units offered (100 requests per minute each).
    fn load(at: u64, ready: u32, load: f64) -> Observation {
        Observation {
            now: T0 + at,
            status: WorkloadStatus {
                replicas: ready,
                ready,
                cpu_request_millis: REQUEST,
                cpu_usage_millis: None,
            },
            demand_per_minute: load * 100.0,
            capacity_per_replica: 100.0,
        }
    }

    #[test]
    fn hpa_doubles_at_140_percent_and_holds_within_tolerance() {
        let mut hpa = Hpa::new(bounds(1, 100));
        // 14000m over 10 ready × 1000m = 140 %; 140 / 70 = 2 → ceil(2 × 10) = 20, and the rate
        // limit max(10 + 4, 2 × 10) = 20 allows it.
        assert_eq!(hpa.decide(&cpu(0, 10, 10, Some(14_000))), 20);
        let mut hpa = Hpa::new(bounds(1, 100));
        // 75 % / 70 % = 1.071: within 0.1, the spec replicas are kept.
        assert_eq!(hpa.decide(&cpu(0, 10, 10, Some(7_500))), 10);
        // Kept replicas are the spec's (12), not the ready count (10).
        assert_eq!(hpa.decide(&cpu(15 * S, 12, 10, Some(7_500))), 12);
    }

    #[test]
    fn hpa_holds_scale_down_for_the_300s_stabilization_window() {
        let mut hpa = Hpa::new(bounds(1, 100));
        assert_eq!(hpa.decide(&cpu(0, 10, 10, Some(7_000))), 10);
        // 25 % / 70 % = 0.357 → ceil(3.57) = 4 is recommended every 15 s, but 10 (recommended at
        // 0) stays the highest recommendation inside the 300 s window.
        for tick in 1..20 {
            assert_eq!(
                hpa.decide(&cpu(tick * 15 * S, 10, 10, Some(2_500))),
                10,
                "at {} s",
                tick * 15
            );
        }
        // At 300 s the recommendations made at 0 sit exactly on the cutoff and no longer count;
        // the scale-down rate (100 % per 15 s) does not bind.
        assert_eq!(hpa.decide(&cpu(300 * S, 10, 10, Some(2_500))), 4);
    }

    #[test]
    fn hpa_scale_up_is_limited_to_max_of_4_pods_and_100_percent_per_15s() {
        let mut hpa = Hpa::new(bounds(1, 100));
        // 3 ready at 200 %: ceil(200 / 70 × 3) = 9; limit max(3 + 4, 2 × 3) = 7 (Pods wins).
        assert_eq!(hpa.decide(&cpu(0, 3, 3, Some(6_000))), 7);
        // 5 s later the +4 is inside the 15 s period: it started at 3, the limit is still 7.
        assert_eq!(hpa.decide(&cpu(5 * S, 7, 3, Some(6_000))), 7);
        // At 15 s the event leaves the period: limit max(7 + 4, 14) = 14 ≥ the proposal 9.
        assert_eq!(hpa.decide(&cpu(15 * S, 7, 3, Some(6_000))), 9);

        let mut hpa = Hpa::new(bounds(1, 100));
        // 10 ready at 200 %: ceil(200 / 70 × 10) = 29; limit max(14, 20) = 20 (Percent wins).
        assert_eq!(hpa.decide(&cpu(0, 10, 10, Some(20_000))), 20);
        // The new pods are not ready yet: still 29 proposed, limit max(24, 40) = 40.
        assert_eq!(hpa.decide(&cpu(15 * S, 20, 10, Some(20_000))), 29);
    }

    #[test]
    fn hpa_without_ready_pods_keeps_replicas_within_bounds() {
        let mut hpa = Hpa::new(bounds(2, 8));
        // No ready pod, no usage: no proposal, nothing changes.
        assert_eq!(hpa.decide(&cpu(0, 3, 0, None)), 3);
        // Out of bounds, the bounds still apply without a metric.
        assert_eq!(hpa.decide(&cpu(15 * S, 12, 0, None)), 8);
        assert_eq!(hpa.decide(&cpu(30 * S, 1, 0, None)), 2);
    }

    #[test]
    fn hpa_defaults_are_upstreams() {
        let hpa = Hpa::new(bounds(1, 20));
        let spec = &hpa.spec;
        assert_eq!((spec.min_replicas, spec.max_replicas), (1, 20));
        assert_eq!(spec.scale_up.stabilization_window_secs, 0);
        assert_eq!(spec.scale_down.stabilization_window_secs, 300);
        assert_eq!(spec.scale_up, ScalingRules::default_scale_up());
        assert_eq!(spec.scale_down, ScalingRules::default_scale_down());
        assert_eq!((HPA_TARGET_UTILIZATION_PCT, HPA_TOLERANCE), (70, 0.1));
    }

    #[test]
    fn kpa_steady_load_needs_load_over_target() {
        // ceil(load / 0.7), each from a matching ready count so nothing panics or is rate-limited.
        for (l, want) in [(2.0, 3), (5.0, 8), (10.0, 15)] {
            let mut kpa = Kpa::new(bounds(1, 100));
            for tick in 0..8 {
                assert_eq!(kpa.decide(&load(tick * 15 * S, want, l)), want, "load {l}");
            }
        }
        // Scale to zero is off: no load still means the minimum.
        let mut kpa = Kpa::new(bounds(1, 100));
        assert_eq!(kpa.decide(&load(0, 1, 0.0)), 1);
    }

    #[test]
    fn kpa_panics_on_a_spike_and_holds_until_60s_after_the_last_trigger() {
        let mut kpa = Kpa::new(bounds(1, 100));
        let mut at = |s: u64, ready: u32, l: f64| kpa.decide(&load(s * S, ready, l));
        for s in [0, 15, 30, 45] {
            assert_eq!(at(s, 8, 5.0), 8);
        }
        // 3× spike: panic average 15 → ceil(21.4) = 22, and 22 / 8 ready ≥ 2: panic, at once to
        // 22 (the stable average (5 + 5 + 5 + 15) / 4 = 7.5 alone would give 11).
        assert_eq!(at(60, 8, 15.0), 22);
        // Still over the threshold while the new pods start: panic extended to 105 s.
        for s in [75, 90, 105] {
            assert_eq!(at(s, 8, 15.0), 22);
        }
        // The load falls back; 22 ready now. Stable wants 18, 15, 11, then 8 (clamped to
        // floor(22 / 2) = 11), but in panic nothing decreases; at 165 s the last trigger is
        // exactly 60 s old, not more: still panic.
        for s in [120, 135, 150, 165] {
            assert_eq!(at(s, 22, 5.0), 22, "at {s} s");
        }
        // 75 s after the last trigger: stable mode, scale-down halved at most: max(8, 11) = 11.
        assert_eq!(at(180, 22, 5.0), 11);
        // From 11 ready the floor is 5: down to the stable 8, and it stays there.
        assert_eq!(at(195, 11, 5.0), 8);
        assert_eq!(at(210, 8, 5.0), 8);
    }

    #[test]
    fn kpa_scale_down_halves_at_most_per_tick() {
        let mut kpa = Kpa::new(bounds(1, 100));
        // Load 1 needs ceil(1 / 0.7) = 2; from 20 ready: floor(20 / 2) = 10, then 5, then 2.
        let mut ready = 20;
        for (tick, want) in [10, 5, 2, 2].into_iter().enumerate() {
            ready = kpa.decide(&load(tick as u64 * 15 * S, ready, 1.0));
            assert_eq!(ready, want, "tick {tick}");
        }
    }

    #[test]
    fn kpa_stable_window_is_60s_of_samples() {
        let mut kpa = Kpa::new(bounds(1, 100));
        let mut at = |s: u64, ready: u32, l: f64| kpa.decide(&load(s * S, ready, l));
        // A step from 10 to 3 units; no panic (ceil(l / 0.7) / ready < 2 throughout), and the
        // ready counts keep the halving floor below the stable result except where noted.
        assert_eq!(at(0, 20, 10.0), 15); // 10 / 0.7 = 14.3
        assert_eq!(at(15, 20, 10.0), 15);
        assert_eq!(at(30, 20, 3.0), 11); // (10 + 10 + 3) / 3 = 7.67 → 10.95
        assert_eq!(at(45, 15, 3.0), 10); // (10 + 10 + 3 + 3) / 4 = 6.5 → 9.29
        // At 60 s the sample at 0 has left: (10 + 3 + 3 + 3) / 4 = 4.75 → ceil(6.79) = 7 (with
        // it, 5.8 → 9).
        assert_eq!(at(60, 10, 3.0), 7);
        // Only 3s remain: ceil(4.29) = 5.
        assert_eq!(at(75, 7, 3.0), 5);
    }

    #[test]
    fn static_peak_is_constant_and_bounded() {
        let mut peak = StaticPeak::new(bounds(1, 50), 17);
        for tick in 0..5 {
            assert_eq!(peak.decide(&load(tick * 15 * S, 3, tick as f64)), 17);
        }
        assert_eq!(StaticPeak::new(bounds(1, 10), 17).replicas, 10);
        assert_eq!(StaticPeak::new(bounds(2, 10), 0).replicas, 2);
    }

    #[test]
    fn by_name_builds_every_name_and_refuses_others() {
        for name in NAMES {
            let baseline = by_name(name, bounds(1, 10), 4).expect("a known name");
            assert_eq!(baseline.name(), *name);
        }
        let err = by_name("vpa", bounds(1, 10), 4)
            .err()
            .expect("an unknown name");
        assert_eq!(
            err.to_string(),
            "unknown baseline \"vpa\": expected hpa, kpa or static-peak"
        );
    }
}
