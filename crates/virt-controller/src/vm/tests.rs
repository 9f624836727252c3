use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubevirt_api::instancetype::{CPUInstancetype, DevicePreferences, MemoryInstancetype};
use kubevirt_api::v1::{
    ContainerDiskSource, InstancetypeMatcher, PreferenceMatcher, VirtualMachineInstanceCondition,
    VirtualMachineInstancePhaseTransitionTimestamp, VirtualMachineInstanceStatus,
    VirtualMachineInstanceTemplateSpec, VirtualMachineSpec, VirtualMachineStateChangeRequest,
    Volume, VolumeSource,
};

use super::*;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn vm(strategy: &str) -> VirtualMachine {
    VirtualMachine {
        metadata: ObjectMeta {
            name: Some("testvm".into()),
            namespace: Some("default".into()),
            uid: Some("vm-uid".into()),
            generation: Some(3),
            finalizers: Some(vec![names::VM_CONTROLLER_FINALIZER.into()]),
            ..Default::default()
        },
        spec: VirtualMachineSpec {
            run_strategy: Some(strategy.into()),
            template: VirtualMachineInstanceTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..Default::default()
                }),
                spec: Some(VirtualMachineInstanceSpec {
                    volumes: vec![Volume {
                        name: "containerdisk".into(),
                        volume_source: VolumeSource {
                            container_disk: Some(ContainerDiskSource {
                                image: "reg/guest:1".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}

fn vmi(phase: &str) -> VirtualMachineInstance {
    VirtualMachineInstance {
        metadata: ObjectMeta {
            name: Some("testvm".into()),
            uid: Some("vmi-uid".into()),
            ..Default::default()
        },
        spec: Default::default(),
        status: Some(VirtualMachineInstanceStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn with_request(mut vm: VirtualMachine, action: &str, uid: Option<&str>) -> VirtualMachine {
    vm.status
        .get_or_insert_with(Default::default)
        .state_change_requests
        .push(VirtualMachineStateChangeRequest {
            action: action.into(),
            uid: uid.map(Into::into),
            ..Default::default()
        });
    vm
}

fn deleting(mut v: VirtualMachineInstance) -> VirtualMachineInstance {
    v.metadata.deletion_timestamp = Some(Time(now()));
    v
}

fn cond(t: &str, s: &str, r: Option<&str>) -> VirtualMachineInstanceCondition {
    VirtualMachineInstanceCondition {
        type_: t.into(),
        status: s.into(),
        reason: r.map(Into::into),
        ..Default::default()
    }
}

fn with_conds(
    mut v: VirtualMachineInstance,
    c: Vec<VirtualMachineInstanceCondition>,
) -> VirtualMachineInstance {
    v.status.get_or_insert_with(Default::default).conditions = c;
    v
}

fn del(uid: &str) -> Action {
    Action::DeleteVmi { uid: uid.into() }
}

#[test]
fn always_starts_and_restarts_final_instances() {
    assert_eq!(
        decide(&vm(rs::ALWAYS), None, now()).actions,
        [Action::CreateVmi]
    );
    let running = vmi(vmi_phases::RUNNING);
    assert!(
        decide(&vm(rs::ALWAYS), Some(&running), now())
            .actions
            .is_empty()
    );
    for p in [vmi_phases::SUCCEEDED, vmi_phases::FAILED] {
        assert_eq!(
            decide(&vm(rs::ALWAYS), Some(&vmi(p)), now()).actions,
            [del("vmi-uid")]
        );
    }
    // A stop request for this instance restarts it; one for an older instance does not.
    let restart = with_request(vm(rs::ALWAYS), "Stop", Some("vmi-uid"));
    assert_eq!(
        decide(&restart, Some(&running), now()).actions,
        [del("vmi-uid")]
    );
    let stale = with_request(vm(rs::ALWAYS), "Stop", Some("old"));
    assert!(decide(&stale, Some(&running), now()).actions.is_empty());
    // Already being deleted: nothing more to do.
    let gone = deleting(vmi(vmi_phases::SUCCEEDED));
    assert!(
        decide(&vm(rs::ALWAYS), Some(&gone), now())
            .actions
            .is_empty()
    );
}

#[test]
fn always_waits_out_the_start_failure_backoff() {
    let mut v = vm(rs::ALWAYS);
    v.status = Some(VirtualMachineStatus {
        start_failure: Some(VirtualMachineStartFailure {
            consecutive_fail_count: Some(2),
            retry_after_timestamp: Some(Time(
                now()
                    .checked_add(jiff::SignedDuration::from_secs(40))
                    .unwrap(),
            )),
            last_failed_vmi_uid: Some("x".into()),
        }),
        ..Default::default()
    });
    let d = decide(&v, None, now());
    assert!(d.actions.is_empty());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(40)));
    assert_eq!(
        printable_status(&v, None, Effects::default(), now()),
        ps::CRASH_LOOP_BACK_OFF
    );
    let later = now()
        .checked_add(jiff::SignedDuration::from_secs(41))
        .unwrap();
    assert_eq!(decide(&v, None, later).actions, [Action::CreateVmi]);
}

#[test]
fn halted_stops_and_turns_a_start_request_into_always() {
    let running = vmi(vmi_phases::RUNNING);
    assert_eq!(
        decide(&vm(rs::HALTED), Some(&running), now()).actions,
        [del("vmi-uid")]
    );
    assert!(decide(&vm(rs::HALTED), None, now()).actions.is_empty());
    let start = with_request(vm(rs::HALTED), "Start", None);
    assert_eq!(
        decide(&start, None, now()).actions,
        [Action::SetRunStrategyAlways]
    );
}

#[test]
fn manual_acts_only_on_requests() {
    assert!(decide(&vm(rs::MANUAL), None, now()).actions.is_empty());
    let start = with_request(vm(rs::MANUAL), "Start", None);
    assert_eq!(decide(&start, None, now()).actions, [Action::CreateVmi]);
    let running = vmi(vmi_phases::RUNNING);
    assert!(
        decide(&vm(rs::MANUAL), Some(&vmi(vmi_phases::SUCCEEDED)), now())
            .actions
            .is_empty()
    );
    let stop = with_request(vm(rs::MANUAL), "Stop", Some("vmi-uid"));
    assert_eq!(
        decide(&stop, Some(&running), now()).actions,
        [del("vmi-uid")]
    );
}

#[test]
fn rerun_on_failure_restarts_only_failures() {
    // First start: the status has not recorded the strategy yet.
    assert_eq!(
        decide(&vm(rs::RERUN_ON_FAILURE), None, now()).actions,
        [Action::CreateVmi]
    );
    let mut recorded = vm(rs::RERUN_ON_FAILURE);
    recorded.status = Some(VirtualMachineStatus {
        run_strategy: Some(rs::RERUN_ON_FAILURE.into()),
        ..Default::default()
    });
    assert!(decide(&recorded, None, now()).actions.is_empty());
    assert_eq!(
        decide(&recorded, Some(&vmi(vmi_phases::FAILED)), now()).actions,
        [del("vmi-uid"), Action::AddStartRequest]
    );
    assert_eq!(
        decide(&recorded, Some(&vmi(vmi_phases::SUCCEEDED)), now()).actions,
        [del("vmi-uid")]
    );
    let start = with_request(recorded, "Start", None);
    assert_eq!(decide(&start, None, now()).actions, [Action::CreateVmi]);
}

#[test]
fn once_runs_a_single_instance() {
    assert_eq!(
        decide(&vm(rs::ONCE), None, now()).actions,
        [Action::CreateVmi]
    );
    assert!(
        decide(&vm(rs::ONCE), Some(&vmi(vmi_phases::SUCCEEDED)), now())
            .actions
            .is_empty()
    );
}

#[test]
fn deprecated_running_field_and_unknown_strategies() {
    let mut v = vm(rs::ALWAYS);
    v.spec.run_strategy = None;
    v.spec.running = Some(true);
    assert_eq!(decide(&v, None, now()).actions, [Action::CreateVmi]);
    v.spec.running = Some(false);
    assert!(decide(&v, None, now()).actions.is_empty());
    let d = decide(&vm("Sometimes"), None, now());
    assert_eq!(
        d.sync_error.unwrap().message,
        "unknown runstrategy: Sometimes"
    );
}

#[test]
fn finalizer_is_added_then_removed_on_deletion() {
    let mut v = vm(rs::ALWAYS);
    v.metadata.finalizers = None;
    assert_eq!(
        decide(&v, None, now()).actions,
        [Action::AddFinalizer, Action::CreateVmi]
    );
    let mut gone = vm(rs::ALWAYS);
    gone.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(
        decide(&gone, Some(&vmi(vmi_phases::RUNNING)), now()).actions,
        [del("vmi-uid")]
    );
    assert_eq!(
        decide(&gone, None, now()).actions,
        [Action::RemoveFinalizer]
    );
    assert_eq!(
        printable_status(&gone, None, Effects::default(), now()),
        ps::TERMINATING
    );
}

#[test]
fn printable_status_follows_the_instance() {
    let v = vm(rs::ALWAYS);
    let e = Effects::default();
    let p = |i: &VirtualMachineInstance| printable_status(&v, Some(i), e, now());
    assert_eq!(printable_status(&v, None, e, now()), ps::STOPPED);
    assert_eq!(
        printable_status(
            &v,
            None,
            Effects {
                started: true,
                stopped: false
            },
            now()
        ),
        ps::STARTING
    );
    for phase in [
        "",
        vmi_phases::PENDING,
        vmi_phases::SCHEDULING,
        vmi_phases::SCHEDULED,
    ] {
        assert_eq!(p(&vmi(phase)), ps::STARTING, "{phase}");
    }
    assert_eq!(p(&vmi(vmi_phases::RUNNING)), ps::RUNNING);
    let paused = with_conds(vmi(vmi_phases::RUNNING), vec![cond("Paused", "True", None)]);
    assert_eq!(p(&paused), ps::PAUSED);
    assert_eq!(p(&deleting(vmi(vmi_phases::RUNNING))), ps::STOPPING);
    assert_eq!(
        printable_status(
            &v,
            Some(&vmi(vmi_phases::RUNNING)),
            Effects {
                started: false,
                stopped: true
            },
            now()
        ),
        ps::STOPPING
    );
    assert_eq!(p(&vmi(vmi_phases::SUCCEEDED)), ps::STOPPED);
    let unsched = with_conds(
        vmi(vmi_phases::SCHEDULING),
        vec![cond("PodScheduled", "False", Some("Unschedulable"))],
    );
    assert_eq!(p(&unsched), ps::ERROR_UNSCHEDULABLE);
    for (reason, expected) in [
        ("ErrImagePull", ps::ERR_IMAGE_PULL),
        ("ImagePullBackOff", ps::IMAGE_PULL_BACK_OFF),
        ("FailedPvcNotFound", ps::ERROR_PVC_NOT_FOUND),
    ] {
        let i = with_conds(
            vmi(vmi_phases::PENDING),
            vec![cond("Synchronized", "False", Some(reason))],
        );
        assert_eq!(p(&i), expected);
    }
}

#[test]
fn status_records_creation_readiness_and_requests() {
    let v = with_request(vm(rs::MANUAL), "Start", None);
    // Just created: still Starting, the start request stays until the instance is seen.
    let s = next_status(
        &v,
        None,
        Effects {
            started: true,
            stopped: false,
        },
        None,
        now(),
        0.0,
    );
    assert_eq!(s.printable_status.as_deref(), Some(ps::STARTING));
    assert_eq!(s.created, Some(false));
    assert_eq!(s.run_strategy, None);
    assert_eq!(s.state_change_requests.len(), 1);
    let ready = with_conds(
        vmi(vmi_phases::RUNNING),
        vec![
            cond("Ready", "True", None),
            cond("AgentConnected", "True", None),
        ],
    );
    let mut ready = ready;
    ready.metadata.annotations = Some(BTreeMap::from([(
        names::VM_GENERATION_ANNOTATION.into(),
        "3".into(),
    )]));
    let s = next_status(&v, Some(&ready), Effects::default(), None, now(), 0.0);
    assert!(s.state_change_requests.is_empty());
    assert_eq!((s.created, s.ready), (Some(true), Some(true)));
    assert_eq!(s.run_strategy.as_deref(), Some(rs::MANUAL));
    assert_eq!(s.printable_status.as_deref(), Some(ps::RUNNING));
    assert_eq!(
        (s.observed_generation, s.desired_generation),
        (Some(3), Some(3))
    );
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "AgentConnected"]);
    // Without an instance upstream leaves the copied conditions alone; Ready says why.
    let mut v2 = v.clone();
    v2.status = Some(s);
    let s = next_status(
        &v2,
        None,
        Effects::default(),
        Some(&SyncError::new("FailedCreate", "boom")),
        now(),
        0.0,
    );
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "AgentConnected", "Failure"]);
    assert_eq!(s.conditions[0].reason.as_deref(), Some("VMINotExists"));
    // Conditions the instance dropped go from the VM.
    let bare = with_conds(
        vmi(vmi_phases::RUNNING),
        vec![cond("Ready", "False", Some("X"))],
    );
    let mut v3 = v.clone();
    v3.status = Some(s);
    let s = next_status(&v3, Some(&bare), Effects::default(), None, now(), 0.0);
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready"]);
    assert_eq!(s.ready, Some(false));
}

#[test]
fn stop_request_is_trimmed_once_the_instance_is_gone() {
    let v = with_request(vm(rs::MANUAL), "Stop", Some("vmi-uid"));
    assert!(!first_request_done(&v, Some(&vmi(vmi_phases::RUNNING))));
    assert!(first_request_done(&v, None));
    let mut other = vmi(vmi_phases::RUNNING);
    other.metadata.uid = Some("new".into());
    assert!(first_request_done(&v, Some(&other)));
}

#[test]
fn early_failures_count_towards_the_backoff() {
    let v = vm(rs::ALWAYS);
    let failed = vmi(vmi_phases::FAILED);
    let s = next_status(
        &v,
        Some(&failed),
        Effects {
            started: false,
            stopped: true,
        },
        None,
        now(),
        0.0,
    );
    let f = s.start_failure.clone().unwrap();
    assert_eq!(f.consecutive_fail_count, Some(1));
    assert_eq!(
        f.retry_after_timestamp.unwrap().0.as_second() - now().as_second(),
        10
    );
    // The same instance is not counted twice.
    let mut v2 = v.clone();
    v2.status = Some(s);
    let s2 = next_status(&v2, Some(&failed), Effects::default(), None, now(), 0.0);
    assert_eq!(
        s2.start_failure.as_ref().unwrap().consecutive_fail_count,
        Some(1)
    );
    assert_eq!(
        s2.printable_status.as_deref(),
        Some(ps::CRASH_LOOP_BACK_OFF)
    );
    // An instance that reached Running clears it.
    let mut ran = vmi(vmi_phases::FAILED);
    ran.status.as_mut().unwrap().phase_transition_timestamps =
        vec![VirtualMachineInstancePhaseTransitionTimestamp {
            phase: Some("Running".into()),
            phase_transition_timestamp: None,
        }];
    let s3 = next_status(&v2, Some(&ran), Effects::default(), None, now(), 0.0);
    assert!(s3.start_failure.is_none());
}

#[test]
fn backoff_grows_quadratically_and_is_capped() {
    assert_eq!(backoff_seconds(1, 300, 0.0), 10);
    assert_eq!(backoff_seconds(2, 300, 0.0), 40);
    assert!(backoff_seconds(2, 300, 0.99) <= 60);
    assert_eq!(backoff_seconds(10, 300, 0.5), 300);
}

#[test]
fn vmi_from_template_carries_owner_labels_and_defaults() {
    let mut v = with_request(vm(rs::MANUAL), "Start", None);
    v.status.as_mut().unwrap().state_change_requests[0]
        .data
        .insert("paused".into(), "true".into());
    let i = vmi_from_vm(&v, None, None, &ClusterConfig::default()).unwrap();
    assert_eq!(i.metadata.name.as_deref(), Some("testvm"));
    assert_eq!(i.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(i.labels()["app"], "web");
    assert_eq!(i.annotations()[names::VM_GENERATION_ANNOTATION], "3");
    let owner = &i.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("VirtualMachine", "vm-uid", Some(true))
    );
    assert_eq!(i.finalizers(), [names::VM_CONTROLLER_FINALIZER]);
    assert_eq!(i.spec.start_strategy.as_deref(), Some("Paused"));
    assert_eq!(i.spec.domain.devices.disks[0].name, "containerdisk");
    assert_eq!(i.spec.networks[0].name, "default");
    assert!(
        i.spec.domain.devices.interfaces[0]
            .interface_binding_method
            .masquerade
            .is_some()
    );
    let uuid = i.spec.domain.firmware.unwrap().uuid.unwrap();
    assert_eq!(uuid, crate::uuid::legacy_firmware_uuid("testvm"));
}

#[test]
fn vmi_from_template_expands_instancetype_and_preference() {
    let mut v = vm(rs::ALWAYS);
    v.spec.instancetype = Some(InstancetypeMatcher {
        name: Some("small".into()),
        ..Default::default()
    });
    v.spec.preference = Some(PreferenceMatcher {
        name: Some("virtio".into()),
        kind: Some("VirtualMachinePreference".into()),
        ..Default::default()
    });
    let it = VirtualMachineInstancetypeSpec {
        cpu: CPUInstancetype {
            guest: 2,
            ..Default::default()
        },
        memory: MemoryInstancetype {
            guest: Quantity("128Mi".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let pref = VirtualMachinePreferenceSpec {
        devices: Some(DevicePreferences {
            preferred_disk_bus: Some("virtio".into()),
            preferred_interface_model: Some("virtio".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let i = vmi_from_vm(&v, Some(&it), Some(&pref), &ClusterConfig::default()).unwrap();
    assert_eq!(
        i.annotations()[names::CLUSTER_INSTANCETYPE_ANNOTATION],
        "small"
    );
    assert_eq!(i.annotations()[names::PREFERENCE_ANNOTATION], "virtio");
    assert_eq!(i.spec.domain.cpu.as_ref().unwrap().sockets, Some(2));
    assert_eq!(
        i.spec.domain.memory.as_ref().unwrap().guest,
        Some(Quantity("128Mi".into()))
    );
    let disk = i.spec.domain.devices.disks[0]
        .disk_device
        .disk
        .as_ref()
        .unwrap();
    assert_eq!(disk.bus.as_deref(), Some("virtio"));
    assert_eq!(
        i.spec.domain.devices.interfaces[0].model.as_deref(),
        Some("virtio")
    );
    assert_eq!(
        references(&v),
        (Some((false, "small".into())), Some((true, "virtio".into())))
    );
    // A template that already sizes itself conflicts.
    let mut sized = v.clone();
    sized.spec.template.spec.as_mut().unwrap().domain.memory = Some(kubevirt_api::v1::Memory {
        guest: Some(Quantity("1Gi".into())),
        ..Default::default()
    });
    let err = vmi_from_vm(&sized, Some(&it), None, &ClusterConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("spec.domain.memory.guest"),
        "{err}"
    );
}
