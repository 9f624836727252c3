//! `virt-cluster scheduler` and `virt-cluster kubelet` as processes next to `virt-cluster
//! apiserver`: a pod scheduled and run through the kubelet's shim (`virt-cluster kubelet
//! --shim`), its logs from the kubelet's endpoint, the Node Ready, then NotReady with the
//! unreachable taints once the kubelet stops; `--teardown` removes the node's namespaces.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{KUBECTL_133, Server};

const BIN: &str = env!("CARGO_BIN_EXE_virt-cluster");

/// Kills the process on drop; for the kubelet, also tears its node down.
struct Proc {
    child: Child,
    teardown: Option<Vec<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(args) = &self.teardown {
            let _ = Command::new(BIN).args(args).stderr(Stdio::null()).status();
        }
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn scheduler_and_kubelet_subcommands_run_a_pod() {
    let server = Server::start();
    let kubeconfig = server.kubeconfig.display().to_string();
    let data = server.dir.display().to_string();
    let node = format!("c{}", std::process::id());
    let fabric = format!("kvrs-fab-c{}", std::process::id());
    let _sched = Proc {
        child: Command::new(BIN)
            .args(["scheduler", "--kubeconfig", &kubeconfig])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("scheduler"),
        teardown: None,
    };
    let base = vec![
        "kubelet".to_string(),
        "--data-dir".into(),
        data.clone(),
        "--node-name".into(),
        node.clone(),
        "--fabric-netns".into(),
        fabric.clone(),
    ];
    let mut teardown = base.clone();
    teardown.push("--teardown".into());
    let mut kubelet = Proc {
        child: Command::new(BIN)
            .args(&base)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--image-program",
                "shell=/bin/sh",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("kubelet"),
        teardown: Some(teardown),
    };
    let mut line = String::new();
    let stdout = kubelet.child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("kubelet line");
    let endpoint = line
        .split("endpoint=")
        .nth(1)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));

    server.ok(
        KUBECTL_133,
        &[
            "run",
            "hello",
            "--image=example.com/tools/shell:1",
            "--restart=Never",
            "--",
            "-c",
            "echo hello from $(hostname) at $(ip -o -4 addr show eth0 | cut -d' ' -f7)",
        ],
    );
    wait_for("the pod to succeed", 60, || {
        server
            .kubectl(
                KUBECTL_133,
                &["get", "pod", "hello", "-o", "jsonpath={.status.phase}"],
            )
            .stdout
            == b"Succeeded"
    });
    let ip = server.ok(
        KUBECTL_133,
        &["get", "pod", "hello", "-o", "jsonpath={.status.podIP}"],
    );
    // The kubelet takes its client CA from its kubeconfig: the admin certificate is accepted.
    let pki = server.dir.join("pki");
    let out = Command::new("curl")
        .args([
            "-sk",
            &format!("{endpoint}/containerLogs/default/hello/hello"),
        ])
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hello from hello at {ip}/24")
    );
    let ready = server.ok(
        KUBECTL_133,
        &[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(ready, "True");

    // SIGTERM: the node goes NotReady with the taints Kubernetes uses.
    let pid = kubelet.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = kubelet.child.wait();
    let taints = server.ok(
        KUBECTL_133,
        &["get", "node", &node, "-o", "jsonpath={.spec.taints[*].key}"],
    );
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    let ready = server.ok(
        KUBECTL_133,
        &[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(ready, "Unknown");
    drop(kubelet);
    assert!(
        !std::path::Path::new("/run/netns")
            .join(format!("kvrs-{node}"))
            .exists()
    );
}
