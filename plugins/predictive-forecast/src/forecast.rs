//! The forecasting model: compact bucket history, Holt smoothing, seasonal forecast, anti-flap.
//!
//! Pure logic without host calls, so it is unit-tested natively; the crate's `tick` only loads
//! the model from state, feeds it one observation and saves it back.
//!
//! # History
//!
//! Demand is averaged per bucket of `bucket_secs`. Bucket `k` (absolute: `now / bucket`) lands
//! in slot `k mod N` of a ring of `N = seasons_kept × season_secs / bucket_secs` `f32` means
//! (`NaN` = no data), stored as raw little-endian bytes and written only when a bucket closes.
//! Skipped buckets are cleared, so a slot read for bucket `j` holds `j`'s mean or nothing: `j` is
//! read only if it is closed, no older than `N` buckets, and not before the first observation.
//!
//! # Forecast
//!
//! - Level `L` and slope `T` (units per second): Holt's linear smoothing of the raw samples,
//!   time-aware (`α = 1 − e^(−dt/τ)` with `τ = max(horizon_secs, 1)`; `β = 1 − e^(−dt/τ_T)`
//!   with `τ_T = max(bucket_secs, τ)`): the level follows the load over about the horizon, the
//!   slope is measured over a bucket, the span the seasonal profile resolves, so the
//!   sample-to-sample noise of a bursty load does not read as a trend.
//! - Seasonal profile: `Sb(k)` = mean of the stored means of buckets `k − s × season` for
//!   `s = 1..=seasons_kept` (empty ones ignored); `S(t)` interpolates `Sb` linearly between
//!   bucket centres.
//! - With at least one full season of history and `S(now)` known, for each point `t` where the
//!   piecewise-linear `S` can peak on `[now, now + horizon + interval]` (`interval`: the time
//!   since the previous tick, the best guess of the time to the next decision, at most a
//!   bucket; both ends and the bucket centres between):
//!   `f(t) = ½ × L × min(S(t) / S(now), 4) + ½ × (L + S(t) − S(now))`,
//!   the current level carried along the seasonal shape, multiplicatively and additively
//!   blended (the additive half keeps the forecast sane where `S(now)` is near zero; the cap
//!   stops a near-empty trough from multiplying noise). The seasonal forecast is `max f(t)`
//!   (an upper envelope, so a rise inside the next bucket is covered too); the trend term
//!   `T × horizon`, limited to ±50 % of `L`, is added; the result is floored at 0.
//! - Without a full season the model gives no forecast and the policy is purely reactive.
//!
//! # Decision
//!
//! `desired = clamp(max(ceil(forecast / unit), ceil(demand / unit)), min, max)` with
//! `unit = capacity_per_replica × target_utilization`. Scale up at once; scale down only once
//! the desired count has stayed below the current one for a full bucket, and then to the highest
//! count desired during that bucket (a light stabilization: one quiet sample of a noisy load
//! must not undo a busy minute).

/// Bound on the multiplicative seasonal growth factor `S(t) / S(now)`.
pub const MAX_SEASONAL_GROWTH: f64 = 4.0;

/// Bound on the trend term, as a share of the level.
pub const MAX_TREND_SHARE: f64 = 0.5;

/// Tolerance for rounding replicas up: `ceil(10.000000000001)` should be 10.
const CEIL_EPSILON: f64 = 1e-9;

const META_VERSION: u8 = 1;
const NONE: u64 = u64::MAX;

/// The history's shape; a change of any field discards the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bucket length, milliseconds.
    pub bucket_ms: u64,
    /// Buckets per season.
    pub buckets_per_season: u64,
    /// Seasons kept.
    pub seasons_kept: u64,
}

impl Layout {
    /// Slots in the ring.
    pub fn slots(&self) -> u64 {
        self.buckets_per_season * self.seasons_kept
    }
}

/// Everything but the ring, saved every tick (97 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    /// The layout the ring was written with.
    pub layout: Layout,
    /// Absolute index of the first bucket observed; `None` before any observation.
    pub first_bucket: Option<u64>,
    /// Absolute index of the bucket being accumulated.
    pub cur_bucket: u64,
    /// Sum of the current bucket's samples.
    pub cur_sum: f64,
    /// Number of the current bucket's samples.
    pub cur_count: u64,
    /// Holt level, demand units.
    pub level: f64,
    /// Holt slope, demand units per second.
    pub trend: f64,
    /// Time of the last sample fed to Holt; `None` before the first.
    pub last_ms: Option<u64>,
    /// Since when the desired count has been below the current one.
    pub down_since_ms: Option<u64>,
    /// The highest desired count since `down_since_ms`.
    pub down_max: u32,
}

impl Meta {
    /// Empty history for `layout`.
    pub fn new(layout: Layout) -> Self {
        Meta {
            layout,
            first_bucket: None,
            cur_bucket: 0,
            cur_sum: 0.0,
            cur_count: 0,
            level: 0.0,
            trend: 0.0,
            last_ms: None,
            down_since_ms: None,
            down_max: 0,
        }
    }

    /// Fixed little-endian encoding: a version byte and twelve 8-byte fields.
    pub fn encode(&self) -> Vec<u8> {
        let opt = |v: Option<u64>| v.unwrap_or(NONE);
        let words: [u64; 12] = [
            self.layout.bucket_ms,
            self.layout.buckets_per_season,
            self.layout.seasons_kept,
            opt(self.first_bucket),
            self.cur_bucket,
            self.cur_sum.to_bits(),
            self.cur_count,
            self.level.to_bits(),
            self.trend.to_bits(),
            opt(self.last_ms),
            opt(self.down_since_ms),
            u64::from(self.down_max),
        ];
        let mut out = Vec::with_capacity(1 + 8 * words.len());
        out.push(META_VERSION);
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes [`Meta::encode`]'s output; `None` if malformed or of another version.
    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        let (&version, rest) = bytes.split_first()?;
        if version != META_VERSION || rest.len() != 96 {
            return None;
        }
        let w: Vec<u64> = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let opt = |v: u64| (v != NONE).then_some(v);
        Some(Meta {
            layout: Layout {
                bucket_ms: w[0],
                buckets_per_season: w[1],
                seasons_kept: w[2],
            },
            first_bucket: opt(w[3]),
            cur_bucket: w[4],
            cur_sum: f64::from_bits(w[5]),
            cur_count: w[6],
            level: f64::from_bits(w[7]),
            trend: f64::from_bits(w[8]),
            last_ms: opt(w[9]),
            down_since_ms: opt(w[10]),
            down_max: u32::try_from(w[11]).ok()?,
        })
    }
}

/// A ring of `slots` empty buckets.
fn empty_ring(slots: usize) -> Vec<u8> {
    f32::NAN.to_le_bytes().repeat(slots)
}

/// The generic parameters of one binding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// History layout.
    pub layout: Layout,
    /// How far ahead to look, milliseconds.
    pub horizon_ms: u64,
}

impl Params {
    fn tau_secs(&self) -> f64 {
        (self.horizon_ms as f64 / 1000.0).max(1.0)
    }

    fn trend_tau_secs(&self) -> f64 {
        (self.layout.bucket_ms as f64 / 1000.0).max(self.tau_secs())
    }
}

/// History and smoothing state of one binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Everything but the ring.
    pub meta: Meta,
    /// Per-bucket means as little-endian `f32`s, `NaN` where empty: kept as the stored bytes
    /// because a tick reads only a few dozen of them.
    pub ring: Vec<u8>,
    /// True when `ring` changed since loading and must be saved.
    pub ring_dirty: bool,
}

impl Model {
    /// Empty history.
    pub fn new(layout: Layout) -> Self {
        Model {
            meta: Meta::new(layout),
            ring: empty_ring(layout.slots() as usize),
            ring_dirty: false,
        }
    }

    /// Loads saved state, starting afresh if it is missing, malformed or of another layout.
    /// Takes the ring by value: it is the bulk of the state and is used as it is.
    pub fn load(layout: Layout, meta: Option<&[u8]>, ring: Option<Vec<u8>>) -> Self {
        let slots = layout.slots() as usize;
        match meta.and_then(Meta::decode) {
            Some(meta) if meta.layout == layout => {
                let ring = ring.filter(|r| r.len() == slots * 4);
                Model {
                    meta,
                    ring_dirty: ring.is_none(),
                    ring: ring.unwrap_or_else(|| empty_ring(slots)),
                }
            }
            // A ring left by other state would be misread: overwrite it.
            _ => Model {
                ring_dirty: ring.is_some(),
                ..Model::new(layout)
            },
        }
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket % self.meta.layout.slots()) as usize
    }

    /// The value stored for bucket `bucket`'s slot.
    fn ring_get(&self, bucket: u64) -> f32 {
        let at = self.slot(bucket) * 4;
        f32::from_le_bytes([
            self.ring[at],
            self.ring[at + 1],
            self.ring[at + 2],
            self.ring[at + 3],
        ])
    }

    fn ring_set(&mut self, bucket: u64, value: f32) {
        let at = self.slot(bucket) * 4;
        self.ring[at..at + 4].copy_from_slice(&value.to_le_bytes());
        self.ring_dirty = true;
    }

    /// The stored values in slot order (for inspection).
    pub fn ring_values(&self) -> impl Iterator<Item = f32> + '_ {
        self.ring
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Feeds one sample of demand taken at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, value: f64, params: &Params) {
        let layout = self.meta.layout;
        let k = now_ms / layout.bucket_ms;
        if self.meta.last_ms.is_some_and(|last| now_ms < last) {
            // Time went backwards (a replayed backtest): the history no longer fits.
            *self = Model {
                ring_dirty: true,
                ..Model::new(layout)
            };
        }
        if self.meta.cur_count > 0 && k != self.meta.cur_bucket {
            let cur = self.meta.cur_bucket;
            self.ring_set(cur, (self.meta.cur_sum / self.meta.cur_count as f64) as f32);
            // Buckets without a sample must not show what their slot held a ring ago.
            let skipped_end = k.min(cur + 1 + layout.slots());
            for j in cur + 1..skipped_end {
                self.ring_set(j, f32::NAN);
            }
            self.meta.cur_sum = 0.0;
            self.meta.cur_count = 0;
        }
        self.meta.cur_bucket = k;
        self.meta.first_bucket.get_or_insert(k);
        self.meta.cur_sum += value;
        self.meta.cur_count += 1;
        self.holt(now_ms, value, params, layout);
    }

    fn holt(&mut self, now_ms: u64, x: f64, params: &Params, layout: Layout) {
        let (tau, trend_tau) = (params.tau_secs(), params.trend_tau_secs());
        let m = &mut self.meta;
        let season_ms = layout.bucket_ms * layout.buckets_per_season;
        match m.last_ms {
            Some(last) if now_ms > last && now_ms - last <= season_ms => {
                let dt = (now_ms - last) as f64 / 1000.0;
                let alpha = 1.0 - (-dt / tau).exp();
                let beta = 1.0 - (-dt / trend_tau).exp();
                let prev = m.level;
                m.level = alpha * x + (1.0 - alpha) * (m.level + m.trend * dt);
                m.trend = beta * (m.level - prev) / dt + (1.0 - beta) * m.trend;
                m.last_ms = Some(now_ms);
            }
            // The same instant twice: nothing new to smooth.
            Some(last) if now_ms == last => {}
            // First sample, or a gap longer than a season: start over from this sample.
            _ => {
                m.level = x;
                m.trend = 0.0;
                m.last_ms = Some(now_ms);
            }
        }
    }

    /// The stored mean of bucket `j`, if it is closed, still in the ring and not empty.
    fn bucket_mean(&self, j: u64) -> Option<f64> {
        let m = &self.meta;
        let first = m.first_bucket?;
        let readable = j >= first && j < m.cur_bucket && j + m.layout.slots() > m.cur_bucket;
        let v = self.ring_get(j);
        (readable && !v.is_nan()).then_some(f64::from(v))
    }

    /// `Sb(k)`: mean of bucket `k`'s phase over the kept past seasons.
    pub fn seasonal_bucket(&self, k: u64) -> Option<f64> {
        let per_season = self.meta.layout.buckets_per_season;
        let (mut sum, mut n) = (0.0, 0u32);
        for s in 1..=self.meta.layout.seasons_kept {
            let Some(j) = k.checked_sub(s * per_season) else {
                break;
            };
            if let Some(v) = self.bucket_mean(j) {
                sum += v;
                n += 1;
            }
        }
        (n > 0).then(|| sum / f64::from(n))
    }

    /// `S(t)`: the seasonal profile at `t_ms`, linear between bucket centres.
    pub fn seasonal_at(&self, t_ms: u64) -> Option<f64> {
        let bucket_ms = self.meta.layout.bucket_ms;
        let centred = t_ms.checked_sub(bucket_ms / 2)?;
        let b0 = centred / bucket_ms;
        let frac = (centred % bucket_ms) as f64 / bucket_ms as f64;
        match (self.seasonal_bucket(b0), self.seasonal_bucket(b0 + 1)) {
            (Some(a), Some(b)) => Some(a + (b - a) * frac),
            (Some(a), None) => Some(a),
            (None, b) => b,
        }
    }

    /// True once a full season of history lies behind the current bucket.
    pub fn has_full_season(&self) -> bool {
        self.meta
            .first_bucket
            .is_some_and(|f| self.meta.cur_bucket >= f + self.meta.layout.buckets_per_season)
    }

    /// Demand forecast for the coming `horizon + interval` (`interval`: the time to the next
    /// decision, at most a bucket); `None` without a full season.
    pub fn forecast(&self, now_ms: u64, params: &Params, interval_ms: u64) -> Option<f64> {
        if !self.has_full_season() {
            return None;
        }
        let s_now = self.seasonal_at(now_ms)?;
        let level = self.meta.level;
        let bucket_ms = self.meta.layout.bucket_ms;
        let end = now_ms + params.horizon_ms + interval_ms.min(bucket_ms);
        // The piecewise-linear S peaks at an end or at a bucket centre.
        let first_centre = (now_ms / bucket_ms) * bucket_ms + bucket_ms / 2;
        let centres = (0..)
            .map(|i| first_centre + i * bucket_ms)
            .skip_while(|&c| c <= now_ms)
            .take_while(|&c| c < end);
        let mut best = level;
        for t in centres.chain([end]) {
            let Some(s_t) = self.seasonal_at(t) else {
                continue;
            };
            let additive = level + (s_t - s_now);
            let multiplicative = if s_now > 0.0 {
                level * (s_t / s_now).min(MAX_SEASONAL_GROWTH)
            } else {
                additive
            };
            best = best.max(0.5 * (additive + multiplicative));
        }
        let limit = MAX_TREND_SHARE * level.abs();
        let trend = (self.meta.trend * params.horizon_ms as f64 / 1000.0).clamp(-limit, limit);
        Some((best + trend).max(0.0))
    }

    /// Anti-flap: the replicas to scale to now, if any. Up at once; down only after the desired
    /// count stayed below `current` for a full bucket, and then to the highest count desired
    /// during that bucket, so that one quiet sample does not undo a busy minute.
    pub fn decide(&mut self, now_ms: u64, desired: u32, current: u32) -> Option<u32> {
        let m = &mut self.meta;
        if desired >= current {
            m.down_since_ms = None;
            return (desired > current).then_some(desired);
        }
        let since = match m.down_since_ms {
            Some(since) => {
                m.down_max = m.down_max.max(desired);
                since
            }
            None => {
                m.down_max = desired;
                *m.down_since_ms.insert(now_ms)
            }
        };
        if now_ms.saturating_sub(since) < m.layout.bucket_ms {
            return None;
        }
        m.down_since_ms = None;
        Some(m.down_max)
    }
}

/// Replicas for `demand` units at `unit` units per replica, rounded up.
pub fn replicas_for(demand: f64, unit: f64) -> u32 {
    let r = (demand / unit - CEIL_EPSILON).ceil();
    if r.is_nan() || r <= 0.0 {
        0
    } else {
        r.min(f64::from(u32::MAX)) as u32
    }
}

/// `clamp(max(forecast replicas, reactive replicas), min, max)`.
pub fn desired_replicas(demand: f64, forecast: Option<f64>, unit: f64, min: u32, max: u32) -> u32 {
    let reactive = replicas_for(demand, unit);
    let ahead = forecast.map_or(0, |f| replicas_for(f, unit));
    reactive.max(ahead).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;
    const TICK_MS: u64 = 15_000;
    /// A Monday, 00:00 UTC, so that day boundaries are bucket boundaries.
    const START: u64 = 1_700_438_400_000;

    fn params() -> Params {
        Params {
            layout: Layout {
                bucket_ms: 300_000,
                buckets_per_season: 288,
                seasons_kept: 7,
            },
            horizon_ms: 60_000,
        }
    }

    /// A daily sinusoid between 200 and 1800, lowest at 00:00 and highest at 12:00.
    fn load(t_ms: u64) -> f64 {
        let phase = ((t_ms - START) % DAY_MS) as f64 / DAY_MS as f64;
        1000.0 - 800.0 * (2.0 * std::f64::consts::PI * phase).cos()
    }

    const UNIT: f64 = 9.0; // capacity 10 per replica at 90 %

    /// Runs the model over `[from, to)` through encode/decode every tick, as the component does,
    /// calling `check(now, desired)`.
    fn run(model: &mut Model, from: u64, to: u64, mut check: impl FnMut(u64, u32)) {
        let p = params();
        let mut now = from;
        while now < to {
            let x = load(now);
            model.observe(now, x, &p);
            let desired = desired_replicas(x, model.forecast(now, &p, TICK_MS), UNIT, 1, 1000);
            check(now, desired);
            let ring = model.ring_dirty.then(|| model.ring.clone());
            let meta = model.meta.encode();
            let saved_ring = ring.is_some();
            let reloaded = Model::load(p.layout, Some(&meta), ring);
            if saved_ring {
                *model = Model {
                    ring_dirty: false,
                    ..reloaded
                };
            } else {
                model.meta = reloaded.meta;
            }
            now += TICK_MS;
        }
    }

    #[test]
    fn no_history_is_purely_reactive() {
        let p = params();
        let mut m = Model::new(p.layout);
        m.observe(START + 3_600_000, 500.0, &p);
        assert_eq!(m.forecast(START + 3_600_000, &p, TICK_MS), None);
        assert_eq!(desired_replicas(500.0, None, UNIT, 1, 1000), 56);
        // Still reactive through the whole first season.
        let mut m = Model::new(p.layout);
        run(&mut m, START, START + DAY_MS, |now, desired| {
            assert_eq!(desired, replicas_for(load(now), UNIT), "at {now}");
        });
        assert!(!m.has_full_season());
    }

    #[test]
    fn after_two_seasons_the_forecast_leads_the_load() {
        let p = params();
        let mut m = Model::new(p.layout);
        run(&mut m, START, START + 2 * DAY_MS, |_, _| {});
        assert!(m.has_full_season());
        // Day 3: the replicas asked for now must cover the load when they are ready (now +
        // horizon); a reactive policy misses that whenever the load rises.
        let (mut covered, mut reactive_short, mut ticks) = (0, 0, 0);
        let mut first_at_150 = None;
        run(
            &mut m,
            START + 2 * DAY_MS,
            START + 3 * DAY_MS,
            |now, desired| {
                let needed_then = replicas_for(load(now + p.horizon_ms), UNIT);
                ticks += 1;
                covered += usize::from(desired >= needed_then);
                reactive_short += usize::from(replicas_for(load(now), UNIT) < needed_then);
                if desired >= 150 && first_at_150.is_none() {
                    first_at_150 = Some(now);
                }
            },
        );
        assert_eq!(
            covered,
            ticks,
            "forecast fell short on {} ticks",
            ticks - covered
        );
        assert!(
            reactive_short > 500,
            "reactive would fall short on {reactive_short} ticks"
        );
        // It asks for 150 replicas before the load needs them.
        let needed_at = (0..DAY_MS / 1000)
            .map(|s| START + 2 * DAY_MS + s * 1000)
            .find(|&t| replicas_for(load(t), UNIT) >= 150)
            .unwrap();
        let lead = needed_at - first_at_150.unwrap();
        assert!(lead >= p.horizon_ms, "leads by {lead} ms only");
    }

    #[test]
    fn forecast_does_not_overshoot_much() {
        let p = params();
        let mut m = Model::new(p.layout);
        run(&mut m, START, START + 2 * DAY_MS, |_, _| {});
        let mut worst: f64 = 0.0;
        run(
            &mut m,
            START + 2 * DAY_MS,
            START + 3 * DAY_MS,
            |now, desired| {
                let needed = replicas_for(load(now + p.horizon_ms), UNIT);
                worst = worst.max(f64::from(desired) / f64::from(needed.max(1)));
            },
        );
        // The envelope looks up to horizon + one tick ahead: a few percent at most here.
        assert!(worst < 1.1, "overshoot ratio {worst}");
    }

    #[test]
    fn trend_catches_an_unseasonal_ramp() {
        let p = params();
        let mut m = Model::new(p.layout);
        run(&mut m, START, START + 2 * DAY_MS, |_, _| {});
        // A flat stretch then a steep ramp the history never saw: +2 units per second.
        let t0 = START + 2 * DAY_MS + 6 * 3_600_000;
        let base = load(t0);
        let mut t = t0;
        while t < t0 + 600_000 {
            let x = base + 2.0 * (t - t0) as f64 / 1000.0;
            m.observe(t, x, &p);
            t += TICK_MS;
        }
        let now = t - TICK_MS;
        let x = base + 2.0 * (now - t0) as f64 / 1000.0;
        let f = m.forecast(now, &p, TICK_MS).unwrap();
        assert!(f > x + 60.0, "forecast {f} vs load {x}");
        assert!(f <= 1.5 * x + 1.0);
    }

    #[test]
    fn state_round_trips() {
        let p = params();
        let mut m = Model::new(p.layout);
        run(&mut m, START, START + DAY_MS / 2, |_, _| {});
        m.meta.down_since_ms = Some(START + 5);
        m.meta.down_max = 17;
        let meta = m.meta.encode();
        assert_eq!(meta.len(), 97);
        let ring = m.ring.clone();
        assert_eq!(ring.len(), 2016 * 4);
        let back = Model::load(p.layout, Some(&meta), Some(ring.clone()));
        assert_eq!(back.meta, m.meta);
        assert_eq!(back.ring, ring);
        // Another layout or garbage starts afresh, overwriting a stale ring.
        let other = Layout {
            seasons_kept: 3,
            ..p.layout
        };
        let fresh = Model::load(other, Some(&meta), Some(ring.clone()));
        assert_eq!(fresh.meta, Meta::new(other));
        assert!(fresh.ring_dirty && fresh.ring_values().all(f32::is_nan));
        assert_eq!(fresh.ring_values().count(), 864);
        assert_eq!(
            Model::load(p.layout, Some(&[1, 2]), None).meta,
            Meta::new(p.layout)
        );
    }

    #[test]
    fn gaps_leave_no_stale_buckets() {
        let p = params();
        let mut m = Model::new(p.layout);
        let b = p.layout.bucket_ms;
        for i in 0..3 {
            m.observe(START + i * b, 100.0, &p);
        }
        // Skip ahead exactly one ring: slots 0..=2 held buckets a ring ago.
        let later = START + p.layout.slots() * b + 5 * b;
        m.observe(later, 50.0, &p);
        let k = later / b;
        for j in k - 6..k {
            assert_eq!(m.bucket_mean(j), None, "bucket {j}");
        }
        assert!(m.ring_values().filter(|v| !v.is_nan()).count() <= 1);
    }

    #[test]
    fn scale_down_waits_a_full_bucket() {
        let p = params();
        let mut m = Model::new(p.layout);
        let b = p.layout.bucket_ms;
        assert_eq!(m.decide(START, 12, 10), Some(12));
        assert_eq!(m.decide(START, 8, 12), None);
        assert_eq!(m.decide(START + b - 1, 8, 12), None);
        // Back up in between resets the wait.
        assert_eq!(m.decide(START + b - 1, 12, 12), None);
        assert_eq!(m.decide(START + b, 9, 12), None);
        assert_eq!(m.decide(START + 2 * b - 1, 11, 12), None);
        // To the highest count desired while waiting, not the last one.
        assert_eq!(m.decide(START + 2 * b, 9, 12), Some(11));
        assert_eq!(m.meta.down_since_ms, None);
        assert_eq!(m.decide(START + 2 * b + 1, 7, 11), None);
        assert_eq!(m.decide(START + 3 * b + 1, 8, 11), Some(8));
    }

    #[test]
    fn replicas_round_up_without_float_noise() {
        assert_eq!(replicas_for(90.0, 9.0), 10);
        assert_eq!(replicas_for(0.1 * 3.0 * 300.0, 9.0), 10);
        assert_eq!(replicas_for(90.1, 9.0), 11);
        assert_eq!(replicas_for(0.0, 9.0), 0);
        assert_eq!(replicas_for(f64::NAN, 9.0), 0);
        assert_eq!(desired_replicas(0.0, Some(1e12), 9.0, 2, 40), 40);
        assert_eq!(desired_replicas(0.0, None, 9.0, 2, 40), 2);
    }
}
