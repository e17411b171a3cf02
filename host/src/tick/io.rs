//! How the tick path does I/O it cannot make async: blocking store commits, retried backend calls.

use std::time::Duration;

use crate::domain::cluster::BackendError;

/// Runs a tick's blocking store I/O (a redb commit): on a multi-threaded runtime the worker
/// hands its other tasks on meanwhile, so a slow disk or a big transaction stalls no other
/// tick; on a current-thread runtime (a backtest) it just runs.
pub(super) fn blocking_io<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Attempts at an actuation call that the backend answers `unavailable`.
const ACTUATION_ATTEMPTS: u32 = 3;

/// Retries a backend call that answered `unavailable`, with a short backoff.
pub(super) async fn retry<T, F, Fut>(mut call: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(BackendError::Unavailable(_)) if attempt < ACTUATION_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
