//! `bench-density`: KubeVirt's sig-performance density scenario against a running virt-cluster,
//! and in the same run the floor (the same domains started by bare libvirtds).
//!
//! ```sh
//! scripts/bench-density [--count 20] [--interval-ms 100]     # starts and stops its own cluster
//! bench-density --data-dir DATA [--count N] [--interval-ms MS] [--memory 128Mi] ...
//! ```
//!
//! 1. Creates N VMIs (containerDisk with the test guest, masquerade pod network), one every
//!    `--interval-ms`, whatever the API server's latency (each create is its own task).
//! 2. Times each from just before its create request to the moment a watch sees
//!    `status.phase: Running` (the API's timestamps have one-second resolution, too coarse for
//!    these figures), and the first sighting of each earlier phase.
//! 3. After `--settle-s`, reads the memory of every process in each VMI's pod (found by the pod
//!    cgroup, so QEMU, which libvirt daemonizes, is found too): QEMU apart, the rest (the
//!    launcher with its embedded libvirt, the containerDisk placeholders) is our own overhead,
//!    plus the node's virt-handler and kubelet divided by N.
//! 4. Deletes the VMIs, then starts the floor: the same VMI (as the API server stored it,
//!    defaulted), converted by virt-launcher's converter, started N times by a bare `libvirtd`
//!    each (warm capability cache), at the same interval, and measures those the same way.
//!
//! Exits 1 if a VMI does not reach Running within `--timeout-s`, or the floor fails.

mod floor;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt as _, watcher};
use kubevirt_rs_bench::procs::{self, Mem};
use kubevirt_rs_bench::stats::{Summary, summarize};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    about = "VMI density: creation-to-Running latency and memory per VMI, against a bare-libvirtd floor",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One floor VM (internal: started by the benchmark itself).
    #[command(hide = true)]
    FloorVm(floor::FloorArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The cluster's data directory (kubeconfig, pid files of kubelets and virt-handlers).
    #[arg(long, default_value = "/var/lib/kubevirt-rs")]
    data_dir: PathBuf,
    /// Number of VMIs.
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Interval between two creations, in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Guest memory of each VMI (resources.requests.memory).
    #[arg(long, default_value = "128Mi")]
    memory: String,
    /// CPU request of each VMI (resources.requests.cpu; empty: none). Without one a VMI's pod
    /// requests upstream's default 100m plus 1m per containerDisk container, so only 19 fit on
    /// a 2-CPU node; 50m fits the default 20 with room to spare.
    #[arg(long, default_value = "50m")]
    cpu_request: String,
    /// The containerDisk image.
    #[arg(long, default_value = "127.0.0.1:5000/kubevirt-rs/guest:latest")]
    image: String,
    /// The namespace the VMIs are created in.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Seconds after the last creation for every VMI to be Running.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Seconds between the last VMI Running and reading memory (QEMU's and the launcher's
    /// memory grows during the first seconds of the guest).
    #[arg(long, default_value_t = 5)]
    settle_s: u64,
    /// The guest disk the floor's domains boot (the same image the containerDisk holds; default:
    /// scripts/guest-image's guest.qcow2).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Skip the floor.
    #[arg(long)]
    no_floor: bool,
    /// Skip the warm-up VMI (one VMI run to Running and deleted before the measured ones, as
    /// the floor's warm-up: the node then holds the pulled containerDisk and a warm QEMU
    /// capability cache, as a node that has run VMs before does).
    #[arg(long)]
    no_warmup: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::FloorVm(args)) = &cli.cmd {
        // Before any thread: the floor VM enters private namespaces.
        return floor::child(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = rt.block_on(async {
        tokio::select! {
            r = bench(&cli.run) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("bench-density: interrupted; deleting this run's VMIs");
                let cleanup = delete_run_vmis(&cli.run);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(15), cleanup).await {
                    eprintln!("bench-density: deleting the VMIs: {e}");
                }
                Ok(130)
            }
        }
    })?;
    // Dropping the runtime drops the floor VMs' guards (they kill what is left).
    drop(rt);
    std::process::exit(code);
}

fn vmi_resource() -> ApiResource {
    ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachineInstance".into(),
        plural: "virtualmachineinstances".into(),
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("loading the kubeconfig")?;
    kube::Client::try_from(cfg).context("building the client")
}

const LABEL: &str = "kubevirt-rs.io/bench";

/// This run's id (the VMIs' label value and name infix).
fn run_id() -> String {
    format!("{:x}", std::process::id())
}

/// Best effort, for an interrupted run: deletes the VMIs it created.
async fn delete_run_vmis(args: &RunArgs) {
    let Ok(client) = client(&args.data_dir.join("kubeconfig")).await else {
        return;
    };
    let vmis: Api<DynamicObject> = Api::namespaced_with(client, &args.namespace, &vmi_resource());
    let lp = ListParams::default().labels(&format!("{LABEL}={}", run_id()));
    let _ = vmis.delete_collection(&DeleteParams::default(), &lp).await;
}

fn vmi_manifest(args: &RunArgs, run: &str, name: &str) -> Value {
    let mut requests = json!({"memory": args.memory});
    if !args.cpu_request.is_empty() {
        requests["cpu"] = json!(args.cpu_request);
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": args.namespace,
            "labels": {LABEL: run},
        },
        "spec": {
            "domain": {
                "devices": {
                    "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "default", "masquerade": {}}],
                },
                "resources": {"requests": requests},
            },
            "networks": [{"name": "default", "pod": {}}],
            "terminationGracePeriodSeconds": 0,
            "volumes": [{"name": "containerdisk", "containerDisk": {"image": args.image}}],
        },
    })
}

/// When the watch first saw each phase of each VMI.
type Seen = Arc<Mutex<HashMap<String, BTreeMap<String, Instant>>>>;

fn default_disk() -> PathBuf {
    let cache = std::env::var_os("KUBEVIRT_RS_CACHE")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/kubevirt-rs")
        });
    cache.join("guest/guest.qcow2")
}

/// The pids of the node agents (`kubelet-*`, `virt-handler-*` pid files of virt-cluster).
fn node_agents(run_dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(component) = name.strip_suffix(".pid") else {
            continue;
        };
        if (component.starts_with("kubelet-") || component.starts_with("virt-handler-"))
            && let Some(pid) = procs::pid_file(&e.path())
        {
            out.push((component.to_string(), pid));
        }
    }
    out.sort();
    out
}

fn agents_memory(agents: &[(String, u32)]) -> Mem {
    agents.iter().filter_map(|(_, p)| procs::memory(*p)).sum()
}

/// Memory of one VMI's pod: QEMU, and everything else.
#[derive(Clone, Debug, Default)]
struct PodMem {
    qemu: Mem,
    launcher: Mem,
    other: Mem,
    qemu_found: bool,
    /// Every process: command name and memory (for the breakdown of one pod).
    processes: Vec<(String, Mem)>,
}

fn pod_memory(pod_uid: &str) -> PodMem {
    let mut m = PodMem::default();
    for pid in procs::pod_processes(pod_uid) {
        let (Some(comm), Some(mem)) = (procs::comm(pid), procs::memory(pid)) else {
            continue;
        };
        m.processes.push((comm.clone(), mem));
        if procs::is_qemu(&comm) {
            m.qemu = m.qemu + mem;
            m.qemu_found = true;
        } else if comm.starts_with("virt-launcher") {
            m.launcher = m.launcher + mem;
        } else {
            m.other = m.other + mem;
        }
    }
    m
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn line(label: &str, s: Option<Summary>, unit: &str) {
    match s {
        Some(s) => println!(
            "  {label:<34} p50 {:>8.1}  p95 {:>8.1}  max {:>8.1}  min {:>8.1} {unit}  (n={})",
            s.p50, s.p95, s.max, s.min, s.n
        ),
        None => println!("  {label:<34} (no samples)"),
    }
}

fn summary_json(s: Option<Summary>) -> Value {
    s.map(|s| json!({"n": s.n, "p50": s.p50, "p95": s.p95, "min": s.min, "max": s.max}))
        .unwrap_or(Value::Null)
}

async fn bench(args: &RunArgs) -> anyhow::Result<i32> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let kubeconfig = args.data_dir.join("kubeconfig");
    let client = client(&kubeconfig).await?;
    let run = run_id();
    let vmis: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &args.namespace, &vmi_resource());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let selector = format!("{LABEL}={run}");
    let agents = node_agents(&args.data_dir.join("run"));
    if agents.is_empty() {
        bail!(
            "no kubelet or virt-handler pid files in {}: is the cluster up?",
            args.data_dir.join("run").display()
        );
    }
    let agents_idle = agents_memory(&agents);
    println!(
        "bench-density: {} VMIs ({} guest memory, cpu request {}, {}), {} ms apart; run {run}",
        args.count,
        args.memory,
        if args.cpu_request.is_empty() {
            "none"
        } else {
            &args.cpu_request
        },
        args.image,
        args.interval_ms
    );

    if !args.no_warmup {
        warm_up(args, &run, &vmis, &pods).await?;
    }

    // Watch first, so that no transition is missed.
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let watch = {
        let seen = seen.clone();
        let api = vmis.clone();
        let cfg = watcher::Config::default().labels(&selector);
        tokio::spawn(async move {
            let mut stream = watcher(api, cfg).default_backoff().boxed();
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let obj = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    _ => continue,
                };
                let Some(name) = obj.metadata.name.clone() else {
                    continue;
                };
                let phase = obj
                    .data
                    .pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Ok(mut s) = seen.lock() {
                    s.entry(name).or_default().entry(phase).or_insert(now);
                }
            }
        })
    };
    // Let the watch establish before the first create.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let names: Vec<String> = (0..args.count)
        .map(|i| format!("density-{run}-{i:03}"))
        .collect();
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut creates = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for name in &names {
        tick.tick().await;
        let obj: DynamicObject = serde_json::from_value(vmi_manifest(args, &run, name))?;
        let api = vmis.clone();
        let t = Instant::now();
        created.insert(name.clone(), t);
        let n = name.clone();
        creates.spawn(async move {
            let r = api.create(&PostParams::default(), &obj).await;
            (n, r.map(|_| t.elapsed()))
        });
    }
    let mut create_ms = Vec::new();
    let mut failed_creates = Vec::new();
    while let Some(r) = creates.join_next().await {
        match r {
            Ok((_, Ok(d))) => create_ms.push(d.as_secs_f64() * 1000.0),
            Ok((n, Err(e))) => failed_creates.push(format!("{n}: {e}")),
            Err(e) => failed_creates.push(format!("create task: {e}")),
        }
    }
    let last_create = Instant::now();
    for f in &failed_creates {
        eprintln!("bench-density: create failed: {f}");
    }

    // Wait for Running (or Failed) everywhere.
    let deadline = last_create + Duration::from_secs(args.timeout_s);
    loop {
        let (running, done) = {
            let s = seen
                .lock()
                .map_err(|_| anyhow::anyhow!("watch state poisoned"))?;
            let running = names
                .iter()
                .filter(|n| s.get(*n).is_some_and(|p| p.contains_key("Running")))
                .count();
            let done = names
                .iter()
                .filter(|n| {
                    s.get(*n).is_some_and(|p| {
                        p.contains_key("Running")
                            || p.contains_key("Failed")
                            || p.contains_key("Succeeded")
                    })
                })
                .count();
            (running, done)
        };
        if done + failed_creates.len() >= names.len() || Instant::now() > deadline {
            println!("  {running}/{} VMIs Running", names.len());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshot = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("watch state poisoned"))?
        .clone();
    watch.abort();

    let ms_since = |name: &str, phase: &str| -> Option<f64> {
        let t0 = created.get(name)?;
        let t = snapshot.get(name)?.get(phase)?;
        Some(t.saturating_duration_since(*t0).as_secs_f64() * 1000.0)
    };
    let running_ms: Vec<f64> = names
        .iter()
        .filter_map(|n| ms_since(n, "Running"))
        .collect();
    let not_running: Vec<String> = names
        .iter()
        .filter(|n| ms_since(n, "Running").is_none())
        .map(|n| {
            let phases: Vec<&String> = snapshot
                .get(n)
                .map(|p| p.keys().collect())
                .unwrap_or_default();
            format!("{n} (phases seen: {phases:?})")
        })
        .collect();
    let phase_ms = |phase: &str| -> Option<Summary> {
        let v: Vec<f64> = names.iter().filter_map(|n| ms_since(n, phase)).collect();
        summarize(&v)
    };

    // Memory, once settled.
    tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    let vmi_list = vmis.list(&ListParams::default().labels(&selector)).await?;
    let mut uid_to_vmi: HashMap<String, DynamicObject> = HashMap::new();
    for v in vmi_list.items {
        if let Some(uid) = v.metadata.uid.clone() {
            uid_to_vmi.insert(uid, v);
        }
    }
    let pod_list = pods
        .list(&ListParams::default().labels("kubevirt.io=virt-launcher"))
        .await?;
    let mut pod_mems: Vec<PodMem> = Vec::new();
    for pod in &pod_list.items {
        let owner = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubevirt.io/created-by"))
            .cloned()
            .unwrap_or_default();
        if !uid_to_vmi.contains_key(&owner) {
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Running") {
            continue;
        }
        if let Some(uid) = pod.metadata.uid.as_deref() {
            pod_mems.push(pod_memory(uid));
        }
    }
    let agents_busy = agents_memory(&agents);
    let pods_measured = pod_mems.len().max(1) as u64;
    let share = |m: Mem| Mem {
        rss_kib: m.rss_kib / args.count as u64,
        pss_kib: m.pss_kib / args.count as u64,
    };
    let agent_share = share(agents_busy);
    let pod_own_rss: Vec<f64> = pod_mems
        .iter()
        .map(|m| mib((m.launcher + m.other).rss_kib))
        .collect();
    let pod_own_pss: Vec<f64> = pod_mems
        .iter()
        .map(|m| mib((m.launcher + m.other).pss_kib))
        .collect();
    let own_rss: Vec<f64> = pod_own_rss
        .iter()
        .map(|r| r + mib(agent_share.rss_kib))
        .collect();
    let own_pss: Vec<f64> = pod_own_pss
        .iter()
        .map(|r| r + mib(agent_share.pss_kib))
        .collect();
    let launcher_rss: Vec<f64> = pod_mems.iter().map(|m| mib(m.launcher.rss_kib)).collect();
    let other_rss: Vec<f64> = pod_mems.iter().map(|m| mib(m.other.rss_kib)).collect();
    let qemu_rss: Vec<f64> = pod_mems
        .iter()
        .filter(|m| m.qemu_found)
        .map(|m| mib(m.qemu.rss_kib))
        .collect();
    let qemu_pss: Vec<f64> = pod_mems
        .iter()
        .filter(|m| m.qemu_found)
        .map(|m| mib(m.qemu.pss_kib))
        .collect();
    let _ = pods_measured;

    // The floor VMI: the first Running VMI as stored (defaulted), renamed.
    let template = uid_to_vmi
        .values()
        .find(|v| v.data.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .or_else(|| uid_to_vmi.values().next())
        .cloned();

    // Delete ours before the floor runs, so that both see the same load.
    let deleted_at = Instant::now();
    for n in &names {
        let _ = vmis.delete(n, &DeleteParams::default()).await;
    }
    let gone_deadline = deleted_at + Duration::from_secs(120);
    loop {
        let left = pods
            .list(&ListParams::default().labels("kubevirt.io=virt-launcher"))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubevirt.io/created-by"))
                            .is_some_and(|o| uid_to_vmi.contains_key(o))
                    })
                    .count()
            })
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        if Instant::now() > gone_deadline {
            eprintln!("bench-density: {left} launcher pods still there 120 s after deletion");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The floor.
    let mut floor_result: Option<FloorFigures> = None;
    let mut floor_error: Option<String> = None;
    if !args.no_floor {
        match template {
            Some(t) => match run_floor(args, &t).await {
                Ok(f) => floor_result = Some(f),
                Err(e) => floor_error = Some(format!("{e:#}")),
            },
            None => floor_error = Some("no VMI to take the floor's domain from".into()),
        }
    }

    // Report.
    let ours = summarize(&running_ms);
    println!();
    println!("creation -> Running (client side: create request sent -> watch sees the phase)");
    line("ours: create request answered", summarize(&create_ms), "ms");
    for phase in ["Pending", "Scheduling", "Scheduled"] {
        line(&format!("ours: -> {phase}"), phase_ms(phase), "ms");
    }
    line("ours: -> Running", ours, "ms");
    if let Some(f) = &floor_result {
        line("floor: libvirtd start + create", f.total, "ms");
        line("floor: libvirtd start (warm cache)", f.daemon, "ms");
        line("floor: create only (warm daemon)", f.create, "ms");
    }
    println!();
    println!("memory per VMI (MiB; RSS = VmRSS, PSS = smaps_rollup Pss)");
    if let Some(first) = pod_mems.first() {
        let parts: Vec<String> = first
            .processes
            .iter()
            .map(|(c, m)| format!("{c} {:.1}/{:.1}", mib(m.rss_kib), mib(m.pss_kib)))
            .collect();
        println!("  one pod's processes (RSS/PSS MiB): {}", parts.join(", "));
    }
    line(
        "ours: launcher (embedded libvirt) RSS",
        summarize(&launcher_rss),
        "MiB",
    );
    line(
        "ours: other pod processes RSS",
        summarize(&other_rss),
        "MiB",
    );
    println!(
        "  {:<34} {:.1} MiB RSS ({:.1} PSS) for {} agents; idle {:.1} MiB; share per VMI {:.1} MiB RSS",
        "ours: virt-handler + kubelet",
        mib(agents_busy.rss_kib),
        mib(agents_busy.pss_kib),
        agents.len(),
        mib(agents_idle.rss_kib),
        mib(agent_share.rss_kib),
    );
    line("ours: own overhead RSS", summarize(&own_rss), "MiB");
    line("ours: own overhead PSS", summarize(&own_pss), "MiB");
    line("ours: QEMU RSS", summarize(&qemu_rss), "MiB");
    line("ours: QEMU PSS", summarize(&qemu_pss), "MiB");
    if let Some(f) = &floor_result {
        line("floor: libvirtd RSS", f.libvirtd_rss, "MiB");
        line("floor: libvirtd PSS", f.libvirtd_pss, "MiB");
        line("floor: QEMU RSS", f.qemu_rss, "MiB");
    }
    println!();
    let ratio = |a: Option<Summary>, b: Option<Summary>, pick: fn(&Summary) -> f64| {
        a.zip(b).map(|(a, b)| pick(&a) / pick(&b))
    };
    let mut verdict = Vec::new();
    let own = summarize(&own_rss);
    let check = |ok: bool| if ok { "met" } else { "NOT met" };
    if let Some(s) = ours {
        verdict.push(format!(
            "p50 {:.0} ms <= 1000 ms: {}",
            s.p50,
            check(s.p50 <= 1000.0)
        ));
        verdict.push(format!(
            "p95 {:.0} ms <= 2000 ms: {}",
            s.p95,
            check(s.p95 <= 2000.0)
        ));
    }
    let (r50, r95) = floor_result
        .as_ref()
        .map(|f| {
            (
                ratio(ours, f.total, |s| s.p50),
                ratio(ours, f.total, |s| s.p95),
            )
        })
        .unwrap_or((None, None));
    if let Some(r) = r50 {
        verdict.push(format!(
            "ratio ours/floor p50 {r:.2} (p95 {:.2}) <= 1.5: {}",
            r95.unwrap_or(f64::NAN),
            check(r <= 1.5)
        ));
    }
    if let Some(o) = own {
        verdict.push(format!(
            "own overhead RSS p50 {:.1} MiB (max {:.1}) <= 40 MiB: {}",
            o.p50,
            o.max,
            check(o.max <= 40.0)
        ));
    }
    if let Some(o) = summarize(&own_pss) {
        verdict.push(format!(
            "(own overhead PSS p50 {:.1} MiB, max {:.1}: shared library and binary pages divided among the processes mapping them)",
            o.p50, o.max
        ));
    }
    if let (Some(o), Some(c)) = (ours, floor_result.as_ref().and_then(|f| f.create)) {
        verdict.push(format!(
            "(against create-only on an already running libvirtd: ratio p50 {:.2}, p95 {:.2})",
            o.p50 / c.p50,
            o.p95 / c.p95
        ));
    }
    println!("targets (upstream: p50 15-25 s, 240 MiB reserved per VMI)");
    for v in &verdict {
        println!("  {v}");
    }
    if let Some(e) = &floor_error {
        println!("  floor FAILED: {e}");
    }
    if !not_running.is_empty() {
        println!("  NOT Running within {} s:", args.timeout_s);
        for n in &not_running {
            println!("    {n}");
        }
    }

    if let Some(path) = &args.json {
        let doc = json!({
            "count": args.count,
            "interval_ms": args.interval_ms,
            "memory": args.memory,
            "running_ms": summary_json(ours),
            "create_ms": summary_json(summarize(&create_ms)),
            "scheduled_ms": summary_json(phase_ms("Scheduled")),
            "own_rss_mib": summary_json(own),
            "own_pss_mib": summary_json(summarize(&own_pss)),
            "launcher_rss_mib": summary_json(summarize(&launcher_rss)),
            "pod_other_rss_mib": summary_json(summarize(&other_rss)),
            "agents_rss_mib": mib(agents_busy.rss_kib),
            "agents_idle_rss_mib": mib(agents_idle.rss_kib),
            "qemu_rss_mib": summary_json(summarize(&qemu_rss)),
            "floor_total_ms": summary_json(floor_result.as_ref().and_then(|f| f.total)),
            "floor_create_ms": summary_json(floor_result.as_ref().and_then(|f| f.create)),
            "floor_libvirtd_rss_mib": summary_json(floor_result.as_ref().and_then(|f| f.libvirtd_rss)),
            "floor_qemu_rss_mib": summary_json(floor_result.as_ref().and_then(|f| f.qemu_rss)),
            "ratio_p50": r50,
            "ratio_p95": r95,
            "not_running": not_running,
            "floor_error": floor_error,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let failed = !not_running.is_empty() || !failed_creates.is_empty() || floor_error.is_some();
    Ok(if failed { 1 } else { 0 })
}

/// One VMI to Running and deleted again (not measured).
async fn warm_up(
    args: &RunArgs,
    run: &str,
    vmis: &Api<DynamicObject>,
    pods: &Api<Pod>,
) -> anyhow::Result<()> {
    let name = format!("density-{run}-warmup");
    let obj: DynamicObject =
        serde_json::from_value(vmi_manifest(args, &format!("{run}-warmup"), &name))?;
    let t0 = Instant::now();
    let created = vmis
        .create(&PostParams::default(), &obj)
        .await
        .context("create the warm-up VMI")?;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let deadline = t0 + Duration::from_secs(args.timeout_s);
    loop {
        let phase = vmis.get_opt(&name).await.ok().flatten().and_then(|v| {
            v.data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map(String::from)
        });
        if phase.as_deref() == Some("Running") {
            break;
        }
        if Instant::now() > deadline {
            let _ = vmis.delete(&name, &DeleteParams::default()).await;
            bail!(
                "the warm-up VMI {name} is not Running after {} s (phase {phase:?})",
                args.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  warm-up VMI Running in {:.1} s (not counted)",
        t0.elapsed().as_secs_f64()
    );
    let _ = vmis.delete(&name, &DeleteParams::default()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let left = pods
            .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

struct FloorFigures {
    total: Option<Summary>,
    daemon: Option<Summary>,
    create: Option<Summary>,
    libvirtd_rss: Option<Summary>,
    libvirtd_pss: Option<Summary>,
    qemu_rss: Option<Summary>,
}

/// A directory removed on drop (after the floor VMs, declared before them, are gone).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run_floor(args: &RunArgs, template: &DynamicObject) -> anyhow::Result<FloorFigures> {
    let disk = args.disk.clone().unwrap_or_else(default_disk);
    if !disk.is_file() {
        bail!("no guest disk at {} (scripts/guest-image)", disk.display());
    }
    let exe = std::env::current_exe().context("own executable")?;
    // Short: socket paths under it must fit in 107 bytes.
    let tmp = TempDir(PathBuf::from(format!("/tmp/bd{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&tmp.0);
    let caps = tmp.0.join("caps");
    std::fs::create_dir_all(&caps)?;
    // Warm: the nodes' capability caches (what the cluster's launchers used), if any.
    if let Ok(nodes) = std::fs::read_dir(args.data_dir.join("nodes")) {
        for n in nodes.flatten() {
            if let Ok(files) = std::fs::read_dir(n.path().join("libvirt-caps")) {
                for f in files.flatten() {
                    let _ = std::fs::copy(f.path(), caps.join(f.file_name()));
                }
            }
        }
    }
    let mut v = serde_json::to_value(template)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    let volumes: Vec<String> = v
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("containerDisk").is_some())
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let disks: Vec<(String, PathBuf)> = volumes.into_iter().map(|n| (n, disk.clone())).collect();
    let limit = Duration::from_secs(120);
    let vmi_file = |i: usize| -> anyhow::Result<PathBuf> {
        let mut v = v.clone();
        v["metadata"] = json!({
            "name": format!("floor{i}"),
            "namespace": "bench",
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
        });
        let p = tmp.0.join(format!("vmi{i}.json"));
        std::fs::write(&p, serde_json::to_vec(&v)?)?;
        Ok(p)
    };
    // Warm-up (not counted): fills the capability cache and the KVM verdict if the nodes had
    // none, and the page cache.
    let warm_dir = tmp.0.join("w");
    let warm = floor::start(&exe, &vmi_file(0)?, &warm_dir, &caps, &disks, limit).await?;
    warm.stop(Duration::from_secs(30)).await;

    let mut starts = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    for i in 1..=args.count {
        tick.tick().await;
        let file = vmi_file(i)?;
        let dir = tmp.0.join(format!("f{i}"));
        let (exe, caps, disks) = (exe.clone(), caps.clone(), disks.clone());
        starts.spawn(async move { floor::start(&exe, &file, &dir, &caps, &disks, limit).await });
    }
    let mut vms = Vec::new();
    let mut first_error = None;
    while let Some(r) = starts.join_next().await {
        match r {
            Ok(Ok(vm)) => vms.push(vm),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("floor task: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        for vm in vms {
            vm.stop(Duration::from_secs(30)).await;
        }
        return Err(e);
    }
    tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    let mem = |pid: u32| procs::memory(pid).unwrap_or_default();
    let libvirtd: Vec<Mem> = vms.iter().map(|vm| mem(vm.report.libvirtd_pid)).collect();
    let qemu: Vec<Mem> = vms.iter().map(|vm| mem(vm.report.qemu_pid)).collect();
    let figures = FloorFigures {
        total: summarize(&vms.iter().map(|vm| vm.report.total_ms).collect::<Vec<_>>()),
        daemon: summarize(&vms.iter().map(|vm| vm.report.daemon_ms).collect::<Vec<_>>()),
        create: summarize(&vms.iter().map(|vm| vm.report.create_ms).collect::<Vec<_>>()),
        libvirtd_rss: summarize(&libvirtd.iter().map(|m| mib(m.rss_kib)).collect::<Vec<_>>()),
        libvirtd_pss: summarize(&libvirtd.iter().map(|m| mib(m.pss_kib)).collect::<Vec<_>>()),
        qemu_rss: summarize(&qemu.iter().map(|m| mib(m.rss_kib)).collect::<Vec<_>>()),
    };
    let stops: Vec<_> = vms
        .into_iter()
        .map(|vm| vm.stop(Duration::from_secs(30)))
        .collect();
    futures_util::future::join_all(stops).await;
    Ok(figures)
}
