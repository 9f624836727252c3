//! Benchmark of `virt-cluster apiserver` (not a timed test; `cargo bench -p virt-cluster`).
//!
//! Prints: durable creates/s of 10,000 small objects, gets/s, list latency over 10,000 objects,
//! watch delivery latency (p50/p99) to 100 watchers, and the server's RSS holding 10,000 VMs.
//! Targets: >= 2,000 creates/s, p99 < 10 ms, < 200 MB RSS.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;

const N: usize = 10_000;
const CONCURRENCY: usize = 64;
const WATCHERS: usize = 100;
const UPDATES: usize = 500;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn vm(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"runStrategy": "Halted", "template": {
            "metadata": {"labels": {"kubevirt.io/domain": name}},
            "spec": {"domain": {"devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}],
                                            "interfaces": [{"name": "default", "masquerade": {}}]},
                                "resources": {"requests": {"memory": "64M"}}},
                     "networks": [{"name": "default", "pod": {}}],
                     "volumes": [{"name": "containerdisk", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}}]}}}
    })
}

/// Starts a server on `dir`; returns its guard and pid.
fn spawn(dir: &std::path::Path) -> Result<(Guard, u32), Box<dyn std::error::Error>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-cluster"))
        .args(["apiserver", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let pid = child.id();
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    println!("server: {}", line.trim());
    Ok((guard, pid))
}

async fn client(dir: &std::path::Path) -> Result<kube::Client, Box<dyn std::error::Error>> {
    let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig"))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let small = tempfile::tempdir()?;
    {
        let (_guard, pid) = spawn(small.path())?;
        rt.block_on(small_objects(small.path(), pid))?;
    }
    let vms = tempfile::tempdir()?;
    {
        let (_guard, pid) = spawn(vms.path())?;
        rt.block_on(virtual_machines(vms.path(), pid))?;
    }
    // The same 10,000 VMs loaded from disk by a fresh process.
    let (_guard, pid) = spawn(vms.path())?;
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "server RSS after a restart loading {N} VirtualMachines: {:.1} MB",
        rss_mb(pid)
    );
    Ok(())
}

async fn small_objects(dir: &std::path::Path, pid: u32) -> Result<(), Box<dyn std::error::Error>> {
    let client = client(dir).await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    println!("server RSS at start: {:.1} MB", rss_mb(pid));

    // Creates.
    let start = Instant::now();
    futures_util::stream::iter(0..N)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("cm-{i:05}")),
                        labels: Some(BTreeMap::from([("app".into(), "bench".into())])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([("k".into(), "v".into())])),
                    ..Default::default()
                };
                cms.create(&PostParams::default(), &cm).await.map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "create: {N} ConfigMaps in {secs:.2}s = {:.0} durable creates/s ({CONCURRENCY} in flight)",
        N as f64 / secs
    );
    let start = Instant::now();
    for i in 0..200 {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("serial-{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm).await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "create (one at a time): {:.0}/s, {:.2} ms each",
        200.0 / secs,
        secs * 1000.0 / 200.0
    );

    // Gets.
    let start = Instant::now();
    futures_util::stream::iter(0..N)
        .map(|i| {
            let cms = cms.clone();
            async move { cms.get(&format!("cm-{i:05}")).await.map(|_| ()) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    println!("get: {N} in {secs:.2}s = {:.0} gets/s", N as f64 / secs);

    // Lists.
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let l = cms.list(&ListParams::default().labels("app=bench")).await?;
        assert_eq!(l.items.len(), N);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "list: {N} objects in {:.1} ms (median of 5, client decode included)",
        times[2]
    );
    let start = Instant::now();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let l = cms.list(&lp).await?;
        pages += 1;
        token = l.metadata.continue_;
        if token.is_none() {
            break;
        }
    }
    println!(
        "list paged by 500: {pages} pages in {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );

    // Watch delivery.
    let rv = cms
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        let cms = cms.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(stream) = cms
                .watch(
                    &WatchParams::default()
                        .fields("metadata.name=hot")
                        .timeout(290),
                    &rv,
                )
                .await
            else {
                return;
            };
            let mut stream = stream.boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(cm) | WatchEvent::Modified(cm) = ev
                    && let Some(t) = cm.data.and_then(|d| d.get("t").cloned())
                    && let Ok(sent) = t.parse::<u128>()
                {
                    let _ = tx.send((now_ns().saturating_sub(sent)) as f64 / 1e6);
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hot = ConfigMap {
        metadata: ObjectMeta {
            name: Some("hot".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("t".into(), now_ns().to_string())])),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &hot).await?;
    for _ in 0..UPDATES {
        cms.patch(
            "hot",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"t": now_ns().to_string()}})),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let expected = WATCHERS * (UPDATES + 1);
    let mut lat = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lat.len() < expected && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(v)) => lat.push(v),
            _ => break,
        }
    }
    for t in tasks {
        t.abort();
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "watch delivery: {} of {expected} events to {WATCHERS} watchers; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (write-to-client, client decode included)",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );

    println!(
        "server RSS holding {N} ConfigMaps (and the watch window): {:.1} MB",
        rss_mb(pid)
    );
    Ok(())
}

async fn virtual_machines(
    dir: &std::path::Path,
    pid: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = client(dir).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kubevirt_api::crd::all() {
        crds.create(&PostParams::default(), &crd).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachine"),
        "virtualmachines",
    );
    let vms: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    let start = Instant::now();
    futures_util::stream::iter(0..N)
        .map(|i| {
            let vms = vms.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(vm(&format!("vm-{i:05}")))
                    .map_err(kube::Error::SerdeError)?;
                vms.create(&PostParams::default(), &obj).await.map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "create: {N} VirtualMachines in {secs:.2}s = {:.0}/s (schema validation, pruning, managedFields)",
        N as f64 / secs
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "server RSS holding {N} VirtualMachines: {:.1} MB",
        rss_mb(pid)
    );
    Ok(())
}
