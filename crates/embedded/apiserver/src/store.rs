//! Durable storage and the watch window.
//!
//! Layout: one redb file (`DATA/apiserver/store.redb`) with two tables: `objects` maps
//! `<group-resource>|<namespace>/<name>` to the object's JSON, and `meta` holds the global
//! revision. Only current objects are kept on disk: history lives in memory, in a window of
//! recent events that watches are served from ("compaction" is the window dropping its oldest
//! events, after which those resourceVersions answer 410 Expired).
//!
//! Writes go through one writer thread. A request hands it a closure (a [`TxFn`]); the thread
//! gathers every closure waiting, runs them in order against the committed state plus the batch's
//! own changes, commits the whole batch in one redb transaction (one fsync), then publishes the
//! changes to the in-memory cache and the watch window, and only then answers each request. So
//! a write is acknowledged only once it is on disk, readers never see an unacknowledged write,
//! and concurrent writers share fsyncs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::error::{ApiError, Error};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// Most jobs one commit carries; bounds the latency a single batch adds.
const MAX_BATCH: usize = 1024;

/// One stored object: its JSON and what selectors need without parsing it.
#[derive(Debug)]
pub struct Stored {
    pub json: Arc<[u8]>,
    pub rv: u64,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Values of the fields this resource supports in field selectors.
    pub fields: Vec<(String, String)>,
    pub uid: String,
    /// uids of the owners (`metadata.ownerReferences`), for garbage collection.
    pub owners: Vec<String>,
    /// uids of the owners whose reference has `blockOwnerDeletion: true` (a foreground
    /// deletion of such an owner waits for this object).
    pub blocking: Vec<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Deleting and held by the `foregroundDeletion` finalizer until its dependents are gone.
    pub foreground: bool,
}

impl Stored {
    /// Indexes `obj` for the given selectable fields (dotted paths).
    pub fn new(obj: &Value, rv: u64, selectable: &[&str]) -> Result<Stored, ApiError> {
        let json = serde_json::to_vec(obj)
            .map_err(|e| ApiError::internal(format!("encoding object: {e}")))?;
        Ok(Self::with_json(obj, json.into(), rv, selectable))
    }

    fn with_json(obj: &Value, json: Arc<[u8]>, rv: u64, selectable: &[&str]) -> Stored {
        let fields = selectable
            .iter()
            .map(|f| {
                let mut v = Some(obj);
                for part in f.split('.') {
                    v = v.and_then(|x| x.get(part));
                }
                let text = match v {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (f.to_string(), text)
            })
            .collect();
        Stored {
            json,
            rv,
            namespace: crate::meta::meta_str(obj, "namespace")
                .unwrap_or_default()
                .to_string(),
            name: crate::meta::meta_str(obj, "name")
                .unwrap_or_default()
                .to_string(),
            labels: crate::meta::string_map(obj, "labels"),
            fields,
            uid: crate::meta::meta_str(obj, "uid")
                .unwrap_or_default()
                .to_string(),
            owners: crate::meta::metadata(obj)
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .filter_map(|r| r.get("uid").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            blocking: crate::meta::metadata(obj)
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .filter(|r| r.get("blockOwnerDeletion") == Some(&Value::Bool(true)))
                        .filter_map(|r| r.get("uid").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            deleting: crate::meta::metadata(obj)
                .is_some_and(|m| m.contains_key("deletionTimestamp")),
            foreground: crate::meta::metadata(obj).is_some_and(|m| {
                m.contains_key("deletionTimestamp")
                    && m.get("finalizers")
                        .and_then(Value::as_array)
                        .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
            }),
        }
    }

    pub fn value(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.json)
            .map_err(|e| ApiError::internal(format!("decoding stored object: {e}")))
    }

    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            _ => self
                .fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        }
    }
}

/// `namespace/name` (cluster-scoped objects have an empty namespace): the key within a resource.
pub fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as watches see it. `prev` lets a filtered watch turn "stopped matching" into DELETED.
#[derive(Debug)]
pub struct Event {
    pub rev: u64,
    pub gr: String,
    pub kind: EventType,
    pub obj: Arc<Stored>,
    pub prev: Option<Arc<Stored>>,
}

/// The committed state: every object, and the recent events.
#[derive(Debug, Default)]
pub struct Cache {
    pub objects: HashMap<String, BTreeMap<String, Arc<Stored>>>,
    /// The revision of the last committed write.
    pub rev: u64,
    pub window: VecDeque<Arc<Event>>,
    /// Watches can start from any revision >= this one; older ones get 410 Expired.
    pub oldest_watchable: u64,
    pub window_capacity: usize,
}

impl Cache {
    pub fn get(&self, gr: &str, key: &str) -> Option<&Arc<Stored>> {
        self.objects.get(gr).and_then(|m| m.get(key))
    }

    /// Events after `rev` (for a watch), or Err when `rev` has been compacted away.
    pub fn events_after(&self, rev: u64) -> Result<Vec<Arc<Event>>, u64> {
        if rev < self.oldest_watchable {
            return Err(self.oldest_watchable);
        }
        // Events are in revision order; find the first one past `rev`.
        let start = self.window.partition_point(|e| e.rev <= rev);
        Ok(self.window.range(start..).cloned().collect())
    }

    fn push_event(&mut self, ev: Event) {
        self.window.push_back(Arc::new(ev));
        while self.window.len() > self.window_capacity {
            if let Some(old) = self.window.pop_front() {
                self.oldest_watchable = old.rev;
            }
        }
    }
}

/// A write request's work: runs on the writer thread against [`Txn`].
pub type TxFn = Box<dyn FnOnce(&mut Txn<'_>) -> Result<Value, ApiError> + Send>;

struct Job {
    f: TxFn,
    reply: oneshot::Sender<Result<Value, ApiError>>,
}

enum Op {
    Put {
        gr: String,
        key: String,
        obj: Arc<Stored>,
        prev: Option<Arc<Stored>>,
    },
    Delete {
        gr: String,
        key: String,
        obj: Arc<Stored>,
    },
}

/// An overlay key (storage name, object key) and what it held before a change, for rollback.
type Undo = ((String, String), Option<Option<Arc<Stored>>>);

/// What a write closure sees: committed objects overlaid with the batch's earlier changes.
pub struct Txn<'a> {
    cache: &'a Cache,
    overlay: &'a mut HashMap<(String, String), Option<Arc<Stored>>>,
    undo: Vec<Undo>,
    ops: Vec<Op>,
    rev: &'a mut u64,
    dry_run: bool,
}

impl Txn<'_> {
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn get(&self, gr: &str, key: &str) -> Option<Arc<Stored>> {
        match self.overlay.get(&(gr.to_string(), key.to_string())) {
            Some(v) => v.clone(),
            None => self.cache.get(gr, key).cloned(),
        }
    }

    /// Every storage name with objects, committed or pending.
    pub fn resources(&self) -> Vec<String> {
        let mut out: std::collections::BTreeSet<String> =
            self.cache.objects.keys().cloned().collect();
        out.extend(self.overlay.keys().map(|(g, _)| g.clone()));
        out.into_iter().collect()
    }

    /// Keys of `gr` starting with `prefix` (e.g. `ns/`), committed and pending, sorted.
    pub fn keys(&self, gr: &str, prefix: &str) -> Vec<String> {
        let mut keys: std::collections::BTreeSet<String> = self
            .cache
            .objects
            .get(gr)
            .map(|m| {
                m.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for ((g, k), v) in self.overlay.iter() {
            if g == gr && k.starts_with(prefix) {
                if v.is_some() {
                    keys.insert(k.clone());
                } else {
                    keys.remove(k);
                }
            }
        }
        keys.into_iter().collect()
    }

    fn set(&mut self, gr: &str, key: &str, v: Option<Arc<Stored>>) {
        let k = (gr.to_string(), key.to_string());
        let old = self.overlay.insert(k.clone(), v);
        self.undo.push((k, old));
    }

    /// Stores `obj` (with a fresh resourceVersion written into it) and returns it as stored.
    pub fn put(
        &mut self,
        gr: &str,
        mut obj: Value,
        selectable: &[&str],
    ) -> Result<Value, ApiError> {
        let ns = crate::meta::meta_str(&obj, "namespace")
            .unwrap_or_default()
            .to_string();
        let name = crate::meta::meta_str(&obj, "name")
            .unwrap_or_default()
            .to_string();
        let key = object_key(&ns, &name);
        if self.dry_run {
            // Nothing is written, so an existing object keeps its resourceVersion (a new one
            // has none), as upstream answers dry runs.
            if let Some(cur) = self.get(gr, &key)
                && let Some(m) = crate::meta::metadata_mut(&mut obj)
            {
                m.insert("resourceVersion".into(), Value::String(cur.rv.to_string()));
            }
            return Ok(obj);
        }
        *self.rev += 1;
        let rev = *self.rev;
        if let Some(m) = crate::meta::metadata_mut(&mut obj) {
            m.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
        let stored = Arc::new(Stored::new(&obj, rev, selectable)?);
        let prev = self.get(gr, &key);
        self.set(gr, &key, Some(stored.clone()));
        self.ops.push(Op::Put {
            gr: gr.to_string(),
            key,
            obj: stored,
            prev,
        });
        Ok(obj)
    }

    /// Removes an object; the DELETED event carries it at the deletion's revision.
    pub fn delete(&mut self, gr: &str, key: &str, selectable: &[&str]) -> Result<Value, ApiError> {
        let Some(cur) = self.get(gr, key) else {
            return Err(ApiError::internal(format!("deleting missing {gr} {key}")));
        };
        let mut obj = cur.value()?;
        if self.dry_run {
            return Ok(obj);
        }
        *self.rev += 1;
        let rev = *self.rev;
        if let Some(m) = crate::meta::metadata_mut(&mut obj) {
            m.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
        let stored = Arc::new(Stored::new(&obj, rev, selectable)?);
        self.set(gr, key, None);
        self.ops.push(Op::Delete {
            gr: gr.to_string(),
            key: key.to_string(),
            obj: stored,
        });
        Ok(obj)
    }

    fn rollback(&mut self) {
        while let Some((k, old)) = self.undo.pop() {
            match old {
                Some(v) => {
                    self.overlay.insert(k, v);
                }
                None => {
                    self.overlay.remove(&k);
                }
            }
        }
        self.ops.clear();
    }
}

/// Handle to the store, shared by request handlers.
#[derive(Clone)]
pub struct Store {
    cache: Arc<RwLock<Cache>>,
    jobs: mpsc::Sender<Job>,
    revision: watch::Receiver<u64>,
}

impl Store {
    /// Opens (or creates) the store under `dir`, loads every object, starts the writer thread.
    /// `index` gives the selectable fields of a group-resource (for loading).
    pub fn open(
        dir: &Path,
        window_capacity: usize,
        index: impl Fn(&str) -> Vec<&'static str>,
    ) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        let path = dir.join("store.redb");
        // Every object is also held in memory (the cache below) and the file is only read at
        // start-up, so redb's page cache only needs to serve commits: keep it small.
        let db = redb::Builder::new()
            .set_cache_size(16 * 1024 * 1024)
            .create(&path)?;
        let mut cache = Cache {
            window_capacity: window_capacity.max(1),
            ..Default::default()
        };
        {
            // Make sure both tables exist, so the first read transaction can open them.
            let w = db.begin_write()?;
            w.open_table(OBJECTS)?;
            w.open_table(META)?;
            w.commit()?;
        }
        let r = db.begin_read()?;
        let meta = r.open_table(META)?;
        cache.rev = meta.get(REVISION_KEY)?.map(|g| g.value()).unwrap_or(0);
        let objects = r.open_table(OBJECTS)?;
        let mut count = 0usize;
        for entry in objects.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let Some((gr, okey)) = key.split_once('|') else {
                return Err(Error::Corrupt {
                    key: key.to_string(),
                    message: "key without a resource".into(),
                });
            };
            let obj: Value = serde_json::from_slice(v.value()).map_err(|e| Error::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            })?;
            let rv = crate::meta::meta_str(&obj, "resourceVersion")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let fields = index(gr);
            let stored = Stored::with_json(&obj, Arc::from(v.value()), rv, &fields);
            cache
                .objects
                .entry(gr.to_string())
                .or_default()
                .insert(okey.to_string(), Arc::new(stored));
            count += 1;
        }
        drop(objects);
        drop(meta);
        drop(r);
        // Nothing before start-up can be replayed: watches resume from the current revision.
        cache.oldest_watchable = cache.rev;
        tracing::info!(path = %path.display(), objects = count, revision = cache.rev, "store opened");
        let (rev_tx, rev_rx) = watch::channel(cache.rev);
        let cache = Arc::new(RwLock::new(cache));
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_cache = cache.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(db, writer_cache, rx, rev_tx))
            .map_err(|e| Error::io("store writer thread", e))?;
        Ok(Store {
            cache,
            jobs: tx,
            revision: rev_rx,
        })
    }

    /// Read access to the committed state. Hold it briefly: the writer waits for it to publish.
    pub fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes whenever a batch is committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.clone()
    }

    /// Runs `f` durably: returns once its changes are on disk and visible.
    pub async fn write(&self, f: TxFn) -> Result<Value, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { f, reply })
            .map_err(|_| ApiError::internal("the store is shut down"))?;
        rx.await
            .map_err(|_| ApiError::internal("the store writer stopped"))?
    }

    /// Runs `f` against the committed state without storing anything (`dryRun=All`).
    pub fn dry_run(&self, f: TxFn) -> Result<Value, ApiError> {
        let cache = self.read();
        let mut overlay = HashMap::new();
        let mut rev = cache.rev;
        let mut txn = Txn {
            cache: &cache,
            overlay: &mut overlay,
            undo: Vec::new(),
            ops: Vec::new(),
            rev: &mut rev,
            dry_run: true,
        };
        f(&mut txn)
    }
}

fn writer(
    db: redb::Database,
    cache: Arc<RwLock<Cache>>,
    rx: mpsc::Receiver<Job>,
    rev_tx: watch::Sender<u64>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut results = Vec::with_capacity(jobs.len());
        let mut ops = Vec::new();
        let (start_rev, end_rev) = {
            let guard = cache.read().unwrap_or_else(|p| p.into_inner());
            let start = guard.rev;
            let mut rev = start;
            let mut overlay = HashMap::new();
            for job in jobs {
                let before = rev;
                let mut txn = Txn {
                    cache: &guard,
                    overlay: &mut overlay,
                    undo: Vec::new(),
                    ops: Vec::new(),
                    rev: &mut rev,
                    dry_run: false,
                };
                let out = (job.f)(&mut txn);
                if out.is_err() {
                    txn.rollback();
                    *txn.rev = before;
                }
                let job_ops = std::mem::take(&mut txn.ops);
                ops.extend(job_ops);
                results.push((job.reply, out));
            }
            (start, rev)
        };
        if ops.is_empty() {
            for (reply, out) in results {
                let _ = reply.send(out);
            }
            continue;
        }
        match commit(&db, &ops, end_rev) {
            Ok(()) => {
                let mut guard = cache.write().unwrap_or_else(|p| p.into_inner());
                for op in ops {
                    match op {
                        Op::Put { gr, key, obj, prev } => {
                            let kind = if prev.is_some() {
                                EventType::Modified
                            } else {
                                EventType::Added
                            };
                            guard
                                .objects
                                .entry(gr.clone())
                                .or_default()
                                .insert(key, obj.clone());
                            guard.push_event(Event {
                                rev: obj.rv,
                                gr,
                                kind,
                                obj,
                                prev,
                            });
                        }
                        Op::Delete { gr, key, obj } => {
                            let prev = guard.objects.get_mut(&gr).and_then(|m| m.remove(&key));
                            guard.push_event(Event {
                                rev: obj.rv,
                                gr,
                                kind: EventType::Deleted,
                                obj,
                                prev,
                            });
                        }
                    }
                }
                guard.rev = end_rev;
                drop(guard);
                rev_tx.send_replace(end_rev);
                for (reply, out) in results {
                    let _ = reply.send(out);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, from = start_rev, to = end_rev, "commit failed");
                for (reply, out) in results {
                    let answer = match out {
                        Ok(_) => Err(ApiError::internal(format!("storage commit failed: {e}"))),
                        Err(err) => Err(err),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
    tracing::info!("store writer stopped");
}

fn commit(db: &redb::Database, ops: &[Op], rev: u64) -> Result<(), Error> {
    let w = db.begin_write()?;
    {
        let mut objects = w.open_table(OBJECTS)?;
        for op in ops {
            match op {
                Op::Put { gr, key, obj, .. } => {
                    objects.insert(format!("{gr}|{key}").as_str(), &obj.json[..])?;
                }
                Op::Delete { gr, key, .. } => {
                    objects.remove(format!("{gr}|{key}").as_str())?;
                }
            }
        }
        let mut meta = w.open_table(META)?;
        meta.insert(REVISION_KEY, rev)?;
    }
    w.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(name: &'static str) -> TxFn {
        Box::new(move |t: &mut Txn<'_>| {
            t.put(
                "configmaps",
                json!({"metadata": {"name": name, "namespace": "default"}}),
                &[],
            )
        })
    }

    #[tokio::test]
    async fn writes_survive_reopen_and_revisions_rise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), 100, |_| vec![]).expect("open");
        let a = store.write(put("a")).await.expect("write a");
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        store.write(put("b")).await.expect("write b");
        assert_eq!(store.read().rev, 2);
        assert_eq!(store.read().events_after(0).expect("window").len(), 2);
        drop(store);
        // The writer thread exits when the last handle goes; give it a moment to close the file.
        let mut reopened = None;
        for _ in 0..50 {
            match Store::open(dir.path(), 100, |_| vec![]) {
                Ok(s) => {
                    reopened = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        let store = reopened.expect("reopen");
        assert_eq!(store.read().rev, 2);
        assert!(store.read().get("configmaps", "default/a").is_some());
        assert_eq!(store.read().events_after(1).err(), Some(2));
        let c = store.write(put("c")).await.expect("write c");
        assert_eq!(c["metadata"]["resourceVersion"], "3");
    }

    #[tokio::test]
    async fn failed_job_leaves_no_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), 100, |_| vec![]).expect("open");
        let err = store
            .write(Box::new(|t: &mut Txn<'_>| {
                t.put(
                    "configmaps",
                    json!({"metadata": {"name": "x", "namespace": "default"}}),
                    &[],
                )?;
                Err(ApiError::bad_request("no"))
            }))
            .await;
        assert!(err.is_err());
        assert!(store.read().get("configmaps", "default/x").is_none());
        let ok = store.write(put("y")).await.expect("write");
        assert_eq!(ok["metadata"]["resourceVersion"], "1");
    }
}
