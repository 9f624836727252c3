//! `virtctl console`: the serial console in a raw terminal. `Ctrl+]` (byte 0x1d, also what
//! `Ctrl+5` sends) leaves; when the stream drops (the VM restarted, another user took the
//! console), it reconnects until `--timeout` runs out.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::Error;
use crate::stream::{Cluster, OpenError, Ws, open};
use crate::target::{Kind, subresource_path};
use crate::term::RawMode;

/// A stream that ends sooner than this after connecting counts as a quick drop.
const QUICK_DROP: Duration = Duration::from_secs(5);

/// The escape byte: `Ctrl+]`.
pub const ESCAPE: u8 = 0x1d;

/// Splits stdin input at the escape byte: what to send, and whether to leave.
pub fn split_escape(chunk: &[u8]) -> (&[u8], bool) {
    match chunk.iter().position(|b| *b == ESCAPE) {
        Some(i) => (&chunk[..i], true),
        None => (chunk, false),
    }
}

/// Whether a failed connection attempt is worth another try: 400 means the VMI exists but
/// is not running yet (upstream's rule); after a disconnect also the brief gaps of a restart
/// (404 while the new VMI is created, 5xx and transport errors while components move).
fn retryable(e: &OpenError, reconnecting: bool) -> bool {
    e.status == 400 || (reconnecting && (e.status == 0 || e.status == 404 || e.status >= 500))
}

pub async fn connect_retrying(
    client: &kube::Client,
    path: &str,
    timeout: Duration,
    reconnecting: bool,
) -> Result<Ws, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match open(client, path).await {
            Ok(ws) => return Ok(ws),
            Err(e) if retryable(&e, reconnecting) => {
                tracing::debug!(status = e.status, error = %e.message, "console not ready, retrying");
                if Instant::now() >= deadline {
                    return Err(Error::Other(
                        "Timeout trying to connect to the virtual machine instance".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(Error::Other(e.message)),
        }
    }
}

enum Outcome {
    /// The user left (escape byte, or stdin ended).
    Leave,
    /// The far side went away.
    Dropped(String),
}

async fn pump(
    ws: &mut Ws,
    input: &mut mpsc::Receiver<Vec<u8>>,
    out: &mut tokio::io::Stdout,
) -> Result<Outcome, Error> {
    loop {
        tokio::select! {
            chunk = input.recv() => {
                let Some(chunk) = chunk else { return Ok(Outcome::Leave) };
                let (send, leave) = split_escape(&chunk);
                if !send.is_empty() && ws.send(Message::binary(send.to_vec())).await.is_err() {
                    return Ok(Outcome::Dropped("send failed".into()));
                }
                if leave {
                    return Ok(Outcome::Leave);
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) => { out.write_all(&b).await?; out.flush().await?; }
                Some(Ok(Message::Text(t))) => { out.write_all(t.as_bytes()).await?; out.flush().await?; }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Outcome::Dropped(frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty()).unwrap_or_else(|| "closed".into())));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ok(Outcome::Dropped(e.to_string())),
                None => return Ok(Outcome::Dropped("closed".into())),
            },
        }
    }
}

pub async fn console(cluster: &Cluster, name: &str, timeout: Duration) -> Result<(), Error> {
    let path = subresource_path(Kind::Vmi, &cluster.namespace, name, "console");
    let mut ws = connect_retrying(&cluster.streams, &path, timeout, false).await?;
    let mut connected_at = Instant::now();
    let mut quick_drops = 0u32;
    let raw = RawMode::enable();
    // In raw mode the terminal no longer turns \n into \r\n.
    let nl = if raw.is_some() { "\r\n" } else { "\n" };
    eprint!(
        "Successfully connected to {name} console. Press Ctrl+] or Ctrl+5 to exit console.{nl}"
    );
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut out = tokio::io::stdout();
    // Being killed politely (terminal closed, SIGTERM) still goes through the guard's restore.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        let outcome = tokio::select! {
            o = pump(&mut ws, &mut rx, &mut out) => o?,
            _ = term.recv() => Outcome::Leave,
            _ = hup.recv() => Outcome::Leave,
        };
        match outcome {
            Outcome::Leave => {
                let _ = ws.close(None).await;
                eprint!("{nl}");
                return Ok(());
            }
            Outcome::Dropped(reason) => {
                tracing::debug!(%reason, "console stream ended");
                // Streams that keep dropping right after connecting mean someone else keeps
                // taking the console (virt-handler serves one client): stop rather than
                // fight over it.
                quick_drops = if connected_at.elapsed() < QUICK_DROP {
                    quick_drops + 1
                } else {
                    0
                };
                if quick_drops >= 2 {
                    eprint!(
                        "{nl}You were disconnected from the console. This could be caused by one of the following:{nl} - the target VM was powered off{nl} - another user connected to the console of the target VM{nl} - network issues{nl}"
                    );
                    return Err(Error::Other(format!("console stream ended: {reason}")));
                }
                eprint!(
                    "{nl}You were disconnected from the console ({reason}); reconnecting (Ctrl+] to give up)...{nl}"
                );
                ws = tokio::select! {
                    r = connect_retrying(&cluster.streams, &path, timeout, true) => r?,
                    _ = wait_for_escape(&mut rx) => { eprint!("{nl}"); return Ok(()); }
                };
                connected_at = Instant::now();
                eprint!("Successfully reconnected to {name} console.{nl}");
            }
        }
    }
}

/// Input while reconnecting is dropped (nobody to send it to), except the escape.
async fn wait_for_escape(rx: &mut mpsc::Receiver<Vec<u8>>) {
    while let Some(chunk) = rx.recv().await {
        if split_escape(&chunk).1 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape() {
        assert_eq!(split_escape(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(split_escape(b"abc"), (&b"abc"[..], false));
        assert_eq!(split_escape(b"\x1d"), (&b""[..], true));
    }
}
