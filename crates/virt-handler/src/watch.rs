//! Launcher event streams: one per active VMI on this node. Each event the launcher sends (the
//! domain was defined, started, paused, stopped, crashed; the launcher is about to exit) wakes
//! that VMI's reconcile at once, so the VMI's status follows its domain within milliseconds
//! instead of at the next poll. The poll stays as a resync for what sends no event (guest agent
//! data) and for a stream that could not be opened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::Stream;
use kube::runtime::reflector::ObjectRef;
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::v1::WatchRequest;
use tokio::sync::mpsc;
use tracing::Instrument;

/// The shortest life of one stream attempt: a stream that ends at once (a launcher that refuses
/// it, or is going away) is not reopened in a tight loop.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

type Wake = ObjectRef<VirtualMachineInstance>;

/// The open streams by VMI uid.
pub struct Watches {
    wake: mpsc::UnboundedSender<Wake>,
    open: Mutex<HashMap<String, Open>>,
    next_id: AtomicU64,
}

struct Open {
    /// Tells this attempt from a later one for the same VMI.
    id: u64,
    socket: PathBuf,
    task: tokio::task::AbortHandle,
}

/// How one stream ended.
#[derive(Debug)]
enum Ended {
    /// The launcher sent its last event (it is exiting) or closed the stream.
    Closed {
        events: usize,
    },
    Failed(crate::controller::Error),
}

impl Watches {
    /// The registry and the stream of VMIs to reconcile because their launcher sent an event.
    pub fn new() -> (Self, impl Stream<Item = Wake> + Send + 'static) {
        let (wake, rx) = mpsc::unbounded_channel();
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let watches = Watches {
            wake,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        };
        (watches, stream)
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows the events of the launcher at `socket` for the VMI `target` (uid `uid`), unless
    /// that stream is already open. A stream to another socket (a new launcher pod) replaces it.
    pub fn ensure(self: &std::sync::Arc<Self>, target: Wake, uid: &str, socket: &Path) {
        let mut open = self.open();
        if open.get(uid).is_some_and(|o| o.socket == socket) {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let me = std::sync::Arc::clone(self);
        let (uid_owned, socket_owned) = (uid.to_string(), socket.to_path_buf());
        let task = tokio::spawn(
            async move {
                let started = Instant::now();
                let ended = follow(&uid_owned, &socket_owned, &target, &me.wake).await;
                match &ended {
                    Ended::Closed { events } => {
                        tracing::debug!(events, "launcher event stream closed")
                    }
                    Ended::Failed(error) => {
                        tracing::debug!(%error, "launcher event stream failed")
                    }
                }
                if let Some(rest) = MIN_ATTEMPT.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
                me.forget(&uid_owned, id);
                // A closed stream gets one more look (it reopens the stream if the VMI still has
                // a live launcher); after a failure the poll retries, so a launcher that cannot
                // stream is not asked again every second.
                if matches!(ended, Ended::Closed { .. }) {
                    let _ = me.wake.send(target);
                }
            }
            .in_current_span(),
        );
        if let Some(old) = open.insert(
            uid.to_string(),
            Open {
                id,
                socket: socket.to_path_buf(),
                task: task.abort_handle(),
            },
        ) {
            old.task.abort();
        }
    }

    /// Stops following the VMI with `uid` (it ended or left this node).
    pub fn stop(&self, uid: &str) {
        if let Some(o) = self.open().remove(uid) {
            o.task.abort();
        }
    }

    /// Removes the entry of attempt `id`, unless a newer attempt replaced it.
    fn forget(&self, uid: &str, id: u64) {
        let mut open = self.open();
        if open.get(uid).is_some_and(|o| o.id == id) {
            open.remove(uid);
        }
    }

    /// How many streams are open (for tests and logs).
    pub fn len(&self) -> usize {
        self.open().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads one launcher's events until the stream ends, waking `target` for each.
async fn follow(
    uid: &str,
    socket: &Path,
    target: &Wake,
    wake: &mpsc::UnboundedSender<Wake>,
) -> Ended {
    let mut conn = match crate::controller::connect(socket).await {
        Ok(c) => c,
        Err(e) => return Ended::Failed(e),
    };
    let mut stream = match conn
        .client
        .watch_events(WatchRequest { uid: uid.into() })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return Ended::Failed(crate::controller::Error::Launcher {
                call: "WatchEvents",
                status,
            });
        }
    };
    let mut events = 0;
    loop {
        match stream.message().await {
            Ok(Some(ev)) => {
                events += 1;
                // The first event is the state at subscription: already seen by the reconcile
                // that opened the stream, unless it changed in between; a wake costs little.
                if wake.send(target.clone()).is_err() || ev.r#final {
                    return Ended::Closed { events };
                }
            }
            Ok(None) => return Ended::Closed { events },
            Err(status) => {
                return Ended::Failed(crate::controller::Error::Launcher {
                    call: "WatchEvents",
                    status,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;

    fn target() -> Wake {
        ObjectRef::new("vm1").within("default")
    }

    #[tokio::test]
    async fn a_stream_that_cannot_open_is_forgotten_after_a_second_without_a_wake() {
        let dir = tempfile::tempdir().unwrap();
        let (watches, wakes) = Watches::new();
        let mut wakes = std::pin::pin!(wakes);
        let watches = Arc::new(watches);
        let socket = dir.path().join("launcher-sock");
        watches.ensure(target(), "uid-1", &socket);
        // Asking again for the same socket keeps the one attempt.
        watches.ensure(target(), "uid-1", &socket);
        assert_eq!(watches.len(), 1);
        tokio::time::sleep(MIN_ATTEMPT / 2).await;
        assert_eq!(watches.len(), 1, "held for a second at least");
        let woken = tokio::time::timeout(MIN_ATTEMPT * 2, wakes.next()).await;
        assert!(woken.is_err(), "a failed stream wakes nobody: {woken:?}");
        assert!(watches.is_empty(), "the failed attempt is forgotten");
    }

    #[tokio::test]
    async fn another_socket_replaces_the_stream_and_stop_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let (watches, _wakes) = Watches::new();
        let watches = Arc::new(watches);
        watches.ensure(target(), "uid-1", &dir.path().join("a"));
        watches.ensure(target(), "uid-1", &dir.path().join("b"));
        assert_eq!(watches.len(), 1);
        assert_eq!(watches.open()["uid-1"].socket, dir.path().join("b"));
        // The replaced attempt, when it ends, does not remove its successor.
        watches.forget("uid-1", 0);
        assert_eq!(watches.len(), 1);
        watches.stop("uid-1");
        assert!(watches.is_empty());
    }
}
