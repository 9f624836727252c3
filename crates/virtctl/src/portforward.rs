//! `virtctl port-forward`: local ports (or stdin/stdout with `--stdio`) to ports of a VM's
//! guest through the `portforward` websocket, one websocket per TCP connection (UDP: one per
//! local peer, each message one datagram).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::Error;
use crate::stream::{Cluster, open, splice};
use crate::target::{ForwardedPort, Protocol, Target, portforward_subresource, subresource_path};

fn path(target: &Target, namespace: &str, port: &ForwardedPort) -> String {
    subresource_path(
        target.kind,
        namespace,
        &target.name,
        &portforward_subresource(port.remote, port.protocol),
    )
}

/// stdin/stdout to one port (what ssh's ProxyCommand runs).
pub async fn stdio(cluster: &Cluster, target: &Target, port: &ForwardedPort) -> Result<(), Error> {
    let ns = target.namespace_or(&cluster.namespace).to_string();
    tracing::debug!(namespace = %ns, name = %target.name, port = port.remote, "forwarding stdio");
    let ws = open(&cluster.streams, &path(target, &ns, port))
        .await
        .map_err(|e| Error::Other(e.message))?;
    splice(ws, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Listens on each local port and forwards until interrupted.
pub async fn listen(
    cluster: &Cluster,
    target: &Target,
    ports: &[ForwardedPort],
    address: &str,
) -> Result<(), Error> {
    let ns = target.namespace_or(&cluster.namespace).to_string();
    let mut tasks = Vec::new();
    for port in ports {
        let path = path(target, &ns, port);
        let client = cluster.streams.clone();
        match port.protocol {
            Protocol::Tcp => {
                let listener = tokio::net::TcpListener::bind((address, port.local))
                    .await
                    .map_err(|e| Error::Other(format!("listen {address}:{}: {e}", port.local)))?;
                let local = listener.local_addr()?;
                eprintln!("Forwarding from {local} -> {}", port.remote);
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Ok((conn, peer)) = listener.accept().await else {
                            continue;
                        };
                        let client = client.clone();
                        let path = path.clone();
                        tokio::spawn(async move {
                            match open(&client, &path).await {
                                Ok(ws) => {
                                    let (r, w) = conn.into_split();
                                    if let Err(e) = splice(ws, r, w).await {
                                        tracing::info!(%peer, error = %e, "forwarded connection ended");
                                    }
                                }
                                Err(e) => {
                                    eprintln!("error forwarding {peer}: {}", e.message);
                                }
                            }
                        });
                    }
                }));
            }
            Protocol::Udp => {
                let socket = Arc::new(
                    tokio::net::UdpSocket::bind((address, port.local))
                        .await
                        .map_err(|e| {
                            Error::Other(format!("listen udp {address}:{}: {e}", port.local))
                        })?,
                );
                eprintln!(
                    "Forwarding from udp {} -> {}",
                    socket.local_addr()?,
                    port.remote
                );
                tasks.push(tokio::spawn(udp(socket, client, path)));
            }
        }
    }
    tokio::signal::ctrl_c().await?;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

type Peers = Arc<Mutex<HashMap<SocketAddr, tokio::sync::mpsc::Sender<Vec<u8>>>>>;

async fn udp(socket: Arc<tokio::net::UdpSocket>, client: kube::Client, path: String) {
    let peers: Peers = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let datagram = buf[..n].to_vec();
        let existing = peers.lock().await.get(&peer).cloned();
        let tx = match existing {
            Some(tx) if !tx.is_closed() => tx,
            _ => {
                let ws = match open(&client, &path).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        eprintln!("error forwarding udp {peer}: {}", e.message);
                        continue;
                    }
                };
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
                peers.lock().await.insert(peer, tx.clone());
                let socket = socket.clone();
                tokio::spawn(async move {
                    let (mut sink, mut source) = ws.split();
                    loop {
                        tokio::select! {
                            d = rx.recv() => match d {
                                Some(d) => if sink.send(Message::binary(d)).await.is_err() { break },
                                None => break,
                            },
                            m = source.next() => match m {
                                Some(Ok(Message::Binary(b))) => { let _ = socket.send_to(&b, peer).await; }
                                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                });
                tx
            }
        };
        let _ = tx.send(datagram).await;
    }
}
