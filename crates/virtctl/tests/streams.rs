//! virtctl against the embedded API server with a test backend registered as the aggregated
//! `subresources.kubevirt.io/v1` API (an APIService naming a Service whose Endpoints point at
//! it), as virt-api is in a cluster. The backend speaks upstream's wire contract: websockets
//! with the `plain.kubevirt.io` subprotocol at `.../virtualmachineinstances/{name}/console|vnc|
//! portforward/{port}/{proto}`, the pause/unpause PUTs and the guestosinfo GET. It records
//! what it saw, so the tests check paths, subprotocols and bytes both ways.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::{SinkExt as _, StreamExt as _};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const GROUP: &str = "subresources.kubevirt.io";
const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// One websocket the backend accepted.
#[derive(Debug, Clone, Default)]
struct Seen {
    path: String,
    query: String,
    protocol: String,
    received: Vec<u8>,
}

#[derive(Default)]
struct Backend {
    streams: Mutex<Vec<Seen>>,
    puts: Mutex<Vec<(String, Value)>>,
    /// Where guest port 22 is (a local sshd), when a test provides one.
    sshd: Mutex<Option<u16>>,
}

type Shared = Arc<Backend>;

async fn discovery() -> Response {
    axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/v1"),
        "resources": [
            {"name": "virtualmachineinstances/console", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "virtualmachineinstances/vnc", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "virtualmachineinstances/portforward", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "virtualmachineinstances/pause", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["update"]},
            {"name": "virtualmachineinstances/unpause", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["update"]},
            {"name": "virtualmachineinstances/guestosinfo", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "virtualmachineinstances/userlist", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "virtualmachineinstances/filesystemlist", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
        ]}))
    .into_response()
}

/// Upgrades `req` and runs `session` on the websocket; what the client sends is recorded.
fn upgrade<F, Fut>(shared: Shared, mut req: Request, session: F) -> Response
where
    F: FnOnce(
            usize,
            tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
            Shared,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return (StatusCode::BAD_REQUEST, "not a websocket").into_response();
    };
    let protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|p| p.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let index = {
        let mut s = shared.streams.lock().expect("lock");
        s.push(Seen {
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or_default().to_string(),
            protocol: protocol.clone(),
            received: Vec::new(),
        });
        s.len() - 1
    };
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        session(index, ws, shared).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-protocol", "plain.kubevirt.io")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .body(Body::empty())
        .unwrap_or_default()
}

fn record(shared: &Shared, index: usize, bytes: &[u8]) {
    if let Some(s) = shared.streams.lock().expect("lock").get_mut(index) {
        s.received.extend_from_slice(bytes);
    }
}

/// Console: greets with the connection's number, echoes input as `echo:<bytes>`, and drops
/// the connection (as a VM restart would) when it receives `drop`.
async fn console(
    axum::extract::State(shared): axum::extract::State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    upgrade(shared, req, move |index, mut ws, shared| async move {
        let n = shared.streams.lock().expect("lock").len();
        let _ = ws
            .send(Message::binary(
                format!("hello from console {n}\r\n").into_bytes(),
            ))
            .await;
        // "stolen": someone else takes the console at once, every time.
        if name == "stolen" {
            let _ = ws.close(None).await;
            return;
        }
        while let Some(Ok(m)) = ws.next().await {
            let Message::Binary(b) = m else { continue };
            record(&shared, index, &b);
            if b.as_ref() == b"drop" {
                let _ = ws.close(None).await;
                return;
            }
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&b);
            let _ = ws.send(Message::binary(reply)).await;
        }
    })
}

/// VNC and port-forward: a greeting naming what was asked for, then an echo.
async fn echo_stream(
    axum::extract::State(shared): axum::extract::State<Shared>,
    req: Request,
) -> Response {
    let greeting = format!(
        "connected {}\n",
        req.uri()
            .path()
            .rsplit("/namespaces/")
            .next()
            .unwrap_or_default()
    );
    upgrade(shared, req, move |index, mut ws, shared| async move {
        let _ = ws.send(Message::binary(greeting.into_bytes())).await;
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) => {
                    record(&shared, index, &b);
                    if ws.send(Message::binary(b)).await.is_err() {
                        return;
                    }
                }
                Message::Close(_) => return,
                _ => {}
            }
        }
    })
}

/// Port-forward: port 22 reaches the local sshd when there is one (the guest's sshd, as far
/// as the client can tell); anything else gets the greeting-and-echo stream.
async fn portforward(
    state: axum::extract::State<Shared>,
    Path((_ns, _name, port, _proto)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    let sshd = *state.0.sshd.lock().expect("lock");
    let Some(sshd) = sshd.filter(|_| port == "22") else {
        return echo_stream(state, req).await;
    };
    upgrade(state.0.clone(), req, move |index, ws, shared| async move {
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", sshd)).await else {
            return;
        };
        let (mut tr, mut tw) = tcp.into_split();
        let (mut sink, mut source) = ws.split();
        let up = async {
            while let Some(Ok(m)) = source.next().await {
                match m {
                    Message::Binary(b) => {
                        record(&shared, index, &b);
                        if tw.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        };
        let down = async {
            let mut buf = vec![0u8; 16384];
            while let Ok(n) = tr.read(&mut buf).await {
                if n == 0 || sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
            let _ = sink.send(Message::Close(None)).await;
        };
        tokio::select! { _ = up => {}, _ = down => {} }
    })
}

async fn vmi_put(
    axum::extract::State(shared): axum::extract::State<Shared>,
    Path((ns, name, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if name == "missing" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("virtualmachineinstance.kubevirt.io \"{name}\" not found")})),
        )
            .into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared
        .puts
        .lock()
        .expect("lock")
        .push((format!("{ns}/{name}/{action}"), v));
    StatusCode::OK.into_response()
}

async fn guestosinfo(Path((_ns, name)): Path<(String, String)>) -> Response {
    axum::Json(json!({"guestAgentVersion": "5.2.0", "hostname": name,
        "os": {"name": "Debian GNU/Linux", "id": "debian", "version": "12"}}))
    .into_response()
}

/// The agent's user list as upstream's virt-api returns it (a VirtualMachineInstanceGuestOSUserList).
async fn userlist() -> Response {
    axum::Json(json!({"metadata": {}, "items": [{"userName": "root", "loginTime": 1700000000.5}]}))
        .into_response()
}

/// The agent's filesystems as upstream's virt-api returns them (a VirtualMachineInstanceFileSystemList).
async fn filesystemlist() -> Response {
    axum::Json(
        json!({"metadata": {}, "items": [{"diskName": "vda1", "mountPoint": "/",
        "fileSystemType": "ext4", "usedBytes": 1000, "totalBytes": 2000}]}),
    )
    .into_response()
}

struct Env {
    _tmp: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    client: kube::Client,
    backend: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Env {
    /// The real kubectl against this API server, in namespace `ns` when given.
    fn kubectl(&self, ns: Option<&str>, args: &[&str]) -> std::process::Output {
        let mut kubectl = std::process::Command::new(KUBECTL);
        kubectl.arg("--kubeconfig").arg(&self.kubeconfig);
        if let Some(ns) = ns {
            kubectl.args(["-n", ns]);
        }
        kubectl.args(args).output().expect("kubectl")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn create(client: &kube::Client, ar: &ApiResource, ns: Option<&str>, v: Value) {
    let obj: DynamicObject = serde_json::from_value(v).expect("object");
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let mut last = String::new();
    for _ in 0..50 {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("create {}: {last}", ar.kind);
}

impl Env {
    async fn start() -> Env {
        Env::start_with(false).await
    }

    /// With `real_virt_api`, our virt-api's subresources router is the APIService's backend
    /// instead of the test one.
    async fn start_with(real_virt_api: bool) -> Env {
        let tmp = tempfile::tempdir().expect("tmp");
        let (apiserver, client) = common::apiserver_with_crds(tmp.path()).await;

        let backend: Shared = Arc::default();
        let base = format!("/apis/{GROUP}/v1/namespaces/{{ns}}/virtualmachineinstances/{{name}}");
        let router = Router::new()
            .route(&format!("/apis/{GROUP}/v1"), get(discovery))
            .route(&format!("{base}/console"), get(console))
            .route(&format!("{base}/vnc"), get(echo_stream))
            .route(
                &format!("{base}/portforward/{{port}}/{{proto}}"),
                get(portforward),
            )
            .route(
                &format!("/apis/{GROUP}/v1/namespaces/{{ns}}/virtualmachines/{{name}}/portforward/{{port}}/{{proto}}"),
                get(portforward),
            )
            .route(&format!("{base}/guestosinfo"), get(guestosinfo))
            .route(&format!("{base}/userlist"), get(userlist))
            .route(&format!("{base}/filesystemlist"), get(filesystemlist))
            .route(
                &format!(
                    "/apis/{GROUP}/v1/namespaces/{{ns}}/virtualmachineinstances/{{name}}/{{action}}"
                ),
                put(vmi_put),
            )
            .with_state(backend.clone());
        let router = if real_virt_api {
            virt_api::subresources::router(Arc::new(virt_api::subresources::Subresources {
                client: client.clone(),
                handler_tls: None,
                require_proxy_cert: false,
            }))
        } else {
            router
        };
        let pki = kubevirt_https::SelfSigned::generate("test-ca", &["virt-api.kubevirt.svc"])
            .expect("pki");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let serving = kubevirt_https::serve(listener, pki.server_config().expect("tls"), router);

        let core = resource("", "v1", "Namespace", "namespaces");
        create(
            &client,
            &core,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubevirt"}}),
        )
        .await;
        create(
            &client,
            &resource("", "v1", "Service", "services"),
            Some("kubevirt"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "virt-api", "namespace": "kubevirt"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}),
        )
        .await;
        create(
            &client,
            &resource("", "v1", "Endpoints", "endpoints"),
            Some("kubevirt"),
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "virt-api", "namespace": "kubevirt"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
        )
        .await;
        use base64::Engine as _;
        create(
            &client,
            &resource("apiregistration.k8s.io", "v1", "APIService", "apiservices"),
            None,
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": format!("v1.{GROUP}")},
                "spec": {"group": GROUP, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                         "service": {"namespace": "kubevirt", "name": "virt-api"},
                         "caBundle": base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem)}}),
        )
        .await;
        Env {
            kubeconfig: apiserver.kubeconfig.clone(),
            _tmp: tmp,
            client,
            backend,
            tasks: vec![apiserver.task, serving],
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_virtctl"));
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().await.expect("virtctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    fn streams(&self) -> Vec<Seen> {
        self.backend.streams.lock().expect("lock").clone()
    }
}

async fn recv_datagram(udp: &tokio::net::UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
        .await
        .expect("a datagram back")
        .expect("recv");
    buf.truncate(n);
    buf
}

/// Collects a child's output as it comes.
fn collect(mut r: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
    let b = buf.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            b.lock().expect("lock").extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

async fn wait_for(what: &str, buf: &Arc<Mutex<Vec<u8>>>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8_lossy(&buf.lock().expect("lock")).into_owned();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({needle:?}); have {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_bytes_both_ways_escape_and_reconnect() {
    let env = Env::start().await;
    let mut child = env
        .command(&["console", "testvm", "--timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = collect(child.stdout.take().expect("stdout"));
    let err = collect(child.stderr.take().expect("stderr"));
    wait_for("greeting", &out, "hello from console 1").await;
    wait_for(
        "banner",
        &err,
        "Successfully connected to testvm console. Press Ctrl+] or Ctrl+5 to exit console.",
    )
    .await;
    stdin.write_all(b"ls\r").await.expect("write");
    wait_for("echo", &out, "echo:ls\r").await;

    // The far side drops the stream (a VM restart): virtctl reconnects by itself.
    stdin.write_all(b"drop").await.expect("write");
    wait_for("second connection", &out, "hello from console 2").await;
    wait_for("notice", &err, "You were disconnected from the console").await;
    stdin.write_all(b"again").await.expect("write");
    wait_for("echo after reconnect", &out, "echo:again").await;

    // Ctrl+]: what precedes it is sent, then virtctl leaves with success.
    stdin.write_all(b"bye\x1dnot sent").await.expect("write");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("virtctl left on Ctrl+]")
        .expect("status");
    assert!(status.success());
    // The backend may still be reading the last message when virtctl has already gone.
    wait_until("the bytes before Ctrl+] reach the backend", || {
        env.streams()
            .get(1)
            .is_some_and(|s| s.received.ends_with(b"bye"))
    })
    .await;
    let streams = env.streams();
    assert_eq!(streams.len(), 2, "{streams:?}");
    for s in &streams {
        assert_eq!(
            s.path,
            "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/console"
        );
        assert_eq!(s.protocol, "plain.kubevirt.io");
    }
    assert_eq!(streams[0].received, b"ls\rdrop");
    assert_eq!(streams[1].received, b"againbye");
}

/// A console that is taken away right after every connect: virtctl reconnects once, then
/// stops with upstream's explanation instead of fighting over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_gives_up_when_taken_over_repeatedly() {
    let env = Env::start().await;
    // Stdin stays open (its end would mean "leave").
    let mut child = env
        .command(&["console", "stolen"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _stdin = child.stdin.take();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("virtctl gives up")
        .expect("output");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another user connected to the console of the target VM"),
        "{err}"
    );
    assert_eq!(env.streams().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_proxy_only_and_port_forward() {
    let env = Env::start().await;

    // vnc --proxy-only: prints {"port":N}; a client on it talks to the VMI's VNC stream.
    let mut child = env
        .command(&[
            "-n",
            "ns1",
            "vnc",
            "testvm",
            "--proxy-only",
            "--preserve-session",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = collect(child.stdout.take().expect("stdout"));
    wait_for("port", &out, "}").await;
    let line = String::from_utf8_lossy(&out.lock().expect("lock")).into_owned();
    let v: Value = serde_json::from_str(line.trim()).expect("JSON port");
    let port = v["port"].as_u64().expect("port") as u16;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut buf = vec![0u8; 64];
    let n = tcp.read(&mut buf).await.expect("read");
    assert_eq!(
        &buf[..n],
        b"connected ns1/virtualmachineinstances/testvm/vnc\n"
    );
    tcp.write_all(b"RFB 003.008\n").await.expect("write");
    let mut echo = vec![0u8; 12];
    tcp.read_exact(&mut echo).await.expect("echo");
    assert_eq!(echo, b"RFB 003.008\n");
    drop(tcp);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let vnc = env.streams().pop().expect("a vnc stream");
    assert_eq!(
        vnc.path,
        "/apis/subresources.kubevirt.io/v1/namespaces/ns1/virtualmachineinstances/testvm/vnc"
    );
    assert_eq!(vnc.query, "preserveSession=true");
    assert_eq!(vnc.protocol, "plain.kubevirt.io");

    // port-forward --stdio (what ssh's ProxyCommand runs): stdin/stdout to the guest port.
    let mut child = env
        .command(&["port-forward", "--stdio=true", "vmi/testvm/ns2", "22"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = collect(child.stdout.take().expect("stdout"));
    let greeting = "connected ns2/virtualmachineinstances/testvm/portforward/22/tcp\n";
    wait_for("greeting", &out, greeting).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    stdin.write_all(&big).await.expect("write");
    wait_until("echo of 200000 bytes", || {
        out.lock().expect("lock").len() >= greeting.len() + big.len()
    })
    .await;
    assert!(out.lock().expect("lock").ends_with(&big));
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stdin EOF ends it")
        .expect("status");
    assert!(status.success());
    let pf = env.streams().pop().expect("a portforward stream");
    assert_eq!(
        pf.path,
        "/apis/subresources.kubevirt.io/v1/namespaces/ns2/virtualmachineinstances/testvm/portforward/22/tcp"
    );
    assert_eq!(pf.received.len(), big.len());

    // port-forward on a local port: each TCP connection gets its own stream.
    let mut child = env
        .command(&["port-forward", "vm/testvm", "0:8080"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = collect(child.stderr.take().expect("stderr"));
    wait_for("listening", &err, "-> 8080").await;
    let text = String::from_utf8_lossy(&err.lock().expect("lock")).into_owned();
    let addr = text
        .split("Forwarding from ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("address")
        .to_string();
    for i in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let mut buf = vec![0u8; 64];
        let n = tcp.read(&mut buf).await.expect("read");
        assert_eq!(
            &buf[..n],
            b"connected default/virtualmachines/testvm/portforward/8080/tcp\n",
            "connection {i}"
        );
        tcp.write_all(b"GET /").await.expect("write");
        let mut echo = [0u8; 5];
        tcp.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"GET /");
    }
    child.kill().await.expect("kill");
    // vm/NAME goes to the VM's own portforward subresource, as upstream's does.
    let last = env.streams().pop().expect("stream");
    assert_eq!(
        last.path,
        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/testvm/portforward/8080/tcp"
    );
    assert_eq!(last.received, b"GET /");

    // UDP: one stream per local peer, one datagram per message.
    let mut child = env
        .command(&["port-forward", "vmi/testvm", "udp/0:53"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = collect(child.stderr.take().expect("stderr"));
    wait_for("listening", &err, "-> 53").await;
    let text = String::from_utf8_lossy(&err.lock().expect("lock")).into_owned();
    let addr = text
        .split("Forwarding from udp ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("address")
        .to_string();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    udp.send_to(b"query-1", &addr).await.expect("send");
    assert_eq!(
        recv_datagram(&udp).await,
        b"connected default/virtualmachineinstances/testvm/portforward/53/udp\n"
    );
    assert_eq!(recv_datagram(&udp).await, b"query-1");
    udp.send_to(b"query-2", &addr).await.expect("send");
    assert_eq!(recv_datagram(&udp).await, b"query-2");
    child.kill().await.expect("kill");
    let last = env.streams().pop().expect("stream");
    assert!(last.path.ends_with("/portforward/53/udp"), "{}", last.path);
    assert_eq!(last.received, b"query-1query-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_unpause_guestosinfo_expose_create_and_plugin() {
    let env = Env::start().await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/testvm.yaml"
    ))
    .expect("example");
    let vm: Value = serde_saphyr::from_str(&text).expect("yaml");
    create(
        &env.client,
        &resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
        Some("default"),
        vm,
    )
    .await;

    let (ok, out, err) = env.run(&["pause", "vmi", "testvm"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "VMI testvm was scheduled to pause");
    let (ok, out, err) = env.run(&["unpause", "vm", "testvm", "--dry-run"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Dry Run execution\nVMI testvm was scheduled to unpause"
    );
    let (ok, _, err) = env.run(&["pause", "vm", "nosuchvm"]).await;
    assert!(!ok);
    assert!(
        err.starts_with("Error getting VirtualMachine nosuchvm:"),
        "{err}"
    );
    let (ok, _, err) = env.run(&["pause", "vmi", "missing"]).await;
    assert!(!ok);
    assert_eq!(
        err,
        "Error pausing VirtualMachineInstance missing: virtualmachineinstance.kubevirt.io \"missing\" not found"
    );
    assert_eq!(
        env.backend.puts.lock().expect("lock").clone(),
        vec![
            ("default/testvm/pause".to_string(), json!({})),
            (
                "default/testvm/unpause".to_string(),
                json!({"dryRun": ["All"]})
            ),
        ]
    );

    let (ok, out, err) = env.run(&["guestosinfo", "testvm"]).await;
    assert!(ok, "{err}");
    let info: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(info["os"]["id"], "debian");

    // userlist and fslist read their own subresources and print the lists.
    let (ok, out, err) = env.run(&["userlist", "testvm"]).await;
    assert!(ok, "{err}");
    let users: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(users["items"][0]["userName"], "root");
    let (ok, out, err) = env.run(&["fslist", "testvm"]).await;
    assert!(ok, "{err}");
    let fs: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(fs["items"][0]["mountPoint"], "/");
    assert_eq!(fs["items"][0]["fileSystemType"], "ext4");

    // expose: a Service selecting the VM's launcher pod, owned by the VM.
    let (ok, out, err) = env
        .run(&[
            "expose",
            "vm",
            "testvm",
            "--name",
            "testvm-ssh",
            "--port",
            "2222",
            "--target-port",
            "22",
        ])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out, "Service testvm-ssh successfully created for vm testvm");
    let svcs: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(env.client.clone(), "default");
    let svc = svcs.get("testvm-ssh").await.expect("service");
    let spec = svc.spec.expect("spec");
    assert_eq!(
        spec.selector
            .expect("selector")
            .get("vmi.kubevirt.io/id")
            .map(String::as_str),
        Some("testvm")
    );
    let ports = spec.ports.expect("ports");
    assert_eq!(ports[0].port, 2222);
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(
        ports[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(22))
    );
    let owner = &svc.metadata.owner_references.expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("VirtualMachine", "testvm")
    );
    let (ok, _, err) = env.run(&["expose", "vm", "testvm", "--name", "x"]).await;
    assert!(!ok);
    assert_eq!(err, "couldn't find port via --port flag or introspection");

    // create vm: the manifest is accepted by the CRD schema (real kubectl applies it).
    let user_data = "I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogbXl2bQo=";
    let (ok, yaml, err) = env
        .run(&[
            "create",
            "vm",
            "--name",
            "myvm",
            "--instancetype",
            "virtualmachineclusterinstancetype/u1.small",
            "--preference",
            "fedora",
            "--volume-containerdisk",
            "src:127.0.0.1:5000/kubevirt-rs/guest:latest,bootorder:1",
            "--volume-pvc",
            "src:data",
            "--cloud-init-user-data",
            user_data,
        ])
        .await;
    assert!(ok, "{err}");
    let manifest = env._tmp.path().join("myvm.yaml");
    std::fs::write(&manifest, &yaml).expect("write");
    let applied = env.kubectl(
        Some("default"),
        &["apply", "-f", manifest.to_str().expect("path")],
    );
    assert!(
        applied.status.success(),
        "{}\n{yaml}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let vms: Api<kubevirt_api::v1::VirtualMachine> = Api::namespaced(env.client.clone(), "default");
    let got = serde_json::to_value(vms.get("myvm").await.expect("myvm")).expect("json");
    assert_eq!(got["spec"]["runStrategy"], "Always");
    assert_eq!(got["spec"]["instancetype"]["name"], "u1.small");
    assert_eq!(
        got["spec"]["instancetype"]["kind"],
        "virtualmachineclusterinstancetype"
    );
    assert_eq!(got["spec"]["preference"]["name"], "fedora");
    let t = &got["spec"]["template"]["spec"];
    assert_eq!(t["terminationGracePeriodSeconds"], 180);
    assert_eq!(
        t["domain"]["devices"]["disks"][0],
        json!({"name": "myvm-containerdisk-0", "bootOrder": 1})
    );
    assert_eq!(
        t["volumes"][0]["containerDisk"]["image"],
        "127.0.0.1:5000/kubevirt-rs/guest:latest"
    );
    assert_eq!(
        t["volumes"][1]["persistentVolumeClaim"]["claimName"],
        "data"
    );
    assert_eq!(
        t["volumes"][2]["cloudInitNoCloud"]["userDataBase64"],
        user_data
    );
    assert!(t["domain"].get("memory").is_none());
    let parsed = kubevirt_api::manifest::parse(&yaml, kubevirt_api::manifest::Strictness::Strict)
        .expect("our own strict parser accepts it");
    assert_eq!(parsed.len(), 1);

    // create instancetype / preference: what the VM above names, accepted by the API server
    // with kubectl's strict field validation.
    for (args, resource, ns) in [
        (
            &[
                "create",
                "instancetype",
                "--name",
                "u1.small",
                "--cpu",
                "1",
                "--memory",
                "256Mi",
            ][..],
            "virtualmachineclusterinstancetypes/u1.small",
            None,
        ),
        (
            &[
                "create",
                "preference",
                "--name",
                "fedora",
                "--namespaced",
                "--cpu-topology",
                "spread",
            ][..],
            "virtualmachinepreferences/fedora",
            Some("default"),
        ),
    ] {
        let (ok, yaml, err) = env.run(args).await;
        assert!(ok, "{err}");
        let file = env._tmp.path().join("type.yaml");
        std::fs::write(&file, &yaml).expect("write");
        let file = file.to_str().expect("path");
        let created = env.kubectl(ns, &["create", "--validate=strict", "-f", file]);
        assert!(
            created.status.success(),
            "{}\n{yaml}",
            String::from_utf8_lossy(&created.stderr)
        );
        let got = env.kubectl(ns, &["get", resource, "-o", "json"]);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        let got: Value = serde_json::from_slice(&got.stdout).expect("json");
        if resource.starts_with("virtualmachineclusterinstancetypes") {
            assert_eq!(got["spec"]["cpu"]["guest"], 1);
            assert_eq!(got["spec"]["memory"]["guest"], "256Mi");
        } else {
            assert_eq!(got["spec"]["cpu"]["preferredCPUTopology"], "spread");
        }
    }

    // kubectl plugin: `kubectl virt` runs us under the name kubectl-virt, the same way.
    let bin = env._tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let (ok, out, err) = env
        .run(&["install-plugin", "--dir", bin.to_str().expect("path")])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("kubectl-virt"), "{out}");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = std::process::Command::new(KUBECTL)
        .args(["virt", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .args(["pause", "vmi", "testvm"])
        .env("PATH", &path)
        .output()
        .expect("kubectl virt");
    assert!(
        plugin.status.success(),
        "{}",
        String::from_utf8_lossy(&plugin.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&plugin.stdout).trim(),
        "VMI testvm was scheduled to pause"
    );
    let help = std::process::Command::new(KUBECTL)
        .args(["virt", "--help"])
        .env("PATH", &path)
        .output()
        .expect("kubectl virt --help");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl virt"),
        "{}",
        String::from_utf8_lossy(&help.stdout)
    );
}

/// A dropbear sshd on a loopback port, killed when dropped.
struct Sshd {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd() -> Sshd {
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("host_key");
    let made = std::process::Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&key)
        .output()
        .expect("dropbearkey (scripts/setup installs dropbear-bin)");
    assert!(made.status.success());
    // A free port: bound, released, then taken by dropbear (retried if someone else took it).
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = std::process::Command::new("dropbear")
            .args(["-F", "-E", "-s", "-r"])
            .arg(&key)
            .arg("-p")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-P")
            .arg(dir.path().join("pid"))
            .stderr(Stdio::null())
            .spawn()
            .expect("dropbear");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Sshd {
                    child,
                    port,
                    _dir: dir,
                };
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("dropbear did not start");
}

/// `virtctl ssh` and `virtctl scp` run the real OpenSSH client with `virtctl port-forward
/// --stdio` as its ProxyCommand, through the API server to "the guest's" sshd: the SSH key
/// exchange completes over the tunnel (host key seen), and the login is refused as intended
/// (no credentials are offered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_and_scp_through_the_port_forward_proxy_command() {
    let env = Env::start().await;
    let sshd = sshd();
    *env.backend.sshd.lock().expect("lock") = Some(sshd.port);
    let no_auth = [
        "-t",
        "-v",
        "-t",
        "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        "-t",
        "-o PubkeyAuthentication=no -o PasswordAuthentication=no",
        "-t",
        "-o KbdInteractiveAuthentication=no -o BatchMode=yes",
    ];
    let mut args = vec!["ssh", "nobody@vmi/testvm/ns3"];
    args.extend(no_auth);
    args.extend(["-c", "true"]);
    let (ok, _, err) = env.run(&args).await;
    assert!(!ok, "no login can succeed without credentials");
    assert!(err.contains("remote software version dropbear"), "{err}");
    assert!(err.contains("Server host key: ssh-ed25519"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        err.contains("port-forward --stdio=true vmi/testvm/ns3 22"),
        "{err}"
    );
    let pf = env.streams().pop().expect("a port-forward stream");
    assert_eq!(
        pf.path,
        "/apis/subresources.kubevirt.io/v1/namespaces/ns3/virtualmachineinstances/testvm/portforward/22/tcp"
    );
    assert_eq!(pf.protocol, "plain.kubevirt.io");
    assert!(
        pf.received.starts_with(b"SSH-2.0-OpenSSH"),
        "{:?}",
        String::from_utf8_lossy(&pf.received[..20.min(pf.received.len())])
    );

    let mut args = vec!["-n", "ns4", "scp"];
    args.extend(no_auth);
    let dest = env._tmp.path().join("copied");
    let dest = dest.to_str().expect("path").to_string();
    args.extend(["nobody@vm/testvm:/etc/hostname", dest.as_str()]);
    let (ok, _, err) = env.run(&args).await;
    assert!(!ok);
    assert!(err.contains("remote software version dropbear"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    let pf = env.streams().pop().expect("a port-forward stream");
    assert_eq!(
        pf.path,
        "/apis/subresources.kubevirt.io/v1/namespaces/ns4/virtualmachines/testvm/portforward/22/tcp"
    );
}

/// On a terminal the console switches it to raw mode (no echo, no line editing, so Ctrl+]
/// arrives as a byte) and restores it on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_raw_terminal_is_restored() {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    let env = Env::start().await;
    let pty = nix::pty::openpty(None, None).expect("pty");
    let before = tcgetattr(&pty.slave).expect("termios");
    assert!(
        before
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    );
    let slave = pty.slave.try_clone().expect("dup");
    let mut child = env
        .command(&["console", "testvm"])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = collect(child.stdout.take().expect("stdout"));
    let err = collect(child.stderr.take().expect("stderr"));
    wait_for("greeting", &out, "hello from console 1").await;
    wait_for("banner", &err, "Ctrl+5 to exit console.\r\n").await;
    let during = tcgetattr(&pty.slave).expect("termios");
    assert!(
        !during
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
    );
    let mut master = std::fs::File::from(pty.master);
    std::io::Write::write_all(&mut master, b"pwd\x1d").expect("type");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("Ctrl+] on the terminal ends the console")
        .expect("status");
    assert!(status.success());
    let after = tcgetattr(&pty.slave).expect("termios");
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
    wait_until("typed bytes reach the console", || {
        env.streams().first().is_some_and(|s| s.received == b"pwd")
    })
    .await;

    // SIGTERM while connected: the terminal is restored too.
    let mut child = env
        .command(&["console", "testvm"])
        .stdin(Stdio::from(pty.slave.try_clone().expect("dup")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let out = collect(child.stdout.take().expect("stdout"));
    wait_for("greeting", &out, "hello from console 2").await;
    wait_until("raw mode", || {
        tcgetattr(&pty.slave).is_ok_and(|t| !t.local_flags.contains(LocalFlags::ICANON))
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("SIGTERM ends the console")
        .expect("status");
    let after = tcgetattr(&pty.slave).expect("termios");
    assert_eq!(after.local_flags, before.local_flags);
}

/// Without --proxy-only, vnc starts the viewer on its local port (here a script standing in
/// for TigerVNC's vncviewer, given as --vnc-path): the viewer's bytes reach the VMI's VNC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_runs_the_viewer() {
    let env = Env::start().await;
    let dir = env._tmp.path();
    let viewer = dir.join("vncviewer");
    let log = dir.join("viewer.log");
    std::fs::write(
        &viewer,
        format!(
            "#!/bin/bash\nset -e\nhost=${{1%:*}}; port=${{1##*:}}\nexec 3<>/dev/tcp/$host/$port\nread -r line <&3\necho \"$1 $line\" > {}\nprintf 'viewer-hello' >&3\nsleep 1\n",
            log.display()
        ),
    )
    .expect("viewer");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&viewer, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (_, _, err) = env
        .run(&[
            "vnc",
            "testvm",
            "--vnc-type",
            "tiger",
            "--vnc-path",
            viewer.to_str().expect("path"),
        ])
        .await;
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("viewer ran ({e}): {err}"));
    assert!(text.starts_with("127.0.0.1:"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("connected default/virtualmachineinstances/testvm/vnc"),
        "{text}"
    );
    wait_until("viewer bytes reach the VMI", || {
        env.streams()
            .first()
            .is_some_and(|s| s.received == b"viewer-hello")
    })
    .await;
}

/// The kubeconfig is found and read as kubectl reads it: KUBECONFIG, the current context's
/// namespace, --context, and -n over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_contexts_and_namespaces() {
    let env = Env::start().await;
    let mut kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).expect("kubeconfig");
    let current = kc.current_context.clone().expect("current context");
    let mut named = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .cloned()
        .expect("context");
    if let Some(c) = named.context.as_mut() {
        c.namespace = Some("ns9".into());
    }
    kc.contexts.retain(|c| c.name != current);
    kc.contexts.push(named.clone());
    let mut other = named;
    other.name = "other".into();
    if let Some(c) = other.context.as_mut() {
        c.namespace = Some("ns10".into());
    }
    kc.contexts.push(other);
    let path = env._tmp.path().join("contexts.kubeconfig");
    std::fs::write(&path, serde_saphyr::to_string(&kc).expect("yaml")).expect("write");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_virtctl"))
            .args(args)
            .env("KUBECONFIG", &path)
            .env("HOME", env._tmp.path())
            .output()
            .expect("virtctl")
    };
    for (args, ns) in [
        (vec!["pause", "vmi", "a"], "ns9"),
        (vec!["--context", "other", "pause", "vmi", "b"], "ns10"),
        (
            vec!["--context", "other", "-n", "ns11", "pause", "vmi", "c"],
            "ns11",
        ),
    ] {
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let puts = env.backend.puts.lock().expect("lock").clone();
        let last = puts.last().expect("a PUT").0.clone();
        assert!(
            last.starts_with(&format!("{ns}/")),
            "{args:?} went to {last}"
        );
    }
}

/// What the demo does: virtctl → API server → (aggregation) → our virt-api, with the
/// kubeconfig's client certificate; start/stop change the VM, version reaches virt-api.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_through_the_api_server_to_virt_api() {
    let env = Env::start_with(true).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/testvm.yaml"
    ))
    .expect("example");
    let vm: Value = serde_saphyr::from_str(&text).expect("yaml");
    create(
        &env.client,
        &resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
        Some("default"),
        vm,
    )
    .await;
    let vms: Api<kubevirt_api::v1::VirtualMachine> = Api::namespaced(env.client.clone(), "default");
    let (ok, out, err) = env.run(&["start", "testvm"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "VM testvm was scheduled to start");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Always")
    );
    let (ok, out, err) = env.run(&["stop", "testvm"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "VM testvm was scheduled to stop");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Halted")
    );
    let (ok, out, err) = env.run(&["version"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Server Version: v"), "{out}");
}
