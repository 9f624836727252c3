//! The VM and VMI controllers against the embedded API server: a VM starts an instance and a
//! launcher pod with upstream's owner references, labels and resources; stopping removes them;
//! pod phases written by the test drive the instance's phase and the VM's printableStatus.

mod common;

use std::collections::BTreeMap;

use common::{Cluster, LAUNCHER_IMAGE, eventually, yaml};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubevirt_api::quantity::Amount;
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use serde_json::json;
use virt_controller::vmi::pod::{LauncherConfig, memory_overhead_bytes};

const VM: &str = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: testvm
  namespace: default
spec:
  runStrategy: Always
  template:
    metadata:
      labels:
        kubevirt.io/size: small
    spec:
      domain:
        devices:
          disks:
            - name: containerdisk
              disk:
                bus: virtio
        resources:
          requests:
            memory: 128Mi
      volumes:
        - name: containerdisk
          containerDisk:
            image: 127.0.0.1:5000/kubevirt-rs/guest:latest
"#;

fn vm_named(name: &str, strategy: &str) -> VirtualMachine {
    let mut vm: VirtualMachine = yaml(VM);
    vm.metadata.name = Some(name.into());
    vm.spec.run_strategy = Some(strategy.into());
    vm
}

async fn vmi_of(api: &Api<VirtualMachineInstance>, name: &str) -> Option<VirtualMachineInstance> {
    api.get_opt(name).await.ok().flatten()
}

async fn pods_of(pods: &Api<Pod>, vmi_uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("kubevirt.io/created-by={vmi_uid}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn printable(vm: &VirtualMachine) -> Option<String> {
    vm.status.as_ref().and_then(|s| s.printable_status.clone())
}

async fn wait_printable(vms: &Api<VirtualMachine>, name: &str, want: &str) -> VirtualMachine {
    eventually(&format!("VM {name} printableStatus {want}"), || async {
        vms.get(name)
            .await
            .ok()
            .filter(|vm| printable(vm).as_deref() == Some(want))
    })
    .await
}

async fn set_pod_status(pods: &Api<Pod>, pod: &str, status: serde_json::Value) {
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .expect("patch pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_vm_gets_an_instance_and_a_launcher_pod_and_halting_removes_them() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let vms: Api<VirtualMachine> = Api::namespaced(c.clone(), "default");
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let vm = vms
        .create(&PostParams::default(), &vm_named("testvm", "Always"))
        .await
        .expect("create VM");
    let vm_uid = vm.metadata.uid.clone().expect("vm uid");

    let vmi = eventually("the VMI", || async {
        vmi_of(&vmis, "testvm")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| !s.phase().is_empty()))
    })
    .await;
    let owner = &vmi.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("VirtualMachine", vm_uid.as_str(), Some(true))
    );
    assert_eq!(vmi.labels()["kubevirt.io/size"], "small");
    assert!(
        vmi.finalizers()
            .iter()
            .any(|f| f == "kubevirt.io/foregroundDeleteVirtualMachine")
    );
    assert!(
        vmi.finalizers()
            .iter()
            .any(|f| f == "kubevirt.io/virtualMachineControllerFinalize")
    );
    let vmi_uid = vmi.metadata.uid.clone().expect("vmi uid");

    let pod = eventually("the launcher pod", || async {
        pods_of(&pods, &vmi_uid).await.into_iter().next()
    })
    .await;
    let labels = pod.labels();
    assert_eq!(labels["kubevirt.io"], "virt-launcher");
    assert_eq!(labels["vm.kubevirt.io/name"], "testvm");
    assert_eq!(labels["kubevirt.io/size"], "small");
    assert_eq!(pod.annotations()["kubevirt.io/domain"], "testvm");
    let powner = &pod.owner_references()[0];
    assert_eq!(
        (powner.kind.as_str(), powner.uid.as_str(), powner.controller),
        ("VirtualMachineInstance", vmi_uid.as_str(), Some(true))
    );
    let spec = pod.spec.clone().expect("pod spec");
    let compute = &spec.containers[0];
    assert_eq!(compute.name, "compute");
    assert_eq!(compute.image.as_deref(), Some(LAUNCHER_IMAGE));
    assert_eq!(
        compute.command.as_deref(),
        Some(&["virt-launcher".to_string()][..])
    );
    let args = compute.args.clone().unwrap_or_default().join(" ");
    assert_eq!(
        args,
        format!("--namespace default --name testvm --uid {vmi_uid} --libvirt-dir /var/run/libvirt")
    );
    // The stored VMI (defaulted) gives the expected overhead.
    let current = vmis.get("testvm").await.expect("vmi");
    let overhead = memory_overhead_bytes(&current, &LauncherConfig::default());
    let mem = &compute
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["memory"];
    assert_eq!(
        Amount::parse(&mem.0).unwrap().bytes(),
        (128 << 20) + overhead
    );
    assert_eq!(spec.containers[1].name, "volumecontainerdisk");
    assert!(
        spec.volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "sockets" && v.empty_dir.is_some())
    );

    // Starting shows as soon as the VMI is created; `created` once the VMI is seen.
    let vm = eventually("Starting with the VMI created", || async {
        vms.get("testvm").await.ok().filter(|vm| {
            printable(vm).as_deref() == Some("Starting")
                && vm.status.as_ref().and_then(|s| s.created) == Some(true)
        })
    })
    .await;
    assert!(
        vm.finalizers()
            .iter()
            .any(|f| f == "kubevirt.io/virtualMachineControllerFinalize")
    );
    eventually("Scheduling", || async {
        vmi_of(&vmis, "testvm")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| s.phase() == "Scheduling"))
    })
    .await;

    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    eventually("SuccessfulCreate events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let on = |kind: &str| {
            list.items.iter().any(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.involved_object.kind.as_deref() == Some(kind)
            })
        };
        (on("VirtualMachine") && on("VirtualMachineInstance")).then_some(())
    })
    .await;

    // Halting stops it: the instance and its pod go, the VM shows Stopped.
    vms.patch(
        "testvm",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"runStrategy": "Halted"}})),
    )
    .await
    .expect("halt");
    eventually("the VMI to go", || async {
        vmi_of(&vmis, "testvm").await.is_none().then_some(())
    })
    .await;
    eventually("the pod to go", || async {
        pods_of(&pods, &vmi_uid).await.is_empty().then_some(())
    })
    .await;
    let vm = wait_printable(&vms, "testvm", "Stopped").await;
    assert_eq!(vm.status.as_ref().unwrap().created, Some(false));

    // Deleting the VM releases its finalizer.
    vms.delete("testvm", &DeleteParams::default())
        .await
        .expect("delete VM");
    eventually("the VM to go", || async {
        vms.get_opt("testvm")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_vm_starts_and_stops_through_state_change_requests() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let vms: Api<VirtualMachine> = Api::namespaced(c.clone(), "default");
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    vms.create(&PostParams::default(), &vm_named("manual", "Manual"))
        .await
        .expect("create VM");
    wait_printable(&vms, "manual", "Stopped").await;
    assert!(vmi_of(&vmis, "manual").await.is_none());

    let request = |v: serde_json::Value| json!({"status": {"stateChangeRequests": [v]}});
    vms.patch_status(
        "manual",
        &PatchParams::default(),
        &Patch::Merge(&request(json!({"action": "Start"}))),
    )
    .await
    .expect("start request");
    let vmi = eventually("the VMI", || async { vmi_of(&vmis, "manual").await }).await;
    let uid = vmi.metadata.uid.clone().unwrap();
    // The request is trimmed once the instance exists.
    eventually("the start request to be trimmed", || async {
        let vm = vms.get("manual").await.ok()?;
        vm.status
            .filter(|s| s.state_change_requests.is_empty() && s.created == Some(true))
    })
    .await;

    vms.patch_status(
        "manual",
        &PatchParams::default(),
        &Patch::Merge(&request(json!({"action": "Stop", "uid": uid}))),
    )
    .await
    .expect("stop request");
    eventually("the VMI to go", || async {
        vmi_of(&vmis, "manual").await.is_none().then_some(())
    })
    .await;
    // The instance shows Stopped once final; the stop request goes once it is gone.
    eventually("Stopped with the request trimmed", || async {
        let vm = vms.get("manual").await.ok()?;
        (printable(&vm).as_deref() == Some("Stopped")
            && vm
                .status
                .as_ref()
                .is_some_and(|s| s.state_change_requests.is_empty()))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_phases_drive_the_instance_and_the_vm_status() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let vms: Api<VirtualMachine> = Api::namespaced(c.clone(), "default");
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    vms.create(&PostParams::default(), &vm_named("phases", "Always"))
        .await
        .expect("create VM");
    let vmi = eventually("the VMI", || async {
        vmi_of(&vmis, "phases")
            .await
            .filter(|v| v.metadata.uid.is_some())
    })
    .await;
    let uid = vmi.metadata.uid.clone().unwrap();
    let pod = eventually("the pod", || async {
        pods_of(&pods, &uid).await.into_iter().next()
    })
    .await;
    let pod_name = pod.name_any();

    // Unschedulable shows on the VM.
    set_pod_status(&pods, &pod_name, json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}
    ]}))
    .await;
    wait_printable(&vms, "phases", "ErrorUnschedulable").await;

    // An image pull back-off too.
    set_pod_status(&pods, &pod_name, json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True"}
    ], "containerStatuses": [
        {"name": "volumecontainerdisk", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}
    ]}))
    .await;
    wait_printable(&vms, "phases", "ImagePullBackOff").await;

    // Running pod: the instance is handed over (Scheduled).
    set_pod_status(&pods, &pod_name, json!({"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True"}
    ], "containerStatuses": [
        {"name": "compute", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
        {"name": "volumecontainerdisk", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}
    ]}))
    .await;
    let scheduled = eventually("Scheduled", || async {
        vmi_of(&vmis, "phases")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| s.phase() == "Scheduled"))
    })
    .await;
    assert_eq!(scheduled.status.as_ref().unwrap().active_pods.len(), 1);
    // The readiness gate was set on the pod.
    eventually("the unpaused readiness gate", || async {
        let p = pods.get(&pod_name).await.ok()?;
        let conds = p.status?.conditions?;
        conds
            .iter()
            .any(|c| c.type_ == "kubevirt.io/virtual-machine-unpaused" && c.status == "True")
            .then_some(())
    })
    .await;

    // The pod vanishing fails the instance, and the VM (Always) starts a new one.
    pods.delete(&pod_name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    let next = eventually("a new instance", || async {
        vmi_of(&vmis, "phases")
            .await
            .filter(|v| v.metadata.uid.as_deref() != Some(uid.as_str()) && v.metadata.uid.is_some())
    })
    .await;
    // It failed before ever running: a start failure is recorded for the back-off.
    let vm = vms.get("phases").await.expect("vm");
    let failure = vm
        .status
        .and_then(|s| s.start_failure)
        .expect("start failure recorded");
    assert_eq!(failure.consecutive_fail_count, Some(1));
    assert_eq!(failure.last_failed_vmi_uid.as_deref(), Some(uid.as_str()));
    assert!(next.metadata.uid.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_instance_is_admitted_and_cleaned_up_on_deletion() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let vm: VirtualMachine = yaml(VM);
    let mut vmi = VirtualMachineInstance::new("solo", vm.spec.template.spec.clone().unwrap());
    vmi.metadata.labels = Some(BTreeMap::from([("app".into(), "solo".into())]));
    vmis.create(&PostParams::default(), &vmi)
        .await
        .expect("create VMI");
    let admitted = eventually("admission", || async {
        vmi_of(&vmis, "solo")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| !s.phase().is_empty()))
    })
    .await;
    assert!(
        admitted
            .finalizers()
            .iter()
            .any(|f| f == "kubevirt.io/foregroundDeleteVirtualMachine")
    );
    assert!(
        admitted
            .spec
            .domain
            .firmware
            .as_ref()
            .and_then(|f| f.uuid.as_ref())
            .is_some()
    );
    let uid = admitted.metadata.uid.clone().unwrap();
    let pod = eventually("the pod", || async {
        pods_of(&pods, &uid).await.into_iter().next()
    })
    .await;
    assert_eq!(pod.labels()["app"], "solo");
    // A pod that fails while scheduling fails the instance.
    set_pod_status(&pods, &pod.name_any(), json!({"phase": "Failed"})).await;
    eventually("Failed", || async {
        vmi_of(&vmis, "solo")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| s.phase() == "Failed"))
    })
    .await;
    vmis.delete("solo", &DeleteParams::default())
        .await
        .expect("delete VMI");
    eventually("the pod to go", || async {
        pods_of(&pods, &uid).await.is_empty().then_some(())
    })
    .await;
    eventually("the VMI to go", || async {
        vmi_of(&vmis, "solo").await.is_none().then_some(())
    })
    .await;
}
