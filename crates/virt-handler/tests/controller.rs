//! The VMI controller against the embedded API server, with a fake launcher serving the gRPC
//! contract on a unix socket under a temporary kubelet root (no QEMU): a Scheduled VMI is
//! Synced and goes Running with its interface and the SoftwareEmulation condition; a pause shows
//! as Paused; deleting the VMI shuts the domain down and deletes it; a handler restart does not
//! Sync a running domain again.

mod common;

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, eventually, yaml};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::v1::{
    DomainEvent, DomainRequest, DomainState, DomainStats, DomainStatus, GuestFilesystems,
    GuestInfo, GuestUsers, InfoRequest, InfoResponse, InterfaceStatus, MigrateRequest,
    MigrationTarget, PingRequest, PingResponse, StateReason, SyncRequest, WatchRequest,
};
use serde_json::json;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use virt_handler::controller::{self, Config, launcher_socket};

#[derive(Default)]
struct State {
    uid: String,
    domain: Option<DomainStatus>,
    calls: Vec<String>,
    /// The guest ignores the ACPI power button.
    ignore_acpi: bool,
    /// Serve WatchEvents (the other tests leave it unimplemented, so they see polling only).
    events: bool,
    /// The open WatchEvents streams.
    watchers: Vec<tokio::sync::mpsc::Sender<Result<DomainEvent, Status>>>,
}

#[derive(Clone, Default)]
struct FakeLauncher {
    state: Arc<Mutex<State>>,
}

type Reply<T> = Result<Response<T>, Status>;

impl FakeLauncher {
    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }
    fn record(&self, call: &str, uid: &str) -> Result<(), Status> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(call.to_string());
        if !uid.is_empty() && !s.uid.is_empty() && uid != s.uid {
            return Err(Status::failed_precondition("uid mismatch"));
        }
        Ok(())
    }
    fn current(&self) -> Result<DomainStatus, Status> {
        let s = self.state.lock().unwrap();
        if s.uid.is_empty() {
            return Err(Status::failed_precondition("no VMI synced yet"));
        }
        Ok(s.domain.clone().unwrap_or_default())
    }
    /// Sends the current domain to every open event stream, as a launcher does on a change.
    async fn notify(&self) {
        let (status, watchers) = {
            let s = self.state.lock().unwrap();
            (s.domain.clone(), s.watchers.clone())
        };
        for w in watchers {
            let _ = w
                .send(Ok(DomainEvent {
                    r#type: launcher_proto::v1::EventType::Modified as i32,
                    status: status.clone(),
                    ..Default::default()
                }))
                .await;
        }
    }
    fn set(&self, state: DomainState, reason: StateReason) -> DomainStatus {
        let mut s = self.state.lock().unwrap();
        let d = s.domain.get_or_insert_with(Default::default);
        d.set_state(state);
        d.set_reason(reason);
        d.clone()
    }
}

#[tonic::async_trait]
impl launcher_proto::Launcher for FakeLauncher {
    async fn info(&self, _: Request<InfoRequest>) -> Reply<InfoResponse> {
        self.record("Info", "")?;
        Ok(Response::new(InfoResponse {
            emulation: true,
            emulation_reason: "no /dev/kvm".into(),
            ..Default::default()
        }))
    }
    async fn ping(&self, _: Request<PingRequest>) -> Reply<PingResponse> {
        Ok(Response::new(PingResponse {}))
    }
    async fn sync(&self, req: Request<SyncRequest>) -> Reply<DomainStatus> {
        self.record("Sync", "")?;
        let vmi: serde_json::Value = serde_json::from_slice(&req.get_ref().vmi_json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let uid = vmi["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = vmi["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = vmi["metadata"]["name"].as_str().unwrap_or_default();
        let mut d = DomainStatus {
            name: format!("{ns}_{name}"),
            uid: uid.clone(),
            interfaces: vec![InterfaceStatus {
                name: "default".into(),
                mac: "52:54:00:12:34:56".into(),
                ips: vec!["10.244.1.9".into()],
                binding: "masquerade".into(),
                pod_interface: "eth0".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        d.set_state(DomainState::Running);
        d.set_reason(StateReason::Booted);
        let mut s = self.state.lock().unwrap();
        s.uid = uid;
        s.domain = Some(d.clone());
        Ok(Response::new(d))
    }
    async fn pause(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Pause", &req.get_ref().uid)?;
        Ok(Response::new(
            self.set(DomainState::Paused, StateReason::User),
        ))
    }
    async fn unpause(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Unpause", &req.get_ref().uid)?;
        Ok(Response::new(
            self.set(DomainState::Running, StateReason::Unpaused),
        ))
    }
    async fn shutdown(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Shutdown", &req.get_ref().uid)?;
        if self.state.lock().unwrap().ignore_acpi {
            let mut s = self.state.lock().unwrap();
            let d = s.domain.get_or_insert_with(Default::default);
            d.shutdown_requested = true;
            return Ok(Response::new(d.clone()));
        }
        // The guest powers off at once.
        Ok(Response::new(
            self.set(DomainState::Shutoff, StateReason::Shutdown),
        ))
    }
    async fn soft_reboot(
        &self,
        _: Request<launcher_proto::v1::SoftRebootRequest>,
    ) -> Reply<DomainStatus> {
        Err(Status::unimplemented("soft reboot"))
    }
    async fn kill(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Kill", &req.get_ref().uid)?;
        if let Some(d) = self.state.lock().unwrap().domain.as_mut() {
            d.shutdown_requested = false;
        }
        Ok(Response::new(
            self.set(DomainState::Shutoff, StateReason::Destroyed),
        ))
    }
    async fn delete(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Delete", &req.get_ref().uid)?;
        self.state.lock().unwrap().domain = None;
        Ok(Response::new(DomainStatus::default()))
    }
    async fn get_domain(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("GetDomain", &req.get_ref().uid)?;
        Ok(Response::new(self.current()?))
    }
    async fn get_domain_stats(&self, _: Request<DomainRequest>) -> Reply<DomainStats> {
        Err(Status::unimplemented("stats"))
    }
    async fn get_guest_info(&self, _: Request<DomainRequest>) -> Reply<GuestInfo> {
        Err(Status::unavailable("no guest agent"))
    }
    async fn get_guest_users(&self, _: Request<DomainRequest>) -> Reply<GuestUsers> {
        Err(Status::unavailable("no guest agent"))
    }
    async fn get_guest_filesystems(&self, _: Request<DomainRequest>) -> Reply<GuestFilesystems> {
        Err(Status::unavailable("no guest agent"))
    }
    async fn prepare_migration_target(&self, _: Request<SyncRequest>) -> Reply<MigrationTarget> {
        Err(Status::unimplemented("not a migration target"))
    }
    async fn migrate(&self, _: Request<MigrateRequest>) -> Reply<DomainStatus> {
        Err(Status::unimplemented("no migrations here"))
    }
    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<DomainEvent, Status>> + Send>>;
    async fn watch_events(&self, req: Request<WatchRequest>) -> Reply<Self::WatchEventsStream> {
        self.record("WatchEvents", &req.get_ref().uid)?;
        let mut s = self.state.lock().unwrap();
        if !s.events {
            return Err(Status::unimplemented("events"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        s.watchers.push(tx);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

fn serve(fake: FakeLauncher, socket: &Path) -> tokio::task::JoinHandle<()> {
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let (path, dir) = controller::addressable(socket).unwrap();
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    drop(dir);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(launcher_proto::LauncherServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .unwrap();
    })
}

fn start_handler(c: &Cluster, root: &Path) -> tokio::task::JoinHandle<()> {
    start_handler_polling(c, root, Duration::from_millis(300))
}

fn start_handler_polling(c: &Cluster, root: &Path, poll: Duration) -> tokio::task::JoinHandle<()> {
    let config = Config {
        listen_address: std::net::IpAddr::from([127, 0, 0, 1]),
        node: "node-1".into(),
        kubelet_root: root.to_path_buf(),
        poll,
    };
    tokio::spawn(controller::run(
        c.client.clone(),
        config,
        std::future::pending(),
    ))
}

/// Creates the VMI from `manifest` handed to node-1 (phase Scheduled) and its launcher pod
/// there; returns the pod's launcher socket under `root`.
async fn scheduled_with_pod(c: &Cluster, root: &Path, manifest: &str) -> std::path::PathBuf {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let vmi: VirtualMachineInstance = yaml(manifest);
    let vmi = vmis.create(&PostParams::default(), &vmi).await.unwrap();
    let (name, uid) = (vmi.name_any(), vmi.uid().unwrap());
    vmis.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Scheduled", "nodeName": "node-1"}})),
    )
    .await
    .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("virt-launcher-{name}-abcde"),
            "labels": {"kubevirt.io/created-by": uid}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "compute", "image": "x"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    launcher_socket(root, &pod.uid().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_reports_and_stops_a_vmi() {
    let c = Cluster::start().await;
    let root = tempfile::tempdir().unwrap();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    // A VMI virt-controller handed to node-1; a finalizer keeps it visible while it stops.
    let vmi: VirtualMachineInstance = yaml(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: vm1
  labels:
    kubevirt.io/nodeName: node-1
  finalizers: [test.kubevirt.io/hold]
spec:
  domain:
    devices: {}
"#,
    );
    let vmi = vmis.create(&PostParams::default(), &vmi).await.unwrap();
    let uid = vmi.uid().unwrap();
    vmis.patch(
        "vm1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Scheduled", "nodeName": "node-1"}})),
    )
    .await
    .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "virt-launcher-vm1-abcde",
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": uid}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "compute", "image": "x"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let fake = FakeLauncher::default();
    let server = serve(
        fake.clone(),
        &launcher_socket(root.path(), &pod.uid().unwrap()),
    );

    let handler = start_handler(&c, root.path());
    let running = eventually("the VMI Running", || async {
        let v = vmis.get("vm1").await.ok()?;
        let s = v.status?;
        (s.phase() == "Running").then_some(s)
    })
    .await;
    assert_eq!(running.node_name.as_deref(), Some("node-1"));
    assert_eq!(running.interfaces.len(), 1);
    assert_eq!(
        running.interfaces[0].ip_address.as_deref(),
        Some("10.244.1.9")
    );
    assert_eq!(
        running.interfaces[0].mac.as_deref(),
        Some("52:54:00:12:34:56")
    );
    assert!(running.condition_is_true("SoftwareEmulation"));
    assert_eq!(
        fake.calls().iter().filter(|c| *c == "Sync").count(),
        1,
        "{:?}",
        fake.calls()
    );

    // The user pauses through the launcher: the condition follows.
    fake.set(DomainState::Paused, StateReason::User);
    eventually("the Paused condition", || async {
        let s = vmis.get("vm1").await.ok()?.status?;
        s.condition_is_true("Paused").then_some(())
    })
    .await;
    fake.set(DomainState::Running, StateReason::Unpaused);
    eventually("Paused removed", || async {
        let s = vmis.get("vm1").await.ok()?.status?;
        s.condition("Paused").is_none().then_some(())
    })
    .await;

    // A restarted handler leaves the running domain alone.
    handler.abort();
    let _ = handler.await;
    let before = fake.calls().len();
    let handler = start_handler(&c, root.path());
    eventually("the new handler reading the domain", || async {
        (fake.calls().len() > before + 2).then_some(())
    })
    .await;
    assert_eq!(fake.calls().iter().filter(|c| *c == "Sync").count(), 1);
    assert_eq!(
        vmis.get("vm1").await.unwrap().status.unwrap().phase(),
        "Running"
    );

    // Deleting the VMI shuts the domain down, then deletes it.
    vmis.delete("vm1", &DeleteParams::default()).await.unwrap();
    eventually("Shutdown then Delete", || async {
        let calls = fake.calls();
        let shut = calls.iter().position(|c| c == "Shutdown")?;
        let del = calls.iter().position(|c| c == "Delete")?;
        (shut < del).then_some(())
    })
    .await;
    assert!(fake.state.lock().unwrap().domain.is_none());
    // The shut-down guest is the VMI's outcome: Succeeded, as upstream's handler reports.
    eventually("phase Succeeded", || async {
        (vmis.get("vm1").await.ok()?.status?.phase() == "Succeeded").then_some(())
    })
    .await;
    // The handler's events on the VMI, with upstream's reasons.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let reasons = eventually("the handler's events", || async {
        let list = events
            .list(&kube::api::ListParams::default().fields("involvedObject.name=vm1"))
            .await
            .ok()?;
        let mut reasons: Vec<String> = list.items.into_iter().filter_map(|e| e.reason).collect();
        reasons.sort();
        (reasons.len() >= 4).then_some(reasons)
    })
    .await;
    assert_eq!(reasons, ["Created", "ShuttingDown", "Started", "Stopped"]);

    handler.abort();
    server.abort();
    vmis.patch(
        "vm1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignores_vmis_of_other_nodes() {
    let c = Cluster::start().await;
    let root = tempfile::tempdir().unwrap();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let vmi: VirtualMachineInstance = yaml(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: elsewhere
  labels:
    kubevirt.io/nodeName: node-2
spec:
  domain:
    devices: {}
"#,
    );
    let vmi = vmis.create(&PostParams::default(), &vmi).await.unwrap();
    let uid = vmi.uid().unwrap();
    vmis.patch(
        "elsewhere",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Scheduled", "nodeName": "node-2"}})),
    )
    .await
    .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "virt-launcher-elsewhere-abcde",
            "labels": {"kubevirt.io/created-by": uid}},
        "spec": {"nodeName": "node-2", "containers": [{"name": "compute", "image": "x"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let fake = FakeLauncher::default();
    let server = serve(
        fake.clone(),
        &launcher_socket(root.path(), &pod.uid().unwrap()),
    );
    let handler = start_handler(&c, root.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert_eq!(
        vmis.get("elsewhere").await.unwrap().status.unwrap().phase(),
        "Scheduled"
    );
    handler.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_a_guest_that_ignores_shutdown_after_the_grace_period() {
    let c = Cluster::start().await;
    let root = tempfile::tempdir().unwrap();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), "default");
    let socket = scheduled_with_pod(
        &c,
        root.path(),
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: stubborn
  labels:
    kubevirt.io/nodeName: node-1
  finalizers: [test.kubevirt.io/hold]
spec:
  terminationGracePeriodSeconds: 1
  domain:
    devices: {}
"#,
    )
    .await;
    let fake = FakeLauncher::default();
    fake.state.lock().unwrap().ignore_acpi = true;
    let server = serve(fake.clone(), &socket);
    let handler = start_handler(&c, root.path());
    eventually("the VMI Running", || async {
        let s = vmis.get("stubborn").await.ok()?.status?;
        (s.phase() == "Running").then_some(())
    })
    .await;
    vmis.delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Shutdown, Kill, then Delete", || async {
        let calls = fake.calls();
        let shut = calls.iter().position(|c| c == "Shutdown")?;
        let kill = calls.iter().position(|c| c == "Kill")?;
        let del = calls.iter().position(|c| c == "Delete")?;
        (shut < kill && kill < del).then_some(())
    })
    .await;
    assert_eq!(fake.calls().iter().filter(|c| *c == "Shutdown").count(), 1);
    handler.abort();
    server.abort();
    vmis.patch(
        "stubborn",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_events_reach_the_vmi_without_waiting_for_the_poll() {
    let c = Cluster::start().await;
    let root = tempfile::tempdir().unwrap();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), "default");
    let socket = scheduled_with_pod(
        &c,
        root.path(),
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: evented
  labels:
    kubevirt.io/nodeName: node-1
spec:
  domain:
    devices: {}
"#,
    )
    .await;
    let fake = FakeLauncher::default();
    fake.state.lock().unwrap().events = true;
    let server = serve(fake.clone(), &socket);
    // A poll far beyond the waits below: only an event can bring the changes in time.
    let handler = start_handler_polling(&c, root.path(), Duration::from_secs(600));
    eventually("the VMI Running", || async {
        let s = vmis.get("evented").await.ok()?.status?;
        (s.phase() == "Running").then_some(())
    })
    .await;
    eventually("the event stream open", || async {
        (!fake.state.lock().unwrap().watchers.is_empty()).then_some(())
    })
    .await;
    // Let the reconciles caused by the handler's own status write settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The guest pauses (say, an I/O error) and the launcher tells.
    fake.set(DomainState::Paused, StateReason::User);
    fake.notify().await;
    eventually("the Paused condition", || async {
        let s = vmis.get("evented").await.ok()?.status?;
        s.condition_is_true("Paused").then_some(())
    })
    .await;
    // The guest powers itself off.
    fake.set(DomainState::Shutoff, StateReason::Shutdown);
    fake.notify().await;
    eventually("phase Succeeded", || async {
        (vmis.get("evented").await.ok()?.status?.phase() == "Succeeded").then_some(())
    })
    .await;
    assert_eq!(
        fake.calls().iter().filter(|c| *c == "WatchEvents").count(),
        1,
        "one stream for the VMI: {:?}",
        fake.calls()
    );
    handler.abort();
    server.abort();
}
