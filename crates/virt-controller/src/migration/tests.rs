use serde_json::{Value, json};

use super::*;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn at(secs_before_now: i64) -> String {
    Timestamp::from_second(1_800_000_000 - secs_before_now)
        .unwrap()
        .to_string()
}

fn migration(phase: Option<&str>) -> VirtualMachineInstanceMigration {
    let mut m = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "mig", "namespace": "ns", "uid": "mig-uid"},
        "spec": {"vmiName": "v"}
    });
    if let Some(p) = phase {
        m["status"] = json!({"phase": p});
    }
    serde_json::from_value(m).unwrap()
}

fn vmi_value(phase: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "v", "namespace": "ns", "uid": "vmi-uid"},
        "spec": {
            "domain": {"devices": {
                "disks": [{"name": "root", "disk": {"bus": "virtio"}}, {"name": "ci", "disk": {"bus": "virtio"}}],
                "interfaces": [{"name": "default", "masquerade": {}}]
            }},
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [
                {"name": "root", "containerDisk": {"image": "reg/guest:latest"}},
                {"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config\n"}}
            ]
        },
        "status": {"phase": phase, "nodeName": "node01"}
    })
}

fn vmi(phase: &str) -> VirtualMachineInstance {
    serde_json::from_value(vmi_value(phase)).unwrap()
}

fn with_state(state: Value) -> VirtualMachineInstance {
    let mut v = vmi_value("Running");
    v["status"]["migrationState"] = state;
    serde_json::from_value(v).unwrap()
}

fn handed_over(extra: Value) -> VirtualMachineInstance {
    let mut state = json!({
        "migrationUid": "mig-uid", "sourceNode": "node01", "targetNode": "node02",
        "sourcePod": "virt-launcher-v-src", "targetPod": "virt-launcher-v-tgt", "mode": "PreCopy"
    });
    if let (Some(s), Some(e)) = (state.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    with_state(state)
}

/// A target pod: `node` once scheduled, Running and ready when `ready`.
fn target(node: Option<&str>, phase: &str, ready: bool) -> Pod {
    let state = if ready {
        json!({"running": {}})
    } else {
        json!({"waiting": {"reason": "ContainerCreating"}})
    };
    let mut p = json!({
        "metadata": {"name": "virt-launcher-v-tgt", "namespace": "ns", "uid": "tgt-uid",
                     "labels": {JOB_LABEL: "mig-uid"}, "creationTimestamp": at(10)},
        "spec": {"containers": [{"name": "compute"}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "compute", "ready": ready,
            "restartCount": 0, "image": "", "imageID": "", "state": state}]}
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(p).unwrap()
}

fn inputs<'a>(
    m: &'a VirtualMachineInstanceMigration,
    vmi: Option<&'a VirtualMachineInstance>,
    pods: &'a [&'a Pod],
) -> Inputs<'a> {
    Inputs {
        migration: m,
        vmi,
        target_pods: pods,
        source_pod: Some("virt-launcher-v-src"),
        other_in_flight: false,
        not_migratable: None,
        config: None,
        now: now(),
    }
}

/// The phases in `phaseTransitionTimestamps`, in order.
fn recorded(p: &Plan) -> Vec<&str> {
    p.status
        .phase_transition_timestamps
        .iter()
        .filter_map(|t| t.phase.as_deref())
        .collect()
}

fn phase(p: &Plan) -> &str {
    p.status.phase.as_deref().unwrap_or("")
}

#[test]
fn a_new_migration_of_a_running_instance_creates_the_target_pod() {
    let m = migration(None);
    let v = vmi("Running");
    let p = plan(&inputs(&m, Some(&v), &[]));
    assert!(p.create_target_pod);
    assert_eq!(phase(&p), "Scheduling");
    // A migration first seen with a running instance was Pending until then.
    assert_eq!(recorded(&p), ["Pending", "Scheduling"]);
}

#[test]
fn waits_while_the_instance_is_not_running_or_busy() {
    let m = migration(None);
    let v = vmi("Scheduled");
    let p = plan(&inputs(&m, Some(&v), &[]));
    assert!(!p.create_target_pod);
    assert_eq!(phase(&p), "Pending");
    assert!(p.requeue.is_some());

    let v = vmi("Running");
    let mut i = inputs(&m, Some(&v), &[]);
    i.other_in_flight = true;
    let p = plan(&i);
    assert!(!p.create_target_pod);
    assert_eq!(phase(&p), "Pending");

    // An earlier migration that has not ended blocks this one; an ended one does not.
    let v = with_state(json!({"migrationUid": "other", "targetNode": "node02"}));
    assert!(!plan(&inputs(&m, Some(&v), &[])).create_target_pod);
    let v = with_state(json!({"migrationUid": "other", "completed": true}));
    assert!(plan(&inputs(&m, Some(&v), &[])).create_target_pod);
}

#[test]
fn fails_without_an_instance_or_when_it_cannot_migrate() {
    let m = migration(None);
    let p = plan(&inputs(&m, None, &[]));
    assert_eq!(phase(&p), "Failed");
    assert!(
        p.event
            .as_ref()
            .is_some_and(|e| e.0 && e.2.contains("does not exist"))
    );

    let v = vmi("Running");
    let mut i = inputs(&m, Some(&v), &[]);
    i.not_migratable = Some("cannot migrate: volume d is a hostDisk volume".into());
    let p = plan(&i);
    assert_eq!(phase(&p), "Failed");
    assert!(!p.create_target_pod);

    let v = vmi("Succeeded");
    assert_eq!(phase(&plan(&inputs(&m, Some(&v), &[]))), "Failed");
}

#[test]
fn follows_the_target_pod_until_it_is_ready_then_hands_over() {
    let m = migration(Some("Scheduling"));
    let v = vmi("Running");
    let unscheduled = target(None, "Pending", false);
    let pods = [&unscheduled];
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Scheduling");
    assert!(p.vmi_change.is_none() && !p.create_target_pod);

    let scheduled = target(Some("node02"), "Pending", false);
    let pods = [&scheduled];
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Scheduled");

    let ready = target(Some("node02"), "Running", true);
    let pods = [&ready];
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "PreparingTarget");
    let Some(VmiChange::HandOver { state, method }) = &p.vmi_change else {
        panic!("expected a hand-over, got {:?}", p.vmi_change);
    };
    assert_eq!(*method, "BlockMigration");
    assert_eq!(state.migration_uid.as_deref(), Some("mig-uid"));
    assert_eq!(state.source_node.as_deref(), Some("node01"));
    assert_eq!(state.target_node.as_deref(), Some("node02"));
    assert_eq!(state.source_pod.as_deref(), Some("virt-launcher-v-src"));
    assert_eq!(state.target_pod.as_deref(), Some("virt-launcher-v-tgt"));
    assert_eq!(state.mode.as_deref(), Some("PreCopy"));
    assert!(state.start_timestamp.is_none() && state.completed.is_none());
}

#[test]
fn a_target_pod_that_vanishes_or_exits_early_fails_the_migration() {
    let m = migration(Some("Scheduled"));
    let v = vmi("Running");
    let p = plan(&inputs(&m, Some(&v), &[]));
    assert_eq!(phase(&p), "Failed");

    let exited = target(Some("node02"), "Failed", false);
    let pods = [&exited];
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Failed");
    assert_eq!(p.delete_pods, vec!["virt-launcher-v-tgt".to_string()]);
}

#[test]
fn an_unschedulable_target_pod_fails_after_the_timeout() {
    let m = migration(Some("Scheduling"));
    let v = vmi("Running");
    let mut pod = target(None, "Pending", false);
    let cond = |secs: i64| {
        serde_json::from_value(json!([{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "lastTransitionTime": at(secs)}]))
        .unwrap()
    };
    if let Some(s) = pod.status.as_mut() {
        s.conditions = Some(cond(60));
    }
    let pods = [&pod];
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Scheduling");
    assert_eq!(p.requeue, Some(Duration::from_secs(240)));

    let mut late = pod.clone();
    if let Some(s) = late.status.as_mut() {
        s.conditions = Some(cond(301));
    }
    let pods = [&late];
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Failed");
    assert_eq!(p.delete_pods.len(), 1);
}

#[test]
fn after_the_hand_over_the_phase_follows_the_instance() {
    let m = migration(Some("PreparingTarget"));
    let ready = target(Some("node02"), "Running", true);
    let pods = [&ready];

    let v = handed_over(json!({}));
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "PreparingTarget");
    assert!(p.vmi_change.is_none());
    assert_eq!(
        p.status
            .migration_state
            .as_ref()
            .and_then(|s| s.target_pod.as_deref()),
        Some("virt-launcher-v-tgt")
    );

    let v = handed_over(json!({"targetNodeAddress": "127.0.0.1",
        "targetDirectMigrationNodePorts": {"40001": 0}}));
    assert_eq!(phase(&plan(&inputs(&m, Some(&v), &pods))), "TargetReady");

    let v = handed_over(json!({"targetNodeAddress": "127.0.0.1", "startTimestamp": at(1)}));
    assert_eq!(phase(&plan(&inputs(&m, Some(&v), &pods))), "Running");

    let v = handed_over(json!({"startTimestamp": at(3), "endTimestamp": at(1), "completed": true}));
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Succeeded");
    assert!(p.delete_pods.is_empty());
    assert!(
        p.event
            .as_ref()
            .is_some_and(|e| !e.0 && e.2.contains("node02"))
    );

    let v = handed_over(json!({"failed": true, "failureReason": "guest too busy"}));
    let p = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(phase(&p), "Failed");
    assert_eq!(p.delete_pods, vec!["virt-launcher-v-tgt".to_string()]);
    assert!(
        p.event
            .as_ref()
            .is_some_and(|e| e.2.contains("guest too busy"))
    );
}

#[test]
fn a_lost_target_fails_the_attempt_on_the_instance_only_before_it_started() {
    let m = migration(Some("TargetReady"));
    let v = handed_over(json!({"targetNodeAddress": "127.0.0.1"}));
    let p = plan(&inputs(&m, Some(&v), &[]));
    assert_eq!(phase(&p), "Failed");
    assert!(matches!(p.vmi_change, Some(VmiChange::Fail { .. })));

    // Started: the source handler writes the outcome.
    let m = migration(Some("Running"));
    let v = handed_over(json!({"targetNodeAddress": "127.0.0.1", "startTimestamp": at(1)}));
    let p = plan(&inputs(&m, Some(&v), &[]));
    assert_eq!(phase(&p), "Running");
    assert!(p.vmi_change.is_none());
}

#[test]
fn a_failed_migration_never_deletes_the_instances_own_pod() {
    let m = migration(Some("Failed"));
    // The instance ended up on node02 (its pod there is the instance's now).
    let mut v = vmi("Running");
    if let Some(s) = v.status.as_mut() {
        s.node_name = Some("node02".into());
    }
    let on_node = target(Some("node02"), "Running", true);
    let pods = [&on_node];
    assert!(plan(&inputs(&m, Some(&v), &pods)).delete_pods.is_empty());
    let v = vmi("Running");
    assert_eq!(plan(&inputs(&m, Some(&v), &pods)).delete_pods.len(), 1);
    // A finished migration changes nothing else.
    let done = migration(Some("Succeeded"));
    let p = plan(&inputs(&done, Some(&v), &pods));
    assert_eq!(p.status, done.status.clone().unwrap_or_default());
    assert!(p.delete_pods.is_empty() && p.vmi_change.is_none());
}

#[test]
fn phases_passed_between_two_looks_are_recorded_in_order() {
    // Pending written; before the next look the target pod was created and scheduled.
    let mut m = migration(Some("Pending"));
    m.status.as_mut().unwrap().phase_transition_timestamps =
        serde_json::from_value(json!([{"phase": "Pending", "phaseTransitionTimestamp": at(5)}]))
            .unwrap();
    let v = vmi("Running");
    let pod = target(Some("node-b"), "Pending", false);
    let p = plan(&inputs(&m, Some(&v), &[&pod]));
    assert_eq!(phase(&p), "Scheduled");
    assert_eq!(recorded(&p), ["Pending", "Scheduling", "Scheduled"]);
    // A failure records only itself.
    let gone = plan(&inputs(&p_migration(&m, &p), None, &[]));
    let last = gone.status.phase_transition_timestamps.last().unwrap();
    assert_eq!(last.phase.as_deref(), Some("Failed"));
    assert_eq!(gone.status.phase_transition_timestamps.len(), 4);
}

fn p_migration(m: &VirtualMachineInstanceMigration, p: &Plan) -> VirtualMachineInstanceMigration {
    let mut m = m.clone();
    m.status = Some(p.status.clone());
    m
}

#[test]
fn phase_timestamps_are_recorded_once() {
    let mut m = migration(None);
    let v = vmi("Running");
    let p = plan(&inputs(&m, Some(&v), &[]));
    m.status = Some(p.status.clone());
    let pod = target(None, "Pending", false);
    let pods = [&pod];
    let p2 = plan(&inputs(&m, Some(&v), &pods));
    assert_eq!(p2.status, p.status, "no change while nothing happens");
}

fn rendered_pod(affinity: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "virt-launcher-v-", "namespace": "ns",
                     "labels": {"kubevirt.io": "virt-launcher"}},
        "spec": {
            "containers": [{"name": "compute", "args": ["--name", "v"]}, {"name": "volumeroot"}],
            "nodeSelector": {"kubevirt.io/schedulable": "true", "zone": "a"},
            "affinity": affinity
        }
    }))
    .unwrap()
}

#[test]
fn the_target_pod_is_the_launcher_pod_kept_off_the_source_node() {
    let mut m = migration(None);
    m.spec.added_node_selector =
        BTreeMap::from([("zone".into(), "b".into()), ("disk".into(), "ssd".into())]);
    let v = vmi("Running");
    let p = target_pod(&v, &m, rendered_pod(json!(null))).unwrap();
    assert_eq!(
        p.labels().get(JOB_LABEL).map(String::as_str),
        Some("mig-uid")
    );
    assert_eq!(
        p.annotations().get(JOB_NAME_ANNOTATION).map(String::as_str),
        Some("mig")
    );
    let spec = p.spec.as_ref().unwrap();
    let args = spec.containers[0].args.clone().unwrap();
    assert_eq!(args[args.len() - 2..], ["--libvirt-mode", "daemon"]);
    let sel = spec.node_selector.clone().unwrap();
    assert_eq!(sel.get("zone").map(String::as_str), Some("a"));
    assert_eq!(sel.get("disk").map(String::as_str), Some("ssd"));
    let terms = &spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    let e = &terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (e.key.as_str(), e.operator.as_str(), e.values.clone()),
        (HOSTNAME_LABEL, "NotIn", Some(vec!["node01".to_string()]))
    );

    // Each alternative of the instance's own affinity excludes the source.
    let own = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [
        {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "b", "operator": "Exists"}]}
    ]}}});
    let p = target_pod(&v, &m, rendered_pod(own)).unwrap();
    let terms = p
        .spec
        .and_then(|s| s.affinity)
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 2);
    for t in terms {
        let exprs = t.match_expressions.unwrap();
        assert_eq!(exprs.len(), 2);
        assert_eq!(exprs[1].operator, "NotIn");
    }

    let mut nowhere = vmi("Running");
    nowhere.status = None;
    assert_eq!(
        target_pod(&nowhere, &m, rendered_pod(json!(null))),
        Err(TargetPodError::NoSourceNode)
    );
}

fn pvc(access: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {"accessModes": [access]}}))
        .unwrap()
}

fn condition_of(
    v: &Value,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> (String, Option<String>) {
    let vmi: VirtualMachineInstance = serde_json::from_value(v.clone()).unwrap();
    let c = live_migratable_condition(&vmi, pvcs);
    assert_eq!(c.type_, "LiveMigratable");
    (c.status, c.reason)
}

#[test]
fn live_migratable_follows_volumes_and_interfaces() {
    let none = BTreeMap::new();
    let v = vmi_value("Running");
    assert_eq!(condition_of(&v, &none), ("True".into(), None));

    let mut host = v.clone();
    host["spec"]["volumes"][1] =
        json!({"name": "ci", "hostDisk": {"path": "/d.img", "type": "Disk"}});
    assert_eq!(
        condition_of(&host, &none),
        ("False".into(), Some("DisksNotLiveMigratable".into()))
    );

    let mut claim = v.clone();
    claim["spec"]["volumes"][1] =
        json!({"name": "ci", "persistentVolumeClaim": {"claimName": "data"}});
    let rwo = BTreeMap::from([("data".to_string(), pvc("ReadWriteOnce"))]);
    let rwx = BTreeMap::from([("data".to_string(), pvc("ReadWriteMany"))]);
    assert_eq!(condition_of(&claim, &rwo).0, "False");
    assert_eq!(condition_of(&claim, &none).0, "False");
    assert_eq!(condition_of(&claim, &rwx).0, "True");

    let mut bridge = v.clone();
    bridge["spec"]["domain"]["devices"]["interfaces"][0] = json!({"name": "default", "bridge": {}});
    assert_eq!(
        condition_of(&bridge, &none),
        ("False".into(), Some("InterfaceNotLiveMigratable".into()))
    );
    bridge["metadata"]["annotations"] = json!({ALLOW_POD_BRIDGE_ANNOTATION: ""});
    assert_eq!(condition_of(&bridge, &none).0, "True");
}

#[test]
fn the_finalizer_holds_a_cancelled_migration_until_its_target_is_down() {
    let m = migration(None);
    let v = vmi("Running");
    assert_eq!(plan(&inputs(&m, Some(&v), &[])).finalizer, Some(true));

    let mut cancelled = migration(Some("Scheduled"));
    cancelled.metadata.finalizers = Some(vec![FINALIZER.into()]);
    cancelled.metadata.deletion_timestamp = Some(Time(now()));
    let pod = target(Some("node02"), "Pending", false);
    let pods = [&pod];
    let p = plan(&inputs(&cancelled, Some(&v), &pods));
    assert_eq!(phase(&p), "Failed");
    assert_eq!(p.delete_pods.len(), 1);
    assert_eq!(p.finalizer, Some(false));

    // Handed over but not started: the attempt ends on the instance too.
    cancelled.status = migration(Some("TargetReady")).status;
    let v = handed_over(json!({"targetNodeAddress": "127.0.0.1"}));
    let p = plan(&inputs(&cancelled, Some(&v), &pods));
    assert!(matches!(p.vmi_change, Some(VmiChange::Fail { .. })));
    assert_eq!(p.finalizer, Some(false));

    // Under way: the handlers are asked to abort it once; the outcome is the source's to
    // write, and the finalizer stays until then.
    cancelled.status = migration(Some("Running")).status;
    let v = handed_over(json!({"targetNodeAddress": "127.0.0.1", "startTimestamp": at(1)}));
    let p = plan(&inputs(&cancelled, Some(&v), &pods));
    assert_eq!(phase(&p), "Running");
    assert_eq!(p.finalizer, None);
    assert_eq!(
        p.vmi_change,
        Some(VmiChange::RequestAbort {
            migration_uid: "mig-uid".into()
        })
    );
    let v = handed_over(
        json!({"targetNodeAddress": "127.0.0.1", "startTimestamp": at(1),
        "abortRequested": true, "abortStatus": "Aborting"}),
    );
    let p = plan(&inputs(&cancelled, Some(&v), &pods));
    assert_eq!(p.vmi_change, None, "asked once");
    assert_eq!(p.finalizer, None);
    // The source recorded the aborted attempt: Failed, target down, finalizer off.
    let v = handed_over(
        json!({"targetNodeAddress": "127.0.0.1", "startTimestamp": at(2),
        "abortRequested": true, "abortStatus": "Succeeded", "failed": true,
        "failureReason": "aborted", "endTimestamp": at(1)}),
    );
    let p = plan(&inputs(&cancelled, Some(&v), &pods));
    assert_eq!(phase(&p), "Failed");
    assert_eq!(p.delete_pods.len(), 1);
    assert_eq!(p.finalizer, Some(false));
    assert!(
        p.event.as_ref().is_some_and(|e| e.2.contains("aborted")),
        "{:?}",
        p.event
    );
}
