//! Test harness: `virt-cluster apiserver` on a free loopback port in a temporary directory
//! (killed when dropped, also when the test fails) with the CRDs from deploy/crds applied.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kubevirt_api::v1::VirtualMachine;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `virt-cluster` binary: `VIRT_CLUSTER_BIN`, else the one next to this test's target
/// directory (built on demand with cargo when missing).
fn virt_cluster_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VIRT_CLUSTER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/virt-cluster
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let bin = profile_dir.join("virt-cluster");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "virt-cluster", "--bin", "virt-cluster"])
            .current_dir(repo_root())
            .status()
            .expect("run cargo build for virt-cluster");
        assert!(status.success(), "building virt-cluster failed");
    }
    bin
}

pub struct Cluster {
    child: Option<Child>,
    _tmp: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub client: kube::Client,
}

impl Cluster {
    /// A fresh API server with the CRDs installed.
    pub async fn start() -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(virt_cluster_bin())
            .args(["apiserver", "--data-dir"])
            .arg(tmp.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn virt-cluster");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut cluster = Cluster {
            child: Some(child),
            kubeconfig: tmp.path().join("kubeconfig"),
            _tmp: tmp,
            client: placeholder_client(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the API server did not report it was listening");
        assert!(
            line.contains("listening on https://"),
            "unexpected first line: {line:?}"
        );
        let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        cluster.client = kube::Client::try_from(cfg).expect("client");
        cluster.install_crds().await;
        cluster
    }

    async fn install_crds(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let dir = repo_root().join("deploy/crds");
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("deploy/crds")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path).expect("read CRD");
            let crd: CustomResourceDefinition =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            crds.create(&PostParams::default(), &crd)
                .await
                .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        }
        let vms: Api<VirtualMachine> = Api::all(self.client.clone());
        for _ in 0..100 {
            if vms.list(&ListParams::default()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the CRDs were not served");
    }
}

fn placeholder_client() -> kube::Client {
    // Replaced right after the server answers; a client needs a config to exist.
    let cfg = kube::Config::new("https://127.0.0.1:1".parse().expect("url"));
    kube::Client::try_from(cfg).expect("placeholder client")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for up to 30 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A manifest from YAML, for readable fixtures.
pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("fixture YAML")
}
