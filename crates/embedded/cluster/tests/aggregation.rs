//! API aggregation: an APIService backed by a Service whose Endpoints point at a test server on
//! loopback. Discovery lists its group, plain requests and websocket streams go through the API
//! server both ways, and the APIService's Available condition follows the backend.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{KUBECTL_133, Server};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const GROUP: &str = "echo.test.kubevirt-rs.io";

fn user_of(h: &HeaderMap) -> String {
    h.get("x-remote-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn discovery() -> Response {
    axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/v1"),
        "resources": [
            {"name": "echoes", "singularName": "echo", "namespaced": true, "kind": "Echo", "verbs": ["get"]},
            {"name": "echoes/stream", "singularName": "", "namespaced": true, "kind": "Echo", "verbs": ["get"]},
        ]}))
    .into_response()
}

async fn echo(headers: HeaderMap) -> Response {
    axum::Json(
        json!({"kind": "Echo", "apiVersion": format!("{GROUP}/v1"), "user": user_of(&headers),
        "authorization": headers.contains_key(header::AUTHORIZATION)}),
    )
    .into_response()
}

/// A websocket that first says who the API server says the caller is, then echoes.
async fn stream(mut req: Request) -> Response {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return (StatusCode::BAD_REQUEST, "not a websocket").into_response();
    };
    let user = user_of(req.headers());
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let _ = ws.send(Message::text(format!("user={user}"))).await;
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
            if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        )
        .body(Body::empty())
        .unwrap_or_default()
}

struct Backend {
    port: u16,
    ca: String,
    task: tokio::task::JoinHandle<()>,
}

async fn start_backend() -> Backend {
    let pki =
        kubevirt_https::SelfSigned::generate("echo-ca", &["echo-api.default.svc"]).expect("pki");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = Router::new()
        .route(&format!("/apis/{GROUP}/v1"), get(discovery))
        .route(
            &format!("/apis/{GROUP}/v1/namespaces/{{ns}}/echoes/{{name}}"),
            get(echo),
        )
        .route(
            &format!("/apis/{GROUP}/v1/namespaces/{{ns}}/echoes/{{name}}/stream"),
            get(stream),
        );
    let task = kubevirt_https::serve(listener, pki.server_config().expect("tls"), router);
    Backend {
        port,
        ca: pki.ca_pem,
        task,
    }
}

fn apply(s: &Server, name: &str, doc: &Value) {
    let path = s.dir.join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).expect("write manifest");
    s.ok(KUBECTL_133, &["apply", "-f", path.to_str().expect("path")]);
}

/// A TLS connection to the API server as the admin (the client certificate of the kubeconfig).
async fn admin_tls(s: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pki = s.dir.join("pki");
    let read = |f: &str| std::fs::read(pki.join(f)).expect("pki file");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read("ca.crt")) {
        roots.add(c.expect("ca")).expect("root");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("admin.crt"))
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(&read("admin.key")).expect("key");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(&s.addr)
        .await
        .expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("tls")
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregated_api_with_websocket_streams() {
    let backend = start_backend().await;
    let s = Server::start();
    let k = KUBECTL_133;
    apply(
        &s,
        "svc",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo-api", "namespace": "default"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}),
    );
    apply(
        &s,
        "ep",
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "echo-api", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": backend.port}]}]}),
    );
    use base64::Engine;
    apply(
        &s,
        "apiservice",
        &json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": format!("v1.{GROUP}")},
                "spec": {"group": GROUP, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                         "service": {"namespace": "default", "name": "echo-api"},
                         "caBundle": base64::engine::general_purpose::STANDARD.encode(&backend.ca)}}),
    );
    s.ok(
        k,
        &[
            "wait",
            "--for=condition=Available",
            "--timeout=30s",
            &format!("apiservice/v1.{GROUP}"),
        ],
    );

    // Discovery lists the group (legacy and aggregated), kubectl finds its resources.
    let versions = s.ok(k, &["api-versions"]);
    assert!(versions.contains(&format!("{GROUP}/v1")), "{versions}");
    let resources = s.ok(k, &["api-resources", "--api-group", GROUP]);
    assert!(resources.contains("echoes"), "{resources}");
    let group: Value =
        serde_json::from_str(&s.ok(k, &["get", "--raw", &format!("/apis/{GROUP}")])).expect("json");
    assert_eq!(group["preferredVersion"]["version"], "v1");

    // A plain request: proxied with the caller's identity, without its credentials.
    let got: Value = serde_json::from_str(&s.ok(
        k,
        &[
            "get",
            "--raw",
            &format!("/apis/{GROUP}/v1/namespaces/default/echoes/e1"),
        ],
    ))
    .expect("json");
    assert_eq!(got["kind"], "Echo");
    assert_eq!(got["user"], "admin");
    assert_eq!(got["authorization"], false);

    // A websocket through the API server: bytes come back both ways.
    let tls = admin_tls(&s).await;
    let url = format!(
        "wss://{}/apis/{GROUP}/v1/namespaces/default/echoes/e1/stream",
        s.addr
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("websocket through the API server");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let first = ws.next().await.expect("message").expect("ok");
    assert_eq!(first, Message::text("user=admin"));
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("ok"),
        Message::text("hello")
    );
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.expect("send");
    match ws.next().await.expect("echo").expect("ok") {
        Message::Binary(b) => assert!(b.as_ref() == big.as_slice(), "binary echo differs"),
        other => panic!("unexpected {other:?}"),
    }
    ws.close(None).await.expect("close");

    // The backend goes away: the APIService turns unavailable and requests get 503.
    backend.task.abort();
    let _ = backend.task.await;
    wait_for("Available=False", || {
        let out = s.kubectl(
            k,
            &[
                "get",
                "apiservice",
                &format!("v1.{GROUP}"),
                "-o",
                "jsonpath={.status.conditions[0].status}",
            ],
        );
        String::from_utf8_lossy(&out.stdout) == "False"
    });
    let table = s.ok(k, &["get", "apiservices"]);
    assert!(
        table.contains("SERVICE")
            && table.contains("default/echo-api")
            && table.contains("False (FailedDiscoveryCheck)"),
        "{table}"
    );
    let err = s.fails(
        k,
        &[
            "get",
            "--raw",
            &format!("/apis/{GROUP}/v1/namespaces/default/echoes/e1"),
        ],
    );
    assert!(
        err.contains("ServiceUnavailable") || err.contains("503"),
        "{err}"
    );
}
