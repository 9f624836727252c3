//! VirtualMachineInstanceReplicaSet decisions, as upstream's replica set controller makes them:
//! how many instances to create or which to delete ([`diff`]), which finished ones to clean up,
//! and the status (replicas, readyReplicas, labelSelector, ReplicaPaused/ReplicaFailure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::ResourceExt;
use kubevirt_api::v1::{
    VirtualMachineInstance, VirtualMachineInstanceReplicaSet,
    VirtualMachineInstanceReplicaSetCondition, VirtualMachineInstanceReplicaSetStatus,
    replica_set_condition_types, vmi_condition_reasons, vmi_condition_types, vmi_phases,
};

use crate::conditions;
use crate::selector;

/// Upstream's cap on creations or deletions per round.
pub const BURST_REPLICAS: usize = 250;

/// What to do about a replica set's instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Instances to create.
    pub create: usize,
    /// Active instances to delete (names).
    pub delete: Vec<String>,
    /// Finished instances to clean up (names).
    pub clean: Vec<String>,
}

fn phase(v: &VirtualMachineInstance) -> &str {
    v.status.as_ref().map(|s| s.phase()).unwrap_or("")
}

fn terminating_pod(v: &VirtualMachineInstance) -> bool {
    v.status.as_ref().is_some_and(|s| {
        conditions::has(
            &s.conditions,
            vmi_condition_types::READY,
            "False",
            Some(vmi_condition_reasons::POD_TERMINATING),
        )
    })
}

/// Not final, not being deleted, pod not terminating.
pub fn is_active(v: &VirtualMachineInstance) -> bool {
    !vmi_phases::is_final(phase(v))
        && v.metadata.deletion_timestamp.is_none()
        && !terminating_pod(v)
}

fn is_finished(v: &VirtualMachineInstance) -> bool {
    v.metadata.deletion_timestamp.is_none()
        && (vmi_phases::is_final(phase(v)) || terminating_pod(v))
}

/// Whether `vmi` is controlled by `rs` (by UID).
pub fn owns(rs: &VirtualMachineInstanceReplicaSet, vmi: &VirtualMachineInstance) -> bool {
    let uid = rs.metadata.uid.as_deref();
    vmi.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The wanted count (1 when unset).
pub fn wanted(rs: &VirtualMachineInstanceReplicaSet) -> usize {
    usize::try_from(rs.spec.replicas.unwrap_or(1).max(0)).unwrap_or(0)
}

/// Why a replica set's spec cannot be acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the template has no labels")]
    NoTemplateLabels,
    #[error("the selector does not match the template's labels")]
    SelectorMismatch,
    #[error(transparent)]
    Selector(#[from] selector::SelectorError),
}

/// Checks that the selector selects the template's labels, as upstream requires.
pub fn check(rs: &VirtualMachineInstanceReplicaSet) -> Result<(), SpecError> {
    let labels = rs
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if labels.is_empty() {
        return Err(SpecError::NoTemplateLabels);
    }
    if !selector::matches(&rs.spec.selector, &labels)? {
        return Err(SpecError::SelectorMismatch);
    }
    Ok(())
}

/// What to do, given the instances the replica set owns. Paused or deleted replica sets are
/// left alone. Deletions prefer instances that are not running yet (fewest lost), then the
/// newest.
pub fn diff(rs: &VirtualMachineInstanceReplicaSet, owned: &[&VirtualMachineInstance]) -> Diff {
    if rs.spec.paused == Some(true) || rs.metadata.deletion_timestamp.is_some() {
        return Diff::default();
    }
    let mut active: Vec<&VirtualMachineInstance> =
        owned.iter().copied().filter(|v| is_active(v)).collect();
    let want = wanted(rs);
    let mut d = Diff::default();
    if active.len() < want {
        d.create = (want - active.len()).min(BURST_REPLICAS);
    } else if active.len() > want {
        let rank = |v: &VirtualMachineInstance| match phase(v) {
            "" | vmi_phases::PENDING => 0,
            vmi_phases::SCHEDULING => 1,
            vmi_phases::SCHEDULED => 2,
            _ => 3,
        };
        active.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| {
                let t = |v: &VirtualMachineInstance| {
                    v.metadata.creation_timestamp.as_ref().map(|t| t.0)
                };
                t(b).cmp(&t(a))
            })
        });
        d.delete = active
            .iter()
            .take((active.len() - want).min(BURST_REPLICAS))
            .map(|v| v.name_any())
            .collect();
    } else {
        d.clean = owned
            .iter()
            .filter(|v| is_finished(v))
            .map(|v| v.name_any())
            .collect();
    }
    d
}

/// A new instance for the replica set: its template, named `<base>-xxxxx` by the server.
pub fn new_instance(rs: &VirtualMachineInstanceReplicaSet) -> VirtualMachineInstance {
    let tmeta = rs.spec.template.metadata.clone().unwrap_or_default();
    let base = tmeta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| tmeta.generate_name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| rs.name_any());
    VirtualMachineInstance {
        metadata: ObjectMeta {
            generate_name: Some(base),
            namespace: rs.namespace(),
            labels: tmeta.labels.clone(),
            annotations: tmeta.annotations.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachineInstanceReplicaSet".into(),
                name: rs.name_any(),
                uid: rs.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: rs.spec.template.spec.clone().unwrap_or_default(),
        status: None,
    }
}

/// The next status: counts of active and ready instances, the selector string, and the
/// ReplicaPaused / ReplicaFailure conditions. `failure` is (reason, message) of this round.
pub fn next_status(
    rs: &VirtualMachineInstanceReplicaSet,
    owned: &[&VirtualMachineInstance],
    failure: Option<(&str, &str)>,
    now: &Time,
) -> VirtualMachineInstanceReplicaSetStatus {
    let mut s = rs.status.clone().unwrap_or_default();
    let active: Vec<&&VirtualMachineInstance> = owned.iter().filter(|v| is_active(v)).collect();
    let ready = active
        .iter()
        .filter(|v| {
            v.status
                .as_ref()
                .is_some_and(|s| s.condition_is_true(vmi_condition_types::READY))
        })
        .count();
    s.replicas = Some(i32::try_from(active.len()).unwrap_or(i32::MAX));
    s.ready_replicas = Some(i32::try_from(ready).unwrap_or(i32::MAX));
    s.label_selector = Some(selector::to_string(&rs.spec.selector));
    let paused = replica_set_condition_types::REPLICA_PAUSED;
    if rs.spec.paused == Some(true) {
        if conditions::get(&s.conditions, paused).is_none() {
            s.conditions
                .push(VirtualMachineInstanceReplicaSetCondition {
                    type_: paused.into(),
                    status: "True".into(),
                    reason: Some("Paused".into()),
                    message: Some("Controller got paused".into()),
                    last_transition_time: Some(now.clone()),
                    last_probe_time: None,
                });
        }
    } else {
        conditions::remove(&mut s.conditions, paused);
    }
    let failed = replica_set_condition_types::REPLICA_FAILURE;
    match failure {
        Some((reason, message)) => {
            if conditions::get(&s.conditions, failed).is_none() {
                s.conditions
                    .push(VirtualMachineInstanceReplicaSetCondition {
                        type_: failed.into(),
                        status: "True".into(),
                        reason: Some(reason.into()),
                        message: Some(message.into()),
                        last_transition_time: Some(now.clone()),
                        last_probe_time: None,
                    });
            }
        }
        None => conditions::remove(&mut s.conditions, failed),
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kubevirt_api::v1::{
        VirtualMachineInstanceCondition, VirtualMachineInstanceReplicaSetSpec,
        VirtualMachineInstanceStatus, VirtualMachineInstanceTemplateSpec,
    };

    use super::*;

    fn rs(replicas: Option<i32>) -> VirtualMachineInstanceReplicaSet {
        let labels = BTreeMap::from([("app".to_string(), "small".to_string())]);
        VirtualMachineInstanceReplicaSet {
            metadata: ObjectMeta {
                name: Some("small".into()),
                namespace: Some("ns".into()),
                uid: Some("rs-uid".into()),
                ..Default::default()
            },
            spec: VirtualMachineInstanceReplicaSetSpec {
                replicas,
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: VirtualMachineInstanceTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(Default::default()),
                },
                paused: None,
            },
            status: None,
        }
    }

    fn vmi(name: &str, phase: &str, secs: i64) -> VirtualMachineInstance {
        VirtualMachineInstance {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    Timestamp::from_second(1_800_000_000 + secs).unwrap(),
                )),
                ..Default::default()
            },
            spec: Default::default(),
            status: Some(VirtualMachineInstanceStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn scales_up_and_down() {
        let r = rs(Some(3));
        assert_eq!(diff(&r, &[]).create, 3);
        assert_eq!(diff(&rs(None), &[]).create, 1);
        let a = vmi("a", "Running", 0);
        let b = vmi("b", "Running", 10);
        let c = vmi("c", "Pending", 5);
        let d = diff(&rs(Some(1)), &[&a, &b, &c]);
        // Not-yet-running first, then the newest.
        assert_eq!(d.delete, ["c", "b"]);
        let done = vmi("done", "Succeeded", 0);
        let d = diff(&rs(Some(1)), &[&a, &done]);
        assert_eq!(d.create, 0);
        assert_eq!(d.clean, ["done"]);
        let mut paused = rs(Some(3));
        paused.spec.paused = Some(true);
        assert_eq!(diff(&paused, &[]), Diff::default());
    }

    #[test]
    fn status_counts_active_and_ready() {
        let mut ready = vmi("a", "Running", 0);
        ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .push(VirtualMachineInstanceCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        let pending = vmi("b", "Pending", 0);
        let failed = vmi("c", "Failed", 0);
        let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
        let s = next_status(&rs(Some(2)), &[&ready, &pending, &failed], None, &now);
        assert_eq!((s.replicas, s.ready_replicas), (Some(2), Some(1)));
        assert_eq!(s.label_selector.as_deref(), Some("app=small"));
        let mut paused = rs(Some(2));
        paused.spec.paused = Some(true);
        let s = next_status(&paused, &[], Some(("FailedCreate", "quota")), &now);
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["ReplicaPaused", "ReplicaFailure"]);
        paused.status = Some(s);
        paused.spec.paused = Some(false);
        assert!(next_status(&paused, &[], None, &now).conditions.is_empty());
    }

    #[test]
    fn new_instances_come_from_the_template_with_an_owner() {
        let v = new_instance(&rs(Some(1)));
        assert_eq!(v.metadata.generate_name.as_deref(), Some("small"));
        assert_eq!(v.labels()["app"], "small");
        let o = &v.owner_references()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str()),
            ("VirtualMachineInstanceReplicaSet", "rs-uid")
        );
        assert!(check(&rs(Some(1))).is_ok());
        let mut bad = rs(Some(1));
        bad.spec.selector.match_labels = Some(BTreeMap::from([("app".into(), "other".into())]));
        assert_eq!(check(&bad), Err(SpecError::SelectorMismatch));
    }
}
