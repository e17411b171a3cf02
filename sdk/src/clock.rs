//! Host time: the only clock a policy sees (virtual in simulations and backtests).

/// Milliseconds since the Unix epoch at this tick; the same for every call during one tick.
pub fn now_ms() -> u64 {
    crate::wit::clock::now()
}
