//! 0.2.0's interfaces that 0.1.0 already had, answered by the same code: each call goes to the
//! 0.1.0 implementation in this folder, so both versions enforce one set of rules.

use super::super::Sandbox;
use super::super::bindings::types::{
    ClusterCapacity, HostError, PowerState, ScaleChange, Series, Vm, WorkloadRef, WorkloadStatus,
};
use super::super::bindings::{v0_1, v0_2};

type Answer<T> = wasmtime::Result<Result<T, HostError>>;

impl v0_2::metrics::Host for Sandbox {
    async fn query(&mut self, promql: String) -> Answer<Vec<Series>> {
        v0_1::metrics::Host::query(self, promql).await
    }

    async fn query_range(
        &mut self,
        promql: String,
        start: u64,
        end: u64,
        step_ms: u64,
    ) -> Answer<Vec<Series>> {
        v0_1::metrics::Host::query_range(self, promql, start, end, step_ms).await
    }

    async fn workload(&mut self, target: WorkloadRef) -> Answer<WorkloadStatus> {
        v0_1::metrics::Host::workload(self, target).await
    }

    async fn capacity(&mut self, exclude: Vec<WorkloadRef>) -> Answer<ClusterCapacity> {
        v0_1::metrics::Host::capacity(self, exclude).await
    }

    async fn events(&mut self, service: String, window_ms: u64) -> Answer<Vec<Series>> {
        v0_1::metrics::Host::events(self, service, window_ms).await
    }

    async fn vms(&mut self, pool: String) -> Answer<Vec<Vm>> {
        v0_1::metrics::Host::vms(self, pool).await
    }
}

impl v0_2::actuation::Host for Sandbox {
    async fn scale(
        &mut self,
        target: WorkloadRef,
        change: ScaleChange,
        reason: String,
    ) -> Answer<u32> {
        v0_1::actuation::Host::scale(self, target, change, reason).await
    }

    async fn set_power(
        &mut self,
        pool: String,
        vm_id: String,
        state: PowerState,
        reason: String,
    ) -> Answer<()> {
        v0_1::actuation::Host::set_power(self, pool, vm_id, state, reason).await
    }
}

impl v0_2::state::Host for Sandbox {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        v0_1::state::Host::get(self, key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        v0_1::state::Host::set(self, key, value).await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        v0_1::state::Host::delete(self, key).await
    }
}

impl v0_2::log::Host for Sandbox {
    async fn log(&mut self, level: v0_2::log::Level, message: String) -> wasmtime::Result<()> {
        use v0_1::log::Level as Old;
        use v0_2::log::Level as New;
        let level = match level {
            New::Debug => Old::Debug,
            New::Info => Old::Info,
            New::Warn => Old::Warn,
            New::Error => Old::Error,
        };
        v0_1::log::Host::log(self, level, message).await
    }
}

impl v0_2::clock::Host for Sandbox {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        v0_1::clock::Host::now(self).await
    }
}
