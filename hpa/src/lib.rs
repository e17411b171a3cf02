//! The Kubernetes HPA v2 replica algorithm in std-only Rust, mirroring the upstream controller.
//!
//! This crate has no dependency beyond `std`: the `hpa-classic` component and the host's native
//! `hpa` backtest baseline both depend on it, so the two give exactly the same numbers. It follows
//! `pkg/controller/podautoscaler/horizontal.go` and `replica_calculator.go`:
//!
//! - [`resource_replicas`] is `GetResourceReplicas` for a workload whose ready pods all report
//!   metrics: utilization is an integer percent, `usage * 100 / requests` truncated, the ratio is
//!   `utilization / target`, and if `|ratio - 1| <= tolerance` the current replicas are kept,
//!   else `ceil(ratio * ready)`. [`average_value_replicas`] is the same for an average value per
//!   ready replica (computed in `f64`, where upstream uses milli-unit integers).
//! - [`reconcile`] is the part of `reconcileAutoscaler` after metrics: the initial
//!   recommendation (`recordInitialRecommendation`), the zero-replicas / above-max / below-min
//!   cases, `normalizeDesiredReplicasWithBehaviors` (= [`stabilize_recommendation`] then
//!   [`convert_desired_replicas_with_behavior_rate`]) and `storeScaleEvent`.
//!
//! Time is host milliseconds. Every comparison keeps upstream's strictness (`After`/`Before`),
//! so a recommendation or event exactly at a cutoff counts for neither side.
//!
//! Deviations: no missing-pod or unready-pod adjustments (the ready count is used, as if every
//! ready pod reported and no other pod existed); only the behaviour path is implemented (an HPA
//! without `behavior` uses a legacy path upstream; here the defaults of `behavior: {}` apply);
//! recorded scale events assume the intent was applied as asked.

/// kube-controller-manager's `--horizontal-pod-autoscaler-tolerance` default: no change while
/// `|ratio - 1| <= 0.1`.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// The CPU utilization target, percent of the pods' request, that scalehost uses when none is
/// given (HPA itself has no default target): the `hpa-classic` plugin's and the `hpa` baseline's.
pub const DEFAULT_TARGET_UTILIZATION_PCT: i32 = 70;

/// [`DEFAULT_TARGET_UTILIZATION_PCT`] as a fraction.
pub const DEFAULT_TARGET_UTILIZATION: f64 = DEFAULT_TARGET_UTILIZATION_PCT as f64 / 100.0;

/// How a scaling policy measures its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    /// An absolute number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One `HPAScalingPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// Pods or percent.
    pub kind: PolicyType,
    /// Pods, or percent of the period's starting replicas; must be > 0.
    pub value: i32,
    /// Length of the period, seconds (1..=1800 upstream).
    pub period_secs: i32,
}

/// How the limits of several policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One direction's `HPAScalingRules`, defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingRules {
    /// Stabilization window, seconds.
    pub stabilization_window_secs: i32,
    /// How the policies combine.
    pub select_policy: SelectPolicy,
    /// The rate limits; at least one.
    pub policies: Vec<ScalingPolicy>,
}

impl ScalingRules {
    /// Upstream's default scale-up rules: no stabilization, max of 4 pods or 100 % per 15 s.
    pub fn default_scale_up() -> Self {
        ScalingRules {
            stabilization_window_secs: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_secs: 15,
                },
                ScalingPolicy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_secs: 15,
                },
            ],
        }
    }

    /// Upstream's default scale-down rules: 300 s stabilization, 100 % per 15 s.
    pub fn default_scale_down() -> Self {
        ScalingRules {
            stabilization_window_secs: 300,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyType::Percent,
                value: 100,
                period_secs: 15,
            }],
        }
    }

    fn longest_policy_period(&self) -> i32 {
        self.policies
            .iter()
            .map(|p| p.period_secs)
            .max()
            .unwrap_or(0)
            .max(0)
    }
}

/// What of the HPA spec the normalization needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `minReplicas`.
    pub min_replicas: i32,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// `behavior.scaleUp`.
    pub scale_up: ScalingRules,
    /// `behavior.scaleDown`.
    pub scale_down: ScalingRules,
}

/// A `timestampedRecommendation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// Replicas recommended.
    pub replicas: i32,
    /// When, host milliseconds.
    pub at_ms: i64,
}

/// A `timestampedScaleEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// Replicas added (scale-up list) or removed (scale-down list), positive.
    pub change: i32,
    /// When, host milliseconds.
    pub at_ms: i64,
    /// Marked for reuse once older than the longest policy period.
    pub outdated: bool,
}

/// The controller's per-HPA memory: recommendations and scale events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// Recommendations; empty only before the first reconcile.
    pub recommendations: Vec<Recommendation>,
    /// Scale-up events.
    pub scale_up_events: Vec<ScaleEvent>,
    /// Scale-down events.
    pub scale_down_events: Vec<ScaleEvent>,
}

const HISTORY_VERSION: u8 = 1;

impl History {
    /// Compact little-endian encoding: version, then each list as a u32 count and fixed records
    /// (recommendation: i64 time, i32 replicas; event: i64 time, i32 change, u8 outdated).
    pub fn encode(&self) -> Vec<u8> {
        let events = self.scale_up_events.len() + self.scale_down_events.len();
        let mut out = Vec::with_capacity(13 + 12 * self.recommendations.len() + 13 * events);
        out.push(HISTORY_VERSION);
        out.extend_from_slice(&(self.recommendations.len() as u32).to_le_bytes());
        for r in &self.recommendations {
            out.extend_from_slice(&r.at_ms.to_le_bytes());
            out.extend_from_slice(&r.replicas.to_le_bytes());
        }
        for list in [&self.scale_up_events, &self.scale_down_events] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for e in list {
                out.extend_from_slice(&e.at_ms.to_le_bytes());
                out.extend_from_slice(&e.change.to_le_bytes());
                out.push(u8::from(e.outdated));
            }
        }
        out
    }

    /// Decodes [`History::encode`]'s output; `None` if malformed or of another version.
    pub fn decode(bytes: &[u8]) -> Option<History> {
        let mut r = Reader(bytes);
        if r.take(1)?[0] != HISTORY_VERSION {
            return None;
        }
        let n = r.u32()? as usize;
        let mut recommendations = Vec::with_capacity(n.min(bytes.len() / 12));
        for _ in 0..n {
            let at_ms = r.i64()?;
            recommendations.push(Recommendation {
                at_ms,
                replicas: r.i32()?,
            });
        }
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.u32()? as usize;
            list.reserve(n.min(bytes.len() / 13));
            for _ in 0..n {
                let at_ms = r.i64()?;
                let change = r.i32()?;
                list.push(ScaleEvent {
                    change,
                    at_ms,
                    outdated: r.take(1)?[0] != 0,
                });
            }
        }
        if !r.0.is_empty() {
            return None;
        }
        let [scale_up_events, scale_down_events] = lists;
        Some(History {
            recommendations,
            scale_up_events,
            scale_down_events,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// `tolerances.isWithin` in its classic symmetric form: `|1 - ratio| <= tolerance`.
pub fn within_tolerance(ratio: f64, tolerance: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance
}

/// `GetResourceReplicas` for `ready` pods using `usage_total_millis` of CPU in all, each
/// requesting `request_per_pod_millis`, against `target_utilization_pct` (integer percent, as in
/// the HPA spec). `None` (no change) when no pod is ready or nothing is requested.
pub fn resource_replicas(
    current_replicas: i32,
    ready: i32,
    usage_total_millis: i64,
    request_per_pod_millis: i64,
    target_utilization_pct: i32,
    tolerance: f64,
) -> Option<i32> {
    if ready <= 0 {
        return None;
    }
    let requests_total = i64::from(ready).checked_mul(request_per_pod_millis)?;
    if requests_total <= 0 || target_utilization_pct <= 0 {
        return None;
    }
    // GetResourceUtilizationRatio: integer percent, truncated.
    let utilization = (usage_total_millis.saturating_mul(100) / requests_total) as i32;
    let ratio = f64::from(utilization) / f64::from(target_utilization_pct);
    if within_tolerance(ratio, tolerance) {
        return Some(current_replicas);
    }
    Some(ceil_i32(ratio * f64::from(ready)))
}

/// `calcPlainMetricReplicas` for a metric whose total over the `ready` pods is `total`, against
/// an average value per pod of `target_value`. `None` when no pod is ready.
pub fn average_value_replicas(
    current_replicas: i32,
    ready: i32,
    total: f64,
    target_value: f64,
    tolerance: f64,
) -> Option<i32> {
    if ready <= 0 || target_value.is_nan() || target_value <= 0.0 || !total.is_finite() {
        return None;
    }
    let ratio = (total / f64::from(ready)) / target_value;
    if within_tolerance(ratio, tolerance) {
        return Some(current_replicas);
    }
    Some(ceil_i32(ratio * f64::from(ready)))
}

/// Go's `int32(math.Ceil(x))`, saturating where Go's conversion is undefined.
fn ceil_i32(x: f64) -> i32 {
    x.ceil() as i32
}

/// What one reconcile decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The replicas to scale to, or `None` when this reconcile changes nothing (scaling
    /// disabled, or no metric). Equal to the current replicas when no rescale is needed.
    pub desired: Option<i32>,
    /// Why, in upstream's words.
    pub reason: &'static str,
}

impl Outcome {
    /// True when the desired replicas differ from `current`.
    pub fn rescale(&self, current: i32) -> bool {
        self.desired.is_some_and(|d| d != current)
    }
}

/// One reconcile after the metrics were read: `current` is the scale's `spec.replicas`,
/// `metric_proposal` what the metric asks for (`None` if it could not be computed). Updates
/// `history` as upstream does and, when the result differs from `current`, records the scale
/// event as if the scale succeeded.
pub fn reconcile(
    spec: &Spec,
    history: &mut History,
    now_ms: i64,
    current: i32,
    metric_proposal: Option<i32>,
) -> Outcome {
    // recordInitialRecommendation: once, with the replicas the HPA found.
    if history.recommendations.is_empty() {
        history.recommendations.push(Recommendation {
            replicas: current,
            at_ms: now_ms,
        });
    }
    let (desired, reason) = if current == 0 && spec.min_replicas != 0 {
        return Outcome {
            desired: None,
            reason: "scaling is disabled since the replica count of the target is zero",
        };
    } else if current > spec.max_replicas {
        (
            spec.max_replicas,
            "current number of replicas above max_replicas",
        )
    } else if current < spec.min_replicas {
        (
            spec.min_replicas,
            "current number of replicas below min_replicas",
        )
    } else {
        let Some(proposal) = metric_proposal else {
            return Outcome {
                desired: None,
                reason: "failed to compute the metric's replicas",
            };
        };
        // `desiredReplicas` starts at 0 and takes the metric's proposal only if larger.
        let prenormalized = proposal.max(0);
        normalize_desired_replicas_with_behaviors(spec, history, now_ms, current, prenormalized)
    };
    if desired != current {
        store_scale_event(spec, history, now_ms, current, desired);
    }
    Outcome {
        desired: Some(desired),
        reason,
    }
}

/// `normalizeDesiredReplicasWithBehaviors`: stabilize, then apply the rate limits and bounds.
pub fn normalize_desired_replicas_with_behaviors(
    spec: &Spec,
    history: &mut History,
    now_ms: i64,
    current: i32,
    prenormalized: i32,
) -> (i32, &'static str) {
    let stabilized = stabilize_recommendation(spec, history, now_ms, current, prenormalized);
    convert_desired_replicas_with_behavior_rate(spec, history, now_ms, current, stabilized)
}

/// `stabilizeRecommendationWithBehaviors`: the recommendation is kept between the minimum of the
/// recommendations inside the scale-up window and the maximum of those inside the scale-down
/// window (both including `desired`); then `desired` is recorded, reusing the slot of a
/// recommendation older than both windows.
pub fn stabilize_recommendation(
    spec: &Spec,
    history: &mut History,
    now_ms: i64,
    current: i32,
    desired: i32,
) -> i32 {
    let up_cutoff = now_ms - i64::from(spec.scale_up.stabilization_window_secs) * 1000;
    let down_cutoff = now_ms - i64::from(spec.scale_down.stabilization_window_secs) * 1000;
    let mut up_recommendation = desired;
    let mut down_recommendation = desired;
    let mut old_sample = None;
    for (i, rec) in history.recommendations.iter().enumerate() {
        if rec.at_ms > up_cutoff {
            up_recommendation = up_recommendation.min(rec.replicas);
        }
        if rec.at_ms > down_cutoff {
            down_recommendation = down_recommendation.max(rec.replicas);
        }
        if rec.at_ms < up_cutoff && rec.at_ms < down_cutoff {
            old_sample = Some(i);
        }
    }
    let mut recommendation = current;
    if recommendation < up_recommendation {
        recommendation = up_recommendation;
    }
    if recommendation > down_recommendation {
        recommendation = down_recommendation;
    }
    let new = Recommendation {
        replicas: desired,
        at_ms: now_ms,
    };
    match old_sample {
        Some(i) => history.recommendations[i] = new,
        None => history.recommendations.push(new),
    }
    recommendation
}

/// `convertDesiredReplicasWithBehaviorRate`: caps a scale-up at the scale-up limit and
/// `max_replicas`, a scale-down at the scale-down limit and `min_replicas`.
pub fn convert_desired_replicas_with_behavior_rate(
    spec: &Spec,
    history: &History,
    now_ms: i64,
    current: i32,
    desired: i32,
) -> (i32, &'static str) {
    if desired > current {
        let mut scale_up_limit = calculate_scale_up_limit_with_scaling_rules(
            current,
            &history.scale_up_events,
            &history.scale_down_events,
            &spec.scale_up,
            now_ms,
        );
        if scale_up_limit < current {
            // No further scale-up until the events leave their periods.
            scale_up_limit = current;
        }
        let (maximum_allowed, reason) = if spec.max_replicas > scale_up_limit {
            (
                scale_up_limit,
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                spec.max_replicas,
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > maximum_allowed {
            return (maximum_allowed, reason);
        }
    } else if desired < current {
        let mut scale_down_limit = calculate_scale_down_limit_with_behaviors(
            current,
            &history.scale_up_events,
            &history.scale_down_events,
            &spec.scale_down,
            now_ms,
        );
        if scale_down_limit > current {
            // No further scale-down until the events leave their periods.
            scale_down_limit = current;
        }
        let (minimum_allowed, reason) = if spec.min_replicas < scale_down_limit {
            (
                scale_down_limit,
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                spec.min_replicas,
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < minimum_allowed {
            return (minimum_allowed, reason);
        }
    }
    (desired, "the desired count is within the acceptable range")
}

/// `getReplicasChangePerPeriod`: replicas changed by events strictly inside the last period.
pub fn replicas_change_per_period(period_secs: i32, events: &[ScaleEvent], now_ms: i64) -> i32 {
    let cutoff = now_ms - i64::from(period_secs) * 1000;
    events
        .iter()
        .filter(|e| e.at_ms > cutoff)
        .map(|e| e.change)
        .fold(0, i32::wrapping_add)
}

/// `calculateScaleUpLimitWithScalingRules`: the most replicas the rules allow now.
pub fn calculate_scale_up_limit_with_scaling_rules(
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
    now_ms: i64,
) -> i32 {
    let (mut result, select): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, std::cmp::min),
        SelectPolicy::Max => (i32::MIN, std::cmp::max),
    };
    for policy in &rules.policies {
        let added = replicas_change_per_period(policy.period_secs, scale_up_events, now_ms);
        let deleted = replicas_change_per_period(policy.period_secs, scale_down_events, now_ms);
        let period_start = current - added + deleted;
        let proposed = match policy.kind {
            PolicyType::Pods => period_start + policy.value,
            // Rounded up so that a small percentage still adds a pod.
            PolicyType::Percent => {
                ceil_i32(f64::from(period_start) * (1.0 + f64::from(policy.value) / 100.0))
            }
        };
        result = select(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`: the fewest replicas the rules allow now.
pub fn calculate_scale_down_limit_with_behaviors(
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
    now_ms: i64,
) -> i32 {
    let (mut result, select): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, std::cmp::max),
        SelectPolicy::Max => (i32::MAX, std::cmp::min),
    };
    for policy in &rules.policies {
        let added = replicas_change_per_period(policy.period_secs, scale_up_events, now_ms);
        let deleted = replicas_change_per_period(policy.period_secs, scale_down_events, now_ms);
        let period_start = current - added + deleted;
        let proposed = match policy.kind {
            PolicyType::Pods => period_start - policy.value,
            // Go's int32() truncates toward zero.
            PolicyType::Percent => {
                (f64::from(period_start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        };
        result = select(result, proposed);
    }
    result
}

/// `storeScaleEvent`: records a change from `prev` to `new` replicas, reusing the slot of the
/// last event older than the direction's longest policy period.
pub fn store_scale_event(spec: &Spec, history: &mut History, now_ms: i64, prev: i32, new: i32) {
    let (events, rules, change) = if new > prev {
        (&mut history.scale_up_events, &spec.scale_up, new - prev)
    } else {
        (&mut history.scale_down_events, &spec.scale_down, prev - new)
    };
    // markScaleEventsOutdated
    let cutoff = now_ms - i64::from(rules.longest_policy_period()) * 1000;
    for e in events.iter_mut() {
        if e.at_ms < cutoff {
            e.outdated = true;
        }
    }
    let event = ScaleEvent {
        change,
        at_ms: now_ms,
        outdated: false,
    };
    match events.iter().rposition(|e| e.outdated) {
        Some(i) => events[i] = event,
        None => events.push(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn spec(min: i32, max: i32) -> Spec {
        Spec {
            min_replicas: min,
            max_replicas: max,
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(),
        }
    }

    #[test]
    fn tolerance_keeps_current_replicas() {
        // 700m of 1000m at 70 % target: ratio 1.0.
        assert_eq!(resource_replicas(5, 5, 3_500, 1_000, 70, 0.1), Some(5));
        // 76 % / 70 % = 1.086: within 0.1.
        assert_eq!(resource_replicas(5, 5, 3_800, 1_000, 70, 0.1), Some(5));
        // 80 % / 70 % = 1.143: outside, ceil(1.143 * 5) = 6.
        assert_eq!(resource_replicas(5, 5, 4_000, 1_000, 70, 0.1), Some(6));
        // 35 % / 70 % = 0.5: ceil(0.5 * 5) = 3.
        assert_eq!(resource_replicas(5, 5, 1_750, 1_000, 70, 0.1), Some(3));
        // Kept replicas are the spec's, not the ready count.
        assert_eq!(resource_replicas(8, 5, 3_500, 1_000, 70, 0.1), Some(8));
    }

    #[test]
    fn utilization_is_truncated_to_an_integer_percent() {
        // 3 pods, 2309m of 3000m = 76.97 % → 76 %; 76/70 = 1.0857 within tolerance.
        assert_eq!(resource_replicas(3, 3, 2_309, 1_000, 70, 0.1), Some(3));
        // 2311m = 77.03 % → 77 %; 77/70 = 1.1: |1 - 1.1| = 0.10000000000000009 > 0.1.
        assert_eq!(resource_replicas(3, 3, 2_311, 1_000, 70, 0.1), Some(4));
    }

    #[test]
    fn no_ready_pods_means_no_proposal() {
        assert_eq!(resource_replicas(3, 0, 1_000, 1_000, 70, 0.1), None);
        assert_eq!(resource_replicas(3, 3, 1_000, 0, 70, 0.1), None);
        assert_eq!(average_value_replicas(3, 0, 10.0, 1.0, 0.1), None);
    }

    #[test]
    fn average_value_per_ready_replica() {
        // 300 over 3 ready = 100 per pod against 50: ratio 2 → 6.
        assert_eq!(average_value_replicas(3, 3, 300.0, 50.0, 0.1), Some(6));
        assert_eq!(average_value_replicas(3, 3, 155.0, 50.0, 0.1), Some(3));
    }

    #[test]
    fn first_reconcile_records_the_current_replicas() {
        let s = spec(1, 10);
        let mut h = History::default();
        let out = reconcile(&s, &mut h, 0, 5, Some(2));
        // The initial recommendation (5) holds the scale-down for the window.
        assert_eq!(out.desired, Some(5));
        assert_eq!(h.recommendations.len(), 2);
    }

    #[test]
    fn stabilization_holds_scale_down_for_the_window() {
        let s = spec(1, 20);
        let mut h = History::default();
        let mut now = 0;
        assert_eq!(reconcile(&s, &mut h, now, 10, Some(10)).desired, Some(10));
        // The load drops: 4 is recommended every 15 s but 10 stays the max in the 300 s window.
        for _ in 0..19 {
            now += 15 * S;
            let out = reconcile(&s, &mut h, now, 10, Some(4));
            assert_eq!(out.desired, Some(10), "at {now}");
        }
        // At 300 s the recommendations made at 0 are exactly on the cutoff: no longer after it.
        now += 15 * S;
        assert_eq!(now, 300 * S);
        assert_eq!(reconcile(&s, &mut h, now, 10, Some(4)).desired, Some(4));
        // Bounded history: slots older than both windows are reused.
        assert!(h.recommendations.len() <= 22, "{}", h.recommendations.len());
    }

    #[test]
    fn stabilization_window_sees_a_brief_peak() {
        let s = spec(1, 20);
        let mut h = History::default();
        reconcile(&s, &mut h, 0, 6, Some(6));
        assert_eq!(reconcile(&s, &mut h, 15 * S, 6, Some(9)).desired, Some(9));
        // Back at 9: a drop to 3 is held at 9 (the max in the window).
        assert_eq!(reconcile(&s, &mut h, 30 * S, 9, Some(3)).desired, Some(9));
    }

    #[test]
    fn rate_limit_caps_scale_up_at_max_of_100_percent_and_4_pods_per_15s() {
        let s = spec(1, 1000);
        let mut h = History::default();
        // From 2: max(2 + 4, ceil(2 * 2)) = 6.
        assert_eq!(reconcile(&s, &mut h, 0, 2, Some(100)).desired, Some(6));
        // 10 s later the event is inside the 15 s period: the period started at 2, the limit is
        // still 6, and nothing more is allowed.
        assert_eq!(reconcile(&s, &mut h, 10 * S, 6, Some(100)).desired, Some(6));
        // 15 s after it the event is exactly on the cutoff and leaves the period: 6 → 12.
        assert_eq!(
            reconcile(&s, &mut h, 15 * S, 6, Some(100)).desired,
            Some(12)
        );
        // From 12: max(16, 24) = 24.
        assert_eq!(
            reconcile(&s, &mut h, 30 * S, 12, Some(100)).desired,
            Some(24)
        );
        assert_eq!(
            reconcile(&s, &mut h, 45 * S, 24, Some(30)).desired,
            Some(30)
        );
    }

    #[test]
    fn scale_up_is_capped_by_max_replicas() {
        let s = spec(1, 5);
        let mut h = History::default();
        let out = reconcile(&s, &mut h, 0, 4, Some(50));
        assert_eq!(out.desired, Some(5));
        assert_eq!(
            out.reason,
            "the desired replica count is more than the maximum replica count"
        );
    }

    #[test]
    fn min_select_and_disabled_policies() {
        let mut s = spec(1, 1000);
        s.scale_up.select_policy = SelectPolicy::Min;
        let mut h = History::default();
        // min(10 + 4, 20) = 14.
        assert_eq!(reconcile(&s, &mut h, 0, 10, Some(100)).desired, Some(14));
        s.scale_up.select_policy = SelectPolicy::Disabled;
        let mut h = History::default();
        assert_eq!(reconcile(&s, &mut h, 0, 10, Some(100)).desired, Some(10));
    }

    #[test]
    fn scale_down_rate_percent_truncates() {
        let mut s = spec(1, 100);
        s.scale_down = ScalingRules {
            stabilization_window_secs: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyType::Percent,
                value: 30,
                period_secs: 60,
            }],
        };
        let mut h = History::default();
        // trunc(10 * 0.7) = 7.
        assert_eq!(reconcile(&s, &mut h, 0, 10, Some(1)).desired, Some(7));
        // Within the period the start is still 10: limit 7, no further drop.
        assert_eq!(reconcile(&s, &mut h, 30 * S, 7, Some(1)).desired, Some(7));
        // After it: 7 * 0.7 = 4.9 → 4.
        assert_eq!(reconcile(&s, &mut h, 61 * S, 7, Some(1)).desired, Some(4));
    }

    #[test]
    fn bounds_and_zero_replicas() {
        let s = spec(2, 10);
        let mut h = History::default();
        assert_eq!(reconcile(&s, &mut h, 0, 12, None).desired, Some(10));
        assert_eq!(reconcile(&s, &mut h, 0, 1, None).desired, Some(2));
        assert_eq!(reconcile(&s, &mut h, 0, 0, Some(5)).desired, None);
        assert_eq!(reconcile(&s, &mut h, 0, 5, None).desired, None);
    }

    #[test]
    fn history_round_trips() {
        let s = spec(1, 100);
        let mut h = History::default();
        reconcile(&s, &mut h, 0, 2, Some(10));
        reconcile(&s, &mut h, 20 * S, 6, Some(1));
        h.scale_down_events.push(ScaleEvent {
            change: 3,
            at_ms: -5,
            outdated: true,
        });
        let bytes = h.encode();
        assert_eq!(History::decode(&bytes), Some(h));
        assert_eq!(History::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(History::decode(&[]), None);
    }
}
