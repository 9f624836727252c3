//! The console server (upstream: virt-handler's server on port 8186): what virt-api relays
//! for a VMI on this node, over mutual TLS (the client must present a certificate signed by
//! the cluster CA; ours is minted from the same CA at start).
//!
//! | path under `/v1/namespaces/{ns}/virtualmachineinstances/{name}/` | verb | what |
//! | --- | --- | --- |
//! | `console` | GET (websocket, `plain.kubevirt.io`) | the launcher's serial console socket |
//! | `vnc` | GET (websocket, `plain.kubevirt.io`) | the launcher's VNC socket |
//! | `vnc/screenshot?moveCursor=` | GET | one frame read over RFB from that socket, as `image/png` |
//! | `pause`, `unpause` | PUT | launcher gRPC `Pause`/`Unpause` |
//! | `softreboot` | PUT | launcher gRPC `SoftReboot` (the agent when AgentConnected, else ACPI) |
//! | `guestosinfo`, `userlist`, `filesystemlist` | GET | launcher gRPC `GetGuestInfo`, `GetGuestUsers`, `GetGuestFilesystems` (upstream's bodies) |
//! | `portforward/{port}[/{protocol}]` | GET (websocket) | TCP to the pod address, from the pod's network namespace |
//!
//! The VMI's launcher pod is the newest pod labelled `kubevirt.io/created-by=<vmi uid>` on
//! this node; its sockets are in `<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~empty-dir/sockets/`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::v1::DomainRequest;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

use crate::controller::{addressable, launcher_socket, pick_pod};

/// The websocket subprotocol of console and VNC streams (raw bytes in binary messages).
pub const PLAIN_PROTOCOL: &str = "plain.kubevirt.io";
/// Upstream's console server port.
pub const DEFAULT_PORT: u16 = 8186;
/// The annotation on the Node where this handler publishes its console server (`host:port`);
/// virt-api dials it, falling back to upstream's lookup of the virt-handler pod on the node.
pub const CONSOLE_ADDRESS_ANNOTATION: &str = "kubevirt.io/virt-handler-console-address";
/// The serial console socket in the launcher's sockets directory.
pub const SERIAL_SOCKET: &str = "virt-serial0";
/// The VNC socket in the launcher's sockets directory.
pub const VNC_SOCKET: &str = "virt-vnc";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("reading {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
}

/// A certificate chain and key minted from a CA.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Mints a leaf certificate for `names` (DNS names or IPs) signed by the CA, for both server
/// and client authentication (the same identity serves and dials in this mutual TLS).
pub fn mint(ca_pem: &str, ca_key_pem: &str, cn: &str, names: &[String]) -> Result<Leaf, Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let (ips, dns): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let mut params = CertificateParams::new(dns.into_iter().cloned().collect::<Vec<_>>())?;
    for ip in ips {
        if let Ok(addr) = ip.parse() {
            params.subject_alt_names.push(SanType::IpAddress(addr));
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Leaf {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// A new self-signed CA (certificate and key, PEM): for tests and for a node without a cluster CA.
pub fn new_ca(name: &str) -> Result<(String, String), Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA certificates of a PEM bundle as trust roots.
pub fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, Error> {
    let mut store = rustls::RootCertStore::empty();
    let mut reader = std::io::BufReader::new(ca_pem.as_bytes());
    for cert in rustls_pemfile_certs(&mut reader) {
        store.add(cert)?;
    }
    Ok(store)
}

fn rustls_pemfile_certs(reader: &mut dyn std::io::BufRead) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut text = Vec::new();
    let _ = reader.read_to_end(&mut text);
    CertificateDer::pem_slice_iter(&text)
        .filter_map(Result::ok)
        .collect()
}

/// The server side of the mutual TLS: our leaf, and clients must present one from the CA.
pub fn server_tls(ca_pem: &str, leaf: Leaf) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| Error::Verifier(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(leaf.chain, leaf.key)?;
    // HTTP/1.1 only: websockets are upgrades of HTTP/1.1 requests.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What the routes share.
pub struct Shared {
    pub client: kube::Client,
    pub node: String,
    pub kubelet_root: PathBuf,
}

/// The console server's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    const BASE: &str = "/v1/namespaces/{namespace}/virtualmachineinstances/{name}";
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(&format!("{BASE}/console"), get(console))
        .route(&format!("{BASE}/vnc"), get(vnc))
        .route(&format!("{BASE}/vnc/screenshot"), get(screenshot))
        .route(&format!("{BASE}/pause"), put(pause))
        .route(&format!("{BASE}/unpause"), put(unpause))
        .route(&format!("{BASE}/softreboot"), put(soft_reboot))
        .route(&format!("{BASE}/portforward/{{port}}"), get(portforward))
        .route(
            &format!("{BASE}/portforward/{{port}}/{{protocol}}"),
            get(portforward),
        )
        .route(&format!("{BASE}/guestosinfo"), get(guest_agent))
        .route(&format!("{BASE}/userlist"), get(guest_agent))
        .route(&format!("{BASE}/filesystemlist"), get(guest_agent))
        .with_state(shared)
}

fn plain(code: StatusCode, message: impl Into<String>) -> Response {
    (code, message.into()).into_response()
}

/// The VMI's launcher pod on this node and the VMI's uid, or why not.
async fn launcher_pod(s: &Shared, ns: &str, name: &str) -> Result<(Pod, String), Response> {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(s.client.clone(), ns);
    let vmi = match vmis.get_opt(name).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(plain(
                StatusCode::NOT_FOUND,
                format!("virtualmachineinstance {ns}/{name} not found"),
            ));
        }
        Err(e) => return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let uid = vmi.uid().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubevirt.io/created-by={uid}"));
    let list = match pods.list(&lp).await {
        Ok(l) => l.items,
        Err(e) => return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    match pick_pod(&list, &s.node) {
        Some(p) => Ok((p.clone(), uid)),
        None => Err(plain(
            StatusCode::BAD_REQUEST,
            format!("no launcher pod of {ns}/{name} on node {}", s.node),
        )),
    }
}

/// The launcher's sockets directory for the VMI and the VMI's uid, or why not.
async fn sockets_dir(s: &Shared, ns: &str, name: &str) -> Result<(PathBuf, String), Response> {
    let (pod, uid) = launcher_pod(s, ns, name).await?;
    let pod_uid = pod.metadata.uid.unwrap_or_default();
    let sock = launcher_socket(&s.kubelet_root, &pod_uid);
    let dir = sock.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, uid))
}

async fn console(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    stream(&s, &ns, &name, SERIAL_SOCKET, req).await
}

async fn vnc(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    stream(&s, &ns, &name, VNC_SOCKET, req).await
}

/// The query of `vnc/screenshot`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScreenshotQuery {
    #[serde(default)]
    move_cursor: Option<String>,
}

/// How long a screenshot may take (QEMU answers in milliseconds; a wedged VNC server must not
/// hold the request forever).
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(20);

async fn screenshot(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ScreenshotQuery>,
) -> Response {
    let unix = match socket_of(&s, &ns, &name, VNC_SOCKET).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let move_cursor = q.move_cursor.as_deref() == Some("true");
    let frame = match tokio::time::timeout(
        SCREENSHOT_TIMEOUT,
        crate::screenshot::capture(unix, move_cursor),
    )
    .await
    {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => {
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the VNC server of {ns}/{name} sent no frame in {SCREENSHOT_TIMEOUT:?}"),
            );
        }
    };
    match crate::screenshot::png(&frame) {
        Ok(png) => {
            tracing::info!(namespace = %ns, name = %name, width = frame.width, height = frame.height, bytes = png.len(), "vnc screenshot");
            (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], png).into_response()
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The `Sec-WebSocket-Accept` and protocol of a websocket upgrade request, or why it is not one.
pub fn websocket_accept(h: &HeaderMap) -> Result<(String, Option<String>), String> {
    let upgrade = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| upgrade) else {
        return Err("expected a websocket upgrade".into());
    };
    let offered: Vec<String> = h
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let protocol = offered.into_iter().find(|p| p == PLAIN_PROTOCOL);
    Ok((derive_accept_key(key.as_bytes()), protocol))
}

/// A connection to `socket` in the launcher's sockets directory of the VMI, or why not (a
/// missing socket is 400: the VMI has no such device, or its launcher is not up).
async fn socket_of(
    s: &Shared,
    ns: &str,
    name: &str,
    socket: &str,
) -> Result<tokio::net::UnixStream, Response> {
    let (dir, _uid) = sockets_dir(s, ns, name).await?;
    let path = dir.join(socket);
    let (addr, dir_handle) = addressable(&path).map_err(|e| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", path.display()),
        )
    })?;
    let unix = tokio::net::UnixStream::connect(&addr).await.map_err(|e| {
        tracing::info!(namespace = %ns, name = %name, socket = %path.display(), error = %e, "stream socket not reachable");
        plain(
            StatusCode::BAD_REQUEST,
            format!("connecting to {socket} of {ns}/{name}: {e}"),
        )
    })?;
    drop(dir_handle);
    Ok(unix)
}

async fn stream(s: &Shared, ns: &str, name: &str, socket: &'static str, req: Request) -> Response {
    let (accept, protocol) = match websocket_accept(req.headers()) {
        Ok(x) => x,
        Err(m) => return plain(StatusCode::BAD_REQUEST, m),
    };
    // Connect before answering, so a missing socket is an error status, not a dead stream.
    let unix = match socket_of(s, ns, name, socket).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    switch(req, accept, protocol, unix, format!("{ns}/{name} {socket}"))
}

/// Answers the websocket upgrade and relays between it and `io` once switched.
fn switch<T>(
    mut req: Request,
    accept: String,
    protocol: Option<String>,
    io: T,
    what: String,
) -> Response
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let (up, down) = relay(ws, io).await;
        tracing::info!(stream = %what, up, down, "stream ended");
    });
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    r
}

async fn portforward(
    State(s): State<Arc<Shared>>,
    UrlPath(params): UrlPath<Vec<(String, String)>>,
    req: Request,
) -> Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(ns), Some(name), Some(port)) = (get("namespace"), get("name"), get("port")) else {
        return plain(StatusCode::BAD_REQUEST, "missing path parameters");
    };
    let protocol = get("protocol").unwrap_or_else(|| "tcp".into());
    let Ok(port) = port.parse::<u16>() else {
        return plain(StatusCode::BAD_REQUEST, format!("invalid port {port}"));
    };
    let (accept, ws_protocol) = match websocket_accept(req.headers()) {
        Ok(x) => x,
        Err(m) => return plain(StatusCode::BAD_REQUEST, m),
    };
    let pod = match launcher_pod(&s, &ns, &name).await {
        Ok((p, _)) => p,
        Err(r) => return r,
    };
    let plan = match crate::portforward::plan(&pod, port, &protocol) {
        Ok(p) => p,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let tcp = match crate::portforward::connect(&plan).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(namespace = %ns, name = %name, port, error = %e, "port-forward connect failed");
            return plain(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    switch(
        req,
        accept,
        ws_protocol,
        tcp,
        format!("{ns}/{name} port {port}"),
    )
}

/// Copies websocket messages to the socket and socket bytes to binary messages until either
/// side ends; returns the bytes sent each way (to the socket, from it).
pub async fn relay<S, T>(ws: tokio_tungstenite::WebSocketStream<S>, io: T) -> (u64, u64)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut sink, mut source) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut up = 0u64;
    let mut down = 0u64;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    up += b.len() as u64;
                    if wr.write_all(&b).await.is_err() { break; }
                }
                Some(Ok(Message::Text(t))) => {
                    up += t.len() as u64;
                    if wr.write_all(t.as_bytes()).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    down += n as u64;
                    if sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() { break; }
                }
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    (up, down)
}

async fn launcher(
    s: &Shared,
    ns: &str,
    name: &str,
) -> Result<
    (
        launcher_proto::v1::launcher_client::LauncherClient<tonic::transport::Channel>,
        String,
        Option<std::fs::File>,
    ),
    Response,
> {
    let (dir, uid) = sockets_dir(s, ns, name).await?;
    let sock = dir.join(launcher_proto::SOCKET_NAME);
    let (addr, handle) =
        addressable(&sock).map_err(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(5), launcher_proto::connect(&addr)).await {
        Ok(Ok(c)) => Ok((c, uid, handle)),
        Ok(Err(e)) => Err(plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(_) => Err(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "connecting to the launcher timed out",
        )),
    }
}

async fn pause(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    pause_or_unpause(&s, &ns, &name, true).await
}

async fn unpause(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    pause_or_unpause(&s, &ns, &name, false).await
}

async fn pause_or_unpause(s: &Shared, ns: &str, name: &str, pause: bool) -> Response {
    let (mut client, uid, _dir) = match launcher(s, ns, name).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = DomainRequest { uid };
    let r = if pause {
        client.pause(req).await
    } else {
        client.unpause(req).await
    };
    tracing::info!(namespace = %ns, name = %name, pause, ok = r.is_ok(), "pause request");
    match r {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

async fn soft_reboot(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(s.client.clone(), &ns);
    let guest_agent = match vmis.get_opt(&name).await {
        Ok(v) => v
            .and_then(|v| v.status)
            .is_some_and(|st| st.condition_is_true("AgentConnected")),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (mut client, uid, _dir) = match launcher(&s, &ns, &name).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = client
        .soft_reboot(launcher_proto::v1::SoftRebootRequest { uid, guest_agent })
        .await;
    tracing::info!(namespace = %ns, name = %name, guest_agent, ok = r.is_ok(), "soft reboot request");
    match r {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// A guest-agent body as JSON, or the launcher's error: 503 when no agent answers (virt-api
/// checks AgentConnected first, so this is an agent that went away meanwhile).
fn agent_reply<T, B: serde::Serialize>(
    r: Result<tonic::Response<T>, tonic::Status>,
    body: impl FnOnce(&T) -> B,
) -> Response {
    match r {
        Ok(reply) => match serde_json::to_string(&body(reply.get_ref())) {
            Ok(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response(),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Err(e) if e.code() == tonic::Code::Unavailable => {
            plain(StatusCode::SERVICE_UNAVAILABLE, e.message().to_string())
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// `guestosinfo`, `userlist` and `filesystemlist` (the last path segment says which): the
/// launcher's guest-agent query, as upstream's body.
async fn guest_agent(
    State(s): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    uri: axum::http::Uri,
) -> Response {
    let (mut client, uid, _dir) = match launcher(&s, &ns, &name).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = DomainRequest { uid };
    match uri.path().rsplit('/').next() {
        Some("userlist") => agent_reply(
            client.get_guest_users(req).await,
            crate::status::guest_user_list,
        ),
        Some("filesystemlist") => agent_reply(
            client.get_guest_filesystems(req).await,
            crate::status::guest_filesystem_list,
        ),
        _ => agent_reply(
            client.get_guest_info(req).await,
            crate::status::guest_agent_info,
        ),
    }
}

/// Serves the console server on `listener` until the task is aborted.
pub fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) -> tokio::task::JoinHandle<()> {
    kubevirt_https::serve(listener, tls, router(shared))
}

/// The address to publish: the listen address, with an unspecified IP replaced by `advertise`.
pub fn published_address(listen: SocketAddr, advertise: Option<IpAddr>) -> SocketAddr {
    match advertise {
        Some(ip) if listen.ip().is_unspecified() => SocketAddr::new(ip, listen.port()),
        _ => listen,
    }
}

/// The merge patch that publishes the console server's address on the Node.
pub fn publish_patch(addr: SocketAddr) -> serde_json::Value {
    json!({"metadata": {"annotations": {CONSOLE_ADDRESS_ANNOTATION: addr.to_string()}}})
}

/// Publishes the console server's address on the Node (see [`CONSOLE_ADDRESS_ANNOTATION`]).
pub async fn publish(
    client: &kube::Client,
    node: &str,
    addr: SocketAddr,
) -> Result<(), kube::Error> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&publish_patch(addr)),
        )
        .await
        .map(|_| ())
}

/// The node's InternalIP, to publish when listening on every address.
pub async fn node_ip(client: &kube::Client, node: &str) -> Option<IpAddr> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let n = nodes.get_opt(node).await.ok().flatten()?;
    n.status?
        .addresses?
        .into_iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_accept_picks_plain_protocol() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.kubevirt.io, plain.kubevirt.io"),
        );
        let (accept, proto) = websocket_accept(&h).expect("upgrade");
        // RFC 6455's example key and answer.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(proto.as_deref(), Some(PLAIN_PROTOCOL));
        h.remove(header::UPGRADE);
        assert!(websocket_accept(&h).is_err());
    }

    #[test]
    fn published_address_replaces_unspecified() {
        let any: SocketAddr = "0.0.0.0:8186".parse().expect("addr");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        assert_eq!(
            published_address(any, Some(ip)).to_string(),
            "10.0.0.5:8186"
        );
        let lo: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        assert_eq!(published_address(lo, Some(ip)), lo);
        assert_eq!(
            publish_patch(lo)["metadata"]["annotations"][CONSOLE_ADDRESS_ANNOTATION],
            "127.0.0.1:4000"
        );
    }

    #[test]
    fn minted_leaf_serves_mutual_tls() {
        let (ca, key) = new_ca("test-ca").expect("ca");
        let leaf = mint(&ca, &key, "virt-handler", &["127.0.0.1".into()]).expect("leaf");
        server_tls(&ca, leaf).expect("server config");
        assert!(roots(&ca).expect("roots").len() == 1);
    }
}
