//! virt-api answers an AdmissionReview over HTTPS with a certificate its CA signed.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, ca_pem: &str, path: &str, body: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA parses")).expect("CA added");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS verifies against the CA");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.expect("writes");
    let mut out = String::new();
    tls.read_to_string(&mut out).await.ok();
    out
}

#[tokio::test]
async fn serves_admission_over_tls() {
    let pki =
        kubevirt_https::SelfSigned::generate("test-ca", &["localhost", "127.0.0.1"]).expect("pki");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let task = kubevirt_https::serve(
        listener,
        pki.server_config().expect("tls"),
        virt_api::server::router(Arc::new(virt_api::server::Shared::default())),
    );
    let health = post(addr, &pki.ca_pem, "/healthz", "").await;
    assert!(
        health.starts_with("HTTP/1.1 405"),
        "healthz is GET only: {health}"
    );
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
            "name": "x", "namespace": "default", "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "x"},
                       "spec": {"runStrategy": "Sometimes", "template": {"spec": {"domain": {"devices": {}}}}}},
            "dryRun": false
        }
    });
    let out = post(
        addr,
        &pki.ca_pem,
        "/virtualmachines-validate",
        &review.to_string(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(v["response"]["uid"], "u1");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(
        v["response"]["status"]["message"],
        "Invalid RunStrategy (Sometimes)"
    );
    task.abort();
}
