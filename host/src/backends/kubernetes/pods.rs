//! What the backend reads off a pod or a node: readiness, selectors, requests, and whether a
//! drain may evict it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::quantity::{bytes, cpu_millis};
use crate::domain::cluster::PodInfo;

pub(super) fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub(super) fn matches_selector(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(super) fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub(super) fn pod_info(pod: &Pod) -> PodInfo {
    let (cpu, memory) = pod_requests(pod);
    PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
        cpu_request_millis: cpu,
        memory_request_bytes: memory,
        drain_blocker: drain_blocker(pod),
    }
}

/// Why a drain would refuse to evict `pod`, by the rules of `kubectl drain` (without
/// `--force` or `--delete-emptydir-data`: k8s.io/kubectl/pkg/drain/filters.go) and Cluster
/// Autoscaler's `safe-to-evict` annotation (cluster-autoscaler/utils/drain/drain.go). `None`
/// for pods a drain evicts, and for those it leaves alone: DaemonSet and mirror pods.
pub fn drain_blocker(pod: &Pod) -> Option<String> {
    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let owners = pod.metadata.owner_references.iter().flatten();
    let controller = owners.clone().find(|o| o.controller == Some(true));
    if annotation("kubernetes.io/config.mirror").is_some()
        || owners.clone().any(|o| o.kind == "DaemonSet")
    {
        return None;
    }
    match annotation("cluster-autoscaler.kubernetes.io/safe-to-evict") {
        Some("false") => return Some("annotated safe-to-evict: \"false\"".into()),
        Some("true") => return None,
        _ => {}
    }
    if controller.is_none() {
        return Some("not managed by a controller (a bare pod)".into());
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .find(|v| v.empty_dir.is_some());
    if let Some(volume) = empty_dir {
        return Some(format!("local storage: emptyDir volume {}", volume.name));
    }
    None
}

/// What a pod requests: its containers' requests (init containers run before, one at a time,
/// so their largest request counts if it is larger), as the scheduler counts.
pub(super) fn pod_requests(pod: &Pod) -> (u64, u64) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let request = |c: &k8s_openapi::api::core::v1::Container, key: &str, parse: fn(&str) -> u64| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(key))
            .map_or(0, |q| parse(&q.0))
    };
    let sum = |key: &str, parse: fn(&str) -> u64| -> u64 {
        spec.containers.iter().map(|c| request(c, key, parse)).sum()
    };
    let init = |key: &str, parse: fn(&str) -> u64| -> u64 {
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| request(c, key, parse))
            .max()
            .unwrap_or(0)
    };
    (
        sum("cpu", cpu_millis).max(init("cpu", cpu_millis)),
        sum("memory", bytes).max(init("memory", bytes)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a pod")
    }

    #[test]
    fn drain_blockers_follow_kubectl_and_cluster_autoscaler() {
        let owned = |kind: &str| serde_json::json!([{ "apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "u", "controller": true }]);
        let replica_set = pod(
            serde_json::json!({ "metadata": { "name": "a", "ownerReferences": owned("ReplicaSet") } }),
        );
        assert_eq!(drain_blocker(&replica_set), None);
        let bare = pod(serde_json::json!({ "metadata": { "name": "a" } }));
        assert_eq!(
            drain_blocker(&bare).as_deref(),
            Some("not managed by a controller (a bare pod)")
        );
        let daemon = pod(
            serde_json::json!({ "metadata": { "name": "a", "ownerReferences": owned("DaemonSet") } }),
        );
        assert_eq!(
            drain_blocker(&daemon),
            None,
            "a drain leaves DaemonSet pods alone"
        );
        let mirror = pod(
            serde_json::json!({ "metadata": { "name": "a", "annotations": { "kubernetes.io/config.mirror": "x" } } }),
        );
        assert_eq!(drain_blocker(&mirror), None, "and mirror pods");
        let scratch = pod(serde_json::json!({
            "metadata": { "name": "a", "ownerReferences": owned("ReplicaSet") },
            "spec": { "containers": [], "volumes": [{ "name": "cache", "emptyDir": {} }] }
        }));
        assert_eq!(
            drain_blocker(&scratch).as_deref(),
            Some("local storage: emptyDir volume cache")
        );
        let pinned = pod(serde_json::json!({
            "metadata": { "name": "a", "ownerReferences": owned("ReplicaSet"),
                          "annotations": { "cluster-autoscaler.kubernetes.io/safe-to-evict": "false" } }
        }));
        assert_eq!(
            drain_blocker(&pinned).as_deref(),
            Some("annotated safe-to-evict: \"false\"")
        );
        let allowed = pod(serde_json::json!({
            "metadata": { "name": "a", "annotations": { "cluster-autoscaler.kubernetes.io/safe-to-evict": "true" } },
            "spec": { "containers": [], "volumes": [{ "name": "cache", "emptyDir": {} }] }
        }));
        assert_eq!(
            drain_blocker(&allowed),
            None,
            "safe-to-evict=true overrides the others"
        );
    }

    #[test]
    fn selectors_match_all_their_labels() {
        let selector: BTreeMap<String, String> = [("app".into(), "web".into())].into();
        let mut labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "a".into())].into();
        assert!(matches_selector(&selector, &labels));
        labels.insert("app".into(), "db".into());
        assert!(!matches_selector(&selector, &labels));
        assert!(
            !matches_selector(&BTreeMap::new(), &labels),
            "an empty selector selects nothing here"
        );
    }
}
