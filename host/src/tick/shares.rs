//! The instance pool shared fairly between tenants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::EngineConfig;

/// The instance pool shared fairly: every invocation holds a permit of the whole pool and one
/// of its tenant's share, so one tenant can hold at most `max_instances_per_tenant` instances
/// and never starve the others of the pool. A permit is awaited for at most the invocation's
/// deadline; a tenant whose share is exhausted fails only its own invocations.
///
/// Config checks (`validate-config` at a PUT) draw from the pool too, but through an allowance
/// of their own: at most [`CHECKS_PER_TENANT`] at once per tenant and a quarter of the pool in
/// all, so that a tenant's flood of PUTs of a policy whose check sleeps can hold neither the pool
/// nor every other tenant's ticks, while a tenant whose ticks fill its share can still be fixed
/// by a PUT.
pub(crate) struct InstanceShares {
    pool: Arc<Semaphore>,
    pool_size: usize,
    per_tenant: u32,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    checks: Arc<Semaphore>,
    checks_size: usize,
    tenant_checks: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// What is left of `deadline` for the run after `waited` for an instance, or `None` when that
/// is under a tenth of it: too little to run, so the wait is the failure (ticks and config
/// checks alike).
pub(crate) fn time_left(waited: Duration, deadline: Duration) -> Option<Duration> {
    (waited.as_nanos() * 10 < deadline.as_nanos() * 9).then(|| deadline - waited)
}

/// Config checks one tenant may run at once.
pub(crate) const CHECKS_PER_TENANT: usize = 2;

/// No instance could be had within the deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "no sandbox instance free within {wait}: {which} ({held} of {size} in use); the tick did not run"
)]
pub(crate) struct Busy {
    wait: String,
    which: &'static str,
    held: usize,
    size: usize,
    /// The host's pool (not the tenant's own share) was full: the host is overloaded, which is
    /// no fault of the binding's.
    host_wide: bool,
}

impl Busy {
    /// Whether the host's pool, not the tenant's own share, was full.
    pub(crate) fn host_wide(&self) -> bool {
        self.host_wide
    }
}

impl InstanceShares {
    pub(crate) fn new(config: &EngineConfig) -> Self {
        let pool = config.max_concurrent_instances.max(1);
        InstanceShares {
            pool: Arc::new(Semaphore::new(pool as usize)),
            pool_size: pool as usize,
            per_tenant: config.max_instances_per_tenant.clamp(1, pool),
            tenants: Mutex::default(),
            checks: Arc::new(Semaphore::new((pool as usize / 4).max(1))),
            checks_size: (pool as usize / 4).max(1),
            tenant_checks: Mutex::default(),
        }
    }

    /// Permits of `tenant`'s share and of the pool, awaited within `wait`; with them, whether
    /// the pool (not the tenant's share) is what kept the caller waiting longer.
    pub(crate) async fn acquire(
        &self,
        tenant: &str,
        wait: Duration,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit, bool), Busy> {
        let started = tokio::time::Instant::now();
        let share = self
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant as usize)))
            .clone();
        let deadline = tokio::time::Instant::now() + wait;
        let busy = |which, semaphore: &Semaphore, size: usize| Busy {
            wait: crate::domain::duration::format(wait),
            which,
            held: size.saturating_sub(semaphore.available_permits()),
            size,
            host_wide: false,
        };
        let tenant_permit = tokio::time::timeout_at(deadline, share.clone().acquire_owned())
            .await
            .map_err(|_| {
                busy(
                    "the tenant's share is in use",
                    &share,
                    self.per_tenant as usize,
                )
            })?
            .expect("shares are never closed");
        let share_waited = started.elapsed();
        let pool_permit = self.pool_permit(deadline, wait).await?;
        let pool_waited = started.elapsed() - share_waited;
        Ok((tenant_permit, pool_permit, pool_waited > share_waited))
    }

    /// A permit of the host's pool alone, awaited until `deadline`.
    async fn pool_permit(
        &self,
        deadline: tokio::time::Instant,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Busy> {
        let permit = tokio::time::timeout_at(deadline, self.pool.clone().acquire_owned())
            .await
            .map_err(|_| Busy {
                wait: crate::domain::duration::format(wait),
                which: "the host's pool is in use",
                held: self.pool_size.saturating_sub(self.pool.available_permits()),
                size: self.pool_size,
                host_wide: true,
            })?
            .expect("the pool is never closed");
        Ok(permit)
    }

    /// Permits for a config check of `tenant`'s, all awaited within `wait`: one of the tenant's
    /// check allowance, one of the host's, then one of the pool (not of the tenant's tick share,
    /// so that a tenant whose ticks fill its share can still be fixed by a PUT).
    pub(crate) async fn acquire_for_check(
        &self,
        tenant: &str,
        wait: Duration,
    ) -> Result<[OwnedSemaphorePermit; 3], Busy> {
        let deadline = tokio::time::Instant::now() + wait;
        let allowance = self
            .tenant_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(CHECKS_PER_TENANT)))
            .clone();
        let wait_for = |semaphore: Arc<Semaphore>, which, size: usize, host_wide| async move {
            tokio::time::timeout_at(deadline, semaphore.clone().acquire_owned())
                .await
                .map_err(|_| Busy {
                    wait: crate::domain::duration::format(wait),
                    which,
                    held: size.saturating_sub(semaphore.available_permits()),
                    size,
                    host_wide,
                })
                .map(|permit| permit.expect("check allowances are never closed"))
        };
        let tenant_permit = wait_for(
            allowance,
            "the tenant's config checks are in use",
            CHECKS_PER_TENANT,
            false,
        )
        .await?;
        let host_permit = wait_for(
            self.checks.clone(),
            "the host's config checks are in use",
            self.checks_size,
            true,
        )
        .await?;
        let pool_permit = self.pool_permit(deadline, wait).await?;
        Ok([tenant_permit, host_permit, pool_permit])
    }
}
