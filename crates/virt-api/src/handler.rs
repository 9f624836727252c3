//! Reaching the virt-handler of a VMI's node (I/O, with the address choice pure).
//!
//! virt-handler publishes its console server as `host:port` in the Node annotation
//! [`CONSOLE_ADDRESS_ANNOTATION`] (it may be a plain process listening on loopback, or several
//! handlers on one machine on distinct ports); without it we fall back to upstream's lookup:
//! the pod labelled `kubevirt.io=virt-handler` in the `kubevirt` namespace on that node, at
//! its pod IP and port 8186. The connection is mutual TLS: both sides' certificates come from
//! the cluster CA.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// The Node annotation virt-handler publishes its console server address in.
pub const CONSOLE_ADDRESS_ANNOTATION: &str = "kubevirt.io/virt-handler-console-address";
/// Upstream's console server port, for the pod fallback.
pub const DEFAULT_PORT: u16 = 8186;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("looking up the handler: {0}")]
    Kube(#[from] kube::Error),
    #[error("no virt-handler found on node {0}")]
    NoHandler(String),
    #[error("connecting to virt-handler at {0}: {1}")]
    Connect(SocketAddr, String),
}

/// The TLS client side towards virt-handlers: the cluster CA as the only root and a client
/// certificate minted from it.
pub fn client_tls(ca_pem: &str, ca_key_pem: &str) -> Result<Arc<rustls::ClientConfig>, Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "virt-api");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).filter_map(Result::ok) {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The handler address from the Node's annotation (pure).
pub fn address_of_node(node: &Node) -> Option<SocketAddr> {
    node.metadata
        .annotations
        .as_ref()?
        .get(CONSOLE_ADDRESS_ANNOTATION)?
        .parse()
        .ok()
}

/// The handler address from upstream's virt-handler pods (pure): the running one on `node`.
pub fn address_of_pods(pods: &[Pod], node: &str) -> Option<SocketAddr> {
    pods.iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .next()
}

/// Where the virt-handler of `node` serves.
pub async fn locate(client: &kube::Client, node: &str) -> Result<SocketAddr, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    if let Ok(Some(n)) = nodes.get_opt(node).await
        && let Some(a) = address_of_node(&n)
    {
        return Ok(a);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kubevirt");
    let list = pods
        .list(&ListParams::default().labels("kubevirt.io=virt-handler"))
        .await?;
    address_of_pods(&list.items, node).ok_or_else(|| Error::NoHandler(node.into()))
}

/// A mutual-TLS connection to the handler at `addr`, as an HTTP/1.1 client.
pub async fn connect(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<axum::body::Body>, Error> {
    let err = |e: String| Error::Connect(addr, e);
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| err("timed out".into()))?
    .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| err(e.to_string()))?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| err(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "handler connection ended");
        }
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_annotation_then_pods() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1",
            "annotations": {CONSOLE_ADDRESS_ANNOTATION: "127.0.0.1:40123"}}}))
        .expect("node");
        assert_eq!(address_of_node(&node), "127.0.0.1:40123".parse().ok());
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node");
        assert_eq!(address_of_node(&bare), None);
        let pods: Vec<Pod> = serde_json::from_value(json!([
            {"metadata": {"name": "a"}, "spec": {"nodeName": "n2", "containers": []}, "status": {"podIP": "10.0.0.2"}},
            {"metadata": {"name": "b"}, "spec": {"nodeName": "n1", "containers": []}, "status": {"podIP": "10.0.0.1"}},
        ]))
        .expect("pods");
        assert_eq!(address_of_pods(&pods, "n1"), "10.0.0.1:8186".parse().ok());
        assert_eq!(address_of_pods(&pods, "n3"), None);
    }
}
