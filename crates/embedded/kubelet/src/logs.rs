//! The kubelet's HTTPS endpoint on 127.0.0.1, as a real kubelet serves it to the API server:
//! `GET /containerLogs/<namespace>/<pod>/<container>` with `follow`, `previous`, `tailLines`,
//! `limitBytes`; and `GET /healthz`. The certificate is self-signed for 127.0.0.1 (the API
//! server proxies to kubelets without verifying them unless told to, as upstream by default).
//! Clients must present a certificate of the cluster CA (see [`serve`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

/// (namespace, name) → uid of the pods this kubelet runs.
pub type PodIndex = Arc<RwLock<HashMap<(String, String), String>>>;

#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
    pub(crate) index: PodIndex,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    #[serde(default)]
    pub follow: Option<String>,
    #[serde(default)]
    pub previous: Option<String>,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    #[serde(default)]
    pub timestamps: Option<String>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
}

/// One record of a CRI-format log: `<time> <stream> <F|P> <content>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    /// `P`: part of a longer line (no line end after the content).
    pub partial: bool,
    pub content: &'a [u8],
}

pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or(&[]);
    Some(Record {
        time,
        stream,
        partial: tag == b"P",
        content,
    })
}

/// How to render a log.
#[derive(Clone, Debug, Default)]
pub struct Render {
    pub timestamps: bool,
    pub since: Option<k8s_openapi::jiff::Timestamp>,
    pub tail: Option<usize>,
}

/// Renders the complete records in `data` as `kubectl logs` shows them; returns the output and
/// how many bytes of `data` were consumed (up to the last complete record).
pub fn render(data: &[u8], o: &Render) -> (Vec<u8>, usize) {
    let consumed = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let mut records: Vec<Record<'_>> = data[..consumed]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_record)
        .filter(|r| {
            o.since.is_none_or(|since| {
                r.time
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .is_ok_and(|t| t >= since)
            })
        })
        .collect();
    if let Some(n) = o.tail {
        // Lines, not records: a line is its P records and the F that ends it.
        let mut lines = 0;
        let mut start = records.len();
        for (i, r) in records.iter().enumerate().rev() {
            if !r.partial {
                if lines == n {
                    break;
                }
                lines += 1;
            }
            start = i;
        }
        records.drain(..start);
    }
    let mut out = Vec::new();
    for r in records {
        if o.timestamps {
            out.extend_from_slice(r.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.content);
        if !r.partial {
            out.push(b'\n');
        }
    }
    (out, consumed)
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | ""))
}

fn text(code: StatusCode, msg: String) -> Response {
    (code, msg).into_response()
}

/// Has the container's current attempt exited?
fn finished(root: &Path, uid: &str, container: &str) -> bool {
    let pod = root.join("pods").join(uid);
    match crate::runtime::attempts(&pod, container).last() {
        Some(a) => crate::runtime::attempt_dir(&pod, container, *a)
            .join(crate::shim::EXITED)
            .exists(),
        None => true,
    }
}

async fn container_logs(
    State(ctx): State<Ctx>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let uid = ctx
        .index
        .read()
        .ok()
        .and_then(|i| i.get(&(ns.clone(), pod.clone())).cloned());
    let Some(uid) = uid else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" in namespace \"{ns}\" not found on this node"),
        );
    };
    let logs = ctx.root.join("pods").join(&uid).join("logs");
    let file = if truthy(&q.previous) {
        logs.join(format!("{container}.previous.log"))
    } else {
        logs.join(format!("{container}.log"))
    };
    let data = match tokio::fs::read(&file).await {
        Ok(d) => d,
        Err(_) if truthy(&q.previous) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        Err(_) => {
            if crate::runtime::attempts(&ctx.root.join("pods").join(&uid), &container).is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                    ),
                );
            }
            Vec::new()
        }
    };
    let since = q
        .since_time
        .as_deref()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .or_else(|| {
            q.since_seconds.and_then(|secs| {
                k8s_openapi::jiff::Timestamp::now()
                    .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
                    .ok()
            })
        });
    let opts = Render {
        timestamps: truthy(&q.timestamps),
        since,
        tail: q.tail_lines,
    };
    let (first, consumed) = render(&data, &opts);
    let limit = q.limit_bytes.unwrap_or(usize::MAX);
    if !truthy(&q.follow) {
        let end = first.len().min(limit);
        return Response::builder()
            .header("content-type", "text/plain")
            .body(Body::from(first[..end].to_vec()))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response".into()));
    }
    // Follow: what is there, then what gets appended, until the container exits.
    let first_len = first.len().min(limit);
    let state = Follow {
        file,
        root: ctx.root.clone(),
        uid,
        container,
        offset: consumed,
        left: limit - first_len,
        first: Some(first[..first_len].to_vec()),
        opts: Render { tail: None, ..opts },
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(f) = st.first.take()
            && !f.is_empty()
        {
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(f)), st));
        }
        loop {
            if st.left == 0 {
                return None;
            }
            let data = tokio::fs::read(&st.file).await.unwrap_or_default();
            if data.len() > st.offset {
                let (out, used) = render(&data[st.offset..], &st.opts);
                st.offset += used;
                if !out.is_empty() {
                    let n = out.len().min(st.left);
                    st.left -= n;
                    return Some((Ok(Bytes::copy_from_slice(&out[..n])), st));
                }
            }
            if finished(&st.root, &st.uid, &st.container) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response".into()))
}

struct Follow {
    file: PathBuf,
    root: PathBuf,
    uid: String,
    container: String,
    offset: usize,
    left: usize,
    first: Option<Vec<u8>>,
    opts: Render,
}

pub fn router(root: PathBuf, index: PodIndex) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", get(crate::exec::handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Ctx { root, index })
}

/// Serves the router over TLS on `listen`; returns the bound address.
/// Serves `router` over TLS on `listen` to anyone on the loopback; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    serve_authenticated(listen, router, None).await
}

/// Like [`serve`]; with `client_ca` (PEM), only clients presenting a certificate signed by it
/// are served (the API server proxies with one; so does an admin's kubeconfig).
pub async fn serve_authenticated(
    listen: SocketAddr,
    router: Router,
    client_ca: Option<&str>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(std::io::Error::other)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(c.map_err(std::io::Error::other)?)
                    .map_err(std::io::Error::other)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(std::io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let tls = builder
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let io = hyper_util::rt::TokioIo::new(tls);
                let svc = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(io, svc)
                .await;
            });
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records() {
        let log = b"2026-01-01T00:00:01Z stdout F one\n2026-01-01T00:00:02Z stderr P tw\n\
2026-01-01T00:00:02.5Z stderr F o\n2026-01-01T00:00:03Z stdout F three\n2026-01-01T00:00:04Z stdout F inc";
        let (out, used) = render(log, &Render::default());
        assert_eq!(out, b"one\ntwo\nthree\n");
        assert_eq!(used, log.len() - "2026-01-01T00:00:04Z stdout F inc".len());
        let tail = Render {
            tail: Some(2),
            ..Render::default()
        };
        assert_eq!(render(log, &tail).0, b"two\nthree\n");
        let ts = Render {
            timestamps: true,
            tail: Some(1),
            ..Render::default()
        };
        assert_eq!(render(log, &ts).0, b"2026-01-01T00:00:03Z three\n");
        let since = Render {
            since: "2026-01-01T00:00:02.6Z".parse().ok(),
            ..Render::default()
        };
        assert_eq!(render(log, &since).0, b"three\n");
        assert_eq!(parse_record(b"t s F").map(|r| r.content.len()), Some(0));
    }
}
