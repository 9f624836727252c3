//! The API connection (kubeconfig as kubectl reads it) and the websocket streams of
//! `subresources.kubevirt.io` (console, vnc, portforward). The upgrade goes through kube's
//! client, so TLS (CA, client certificates), bearer tokens, exec plugins and proxies are
//! kube's, not ours.

use std::path::PathBuf;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::Error;

/// KubeVirt's websocket subprotocol: raw bytes in binary messages.
pub const PLAIN_PROTOCOL: &str = "plain.kubevirt.io";

/// How to reach the cluster (kubectl's global flags).
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// A connection to the API server.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    /// The same identity without read/write timeouts, for long-lived streams.
    pub streams: kube::Client,
    pub namespace: String,
}

pub async fn cluster(o: &KubeOptions) -> Result<Cluster, Error> {
    let opts = kube::config::KubeConfigOptions {
        context: o.context.clone(),
        ..Default::default()
    };
    let config = match (&o.kubeconfig, &o.context) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Other(format!("read {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::Other(e.to_string()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| Error::Other(e.to_string()))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| Error::Other(e.to_string()))?,
    };
    let namespace = o
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let mut stream_config = config.clone();
    stream_config.read_timeout = None;
    stream_config.write_timeout = None;
    Ok(Cluster {
        client: kube::Client::try_from(config)?,
        streams: kube::Client::try_from(stream_config)?,
        namespace,
    })
}

/// A websocket to a subresource.
pub type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Why a websocket could not be opened: the HTTP status (0 when there was none) and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OpenError {
    pub status: u16,
    pub message: String,
}

/// The message of a Kubernetes Status body, or the body itself.
/// GETs `path_and_query`: the body, or the message of the Status that refused it.
pub async fn get_bytes(cluster: &Cluster, path_and_query: &str) -> Result<Vec<u8>, Error> {
    let request = http::Request::get(path_and_query)
        .body(kube::client::Body::empty())
        .map_err(|e| Error::Other(e.to_string()))?;
    let response = cluster.client.send(request).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    if !status.is_success() {
        return Err(Error::Other(status_message(&bytes)));
    }
    Ok(bytes.to_vec())
}

pub fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// Opens the websocket at `path_and_query` with the `plain.kubevirt.io` subprotocol.
pub async fn open(client: &kube::Client, path_and_query: &str) -> Result<Ws, OpenError> {
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let request = http::Request::get(path_and_query)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(http::header::SEC_WEBSOCKET_KEY, key.as_str())
        .header(http::header::SEC_WEBSOCKET_PROTOCOL, PLAIN_PROTOCOL)
        .body(kube::client::Body::empty())
        .map_err(|e| OpenError {
            status: 0,
            message: e.to_string(),
        })?;
    tracing::debug!(path = path_and_query, "opening websocket");
    let response = client.send(request).await.map_err(|e| OpenError {
        status: 0,
        message: format!("Can't connect to websocket: {e}"),
    })?;
    let status = response.status();
    if status != http::StatusCode::SWITCHING_PROTOCOLS {
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let detail = status_message(&body);
        let message = match status.as_u16() {
            404 if detail.is_empty() => "Virtual Machine not found.".to_string(),
            500 if detail.is_empty() => {
                "Websocket failed due to internal server error.".to_string()
            }
            _ if detail.is_empty() => format!("Websocket failed with http status: {status}"),
            _ => detail,
        };
        return Err(OpenError {
            status: status.as_u16(),
            message,
        });
    }
    let headers = response.headers();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    if headers
        .get(http::header::SEC_WEBSOCKET_ACCEPT)
        .is_none_or(|h| h.as_bytes() != accept.as_bytes())
    {
        return Err(OpenError {
            status: 101,
            message: "websocket handshake: Sec-WebSocket-Accept mismatch".into(),
        });
    }
    // A server may leave the subprotocol out; one that names another is not ours to speak.
    if let Some(p) = headers.get(http::header::SEC_WEBSOCKET_PROTOCOL)
        && p.as_bytes() != PLAIN_PROTOCOL.as_bytes()
    {
        return Err(OpenError {
            status: 101,
            message: format!(
                "websocket handshake: unexpected subprotocol {}",
                String::from_utf8_lossy(p.as_bytes())
            ),
        });
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| OpenError {
        status: 101,
        message: format!("websocket upgrade: {e}"),
    })?;
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// Copies bytes both ways between a websocket and a reader/writer pair until either side
/// ends: reader EOF closes the websocket, a websocket close ends the writer.
pub async fn splice<R, W>(ws: Ws, mut reader: R, mut writer: W) -> Result<(), Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut sink, mut source) = ws.split();
    let up = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                let _ = sink.send(Message::Close(None)).await;
                return Ok::<(), Error>(());
            }
            sink.send(Message::binary(buf[..n].to_vec()))
                .await
                .map_err(|e| Error::Other(format!("websocket: {e}")))?;
        }
    };
    let down = async {
        while let Some(m) = source.next().await {
            match m.map_err(|e| Error::Other(format!("websocket: {e}")))? {
                Message::Binary(b) => writer.write_all(&b).await?,
                Message::Text(t) => writer.write_all(t.as_bytes()).await?,
                Message::Close(_) => break,
                _ => {}
            }
            writer.flush().await?;
        }
        let _ = writer.shutdown().await;
        Ok::<(), Error>(())
    };
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut up => {
            // Our side is done sending; let what the far side still has arrive, briefly.
            r?;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut down).await;
            Ok(())
        }
        r = &mut down => r,
    }
}
