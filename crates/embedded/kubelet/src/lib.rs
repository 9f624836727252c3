//! The embedded kubelet: registers a Node, keeps its Lease, and runs the pods bound to it as
//! processes, each pod in its own network namespace, mount namespace and cgroup. It speaks only
//! the Kubernetes API (plus its own HTTPS port for logs, as a real kubelet).
//!
//! Pure decisions live in [`status`], [`backoff`], [`images`], [`downward`], [`network`]
//! (naming and addressing), [`volumes`] (paths and mounts) and [`probes`] (thresholds); the rest
//! is I/O around them. See the crate README for the layout on disk and the contracts.

pub mod admission;
pub mod backoff;
pub mod cgroup;
pub mod downward;
pub mod exec;
pub mod images;
pub mod logs;
pub mod network;
pub mod node;
mod pods;
pub mod probes;
pub mod provisioner;
pub mod pull;
pub mod runtime;
pub mod shim;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{Mutex, watch};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("network: {0}")]
    Net(#[from] network::NetError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
}

/// Kubelet configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// The cluster's data directory; this node's root is `DATA/nodes/<node>/kubelet`.
    pub data_dir: PathBuf,
    /// Node `i` gets the pod CIDR `10.244.i.0/24` (1..=254).
    pub node_index: u32,
    /// The namespace routing between nodes (`kvrs-fabric`; tests use their own).
    pub fabric_netns: String,
    /// The shim command (program and leading arguments; the attempt directory is appended).
    pub shim: Vec<OsString>,
    pub images: images::ImageTable,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub insecure_registries: Vec<String>,
    pub backoff: backoff::BackoffPolicy,
    pub lease_duration: Duration,
    pub heartbeat: Duration,
    /// The kubelet's HTTPS port (logs); port 0 picks one.
    pub listen: SocketAddr,
    /// The node's address as reported (the API server reaches the kubelet here).
    pub host_ip: String,
    /// Also run the cluster's local-path provisioner (one kubelet per cluster should).
    pub provisioner: bool,
    /// How often configMap, secret, downwardAPI and projected volumes are rewritten.
    pub volume_refresh: Duration,
    /// PEM of the CA whose client certificates the HTTPS endpoint accepts (the cluster CA);
    /// `None` serves anyone on the loopback.
    pub client_ca: Option<String>,
}

impl Config {
    /// Defaults for `node` under `data_dir`, with programs from `bin_dir`.
    pub fn new(node: &str, data_dir: &Path, bin_dir: &Path, shim: Vec<OsString>) -> Config {
        Config {
            node_name: node.to_string(),
            data_dir: data_dir.to_path_buf(),
            node_index: 1,
            fabric_netns: "kvrs-fabric".into(),
            shim,
            images: images::ImageTable::with_defaults(bin_dir),
            cpu: None,
            memory: None,
            max_pods: 110,
            labels: BTreeMap::new(),
            insecure_registries: vec!["127.0.0.1:5000".into(), "localhost:5000".into()],
            backoff: backoff::BackoffPolicy::default(),
            lease_duration: Duration::from_secs(40),
            heartbeat: Duration::from_secs(10),
            listen: SocketAddr::from(([127, 0, 0, 1], 10250)),
            host_ip: "127.0.0.1".into(),
            provisioner: false,
            volume_refresh: Duration::from_secs(60),
            client_ca: None,
        }
    }

    /// `DATA/nodes/<node>/kubelet` (plays `/var/lib/kubelet`).
    pub fn root(&self) -> PathBuf {
        self.node_dir().join("kubelet")
    }

    /// `DATA/nodes/<node>`: the node's own files (kubelet root, libvirt capability cache).
    pub fn node_dir(&self) -> PathBuf {
        self.data_dir.join("nodes").join(&self.node_name)
    }
}

/// State shared by the kubelet's tasks.
pub(crate) struct Shared {
    pub client: Client,
    pub config: Config,
    pub root: PathBuf,
    pub cgroups: cgroup::Cgroups,
    pub addrs: network::NodeAddrs,
    pub ip_lock: Mutex<()>,
    pub recorder: Recorder,
    pub index: logs::PodIndex,
    pub puller: pull::Puller,
    pub host_ip: String,
    /// The node's allocatable, in thousandths (for admission).
    pub allocatable: kubevirt_embedded_scheduler::predicates::Resources,
    /// Requests of the pods admitted to run here, by uid.
    pub admitted:
        std::sync::Mutex<HashMap<String, kubevirt_embedded_scheduler::predicates::Resources>>,
}

impl Shared {
    /// Pod addresses in use on this node (from the pods' `network.json`).
    pub fn used_ips(&self) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("pods")) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path().join("network.json"))
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b)
                    && let Some(ip) = v["ip"].as_str().and_then(|s| s.parse().ok())
                {
                    out.push(ip);
                }
            }
        }
        out
    }
}

/// A running kubelet.
pub struct Running {
    /// The HTTPS endpoint (logs).
    pub addr: SocketAddr,
    facts: node::NodeFacts,
    client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the kubelet as a crash would: pods keep running, the Node is left as it is.
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Stops the kubelet: pods keep running; the Node goes NotReady (Ready Unknown) with the
    /// `node.kubernetes.io/unreachable` taints, as Kubernetes marks a node whose kubelet stopped.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = node::mark_stopped(&self.client, &self.facts).await {
            tracing::warn!(node = %self.facts.name, error = %e, "marking the node stopped failed");
        }
    }
}

/// Starts the kubelet: network, Node, Lease, log endpoint, pod workers.
pub async fn start(client: Client, config: Config) -> Result<Running, Error> {
    let root = config.root();
    std::fs::create_dir_all(root.join("pods")).map_err(|e| Error::Io {
        what: root.display().to_string(),
        source: e,
    })?;
    let addrs =
        network::ensure_node(&config.node_name, config.node_index, &config.fabric_netns).await?;
    share_pods_dir(&root.join("pods"))?;
    let cgroups = cgroup::Cgroups::detect_system(&config.node_name);
    tracing::info!(node = %config.node_name, cgroups = ?cgroups, "cgroups");
    let index: logs::PodIndex = Arc::new(RwLock::new(HashMap::new()));
    let (addr, server) = logs::serve_authenticated(
        config.listen,
        logs::router(root.clone(), index.clone()),
        config.client_ca.as_deref(),
    )
    .await
    .map_err(|e| Error::Io {
        what: format!("listening on {}", config.listen),
        source: e,
    })?;
    let (cpu, memory) = node::machine_capacity();
    let facts = node::NodeFacts {
        name: config.node_name.clone(),
        cpu: config.cpu.clone().unwrap_or(cpu),
        memory: config.memory.clone().unwrap_or(memory),
        pods: config.max_pods,
        labels: config.labels.clone(),
        pod_cidr: addrs.cidr.clone(),
        kubelet_port: addr.port(),
        host_ip: config.host_ip.clone(),
    };
    node::register(&client, &facts).await?;
    let lease_s = config.lease_duration.as_secs() as i32;
    node::renew_lease(&client, &config.node_name, lease_s).await?;
    let shared = Arc::new(Shared {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubelet".into(),
                instance: Some(config.node_name.clone()),
            },
        ),
        client: client.clone(),
        puller: pull::Puller::new(
            &config.data_dir.join("images"),
            config.insecure_registries.clone(),
        ),
        host_ip: config.host_ip.clone(),
        allocatable: [
            ("cpu", facts.cpu.as_str()),
            ("memory", facts.memory.as_str()),
            ("pods", &facts.pods.to_string()),
        ]
        .iter()
        .filter_map(|(k, v)| {
            kubevirt_embedded_scheduler::quantity::parse_milli(v).map(|m| (k.to_string(), m))
        })
        .collect(),
        admitted: std::sync::Mutex::new(HashMap::new()),
        root,
        cgroups,
        addrs,
        ip_lock: Mutex::new(()),
        index,
        config,
    });
    let hb = {
        let (client, facts, every) = (client.clone(), facts.clone(), shared.config.heartbeat);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = node::renew_lease(&client, &facts.name, lease_s).await {
                    tracing::warn!(node = %facts.name, error = %e, "lease renewal failed");
                }
                if let Err(e) = node::heartbeat_status(&client, &facts).await {
                    tracing::warn!(node = %facts.name, error = %e, "node status update failed");
                }
            }
        })
    };
    let dispatcher = tokio::spawn(dispatch(shared.clone()));
    let mut tasks = vec![server, hb, dispatcher];
    if shared.config.provisioner {
        tasks.push(tokio::spawn(provisioner::run(
            client.clone(),
            shared.config.data_dir.clone(),
        )));
    }
    tracing::info!(node = %facts.name, %addr, "kubelet running");
    Ok(Running {
        addr,
        facts,
        client,
        tasks,
    })
}

/// Watches the pods bound to this node and feeds their workers.
async fn dispatch(shared: Arc<Shared>) {
    let node = shared.config.node_name.clone();
    let api: Api<Pod> = Api::all(shared.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, wc).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    // Pod workers live in this set: stopping the kubelet (aborting this task) stops them too,
    // without touching the pods' processes.
    let mut tasks = tokio::task::JoinSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut first_list = true;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "pod watch");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                let Some(uid) = p.uid() else { continue };
                listed.insert(uid.clone());
                if let Ok(mut i) = shared.index.write() {
                    i.insert(
                        (p.namespace().unwrap_or_default(), p.name_any()),
                        uid.clone(),
                    );
                }
                let pod = Arc::new(p);
                match workers.get(&uid) {
                    Some(tx) if !tx.is_closed() => {
                        tx.send_replace(Some(pod));
                    }
                    _ => {
                        let (tx, rx) = watch::channel(Some(pod));
                        workers.insert(uid.clone(), tx);
                        tasks.spawn(pods::run_worker(shared.clone(), uid, rx));
                        // Reap finished workers.
                        while tasks.try_join_next().is_some() {}
                    }
                }
            }
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.uid()
                    && let Some(tx) = workers.remove(&uid)
                {
                    tx.send_replace(None);
                }
                if let Ok(mut i) = shared.index.write() {
                    i.remove(&(p.namespace().unwrap_or_default(), p.name_any()));
                }
            }
            watcher::Event::InitDone => {
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|u| !listed.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(tx) = workers.remove(&uid) {
                        tx.send_replace(None);
                    }
                }
                if first_list {
                    first_list = false;
                    cleanup_orphans(&shared, &listed).await;
                }
            }
        }
    }
}

/// Makes the pods directory a shared mount (as `/var/lib/kubelet` is on a real node), so mounts
/// and unmounts made on the node under it (memory emptyDirs) reach the containers' mount
/// namespaces, which are its slaves.
fn share_pods_dir(pods: &Path) -> Result<(), Error> {
    use nix::mount::{MsFlags, mount};
    let err = |e: nix::Error| Error::Io {
        what: format!("sharing {}", pods.display()),
        source: e.into(),
    };
    if !volumes::is_mountpoint(pods) {
        mount(
            Some(pods),
            pods,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err)?;
    }
    mount(
        None::<&str>,
        pods,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err)
}

/// Removes what is left of pods that no longer exist (deleted while the kubelet was down).
async fn cleanup_orphans(shared: &Shared, known: &HashSet<String>) {
    let Ok(rd) = std::fs::read_dir(shared.root.join("pods")) else {
        return;
    };
    for e in rd.flatten() {
        let Some(uid) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if known.contains(&uid) {
            continue;
        }
        tracing::info!(node = %shared.config.node_name, uid = %uid, "removing an orphaned pod");
        runtime::kill_all(&e.path());
        tokio::time::sleep(Duration::from_millis(50)).await;
        network::teardown_pod(&shared.config.node_name, &uid).await;
        shared
            .cgroups
            .kill_remaining_and_remove(&uid, Duration::from_secs(3))
            .await;
        volumes::unmount_all(&e.path());
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// Kills every pod process of a node and removes its namespaces and cgroups (for tests and
/// `virt-cluster kubelet --teardown`). The node's data stays.
pub async fn teardown_node(data_dir: &Path, node: &str, index: u32, fabric: &str) {
    let root = data_dir
        .join("nodes")
        .join(node)
        .join("kubelet")
        .join("pods");
    let cgroups = cgroup::Cgroups::detect_system(node);
    if let Ok(rd) = std::fs::read_dir(&root) {
        // Twice: a worker that was stopping may still have started one more container.
        for _ in 0..2 {
            if let Ok(rd) = std::fs::read_dir(&root) {
                for e in rd.flatten() {
                    runtime::kill_all(&e.path());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(rd);
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                if let Some(uid) = e.file_name().to_str() {
                    network::teardown_pod(node, uid).await;
                    cgroups
                        .kill_remaining_and_remove(uid, Duration::from_secs(3))
                        .await;
                }
                volumes::unmount_all(&e.path());
            }
        }
    }
    cgroups.remove_node();
    network::teardown_node(node, index, fabric).await;
    // The pods directory's own bind mount (see `share_pods_dir`).
    while volumes::is_mountpoint(&root) {
        if nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// `virt-cluster kubelet` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run as the container shim for an attempt directory (internal).
    #[arg(long, hide = true)]
    pub shim: Option<PathBuf>,
    /// The cluster's data directory.
    #[arg(long, default_value = "/var/lib/kubevirt-rs")]
    pub data_dir: PathBuf,
    /// Kubeconfig (default: DATA/kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Node number: pods get 10.244.<index>.0/24.
    #[arg(long, default_value_t = 1)]
    pub node_index: u32,
    /// Network namespace routing between nodes.
    #[arg(long, default_value = "kvrs-fabric")]
    pub fabric_netns: String,
    /// Where image programs (virt-launcher, kvrs-testprog) are (default: next to this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Extra image → program entries, NAME=PATH (NAME: the repository's last path element).
    #[arg(long = "image-program")]
    pub image_programs: Vec<String>,
    /// CPU capacity (default: the machine's).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory capacity (default: the machine's).
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Node labels, KEY=VALUE.
    #[arg(long = "node-label")]
    pub labels: Vec<String>,
    /// Registries spoken to over plain HTTP (default: 127.0.0.1:5000, localhost:5000).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// The kubelet's HTTPS address (logs).
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub listen: SocketAddr,
    /// First restart back-off in seconds (doubles up to 5 minutes).
    #[arg(long, default_value_t = 10)]
    pub backoff_seconds: u64,
    /// Kill the node's pods and remove its namespaces and cgroups, then exit.
    #[arg(long)]
    pub teardown: bool,
    /// Also run the cluster's local-path provisioner (StorageClass `local`).
    #[arg(long)]
    pub local_path_provisioner: bool,
    /// CA whose client certificates the HTTPS endpoint accepts (default: the kubeconfig's
    /// cluster CA).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
}

/// The cluster CA (PEM) from a kubeconfig's current cluster.
fn kubeconfig_ca(path: &Path) -> Option<String> {
    use base64::Engine;
    let kc = kube::config::Kubeconfig::read_from(path).ok()?;
    let name = kc
        .current_context
        .as_ref()
        .and_then(|c| kc.contexts.iter().find(|x| &x.name == c))
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| Some(&c.name) == name.as_ref())
        .or(kc.clusters.first())?
        .cluster
        .as_ref()?;
    match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        (None, Some(file)) => std::fs::read_to_string(file).ok(),
        _ => None,
    }
}

/// Entry point of `virt-cluster kubelet`. The shim mode must run before any thread starts, so
/// this builds its own runtime.
pub fn main(args: Args) -> Result<(), Error> {
    if let Some(dir) = &args.shim {
        std::process::exit(shim::main(dir));
    }
    let node = match args.node_name.clone() {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .map_err(|e| Error::Config(format!("host name: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    let exe = std::env::current_exe().map_err(|e| Error::Io {
        what: "current executable".into(),
        source: e,
    })?;
    let bin_dir = args
        .bin_dir
        .clone()
        .or_else(|| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    // One shim stays alive beside each container: the small `kvrs-shim` binary, when it sits
    // next to the kubelet's, costs about a tenth of the whole `virt-cluster` in resident memory.
    let small = bin_dir.join("kvrs-shim");
    let shim = if small.is_file() {
        vec![small.into_os_string()]
    } else {
        vec![exe.into_os_string(), "kubelet".into(), "--shim".into()]
    };
    let mut config = Config::new(&node, &args.data_dir, &bin_dir, shim);
    config.node_index = args.node_index;
    config.fabric_netns = args.fabric_netns.clone();
    for spec in &args.image_programs {
        config
            .images
            .insert_spec(spec)
            .ok_or_else(|| Error::Config(format!("--image-program {spec}: expected NAME=PATH")))?;
    }
    config.cpu = args.cpu.clone();
    config.memory = args.memory.clone();
    config.max_pods = args.max_pods;
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--node-label {l}: expected KEY=VALUE")))?;
        config.labels.insert(k.into(), v.into());
    }
    if !args.insecure_registries.is_empty() {
        config.insecure_registries = args.insecure_registries.clone();
    }
    config.listen = args.listen;
    config.provisioner = args.local_path_provisioner;
    config.backoff.base = Duration::from_secs(args.backoff_seconds.max(1));
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("kubeconfig"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            what: "async runtime".into(),
            source: e,
        })?;
    rt.block_on(async move {
        if args.teardown {
            teardown_node(
                &config.data_dir,
                &config.node_name,
                config.node_index,
                &config.fabric_netns,
            )
            .await;
            return Ok(());
        }
        config.client_ca = match &args.client_ca_file {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| Error::Io {
                what: f.display().to_string(),
                source: e,
            })?),
            None => kubeconfig_ca(&kubeconfig),
        };
        let client = kubevirt_embedded_scheduler::client_from_kubeconfig(&kubeconfig).await?;
        let running = start(client, config).await?;
        println!(
            "kubelet running node={node} endpoint=https://{}",
            running.addr
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Io {
                what: "SIGTERM handler".into(),
                source: e,
            })?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.stop().await;
        Ok(())
    })
}
