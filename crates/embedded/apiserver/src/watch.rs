//! Watch streams: one JSON event per line over a chunked (HTTP/1.1) or streamed (HTTP/2) body.
//!
//! resourceVersion semantics: unset or "0" sends the current objects as ADDED first; "N" sends
//! every change after N from the in-memory window, or an ERROR event with 410 Expired when N is
//! older than the window. BOOKMARKs are sent when asked for (`allowWatchBookmarks`), and after the
//! initial events when `sendInitialEvents=true`. The stream ends at `timeoutSeconds`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, Store, Stored};
use crate::table::{IncludeObject, partial_metadata, table};

/// How each event's object is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Full,
    Metadata,
    Table(IncludeObject),
}

pub struct WatchRequest {
    pub def: Arc<ResourceDef>,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
    pub form: Form,
}

/// The object as this watch shows it (version rewritten, metadata-only or a Table).
pub fn render(req: &WatchRequest, obj: &Stored) -> Result<Value, ApiError> {
    let mut v = crate::convert::to_view(req.def.view, obj.value()?);
    if req.version != req.def.storage_version()
        && let Some(m) = v.as_object_mut()
    {
        m.insert(
            "apiVersion".into(),
            json!(req.def.api_version(&req.version)),
        );
    }
    Ok(match req.form {
        Form::Full => v,
        Form::Metadata => partial_metadata(&v),
        Form::Table(inc) => table(&req.def, &req.version, &[v], json!({}), inc),
    })
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    if serde_json::to_writer(&mut out, obj).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// A full-form event line built from stored bytes without re-encoding (the common case).
fn raw_line(kind: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn bookmark(req: &WatchRequest, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = match req.form {
        Form::Full => {
            json!({"kind": req.def.kind, "apiVersion": req.def.api_version(&req.version), "metadata": meta})
        }
        Form::Metadata => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        }
        Form::Table(_) => json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                                 "columnDefinitions": [], "rows": []}),
    };
    line("BOOKMARK", &obj)
}

fn expired(rv: u64, oldest: u64) -> Bytes {
    let st = ApiError::expired(format!("too old resource version: {rv} ({oldest})")).to_status();
    line("ERROR", &st)
}

fn in_scope(req: &WatchRequest, o: &Stored) -> bool {
    match &req.namespace {
        Some(ns) => o.namespace == *ns,
        None => true,
    }
}

fn visible(req: &WatchRequest, o: &Stored) -> bool {
    in_scope(req, o) && req.labels.matches(&o.labels) && req.fields.matches(|f| o.field(f))
}

fn encode(req: &WatchRequest, kind: EventType, o: &Stored) -> Option<Bytes> {
    if req.form == Form::Full
        && req.version == req.def.storage_version()
        && req.def.view == crate::convert::View::Native
    {
        return Some(raw_line(kind.as_str(), &o.json));
    }
    render(req, o).ok().map(|v| line(kind.as_str(), &v))
}

/// Parses `resourceVersion` for a watch: None means "now, with the current state first".
fn start_rv(rv: &Option<String>) -> Result<Option<u64>, ApiError> {
    match rv.as_deref() {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}"))),
    }
}

/// Starts the watch; returns the streaming body.
pub fn serve(store: Store, req: WatchRequest) -> Result<Body, ApiError> {
    let start = start_rv(&req.resource_version)?;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut revisions = store.subscribe();
    tokio::spawn(async move {
        let gr = req.def.gr();
        let deadline = tokio::time::Instant::now() + req.timeout;
        // Initial state, from one consistent snapshot.
        let (mut cursor, initial) = {
            let cache = store.read();
            match start {
                Some(rv) => {
                    if rv < cache.oldest_watchable {
                        let _ = tx.try_send(expired(rv, cache.oldest_watchable));
                        return;
                    }
                    (rv, Vec::new())
                }
                None => {
                    let objs: Vec<Arc<Stored>> = cache
                        .objects
                        .get(&gr)
                        .map(|m| m.values().filter(|o| visible(&req, o)).cloned().collect())
                        .unwrap_or_default();
                    (cache.rev, objs)
                }
            }
        };
        for o in initial {
            if let Some(b) = encode(&req, EventType::Added, &o)
                && tx.send(b).await.is_err()
            {
                return;
            }
        }
        if req.send_initial_events && tx.send(bookmark(&req, cursor, true)).await.is_err() {
            return;
        }
        let bookmark_every = Duration::from_secs(10);
        // As upstream's watch cache does, the first bookmark comes 2 s before the watch's
        // deadline when that is sooner than the periodic one, so a client that reconnects at
        // `timeoutSeconds` resumes from a recent resourceVersion even on a quiet resource.
        let now = tokio::time::Instant::now();
        let pre_timeout = deadline
            .checked_sub(Duration::from_secs(2))
            .unwrap_or(now)
            .max(now);
        let mut next_bookmark = (now + bookmark_every).min(pre_timeout);
        loop {
            let batch = {
                let cache = store.read();
                match cache.events_after(cursor) {
                    Ok(evs) => Ok((evs, cache.rev)),
                    Err(oldest) => Err(oldest),
                }
            };
            let (events, head) = match batch {
                Ok(x) => x,
                Err(oldest) => {
                    let _ = tx.send(expired(cursor, oldest)).await;
                    return;
                }
            };
            for ev in events {
                cursor = ev.rev;
                if ev.gr != gr || !in_scope(&req, &ev.obj) {
                    continue;
                }
                let now = visible(&req, &ev.obj);
                let before = ev.prev.as_ref().is_some_and(|p| visible(&req, p));
                // A change that moves an object into or out of the selection reads as ADDED or
                // DELETED, as upstream does.
                let kind = match (ev.kind, before, now) {
                    (EventType::Deleted, true, _) | (EventType::Deleted, _, true) => {
                        Some(EventType::Deleted)
                    }
                    (EventType::Deleted, _, _) => None,
                    (_, false, true) => Some(EventType::Added),
                    (_, true, true) => Some(EventType::Modified),
                    (_, true, false) => Some(EventType::Deleted),
                    (_, false, false) => None,
                };
                let Some(kind) = kind else { continue };
                if let Some(b) = encode(&req, kind, &ev.obj)
                    && tx.send(b).await.is_err()
                {
                    return;
                }
            }
            cursor = cursor.max(head);
            tokio::select! {
                changed = revisions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep_until(next_bookmark) => {
                    if req.bookmarks && tx.send(bookmark(&req, cursor, false)).await.is_err() {
                        return;
                    }
                    next_bookmark = tokio::time::Instant::now() + bookmark_every;
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Ok(Body::from_stream(stream))
}
