//! Test harness: starts `virt-cluster apiserver` on a free loopback port in a unique temporary
//! directory, and kills it when dropped (also when the test fails).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const KUBECTL_132: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
pub const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    /// Keeps the temporary directory alive (and removes it at the end) when we made it.
    _tmp: Option<tempfile::TempDir>,
    pub addr: String,
    pub kubeconfig: PathBuf,
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, "127.0.0.1:0");
        s._tmp = Some(tmp);
        s
    }

    /// Starts (or restarts) a server on `dir` listening on `listen`.
    pub fn start_in(dir: &Path, listen: &str) -> Server {
        Server::start_with(dir, listen, &[])
    }

    /// Like [`Server::start_in`] with extra `virt-cluster apiserver` arguments.
    pub fn start_with(dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_virt-cluster"))
            .args(["apiserver", "--data-dir"])
            .arg(dir)
            .args(["--listen", listen])
            .args(extra)
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
        let mut server = Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            addr: String::new(),
            kubeconfig: dir.join("kubeconfig"),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not report it was listening");
        let addr = line
            .split("https://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        server.addr = addr.to_string();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs kubectl (`bin`) against this server with its own cache directory.
    pub fn kubectl(&self, bin: &str, args: &[&str]) -> Output {
        self.kubectl_cmd(bin, args).output().expect("run kubectl")
    }

    pub fn kubectl_cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args)
            .env("HOME", &self.dir)
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn ok(&self, bin: &str, args: &[&str]) -> String {
        let out = self.kubectl(bin, args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stderr}\nstdout: {stdout}"
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, bin: &str, args: &[&str]) -> String {
        let out = self.kubectl(bin, args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(cfg).expect("client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the current CRDs (from the API types) into `dir` as YAML files.
pub fn write_crds(dir: &Path) -> PathBuf {
    let out = dir.join("crds");
    std::fs::create_dir_all(&out).expect("crd dir");
    for crd in kubevirt_api::crd::all() {
        let yaml = kubevirt_api::crd::to_yaml(&crd).expect("crd yaml");
        std::fs::write(out.join(kubevirt_api::crd::file_name(&crd)), yaml).expect("write crd");
    }
    out
}

/// The repository root (for `deploy/crds`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}
