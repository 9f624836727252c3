//! The kubelet's HTTPS endpoint on 127.0.0.1, as a real kubelet serves it to the API server:
//! `GET /containerLogs/<namespace>/<pod>/<container>` with `follow`, `previous`, `tailLines`,
//! `limitBytes`; and `GET /healthz`. The certificate is self-signed for 127.0.0.1 (the API
//! server proxies to kubelets without verifying them unless told to, as upstream by default).

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
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | ""))
}

/// The last `n` lines of `data`.
pub fn tail(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut count = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == n {
                return &data[i + 1..];
            }
        }
    }
    data
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
    let start = match q.tail_lines {
        Some(n) => data.len() - tail(&data, n).len(),
        None => 0,
    };
    let limit = q.limit_bytes.unwrap_or(usize::MAX);
    if !truthy(&q.follow) {
        let end = data.len().min(start.saturating_add(limit));
        return Response::builder()
            .header("content-type", "text/plain")
            .body(Body::from(data[start..end].to_vec()))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response".into()));
    }
    // Follow: what is there, then what gets appended, until the container exits.
    let state = Follow {
        file,
        root: ctx.root.clone(),
        uid,
        container,
        offset: start,
        left: limit,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.left == 0 {
                return None;
            }
            let data = tokio::fs::read(&st.file).await.unwrap_or_default();
            if data.len() > st.offset {
                let end = data.len().min(st.offset.saturating_add(st.left));
                let chunk = Bytes::copy_from_slice(&data[st.offset..end]);
                st.left -= end - st.offset;
                st.offset = end;
                return Some((Ok::<Bytes, std::io::Error>(chunk), st));
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
}

pub fn router(root: PathBuf, index: PodIndex) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", get(crate::exec::handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Ctx { root, index })
}

/// Serves the router over TLS on `listen`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(std::io::Error::other)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
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
    fn tails() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail(b"a\n", 0), b"");
    }
}
