//! Host side of `metrics`: scope-checked reads from the binding's cluster backend; queries are
//! rewritten to the tenant's namespaces before they are sent ([`crate::domain::promql`]).
//!
//! Each read awaits its backend; the invocation's deadline bounds it (the whole call is dropped
//! when the deadline passes), so a backend's own timeout is only a second line of defence.

use tracing::instrument;

use super::super::Sandbox;
use super::super::bindings::metrics::Host;
use super::super::bindings::types::{
    ClusterCapacity as Capacity, HostError, Series, Vm, WorkloadRef, WorkloadStatus,
};
use super::types::{ref_bytes, series_bytes};
use crate::domain::cluster::{self, BackendError};
use crate::domain::promql::QueryWindow;
use crate::runtime::Access;

type Answer<T> = wasmtime::Result<Result<T, HostError>>;

impl Sandbox {
    /// The binding's access, or `forbidden` while a config is being validated.
    fn access(&self) -> Result<Access, HostError> {
        self.access.clone().ok_or_else(|| {
            HostError::Forbidden("metrics are not available during validate-config".into())
        })
    }

    /// The query to send for `promql`: scoped to the tenant, within its quotas and its rate.
    fn scoped(
        &self,
        access: &Access,
        promql: &str,
        window: QueryWindow,
    ) -> Result<String, BackendError> {
        let scoped = access.scope.scoped_query(promql, self.now, window)?;
        let per_minute = access.scope.quotas.queries_per_minute;
        let admitted = access
            .query_rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(self.now, per_minute);
        if admitted {
            Ok(scoped)
        } else {
            Err(BackendError::Unavailable(format!(
                "tenant {} has spent its {per_minute} queries per minute (quotas.queries_per_minute); ask on a later tick",
                access.scope.tenant.name
            )))
        }
    }

    fn series_answer(
        &mut self,
        result: Result<Vec<cluster::Series>, BackendError>,
    ) -> Answer<Vec<Series>> {
        match result {
            // The query was scoped before it was sent: what comes back is the tenant's.
            Ok(series) => {
                self.charge_bytes(series_bytes(&series))?;
                Ok(Ok(series.into_iter().map(Into::into).collect()))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl Host for Sandbox {
    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn query(&mut self, promql: String) -> Answer<Vec<Series>> {
        self.charge(promql.len())?;
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let scoped = match self.scoped(&access, &promql, QueryWindow::Instant(self.now)) {
            Ok(scoped) => scoped,
            Err(e) => return Ok(Err(e.into())),
        };
        let result = access.cluster.query(&scoped, self.now).await;
        self.series_answer(result)
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn query_range(
        &mut self,
        promql: String,
        start: u64,
        end: u64,
        step_ms: u64,
    ) -> Answer<Vec<Series>> {
        self.charge(promql.len() + 24)?;
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        // Never the future: host time is the tick's instant.
        let end = end.min(self.now);
        let window = QueryWindow::Range {
            start,
            end,
            step_ms,
        };
        let scoped = match self.scoped(&access, &promql, window) {
            Ok(scoped) => scoped,
            Err(e) => return Ok(Err(e.into())),
        };
        let result = access
            .cluster
            .query_range(&scoped, start, end, step_ms)
            .await;
        self.series_answer(result)
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn workload(&mut self, target: WorkloadRef) -> Answer<WorkloadStatus> {
        self.charge(ref_bytes(&target) + 32)?;
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let target = cluster::WorkloadRef::from(target);
        if let Err(e) = access.scope.check_read(&target) {
            return Ok(Err(e.into()));
        }
        Ok(access
            .cluster
            .workload(&target)
            .await
            .map(Into::into)
            .map_err(Into::into))
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn capacity(&mut self, exclude: Vec<WorkloadRef>) -> Answer<Capacity> {
        self.charge(exclude.iter().map(ref_bytes).sum::<usize>() + 48)?;
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = access.scope.check_cluster_metrics("metrics.capacity") {
            return Ok(Err(e.into()));
        }
        let exclude: Vec<cluster::WorkloadRef> = exclude.into_iter().map(Into::into).collect();
        for target in &exclude {
            if let Err(e) = access.scope.check_read(target) {
                return Ok(Err(e.into()));
            }
        }
        Ok(access
            .cluster
            .capacity(&exclude)
            .await
            .map(Into::into)
            .map_err(Into::into))
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn events(&mut self, service: String, window_ms: u64) -> Answer<Vec<Series>> {
        self.charge(service.len() + 8)?;
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = access.scope.check_service(&service) {
            return Ok(Err(e.into()));
        }
        let result = access.cluster.events(&service, window_ms, self.now).await;
        self.series_answer(result)
    }

    #[instrument(level = "trace", skip(self), fields(tenant = %self.tenant, binding = %self.binding))]
    async fn vms(&mut self, pool: String) -> Answer<Vec<Vm>> {
        self.charge(pool.len())?;
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = access.scope.check_pool(&pool) {
            return Ok(Err(e.into()));
        }
        match access.cluster.vms(&pool).await {
            Ok(vms) => {
                self.charge_bytes(vms.iter().map(|v| v.id.len() + v.name.len() + 32).sum())?;
                Ok(Ok(vms.into_iter().map(Into::into).collect()))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }
}
