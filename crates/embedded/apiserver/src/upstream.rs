//! Outbound HTTPS from the API server: to admission webhooks, to aggregated API servers and to
//! kubelets. One connection per call (everything is on loopback), HTTP/1.1 with upgrades so a
//! proxied websocket or SPDY stream can be spliced through. Failures are described as the
//! real server words them (`dial tcp ...: connect: connection refused`, `context deadline
//! exceeded`, `x509: certificate signed by unknown authority`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How the peer's certificate is checked.
#[derive(Clone)]
pub enum Verify {
    /// Against this CA bundle (PEM), for the given server name.
    Ca(Vec<u8>),
    /// Not at all (kubelets' self-signed serving certificates, `insecureSkipTLSVerify`).
    Insecure,
}

/// A client certificate and key (PEM) the server presents.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Where to connect and what name to expect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The name the certificate must carry (a DNS name or an IP).
    pub server_name: String,
    pub verify: Verify,
    pub client_cert: Option<ClientCert>,
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(t: &Target) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &t.verify {
        Verify::Ca(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| format!("invalid CA bundle: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("invalid CA bundle: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the CA bundle holds no certificate".to_string());
            }
            builder.with_root_certificates(roots)
        }
        Verify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider))),
    };
    let mut cfg = match &t.client_cert {
        Some(cc) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cc.cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(&cc.key_pem).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Go's wording of a TLS failure.
fn tls_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") {
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            .to_string()
    } else if text.contains("NotValidForName") {
        format!(
            "tls: failed to verify certificate: x509: certificate is not valid for the server name ({text})"
        )
    } else {
        format!("tls: {text}")
    }
}

/// An HTTP/1.1 connection over TLS, ready for one request.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

/// Connects (TCP, then TLS) to `t`.
pub async fn connect(t: &Target) -> Result<Conn, String> {
    let cfg = client_config(t)?;
    let tcp = tokio::net::TcpStream::connect(t.addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
            _ => e.to_string(),
        };
        format!("dial tcp {}: {why}", t.addr)
    })?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(t.server_name.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", t.server_name))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(&e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(Conn { sender })
}

impl Conn {
    /// Sends one request; the response body streams.
    pub async fn send(
        mut self,
        req: axum::http::Request<Body>,
    ) -> Result<axum::http::Response<Incoming>, String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())
    }
}

/// POSTs a JSON body and reads the whole answer, all within `timeout`.
pub async fn post_json(
    t: &Target,
    path_and_query: &str,
    body: Vec<u8>,
    timeout: Duration,
    max_body: usize,
) -> Result<(u16, Vec<u8>), String> {
    let host = t.server_name.clone();
    let work = async move {
        let conn = connect(t).await?;
        let req = axum::http::Request::post(path_and_query)
            .header(axum::http::header::HOST, host)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .header(axum::http::header::ACCEPT, "application/json, */*")
            .body(Body::from(body))
            .map_err(|e| e.to_string())?;
        let resp = conn.send(req).await?;
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), max_body)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        Ok((code, bytes.to_vec()))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err("context deadline exceeded".to_string()),
    }
}

/// Splits `https://host[:port]/path?query` into host, port and path-with-query.
pub fn parse_https_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("webhook URL {url:?} is not https"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (h, p) = h
            .split_once(']')
            .ok_or_else(|| format!("invalid host in {url:?}"))?;
        (h.to_string(), p.strip_prefix(':').unwrap_or(""))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), ""),
        }
    };
    if host.is_empty() || host.contains('@') {
        return Err(format!("invalid host in {url:?}"));
    }
    let port = if port.is_empty() {
        443
    } else {
        port.parse()
            .map_err(|_| format!("invalid port in {url:?}"))?
    };
    Ok((host, port, path))
}

/// Resolves a host name (or IP literal) to an address on `port`.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_https_url("https://127.0.0.1:8443/validate?x=1").expect("ok"),
            ("127.0.0.1".into(), 8443, "/validate?x=1".into())
        );
        assert_eq!(
            parse_https_url("https://example.com").expect("ok"),
            ("example.com".into(), 443, "/".into())
        );
        assert_eq!(
            parse_https_url("https://[::1]:9/p").expect("ok"),
            ("::1".into(), 9, "/p".into())
        );
        assert!(parse_https_url("http://127.0.0.1/").is_err());
        assert!(parse_https_url("https://:1/").is_err());
        assert!(parse_https_url("https://h:x/").is_err());
    }
}
