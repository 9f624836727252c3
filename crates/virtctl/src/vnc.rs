//! `virtctl vnc`: a local TCP port spliced to the VMI's VNC websocket; with `--proxy-only` it
//! prints the port (`{"port":N}`) for any VNC client, otherwise it starts a viewer on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::stream::{Cluster, open, splice};
use crate::target::{Kind, subresource_path};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub address: String,
    pub port: u16,
    pub proxy_only: bool,
    pub preserve_session: bool,
    pub vnc_type: Option<String>,
    pub vnc_path: Option<PathBuf>,
}

/// The subresource path with upstream's `preserveSession` query.
pub fn path(namespace: &str, name: &str, preserve_session: bool) -> String {
    format!(
        "{}?preserveSession={preserve_session}",
        subresource_path(Kind::Vmi, namespace, name, "vnc")
    )
}

/// The PNG of the VMI's screen (`vnc/screenshot`; `move_cursor` wakes a blanked screen).
pub async fn screenshot(
    cluster: &Cluster,
    name: &str,
    move_cursor: bool,
) -> Result<Vec<u8>, Error> {
    let path = format!(
        "{}?moveCursor={move_cursor}",
        subresource_path(Kind::Vmi, &cluster.namespace, name, "vnc/screenshot")
    );
    crate::stream::get_bytes(cluster, &path).await
}

/// A viewer's argument for `127.0.0.1:port` (pure).
fn viewer_args(kind: &str, port: u16) -> Vec<String> {
    match kind {
        "remote-viewer" => vec![format!("vnc://127.0.0.1:{port}")],
        _ => vec![format!("127.0.0.1:{port}")],
    }
}

/// Which viewer to run: `--vnc-path` (with `--vnc-type` telling its flavour), `--vnc-type`
/// looked up in PATH, or the first of remote-viewer / vncviewer found (pure but for `lookup`).
pub fn viewer_command(
    vnc_type: Option<&str>,
    vnc_path: Option<&Path>,
    lookup: impl Fn(&str) -> Option<PathBuf>,
    port: u16,
) -> Result<(PathBuf, Vec<String>), Error> {
    let binary = |t: &str| match t {
        "tiger" => Ok("vncviewer"),
        "remote-viewer" => Ok("remote-viewer"),
        other => Err(Error::Usage(format!("unsupported vnc-type: {other}"))),
    };
    if let Some(p) = vnc_path {
        let kind = binary(vnc_type.unwrap_or("tiger"))?;
        return Ok((p.to_path_buf(), viewer_args(kind, port)));
    }
    if let Some(t) = vnc_type {
        let bin = binary(t)?;
        let found =
            lookup(bin).ok_or_else(|| Error::Other(format!("could not find {bin} in $PATH")))?;
        return Ok((found, viewer_args(bin, port)));
    }
    for bin in ["remote-viewer", "vncviewer"] {
        if let Some(found) = lookup(bin) {
            return Ok((found, viewer_args(bin, port)));
        }
    }
    Err(Error::Other(format!(
        "could not find a VNC viewer (remote-viewer or vncviewer) in $PATH; \
         connect one to 127.0.0.1:{port}, or use --proxy-only"
    )))
}

/// An executable called `name` in `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub async fn vnc(cluster: &Cluster, name: &str, o: &Options) -> Result<(), Error> {
    let ws = open(
        &cluster.streams,
        &path(&cluster.namespace, name, o.preserve_session),
    )
    .await
    .map_err(|e| Error::Other(format!("can't access VMI {name}: {}", e.message)))?;
    // Only a proxy the user asked for may listen beyond loopback.
    let address = if o.proxy_only {
        o.address.as_str()
    } else {
        "127.0.0.1"
    };
    let listener = tokio::net::TcpListener::bind((address, o.port))
        .await
        .map_err(|e| Error::Other(format!("can't listen on {address}:{}: {e}", o.port)))?;
    let port = listener.local_addr()?.port();
    let mut viewer = None;
    if o.proxy_only {
        println!("{}", serde_json::json!({"port": port}));
    } else {
        let (bin, args) =
            viewer_command(o.vnc_type.as_deref(), o.vnc_path.as_deref(), which, port)?;
        tracing::info!(viewer = %bin.display(), ?args, "starting VNC viewer");
        viewer = Some(
            tokio::process::Command::new(&bin)
                .args(&args)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| Error::Other(format!("starting {}: {e}", bin.display())))?,
        );
    }
    let accept = async {
        listener
            .accept()
            .await
            .map_err(|e| Error::Other(format!("accept: {e}")))
    };
    let (conn, peer) = if o.proxy_only {
        tokio::select! {
            r = accept => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    } else {
        // A viewer that never connects is not waited for forever.
        tokio::time::timeout(Duration::from_secs(60), accept)
            .await
            .map_err(|_| Error::Other("no VNC client connected within 60s".into()))??
    };
    tracing::debug!(%peer, "VNC client connected");
    let (r, w) = conn.into_split();
    let result = tokio::select! {
        r = splice(ws, r, w) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    drop(viewer);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers() {
        let none = |_: &str| None;
        assert!(viewer_command(None, None, none, 5900).is_err());
        let only_tiger = |b: &str| (b == "vncviewer").then(|| PathBuf::from("/bin/vncviewer"));
        let (p, a) = viewer_command(None, None, only_tiger, 5901).expect("found");
        assert_eq!(p, PathBuf::from("/bin/vncviewer"));
        assert_eq!(a, vec!["127.0.0.1:5901"]);
        let both = |b: &str| Some(PathBuf::from(format!("/bin/{b}")));
        let (p, a) = viewer_command(None, None, both, 1).expect("found");
        assert_eq!(p, PathBuf::from("/bin/remote-viewer"));
        assert_eq!(a, vec!["vnc://127.0.0.1:1"]);
        assert!(viewer_command(Some("chicken"), None, both, 1).is_err());
        assert!(viewer_command(Some("remote-viewer"), None, only_tiger, 1).is_err());
        assert_eq!(
            path("ns", "v", true),
            "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/v/vnc?preserveSession=true"
        );
    }
}
