//! Conversions between the host's model and the WIT `types` interface.

use super::super::Sandbox;
use super::super::bindings::types as wit;
use crate::domain::cluster::{
    BackendError, Capacity, PowerState, ScaleChange, Series, Vm, WorkloadKind, WorkloadRef,
    WorkloadStatus,
};

impl wit::Host for Sandbox {}

impl From<BackendError> for wit::HostError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Forbidden(m) => wit::HostError::Forbidden(m),
            BackendError::NotFound(m) => wit::HostError::NotFound(m),
            BackendError::Invalid(m) => wit::HostError::Invalid(m),
            BackendError::Unavailable(m) => wit::HostError::Unavailable(m),
        }
    }
}

impl From<wit::WorkloadRef> for WorkloadRef {
    fn from(r: wit::WorkloadRef) -> Self {
        WorkloadRef {
            kind: match r.kind {
                wit::WorkloadKind::Deployment => WorkloadKind::Deployment,
                wit::WorkloadKind::StatefulSet => WorkloadKind::StatefulSet,
            },
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<WorkloadStatus> for wit::WorkloadStatus {
    fn from(s: WorkloadStatus) -> Self {
        wit::WorkloadStatus {
            replicas: s.replicas,
            ready: s.ready,
            cpu_request_millis: s.cpu_request_millis,
            cpu_usage_millis: s.cpu_usage_millis,
        }
    }
}

impl From<Capacity> for wit::ClusterCapacity {
    fn from(c: Capacity) -> Self {
        wit::ClusterCapacity {
            nodes: c.nodes,
            allocatable_cpu_millis: c.allocatable_cpu_millis,
            requested_cpu_millis: c.requested_cpu_millis,
            allocatable_memory_bytes: c.allocatable_memory_bytes,
            requested_memory_bytes: c.requested_memory_bytes,
            pending_pods: c.pending_pods,
        }
    }
}

impl From<Series> for wit::Series {
    fn from(s: Series) -> Self {
        wit::Series {
            labels: s.labels,
            samples: s
                .samples
                .into_iter()
                .map(|x| wit::Sample {
                    at: x.at,
                    value: x.value,
                })
                .collect(),
        }
    }
}

impl From<PowerState> for wit::PowerState {
    fn from(p: PowerState) -> Self {
        match p {
            PowerState::On => wit::PowerState::On,
            PowerState::Off => wit::PowerState::Off,
        }
    }
}

impl From<wit::PowerState> for PowerState {
    fn from(p: wit::PowerState) -> Self {
        match p {
            wit::PowerState::On => PowerState::On,
            wit::PowerState::Off => PowerState::Off,
        }
    }
}

impl From<Vm> for wit::Vm {
    fn from(v: Vm) -> Self {
        wit::Vm {
            id: v.id,
            name: v.name,
            power: v.power.into(),
            node_name: v.node_name,
        }
    }
}

impl From<wit::ScaleChange> for ScaleChange {
    fn from(c: wit::ScaleChange) -> Self {
        match c {
            wit::ScaleChange::To(n) => ScaleChange::To(n),
            wit::ScaleChange::By(n) => ScaleChange::By(n),
        }
    }
}

/// Bytes a series list carries across the boundary, for the per-invocation byte limit.
pub(super) fn series_bytes(series: &[Series]) -> usize {
    series
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
                + s.samples.len() * 16
        })
        .sum()
}

/// Bytes of a workload reference.
pub(super) fn ref_bytes(r: &wit::WorkloadRef) -> usize {
    r.namespace.len() + r.name.len() + 1
}

impl From<WorkloadRef> for wit::WorkloadRef {
    fn from(r: WorkloadRef) -> Self {
        wit::WorkloadRef {
            kind: match r.kind {
                WorkloadKind::Deployment => wit::WorkloadKind::Deployment,
                WorkloadKind::StatefulSet => wit::WorkloadKind::StatefulSet,
            },
            namespace: r.namespace,
            name: r.name,
        }
    }
}
