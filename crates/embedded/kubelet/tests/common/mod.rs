//! Test harness: an in-process API server and scheduler on a free loopback port in a temporary
//! directory, and in-process kubelets with unique node names, their own fabric namespace, and a
//! guard that kills every pod process and deletes the namespaces on drop (also on failure).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use kubevirt_embedded_kubelet::{Config, Running};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Node {
    pub name: String,
    pub index: u32,
    pub kubelet: Option<Running>,
    pub labels: BTreeMap<String, String>,
}

pub struct Cluster {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub fabric: String,
    pub nodes: Vec<Node>,
    pub insecure: Vec<String>,
    _apiserver: kubevirt_embedded_apiserver::Running,
    scheduler: tokio::task::JoinHandle<()>,
}

pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kvrs-testprog"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let api = kubevirt_embedded_apiserver::start(kubevirt_embedded_apiserver::Config::new(
            dir.path(),
            addr,
        ))
        .await
        .expect("apiserver");
        let client = kubevirt_embedded_scheduler::client_from_kubeconfig(&api.kubeconfig)
            .await
            .expect("client");
        let scheduler = tokio::spawn(kubevirt_embedded_scheduler::run(
            client.clone(),
            Duration::from_millis(500),
        ));
        Cluster {
            client,
            fabric: format!("kvrs-fab-{}", std::process::id()),
            dir,
            nodes: Vec::new(),
            insecure: Vec::new(),
            _apiserver: api,
            scheduler,
        }
    }

    pub fn node_name(&self, i: usize) -> String {
        self.nodes[i].name.clone()
    }

    pub fn config(&self, n: &Node) -> Config {
        let mut c = Config::new(
            &n.name,
            self.dir.path(),
            &bin_dir(),
            vec![env!("CARGO_BIN_EXE_kvrs-shim").into()],
        );
        c.node_index = n.index;
        c.fabric_netns = self.fabric.clone();
        c.listen = "127.0.0.1:0".parse().expect("addr");
        c.backoff.base = Duration::from_secs(1);
        c.heartbeat = Duration::from_secs(2);
        c.labels = n.labels.clone();
        c.cpu = Some("4".into());
        c.memory = Some("8Gi".into());
        c.provisioner = n.index == 1;
        c.volume_refresh = Duration::from_secs(1);
        c.client_ca = std::fs::read_to_string(self.dir.path().join("pki/ca.crt")).ok();
        c.insecure_registries.extend(self.insecure.clone());
        c
    }

    /// Adds a node (index = position + 1) with a kubelet.
    pub async fn add_node(&mut self, labels: &[(&str, &str)]) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let index = self.nodes.len() as u32 + 1;
        let node = Node {
            name: format!("t{}x{n}", std::process::id()),
            index,
            kubelet: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.start_kubelet(i).await;
        self.nodes[i].name.clone()
    }

    pub async fn start_kubelet(&mut self, i: usize) {
        let config = self.config(&self.nodes[i]);
        let running = kubevirt_embedded_kubelet::start(self.client.clone(), config)
            .await
            .expect("kubelet");
        self.nodes[i].kubelet = Some(running);
    }

    pub fn kubelet_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].kubelet.as_ref().expect("kubelet").addr
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create(&self, pod: serde_json::Value) -> Pod {
        let p: Pod = serde_json::from_value(pod).expect("pod json");
        self.pods()
            .create(&PostParams::default(), &p)
            .await
            .expect("create pod")
    }

    /// Waits until `f` holds for the pod; panics with the pod after `secs`.
    pub async fn wait(&self, name: &str, secs: u64, f: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.pods().get_opt(name).await.expect("get pod");
            if let Some(p) = &p
                && f(p)
            {
                return p.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for pod {name}: {}",
                    serde_json::to_string_pretty(&p).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.pods().get_opt(name).await.expect("get").is_some() {
            assert!(Instant::now() < deadline, "pod {name} was not removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET https://<kubelet>/containerLogs/default/<pod>/<container>?<query>`.
    pub fn logs(&self, node: usize, pod: &str, container: &str, query: &str) -> String {
        let url = format!(
            "https://{}/containerLogs/default/{pod}/{container}?{query}",
            self.kubelet_addr(node)
        );
        let pki = self.dir.path().join("pki");
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "20", &url])
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.scheduler.abort();
        let mut nodes = Vec::new();
        for n in self.nodes.iter_mut() {
            if let Some(k) = n.kubelet.take() {
                k.abort();
            }
            nodes.push((n.name.clone(), n.index));
        }
        // Let aborted pod workers reach their next await (and stop) before cleaning up.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let data = self.dir.path().to_path_buf();
        let fabric = self.fabric.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for (name, index) in nodes {
                    kubevirt_embedded_kubelet::teardown_node(&data, &name, index, &fabric).await;
                }
                if Path::new("/run/netns").join(&fabric).exists() {
                    let _ = tokio::process::Command::new("ip")
                        .args(["netns", "del", &fabric])
                        .status()
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn container_status(
    p: &Pod,
    name: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

pub fn condition(p: &Pod, t: &str) -> Option<k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .cloned()
}

pub const TESTPROG: &str = "kubevirt-rs/testprog:latest";
