//! Node heartbeats: virt-handler stamps `kubevirt.io/heartbeat` on its node. When the stamp is
//! older than the timeout the node is marked unschedulable for VMs and the active instances on
//! it whose launcher pods are not alive go Failed with reason NodeUnresponsive, as upstream's
//! node controller does. One addition: a pod on a node whose Ready condition is False or
//! Unknown does not count as alive (upstream relies on Kubernetes' node lifecycle controller
//! to fail such pods; the embedded cluster has none).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kubevirt_api::v1::{VirtualMachineInstance, vmi_phases};

use crate::names;

/// Whether the node's virt-handler stopped heartbeating: no node at all, or a heartbeat older
/// than `timeout`. A node never stamped is not judged (virt-handler has not started there).
pub fn unresponsive(node: Option<&Node>, now: Timestamp, timeout: Duration) -> bool {
    let Some(node) = node else {
        return true;
    };
    let Some(stamp) = node.annotations().get(names::HEARTBEAT_ANNOTATION) else {
        return false;
    };
    let Ok(at) = stamp.trim_matches('"').parse::<Timestamp>() else {
        return false;
    };
    let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
    now.as_second().saturating_sub(at.as_second()) > secs
}

/// Whether virt-handler's node label says the node takes instances.
pub fn schedulable(node: &Node) -> bool {
    node.labels()
        .get(names::NODE_SCHEDULABLE_LABEL)
        .map(String::as_str)
        == Some("true")
}

fn node_not_ready(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True")
}

/// A launcher pod that still runs: controlled by an instance, not Succeeded/Failed, not every
/// container terminated, on a node that is not NotReady.
pub fn pod_alive(pod: &Pod, node: Option<&Node>) -> bool {
    let by_vmi = pod
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.kind == "VirtualMachineInstance");
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[]);
    let all_terminated = !containers.is_empty()
        && containers
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()));
    by_vmi && !all_terminated && phase != "Failed" && phase != "Succeeded" && !node_not_ready(node)
}

/// The active instances on `node_name` that have no alive launcher pod there: they fail.
pub fn stuck_instances<'a>(
    node_name: &str,
    node: Option<&Node>,
    vmis: &[&'a VirtualMachineInstance],
    pods: &[&Pod],
) -> Vec<&'a VirtualMachineInstance> {
    let alive: Vec<(Option<String>, String)> = pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
        .filter(|p| pod_alive(p, node))
        .flat_map(|p| {
            p.owner_references()
                .iter()
                .filter(|o| o.controller == Some(true))
                .map(|o| (p.namespace(), o.uid.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    vmis.iter()
        .copied()
        .filter(|v| v.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
        .filter(|v| !vmi_phases::is_final(v.status.as_ref().map(|s| s.phase()).unwrap_or("")))
        .filter(|v| {
            let uid = v.metadata.uid.clone().unwrap_or_default();
            !alive
                .iter()
                .any(|(ns, u)| *ns == v.namespace() && *u == uid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kubevirt_api::v1::VirtualMachineInstanceStatus;

    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    fn node(heartbeat: Option<&str>, ready: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node01".into()),
                annotations: heartbeat.map(|h| {
                    BTreeMap::from([(names::HEARTBEAT_ANNOTATION.to_string(), h.to_string())])
                }),
                labels: Some(BTreeMap::from([(
                    names::NODE_SCHEDULABLE_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            status: ready.map(|r| NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: r.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn vmi(name: &str, uid: &str, phase: &str) -> VirtualMachineInstance {
        VirtualMachineInstance {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Default::default(),
            status: Some(VirtualMachineInstanceStatus {
                phase: Some(phase.into()),
                node_name: Some("node01".into()),
                ..Default::default()
            }),
        }
    }

    fn pod(owner: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                owner_references: Some(vec![OwnerReference {
                    kind: "VirtualMachineInstance".into(),
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node01".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn heartbeat_age_decides() {
        let t = Duration::from_secs(300);
        assert!(!unresponsive(
            Some(&node(Some("2026-11-22T09:58:00Z"), None)),
            now(),
            t
        ));
        assert!(unresponsive(
            Some(&node(Some("2026-11-22T09:50:00Z"), None)),
            now(),
            t
        ));
        assert!(!unresponsive(Some(&node(None, None)), now(), t));
        assert!(unresponsive(None, now(), t));
        assert!(schedulable(&node(None, None)));
    }

    #[test]
    fn only_instances_without_alive_pods_fail() {
        let a = vmi("a", "ua", "Running");
        let b = vmi("b", "ub", "Running");
        let done = vmi("c", "uc", "Succeeded");
        let pa = pod("ua", "Running");
        let pb = pod("ub", "Failed");
        let n = node(Some("2026-11-22T09:00:00Z"), None);
        let stuck = stuck_instances("node01", Some(&n), &[&a, &b, &done], &[&pa, &pb]);
        let names: Vec<String> = stuck.iter().map(|v| v.name_any()).collect();
        assert_eq!(names, ["b"]);
        // The kubelet is gone too: its pods do not count as alive.
        let dead = node(Some("2026-11-22T09:00:00Z"), Some("Unknown"));
        assert_eq!(
            stuck_instances("node01", Some(&dead), &[&a, &b], &[&pa]).len(),
            2
        );
    }
}
