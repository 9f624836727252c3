//! The stream chain: the embedded API server aggregates virt-api's `subresources.kubevirt.io`,
//! virt-api relays to this node's virt-handler console server (mutual TLS, address published on
//! the Node), and the handler to the launcher's sockets under a temporary kubelet root: a
//! serial console unix socket (an echo server) and a fake launcher over gRPC. A websocket console
//! through the API server carries bytes both ways with `plain.kubevirt.io`, as does a port-forward
//! to a TCP port at the pod's address; pause/unpause reach
//! the launcher; a caller the SubjectAccessReview refuses gets upstream's 401; the guest agent
//! subresources answer upstream's 409; the console server refuses a client without a certificate.

mod common;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, eventually};
use futures_util::{SinkExt, StreamExt};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::v1::{
    DomainEvent, DomainRequest, DomainStats, DomainStatus, GuestFilesystems, GuestInfo, GuestUsers,
    InfoRequest, InfoResponse, MigrateRequest, MigrationTarget, PingRequest, PingResponse,
    SyncRequest, WatchRequest,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::Stream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tonic::{Request, Response, Status};
use virt_handler::controller::{addressable, launcher_socket};
use virt_handler::server;

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const NODE: &str = "stream-node-1";

#[derive(Clone, Default)]
struct FakeLauncher {
    calls: Arc<Mutex<Vec<String>>>,
}

type Reply<T> = Result<Response<T>, Status>;

impl FakeLauncher {
    fn record(&self, call: &str, uid: &str) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("{call} {uid}"));
        }
    }
}

#[tonic::async_trait]
impl launcher_proto::Launcher for FakeLauncher {
    async fn info(&self, _: Request<InfoRequest>) -> Reply<InfoResponse> {
        Err(Status::unimplemented("info"))
    }
    async fn ping(&self, _: Request<PingRequest>) -> Reply<PingResponse> {
        Ok(Response::new(PingResponse {}))
    }
    async fn sync(&self, _: Request<SyncRequest>) -> Reply<DomainStatus> {
        Err(Status::unimplemented("sync"))
    }
    async fn pause(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Pause", &req.into_inner().uid);
        Ok(Response::new(DomainStatus::default()))
    }
    async fn unpause(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.record("Unpause", &req.into_inner().uid);
        Ok(Response::new(DomainStatus::default()))
    }
    async fn shutdown(&self, _: Request<DomainRequest>) -> Reply<DomainStatus> {
        Err(Status::unimplemented("shutdown"))
    }
    async fn soft_reboot(
        &self,
        _: Request<launcher_proto::v1::SoftRebootRequest>,
    ) -> Reply<DomainStatus> {
        Err(Status::unimplemented("soft reboot"))
    }
    async fn kill(&self, _: Request<DomainRequest>) -> Reply<DomainStatus> {
        Err(Status::unimplemented("kill"))
    }
    async fn delete(&self, _: Request<DomainRequest>) -> Reply<DomainStatus> {
        Err(Status::unimplemented("delete"))
    }
    async fn get_domain(&self, _: Request<DomainRequest>) -> Reply<DomainStatus> {
        Err(Status::unimplemented("get_domain"))
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
    async fn watch_events(&self, _: Request<WatchRequest>) -> Reply<Self::WatchEventsStream> {
        Err(Status::unimplemented("events"))
    }
}

/// Aborts the spawned tasks when the test ends, also on failure.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn serve_launcher(fake: FakeLauncher, socket: &Path) -> tokio::task::JoinHandle<()> {
    let (path, dir) = addressable(socket).expect("socket path");
    let listener = tokio::net::UnixListener::bind(path).expect("bind launcher socket");
    drop(dir);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(launcher_proto::LauncherServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    })
}

/// The serial console: greets with a login prompt, then echoes what it reads.
fn serve_console(socket: &Path) -> tokio::task::JoinHandle<()> {
    let (path, dir) = addressable(socket).expect("socket path");
    let listener = tokio::net::UnixListener::bind(path).expect("bind console socket");
    drop(dir);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if conn.write_all(b"testvm login: ").await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(kubeconfig: &Path, dir: &Path, name: &str, doc: &serde_json::Value) {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).expect("write manifest");
    kubectl(kubeconfig, &["apply", "-f", path.to_str().expect("path")]);
}

async fn client_of(path: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS to `addr` trusting `ca`, with the client certificate `cert`/`key` if given.
async fn tls_to(
    addr: &str,
    ca: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.expect("ca")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<_, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_slice(key).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
}

/// A raw HTTP/1.1 request over `tls`; the status code and body.
async fn http(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pause_and_authorization_through_the_chain() {
    let c = Cluster::start().await;
    let data: PathBuf = c.kubeconfig.parent().expect("data dir").to_path_buf();
    let kc = c.kubeconfig.clone();
    let pki = data.join("pki");
    let read = |f: &str| std::fs::read(pki.join(f)).expect("pki file");
    let ca_pem = String::from_utf8(read("ca.crt")).expect("ca");
    let ca_key = String::from_utf8(read("ca.key")).expect("ca key");
    let mut tasks = Tasks(Vec::new());

    kubectl(&kc, &["create", "namespace", "kubevirt"]);
    apply(
        &kc,
        &data,
        "node",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
    );

    // A VMI running on the node, and its launcher pod.
    apply(
        &kc,
        &data,
        "vmi",
        &json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": "testvm", "namespace": "default"},
                "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}}),
    );
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), "default");
    let vmi_uid = vmis.get("testvm").await.expect("vmi").uid().expect("uid");
    let set_status = |conditions: serde_json::Value| {
        let vmis = vmis.clone();
        async move {
            vmis.patch(
                "testvm",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "nodeName": NODE, "conditions": conditions}})),
            )
            .await
            .expect("vmi status");
        }
    };
    set_status(json!([])).await;
    apply(
        &kc,
        &data,
        "pod",
        &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "virt-launcher-testvm", "namespace": "default",
                             "labels": {"kubevirt.io/created-by": vmi_uid}},
                "spec": {"nodeName": NODE, "containers": [{"name": "compute", "image": "virt-launcher"}]}}),
    );
    let pod_uid = kubectl(
        &kc,
        &[
            "get",
            "pod",
            "virt-launcher-testvm",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
    );

    // The launcher's sockets under a kubelet root.
    let root = tempfile::tempdir().expect("kubelet root");
    let launcher_sock = launcher_socket(root.path(), &pod_uid);
    let sockets = launcher_sock.parent().expect("sockets dir").to_path_buf();
    std::fs::create_dir_all(&sockets).expect("sockets dir");
    let fake = FakeLauncher::default();
    tasks.0.push(serve_launcher(fake.clone(), &launcher_sock));
    tasks
        .0
        .push(serve_console(&sockets.join(server::SERIAL_SOCKET)));

    // virt-handler's console server, published on the Node.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handler_addr = listener.local_addr().expect("addr");
    let leaf = server::mint(&ca_pem, &ca_key, "virt-handler", &["127.0.0.1".into()]).expect("leaf");
    let shared = Arc::new(server::Shared {
        client: c.client.clone(),
        node: NODE.into(),
        kubelet_root: root.path().to_path_buf(),
    });
    tasks.0.push(server::serve(
        listener,
        server::server_tls(&ca_pem, leaf).expect("tls"),
        shared,
    ));
    server::publish(&c.client, NODE, handler_addr)
        .await
        .expect("publish");

    // virt-api with its component identity, aggregated.
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_port = api_listener.local_addr().expect("addr").port();
    let api_pki = virt_api::certs::generate(
        &["virt-api.kubevirt.svc".into(), "127.0.0.1".into()],
        jiff::Timestamp::now(),
    )
    .expect("pki");
    let serving = virt_api::certs::Swappable::new(&api_pki).expect("serving");
    let own = client_of(&data.join("kubeconfigs/virt-api.kubeconfig")).await;
    let router = virt_api::subresources::router(Arc::new(virt_api::subresources::Subresources {
        client: own,
        handler_tls: Some(virt_api::handler::client_tls(&ca_pem, &ca_key).expect("client tls")),
        // The identity headers count only with the front-proxy certificate (cluster CA).
        require_proxy_cert: true,
    }));
    tasks.0.push(kubevirt_https::serve(
        api_listener,
        serving.server_config(Some(&ca_pem)).expect("tls"),
        router,
    ));
    use base64::Engine;
    apply(
        &kc,
        &data,
        "svc",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "virt-api", "namespace": "kubevirt"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
    );
    apply(
        &kc,
        &data,
        "ep",
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "virt-api", "namespace": "kubevirt"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": api_port}]}]}),
    );
    apply(
        &kc,
        &data,
        "apiservice",
        &json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1.subresources.kubevirt.io"},
        "spec": {"group": "subresources.kubevirt.io", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "service": {"namespace": "kubevirt", "name": "virt-api"},
                 "caBundle": base64::engine::general_purpose::STANDARD.encode(&api_pki.ca_pem)}}),
    );
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Available",
            "--timeout=30s",
            "apiservice/v1.subresources.kubevirt.io",
        ],
    );

    // The console: a websocket through the API server, bytes both ways.
    let server_addr = kube::config::Kubeconfig::read_from(&kc)
        .ok()
        .and_then(|k| {
            k.clusters
                .first()
                .and_then(|c| c.cluster.as_ref())
                .and_then(|c| c.server.clone())
        })
        .expect("server");
    let host = server_addr.trim_start_matches("https://").to_string();
    let admin = (read("admin.crt"), read("admin.key"));
    let base =
        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm";
    let tls = tls_to(&host, ca_pem.as_bytes(), Some((&admin.0, &admin.1)))
        .await
        .expect("tls");
    let mut req = format!("wss://{host}{base}/console")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "plain.kubevirt.io".parse().expect("header"),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("console websocket");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("plain.kubevirt.io")
    );
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("login: ") {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.extend_from_slice(&b),
            other => panic!("console: {other:?}"),
        }
    }
    ws.send(Message::binary(b"root\n".to_vec()))
        .await
        .expect("send");
    let mut echoed = Vec::new();
    while echoed != b"root\n" {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => echoed.extend_from_slice(&b),
            other => panic!("console echo: {other:?}"),
        }
    }
    ws.close(None).await.expect("close");

    // Port-forward: a websocket to a TCP port at the pod's address (an echo server here; the
    // pod has no kvrs:// process, so it is dialled from the node's namespace).
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let echo_port = echo.local_addr().expect("addr").port();
    tasks.0.push(tokio::spawn(async move {
        while let Ok((mut conn, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    }));
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), "default");
    pods.patch_status(
        "virt-launcher-testvm",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"podIP": "127.0.0.1"}})),
    )
    .await
    .expect("pod status");
    let tls = tls_to(&host, ca_pem.as_bytes(), Some((&admin.0, &admin.1)))
        .await
        .expect("tls");
    let mut req = format!("wss://{host}{base}/portforward/{echo_port}/tcp")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "plain.kubevirt.io".parse().expect("header"),
    );
    let (mut pf, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("port-forward websocket");
    pf.send(Message::binary(b"SSH-2.0-test\r\n".to_vec()))
        .await
        .expect("send");
    let mut back = Vec::new();
    while back != b"SSH-2.0-test\r\n" {
        match tokio::time::timeout(Duration::from_secs(10), pf.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => back.extend_from_slice(&b),
            other => panic!("port-forward echo: {other:?}"),
        }
    }
    pf.close(None).await.expect("close");

    // Pause and unpause reach the launcher (unpause needs the Paused condition, as upstream).
    let empty = data.join("empty.json");
    std::fs::write(&empty, "{}").expect("write body");
    // `kubectl replace --raw` sends a PUT.
    let put = |path: String| {
        let out = Command::new(KUBECTL)
            .args(["replace", "--raw", &path, "-f"])
            .arg(&empty)
            .arg("--kubeconfig")
            .arg(&kc)
            .output()
            .expect("kubectl");
        async move {
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, err) = put(format!("{base}/pause")).await;
    assert!(ok, "pause: {err}");
    let (ok, err) = put(format!("{base}/unpause")).await;
    assert!(
        !ok && err.contains("VMI is not paused"),
        "unpause of a running VMI: {err}"
    );
    set_status(json!([{"type": "Paused", "status": "True"}])).await;
    let (ok, err) = put(format!("{base}/unpause")).await;
    assert!(ok, "unpause: {err}");
    let calls = fake.calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(
        calls,
        vec![format!("Pause {vmi_uid}"), format!("Unpause {vmi_uid}")]
    );

    // No guest agent: upstream's 409.
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["get", "--raw", &format!("{base}/guestosinfo")])
        .output()
        .expect("kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("VMI does not have guest agent connected"),
        "{err}"
    );

    // A caller the review refuses: 401 with the reason (virt-api asked directly with a
    // certificate from the cluster CA, naming the user as the aggregator would).
    let (cert, key) = (read("admin.crt"), read("admin.key"));
    let tls = tls_to(
        &format!("127.0.0.1:{api_port}"),
        api_pki.ca_pem.as_bytes(),
        Some((&cert, &key)),
    )
    .await
    .expect("tls");
    let (code, body) = http(
        tls,
        "PUT",
        &format!("{base}/pause"),
        &[
            ("X-Remote-User", "mallory"),
            ("X-Remote-Group", "system:authenticated"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("mallory") || !body.is_empty(), "{body}");
    // Identity headers from a client without the front-proxy certificate are ignored.
    let tls = tls_to(
        &format!("127.0.0.1:{api_port}"),
        api_pki.ca_pem.as_bytes(),
        None,
    )
    .await
    .expect("tls");
    let (code, body) = http(
        tls,
        "PUT",
        &format!("{base}/pause"),
        &[
            ("X-Remote-User", "admin"),
            ("X-Remote-Group", "system:masters"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("X-Remote-User"), "{body}");
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        fake.calls.lock().map(|c| c.len()).unwrap_or(0),
        2,
        "refused calls do not reach the launcher"
    );

    // The console server refuses a client without a certificate, and serves one with it.
    // (With TLS 1.3 the client's handshake may finish before the server checks; then the
    // server's alert ends the first request.)
    let refused = match tls_to(&handler_addr.to_string(), ca_pem.as_bytes(), None).await {
        Err(_) => true,
        Ok(t) => http(t, "GET", "/healthz", &[])
            .await
            .map(|(code, _)| code == 0)
            .unwrap_or(true),
    };
    assert!(refused, "a client without a certificate was served");
    let (cert, key) = (read("admin.crt"), read("admin.key"));
    let t = tls_to(
        &handler_addr.to_string(),
        ca_pem.as_bytes(),
        Some((&cert, &key)),
    )
    .await
    .expect("tls");
    assert_eq!(
        http(t, "GET", "/healthz", &[]).await.expect("healthz").0,
        200
    );
    let annotated = eventually("the published address", || {
        let c = c.client.clone();
        async move {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c);
            nodes
                .get(NODE)
                .await
                .ok()?
                .annotations()
                .get(server::CONSOLE_ADDRESS_ANNOTATION)
                .cloned()
        }
    })
    .await;
    assert_eq!(annotated, handler_addr.to_string());
    drop(tasks);
}
