//! The gRPC contract between virt-handler and virt-launcher (`proto/launcher.proto`), plus a
//! client that connects over the launcher's unix socket.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use launcher_proto::v1::{DomainRequest, SyncRequest};
//! let mut client = launcher_proto::connect("/run/kubevirt/sockets/launcher-sock").await?;
//! let status = client
//!     .sync(SyncRequest { vmi_json: b"{...}".to_vec(), ..Default::default() })
//!     .await?
//!     .into_inner();
//! println!("{:?}", status.state());
//! client.pause(DomainRequest::default()).await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Messages and services of package `kubevirt_rs.launcher.v1`.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("kubevirt_rs.launcher.v1");
}

pub use v1::launcher_client::LauncherClient;
pub use v1::launcher_server::{Launcher, LauncherServer};

/// The launcher's exit codes: they tell virt-handler (and the kubelet) how the VM ended.
pub mod exit_code {
    /// The guest shut down: it powered itself off, or obeyed an ACPI shutdown request; also a
    /// launcher stopped before any domain was started.
    pub const GUEST_SHUTDOWN: i32 = 0;
    /// The launcher failed (bad arguments, libvirt unusable, lost connection to it).
    pub const LAUNCHER_FAILURE: i32 = 1;
    /// QEMU crashed or failed, or the guest panicked.
    pub const CRASHED: i32 = 2;
    /// The domain was destroyed: Kill or Delete, or the grace period ran out after a shutdown
    /// request.
    pub const DESTROYED: i32 = 3;
    /// The domain moved to a migration target (a clean end for this pod).
    pub const MIGRATED: i32 = 0;
}

/// The file name of the launcher's socket inside the pod's sockets directory.
pub const SOCKET_NAME: &str = "launcher-sock";

/// Live migration's sockets, by purpose, inside each pod's sockets directory. On the target they
/// are the launcher's (libvirtd's connection, QEMU's incoming stream, libvirt's NBD server); on
/// the source the node agent binds the same names and forwards them to the target node. The
/// names (so the paths inside the pods) are the same on both sides because libvirt hands the
/// migration and disk stream addresses from the source to the target unchanged.
pub mod migration_sockets {
    pub const LIBVIRT: &str = "migration-libvirt";
    pub const MEMORY: &str = "migration-mem";
    pub const DISKS: &str = "migration-nbd";
}

/// Why a connection to a launcher failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to launcher socket {path}: {source}")]
    Transport {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Connects to the launcher listening on the unix socket at `path`. The connection is made
/// eagerly, so a missing or dead launcher fails here rather than on the first call.
pub async fn connect(path: impl AsRef<Path>) -> Result<LauncherClient<Channel>, ConnectError> {
    let path = path.as_ref().to_path_buf();
    // The URI is required by the HTTP/2 layer but never resolved: the connector below dials
    // the socket.
    let endpoint = Endpoint::from_static("http://launcher.invalid");
    let dial = path.clone();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let dial = dial.clone();
            async move { UnixStream::connect(dial).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ConnectError::Transport { path, source })?;
    Ok(LauncherClient::new(channel))
}

impl v1::DomainStatus {
    /// Whether QEMU runs for the domain (running, paused, blocked, shutting down or suspended).
    pub fn is_active(&self) -> bool {
        use v1::DomainState::*;
        matches!(
            self.state(),
            Running | Blocked | Paused | ShuttingDown | PmSuspended
        )
    }
}
