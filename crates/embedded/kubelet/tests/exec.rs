//! `kubectl exec` through the kubelet's `/exec` endpoint (WebSocket, channel protocol v5):
//! stdout, stderr, stdin, the exit status, and the container's namespaces and environment.

mod common;

use std::sync::Arc;

use common::{Cluster, TESTPROG, phase};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs a command through the kubelet; returns (stdout, stderr, status).
async fn exec(
    c: &Cluster,
    pod: &str,
    container: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
) -> (String, String, serde_json::Value) {
    let addr = c.kubelet_addr(0);
    let mut query: Vec<String> = cmd
        .iter()
        .map(|a| format!("command={}", encode(a)))
        .collect();
    query.push("stdout=true".into());
    query.push("stderr=true".into());
    if stdin.is_some() {
        query.push("stdin=true".into());
    }
    let url = format!(
        "wss://{addr}/exec/default/{pod}/{container}?{}",
        query.join("&")
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().expect("header"),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    use rustls::pki_types::pem::PemObject;
    let pki = c.dir.path().join("pki");
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_file_iter(pki.join("admin.crt"))
            .expect("admin.crt")
            .collect::<Result<_, _>>()
            .expect("certificates");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(pki.join("admin.key")).expect("admin.key");
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_client_auth_cert(certs, key)
        .expect("client certificate");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("127.0.0.1".try_into().expect("name"), tcp)
        .await
        .expect("tls");
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("websocket");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("v5.channel.k8s.io")
    );
    if let Some(data) = stdin {
        let mut m = vec![0u8];
        m.extend_from_slice(data);
        ws.send(Message::Binary(m.into())).await.expect("stdin");
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .expect("close stdin");
    }
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), serde_json::Value::Null);
    let mut close_code = None;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Close(frame) = &msg {
            close_code = frame.as_ref().map(|f| u16::from(f.code));
        }
        let Message::Binary(b) = msg else { continue };
        match b.split_first() {
            Some((1, d)) => out.extend_from_slice(d),
            Some((2, d)) => err.extend_from_slice(d),
            Some((3, d)) => status = serde_json::from_slice(d).expect("status json"),
            _ => {}
        }
    }
    // kubectl reports a close without a normal status as an error.
    assert_eq!(close_code, Some(1000));
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_in_a_running_container() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    c.create(json!({"metadata": {"name": "box"}, "spec": {"containers": [{"name": "main", "image": TESTPROG,
        "args": ["hang"], "env": [{"name": "WHO", "value": "inside"}],
        "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
        "volumes": [{"name": "d", "emptyDir": {}}]}}))
    .await;
    let p = c.wait("box", 30, |p| phase(p) == "Running").await;
    let ip = p.status.and_then(|s| s.pod_ip).expect("ip");
    let (out, err, status) = exec(
        &c,
        "box",
        "main",
        &[
            "/bin/sh",
            "-c",
            "echo $WHO; hostname; ip -o -4 addr show eth0; echo oops >&2; touch /data/x",
        ],
        None,
    )
    .await;
    assert_eq!(status["status"], "Success", "{status} {err}");
    assert!(out.starts_with("inside\nbox\n"), "{out}");
    assert!(out.contains(&ip), "{out}");
    let (hosts, _, _) = exec(&c, "box", "main", &["/bin/cat", "/etc/hosts"], None).await;
    assert!(hosts.contains(&format!("{ip}\tbox")), "{hosts}");
    assert_eq!(err.trim(), "oops");
    let (out, _, status) = exec(
        &c,
        "box",
        "main",
        &["/bin/sh", "-c", "cat; ls /data; exit 3"],
        Some(b"from stdin\n"),
    )
    .await;
    assert_eq!(out, "from stdin\nx\n");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

/// virt-handler mounts a containerDisk's disk into the launcher pod's emptyDir on the node after
/// the pod started (upstream's layout); such mounts reach the container (HostToContainer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_made_on_the_node_later_reach_the_container() {
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    c.create(json!({"metadata": {"name": "late"}, "spec": {"containers": [{"name": "main", "image": TESTPROG,
        "args": ["hang"], "volumeMounts": [{"name": "disks", "mountPath": "/var/run/kubevirt/container-disks"}]}],
        "volumes": [{"name": "disks", "emptyDir": {}}]}}))
    .await;
    let p = c.wait("late", 30, |p| phase(p) == "Running").await;
    let uid = p.metadata.uid.expect("uid");
    let empty_dir = c
        .dir
        .path()
        .join("nodes")
        .join(&node)
        .join("kubelet/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/disks");
    let source = c.dir.path().join("disk-source");
    std::fs::create_dir_all(&source).expect("source");
    std::fs::write(source.join("disk.img"), "pretend disk").expect("disk");
    let target = empty_dir.join("disk_0");
    std::fs::create_dir_all(&target).expect("target");
    nix::mount::mount(
        Some(&source),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind mount on the node");
    let (out, err, status) = exec(
        &c,
        "late",
        "main",
        &[
            "/bin/cat",
            "/var/run/kubevirt/container-disks/disk_0/disk.img",
        ],
        None,
    )
    .await;
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    assert_eq!(status["status"], "Success", "{status} {err}");
    assert_eq!(out, "pretend disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_updates_reach_a_running_pod() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"mode": "one"}}))
            .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    c.create(json!({"metadata": {"name": "reader"}, "spec": {"containers": [{"name": "main", "image": TESTPROG,
        "args": ["hang"], "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]}}))
    .await;
    c.wait("reader", 30, |p| phase(p) == "Running").await;
    let (out, _, _) = exec(&c, "reader", "main", &["/bin/cat", "/etc/cfg/mode"], None).await;
    assert_eq!(out, "one");
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "two"}})),
    )
    .await
    .expect("patch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (out, _, _) = exec(&c, "reader", "main", &["/bin/cat", "/etc/cfg/mode"], None).await;
        if out == "two" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the update did not arrive: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
