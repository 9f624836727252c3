//! `kubectl exec` on the node: `GET /exec/<namespace>/<pod>/<container>?command=...&stdin=&
//! stdout=&stderr=&tty=` upgraded to a WebSocket with the Kubernetes channel protocol
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`): every binary message starts with its stream
//! (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize; v5: 255 closes the stream named by the
//! next byte). The command runs in the container's namespaces (`nsenter`) with its environment;
//! the final status goes on stream 3 as a `Status` (`NonZeroExitCode` with the exit code as
//! cause). No TTY: `tty=true` runs without one.

use std::path::Path;
use std::process::Stdio;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::logs::{Ctx, PodIndex};

/// The exec request's options from its query string (`command` repeats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: &str) -> ExecQuery {
    let mut out = ExecQuery::default();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v);
        let yes = matches!(v.as_str(), "1" | "true" | "");
        match k {
            "command" => out.command.push(v),
            "input" | "stdin" => out.stdin = yes,
            "output" | "stdout" => out.stdout = yes,
            "error" | "stderr" => out.stderr = yes,
            "tty" => out.tty = yes,
            _ => {}
        }
    }
    out
}

/// The `Status` sent on the error stream when the command ended.
pub fn exit_status(code: Option<i32>) -> serde_json::Value {
    match code {
        Some(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Some(c) => serde_json::json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {c}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": c.to_string()}]}}),
        None => serde_json::json!({"metadata": {}, "status": "Failure",
            "message": "command terminated by a signal", "reason": "InternalError"}),
    }
}

/// The main pid of a running container, from what its shim recorded.
pub fn running_pid(root: &Path, uid: &str, container: &str) -> Option<i32> {
    let pod = root.join("pods").join(uid);
    let last = *crate::runtime::attempts(&pod, container).last()?;
    let dir = crate::runtime::attempt_dir(&pod, container, last);
    if dir.join(crate::shim::EXITED).exists() {
        return None;
    }
    let s = crate::runtime::read_started(&dir)?;
    crate::runtime::alive(&s).then_some(s.pid)
}

fn lookup(index: &PodIndex, ns: &str, pod: &str) -> Option<String> {
    index
        .read()
        .ok()?
        .get(&(ns.to_string(), pod.to_string()))
        .cloned()
}

pub(crate) async fn handler(
    State(ctx): State<Ctx>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let q = parse_query(q.as_deref().unwrap_or(""));
    if q.command.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        )
            .into_response();
    }
    let Some(uid) = lookup(&ctx.index, &ns, &pod) else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} not found on this node"),
        )
            .into_response();
    };
    let Some(pid) = running_pid(&ctx.root, &uid, &container) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {ns}/{pod}"),
        )
            .into_response();
    };
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| run(socket, pid, q))
}

async fn run(socket: WebSocket, pid: i32, q: ExecQuery) {
    let env: Vec<(String, String)> = std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter_map(|kv| {
                    let s = String::from_utf8_lossy(kv);
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let (mut tx, mut rx) = socket.split();
    let child = tokio::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-u", "-n", "-r", "-w", "--"])
        .args(&q.command)
        .env_clear()
        .envs(env)
        .stdin(if q.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if q.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if q.stderr || q.tty {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let st =
                serde_json::json!({"metadata": {}, "status": "Failure", "message": e.to_string()});
            let mut m = vec![3u8];
            m.extend(st.to_string().into_bytes());
            let _ = tx.send(Message::Binary(Bytes::from(m))).await;
            return;
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    let pump = |stream: u8, r: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let Some(mut r) = r else { return };
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out_tx.send((stream, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
    };
    let so = pump(
        1,
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    );
    let se = pump(
        if q.tty { 1 } else { 2 },
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    );
    drop(out_tx);
    let mut stdin = child.stdin.take();
    let forward_in = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let data: Vec<u8> = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_str().as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match data.split_first() {
                Some((0, rest)) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(rest).await.is_err()
                    {
                        stdin = None;
                    }
                }
                // v5: close a stream; closing stdin is EOF for the command.
                Some((255, rest)) if rest.first() == Some(&0) => stdin = None,
                _ => {}
            }
        }
    });
    while let Some((stream, data)) = out_rx.recv().await {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(stream);
        m.extend(data);
        if tx.send(Message::Binary(Bytes::from(m))).await.is_err() {
            break;
        }
    }
    let _ = so.await;
    let _ = se.await;
    let code = child.wait().await.ok().and_then(|s| s.code());
    forward_in.abort();
    let mut m = vec![3u8];
    m.extend(exit_status(code).to_string().into_bytes());
    let _ = tx.send(Message::Binary(Bytes::from(m))).await;
    // A normal closure (1000): clients treat a close without a status as an error.
    let _ = tx
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_statuses() {
        let q = parse_query(
            "command=sh&command=-c&command=echo%20hi+there&stdin=true&stdout=1&stderr=true",
        );
        assert_eq!(q.command, vec!["sh", "-c", "echo hi there"]);
        assert!(q.stdin && q.stdout && q.stderr && !q.tty);
        assert_eq!(exit_status(Some(0))["status"], "Success");
        let s = exit_status(Some(3));
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }
}
