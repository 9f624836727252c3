use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevirt_api::v1::VirtualMachineInstanceStatus;

use super::*;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn vmi(phase: &str) -> VirtualMachineInstance {
    VirtualMachineInstance {
        metadata: ObjectMeta {
            name: Some("v".into()),
            namespace: Some("ns".into()),
            uid: Some("vmi-uid".into()),
            finalizers: Some(vec![names::VMI_FINALIZER.into()]),
            ..Default::default()
        },
        spec: Default::default(),
        status: Some(VirtualMachineInstanceStatus {
            phase: (!phase.is_empty()).then(|| phase.into()),
            ..Default::default()
        }),
    }
}

fn pod(phase: &str, compute: Option<ContainerState>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("virt-launcher-v-abcde".into()),
            uid: Some("pod-uid".into()),
            owner_references: Some(vec![OwnerReference {
                uid: "vmi-uid".into(),
                controller: Some(true),
                kind: "VirtualMachineInstance".into(),
                name: "v".into(),
                api_version: "kubevirt.io/v1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node01".into()),
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "compute".into(),
                image: Some("reg/virt-launcher:v1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: compute.map(|state| {
                vec![ContainerStatus {
                    name: "compute".into(),
                    state: Some(state),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn running() -> Option<ContainerState> {
    Some(ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..Default::default()
    })
}

fn ctx() -> Context<'static> {
    Context {
        sync_error: None,
        launcher_image: "reg/virt-launcher:v1",
        owner_vm_exists: false,
    }
}

fn phase_of(v: &VirtualMachineInstance) -> &str {
    v.status.as_ref().unwrap().phase()
}

#[test]
fn pending_without_pod_creates_one_then_schedules() {
    let v = vmi(vmi_phases::PENDING);
    assert_eq!(pod_action(&v, &[]), PodAction::Create);
    assert_eq!(pod_action(&vmi(""), &[]), PodAction::Create);
    let n = next(&v, &[], &ctx(), now());
    assert_eq!(phase_of(&n), vmi_phases::PENDING);
    let ready = conditions::get(&n.status.as_ref().unwrap().conditions, "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("PodNotExists"));
    let p = pod("Pending", None);
    assert_eq!(pod_action(&v, &[&p]), PodAction::Nothing);
    let n = next(&v, &[&p], &ctx(), now());
    assert_eq!(phase_of(&n), vmi_phases::SCHEDULING);
    assert_eq!(n.status.as_ref().unwrap().active_pods["pod-uid"], "node01");
    assert_eq!(
        n.status.as_ref().unwrap().phase_transition_timestamps[0]
            .phase
            .as_deref(),
        Some(vmi_phases::SCHEDULING)
    );
}

#[test]
fn running_pod_hands_over_as_scheduled() {
    let v = vmi(vmi_phases::SCHEDULING);
    let p = pod("Running", running());
    let n = next(&v, &[&p], &ctx(), now());
    assert_eq!(phase_of(&n), vmi_phases::SCHEDULED);
    assert_eq!(
        n.status.as_ref().unwrap().node_name.as_deref(),
        Some("node01")
    );
    assert_eq!(n.labels()[names::NODE_NAME_LABEL], "node01");
    let not_started = pod("Running", Some(ContainerState::default()));
    assert_eq!(
        phase_of(&next(&v, &[&not_started], &ctx(), now())),
        vmi_phases::SCHEDULING
    );
}

#[test]
fn failed_or_vanished_pods_fail_the_instance() {
    let v = vmi(vmi_phases::SCHEDULING);
    let failed = pod("Failed", None);
    assert_eq!(
        phase_of(&next(&v, &[&failed], &ctx(), now())),
        vmi_phases::FAILED
    );
    let crashed = pod(
        "Running",
        Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    assert_eq!(
        phase_of(&next(&v, &[&crashed], &ctx(), now())),
        vmi_phases::FAILED
    );
    assert_eq!(phase_of(&next(&v, &[], &ctx(), now())), vmi_phases::FAILED);
    for p in [vmi_phases::SCHEDULED, vmi_phases::RUNNING] {
        assert_eq!(
            phase_of(&next(&vmi(p), &[], &ctx(), now())),
            vmi_phases::FAILED
        );
    }
}

#[test]
fn unschedulable_pod_condition_is_copied() {
    let v = vmi(vmi_phases::SCHEDULING);
    let mut p = pod("Pending", None);
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some("0/1 nodes are available".into()),
        ..Default::default()
    }]);
    let n = next(&v, &[&p], &ctx(), now());
    let c = conditions::get(&n.status.as_ref().unwrap().conditions, "PodScheduled").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    // Once scheduled the condition goes.
    let n2 = next(&n, &[&pod("Pending", None)], &ctx(), now());
    assert!(conditions::get(&n2.status.as_ref().unwrap().conditions, "PodScheduled").is_none());
}

#[test]
fn image_pull_errors_become_synchronized_false() {
    let v = vmi(vmi_phases::SCHEDULING);
    let mut p = pod("Pending", None);
    p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "volumecontainerdisk".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("Back-off pulling image".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let n = next(&v, &[&p], &ctx(), now());
    let c = conditions::get(&n.status.as_ref().unwrap().conditions, "Synchronized").unwrap();
    assert_eq!(c.reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(c.message.as_deref(), Some("Back-off pulling image"));
}

#[test]
fn missing_pvc_marks_the_pending_instance_unschedulable() {
    let e = SyncError::new(
        reasons::FAILED_PVC_NOT_FOUND,
        "failed to render launch manifest: didn't find PVC x",
    );
    let c = Context {
        sync_error: Some(&e),
        ..ctx()
    };
    let n = next(&vmi(vmi_phases::PENDING), &[], &c, now());
    let s = n.status.as_ref().unwrap();
    assert!(conditions::has(
        &s.conditions,
        "PodScheduled",
        "False",
        Some("Unschedulable")
    ));
    assert!(conditions::has(
        &s.conditions,
        "Synchronized",
        "False",
        Some("FailedPvcNotFound")
    ));
    // Fixed: the Synchronized condition goes.
    let n2 = next(&n, &[], &ctx(), now());
    assert!(conditions::get(&n2.status.as_ref().unwrap().conditions, "Synchronized").is_none());
}

#[test]
fn ready_condition_mirrors_the_pod_once_running() {
    let v = vmi(vmi_phases::RUNNING);
    let mut p = pod("Running", running());
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        ..Default::default()
    }]);
    let n = next(&v, &[&p], &ctx(), now());
    assert!(n.status.as_ref().unwrap().condition_is_true("Ready"));
    let mut going = p.clone();
    going.metadata.deletion_timestamp = Some(Time(now()));
    let n = next(&v, &[&going], &ctx(), now());
    let c = conditions::get(&n.status.as_ref().unwrap().conditions, "Ready").unwrap();
    assert_eq!(c.reason.as_deref(), Some("PodTerminating"));
}

#[test]
fn deletion_deletes_pods_and_final_instances_drop_the_finalizer() {
    let mut v = vmi(vmi_phases::RUNNING);
    v.metadata.deletion_timestamp = Some(Time(now()));
    let p = pod("Running", running());
    assert_eq!(
        pod_action(&v, &[&p]),
        PodAction::Delete(vec!["virt-launcher-v-abcde".into()])
    );
    let mut going = p.clone();
    going.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(pod_action(&v, &[&going]), PodAction::Nothing);
    // A pending instance deleted before its pod existed fails at once.
    let mut pending = vmi(vmi_phases::PENDING);
    pending.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(
        phase_of(&next(&pending, &[], &ctx(), now())),
        vmi_phases::FAILED
    );
    // Final with its pod still there: the finalizer stays until the pod is gone.
    let mut fin = vmi(vmi_phases::SUCCEEDED);
    fin.metadata.finalizers = Some(vec![
        names::VMI_FINALIZER.into(),
        names::VM_CONTROLLER_FINALIZER.into(),
    ]);
    let with_owner = Context {
        owner_vm_exists: true,
        ..ctx()
    };
    assert_eq!(next(&fin, &[&p], &with_owner, now()).finalizers().len(), 2);
    assert_eq!(
        next(&fin, &[], &with_owner, now()).finalizers(),
        [names::VM_CONTROLLER_FINALIZER]
    );
    // Without an owner VM, the VM controller's finalizer goes too.
    assert!(next(&fin, &[], &ctx(), now()).finalizers().is_empty());
}

#[test]
fn outdated_launcher_images_are_labelled() {
    let v = vmi(vmi_phases::RUNNING);
    let p = pod("Running", running());
    let c = Context {
        launcher_image: "reg/virt-launcher:v2",
        ..ctx()
    };
    let n = next(&v, &[&p], &c, now());
    assert!(
        n.labels()
            .contains_key(names::OUTDATED_LAUNCHER_IMAGE_LABEL)
    );
    assert_eq!(
        n.status
            .as_ref()
            .unwrap()
            .launcher_container_image_version
            .as_deref(),
        Some("reg/virt-launcher:v1")
    );
    assert!(
        !next(&n, &[&p], &ctx(), now())
            .labels()
            .contains_key(names::OUTDATED_LAUNCHER_IMAGE_LABEL)
    );
}

#[test]
fn unpaused_readiness_gate_follows_the_paused_condition() {
    let mut v = vmi(vmi_phases::RUNNING);
    let p = pod("Running", running());
    let c = unpaused_condition(&v, &p, now()).unwrap();
    assert_eq!(c.status, "True");
    let mut gated = p.clone();
    gated.status.as_mut().unwrap().conditions = Some(vec![c]);
    assert!(unpaused_condition(&v, &gated, now()).is_none());
    v.status
        .as_mut()
        .unwrap()
        .conditions
        .push(VirtualMachineInstanceCondition {
            type_: "Paused".into(),
            status: "True".into(),
            ..Default::default()
        });
    assert_eq!(
        unpaused_condition(&v, &gated, now()).unwrap().status,
        "False"
    );
}

#[test]
fn current_pod_prefers_the_newest_on_the_instances_node() {
    let mut old = pod("Running", running());
    old.metadata.creation_timestamp = Some(Time(now()));
    let mut new = pod("Pending", None);
    new.metadata.name = Some("new".into());
    new.metadata.creation_timestamp = Some(Time(
        now()
            .checked_add(jiff::SignedDuration::from_secs(5))
            .unwrap(),
    ));
    new.spec.as_mut().unwrap().node_name = Some("node02".into());
    let v = vmi(vmi_phases::SCHEDULING);
    assert_eq!(current_pod(&v, &[&old, &new]).unwrap().name_any(), "new");
    let mut on_node = vmi(vmi_phases::RUNNING);
    on_node.status.as_mut().unwrap().node_name = Some("node01".into());
    assert_eq!(
        current_pod(&on_node, &[&old, &new]).unwrap().name_any(),
        "virt-launcher-v-abcde"
    );
    let mut stranger = new.clone();
    stranger.metadata.owner_references = None;
    assert!(current_pod(&v, &[&stranger]).is_none());
}
