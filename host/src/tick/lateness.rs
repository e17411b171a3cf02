//! How late ticks start: a lock-free histogram the scheduler feeds, read as quantiles.
//!
//! Lateness is the time from the instant a tick was due (its binding's phase + n × interval) to
//! the instant the scheduler started it. Buckets are log-linear (8 per power of two), so a
//! quantile is exact to within 12.5 %, with constant memory however many ticks are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Values below this many microseconds each get a bucket of their own.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB: u64 = 8;
/// Enough buckets for any `u64` of microseconds.
const BUCKETS: usize = (LINEAR + (64 - 4) * SUB) as usize;

/// A histogram of tick lateness.
pub struct Lateness {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

/// Quantiles of the lateness counted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatenessSummary {
    /// Ticks counted.
    pub ticks: u64,
    /// Median, microseconds (the upper bound of its bucket).
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// The latest start seen, microseconds.
    pub max_us: u64,
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exponent = 63 - u64::from(us.leading_zeros()); // ≥ 4
    let mantissa = (us >> (exponent - 3)) & (SUB - 1);
    (LINEAR + (exponent - 4) * SUB + mantissa) as usize
}

/// The largest value that falls in bucket `index`.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let exponent = (index - LINEAR) / SUB + 4;
    let mantissa = (index - LINEAR) % SUB;
    let base = 1u64 << exponent;
    let width = base / SUB;
    // The last bucket ends at u64::MAX.
    base.checked_add((mantissa + 1) * width)
        .map_or(u64::MAX, |end| end - 1)
}

impl Lateness {
    /// Counts one tick that started `late` after it was due.
    pub fn record(&self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Quantiles of everything counted so far.
    pub fn summary(&self) -> LatenessSummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let ticks: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            if ticks == 0 {
                return 0;
            }
            let rank = ((ticks as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper_bound(i);
                }
            }
            upper_bound(BUCKETS - 1)
        };
        LatenessSummary {
            ticks,
            p50_us: quantile(0.50),
            p99_us: quantile(0.99),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }

    /// Forgets everything counted (a benchmark's warm-up).
    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.max_us.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_and_bound_it_within_an_eighth() {
        for us in (0..5000).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let i = bucket_of(us);
            assert!(i < BUCKETS, "{us}");
            let upper = upper_bound(i);
            assert!(upper >= us, "{us}: bucket {i} ends at {upper}");
            assert!(
                upper - us <= us / 8 + 1,
                "{us}: bucket {i} ends at {upper}, more than an eighth above"
            );
        }
    }

    #[test]
    fn quantiles_of_known_samples() {
        let lateness = Lateness::default();
        for ms in 1..=100 {
            lateness.record(Duration::from_millis(ms));
        }
        let s = lateness.summary();
        assert_eq!(s.ticks, 100);
        assert!((50_000..=56_250).contains(&s.p50_us), "{s:?}");
        assert!((99_000..=111_375).contains(&s.p99_us), "{s:?}");
        assert_eq!(s.max_us, 100_000);
        lateness.reset();
        assert_eq!(lateness.summary().ticks, 0);
    }
}
