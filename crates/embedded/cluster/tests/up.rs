//! `virt-cluster up`, `status` and `down` as a user runs them: real processes (API server,
//! scheduler, kubelets, virt-api, virt-controller, virt-handlers under a detached supervisor),
//! real kubectl. Each test uses its own data directory, a free port and its own node prefix
//! (so its own network namespaces); a guard runs `down` and kills by pid file when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const EXE: &str = env!("CARGO_BIN_EXE_virt-cluster");

/// The programs `up` starts from next to `virt-cluster`: built here so a `cargo nextest run -p
/// virt-cluster` does not test stale ones (a no-op after a workspace build). When the build
/// fails (a crate being edited elsewhere) but the binaries exist, they are used as they are.
fn build_siblings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let names = [
            "virt-api",
            "virt-controller",
            "virt-handler",
            "virt-launcher",
        ];
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--bins"]);
        for p in names {
            cmd.args(["-p", p]);
        }
        if EXE.contains("/release/") {
            cmd.arg("--release");
        }
        let out = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build");
        if out.status.success() {
            return;
        }
        let dir = Path::new(EXE).parent().expect("bin dir");
        let missing: Vec<&str> = names
            .into_iter()
            .filter(|n| !dir.join(n).exists())
            .collect();
        assert!(
            missing.is_empty(),
            "building {missing:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "building the sibling binaries failed; using the ones in {}",
            dir.display()
        );
    });
}

/// A node prefix no other test (or test run) uses at the same time.
fn prefix(tag: &str) -> String {
    format!("t{}{tag}", std::process::id() % 100_000)
}

struct Cluster {
    dir: PathBuf,
    prefix: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new(tag: &str) -> Cluster {
        build_siblings();
        let tmp = tempfile::tempdir().expect("temp dir");
        Cluster {
            dir: tmp.path().to_path_buf(),
            prefix: prefix(tag),
            _tmp: tmp,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(EXE)
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run virt-cluster")
    }

    fn up(&self, nodes: u32) -> Output {
        let n = nodes.to_string();
        self.run(&[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            &n,
            "--node-prefix",
            &self.prefix,
            "--timeout",
            "180",
        ])
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args)
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn pid(&self, name: &str) -> Option<u32> {
        live_pid(&self.dir.join("run").join(format!("{name}.pid")))
    }

    /// Every pid file's process, alive or not.
    fn recorded_pids(&self) -> Vec<(String, u32)> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("run")) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let name = name.strip_suffix(".pid")?.to_string();
                let text = std::fs::read_to_string(e.path()).ok()?;
                let pid = text.split_whitespace().next()?.parse().ok()?;
                Some((name, pid))
            })
            .collect()
    }

    /// Network namespaces of this cluster (nodes, pods, fabric).
    fn netns(&self) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.starts_with(&format!("kvrs-{}", self.prefix))
                            || n == &format!("kvrs-fabric-{}", self.prefix)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Processes whose command line names this cluster's data directory.
    fn processes(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(Result::ok)
        {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if !alive(pid) {
                continue;
            }
            if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(&dir) {
                    out.push(format!("{pid}: {cmd}"));
                }
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--timeout", "60"]);
        for (_, pid) in self.recorded_pids() {
            if alive(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn live_pid(file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
    alive(pid).then_some(pid)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn up_status_restart_down_up() {
    let t0 = Instant::now();
    let c = Cluster::new("a");
    eprintln!("[{:?}] siblings built", t0.elapsed());
    let o = c.up(2);
    eprintln!("[{:?}] up", t0.elapsed());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // Progress lines, then how to use it.
    for line in [
        "started apiserver",
        "started kubelet-",
        "started virt-handler-",
        "API server answering",
        "nodes Ready and schedulable: 2",
        "APIService v1.subresources.kubevirt.io Available",
        "admission webhooks answering",
        &format!("export KUBECONFIG={}", c.dir.join("kubeconfig").display()),
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    // kubectl sees both nodes Ready, labelled schedulable by virt-handler.
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    for n in ["01", "02"] {
        let name = format!("{}{n}", c.prefix);
        assert!(
            nodes
                .lines()
                .any(|l| l.starts_with(&name) && l.split_whitespace().nth(1) == Some("Ready")),
            "{nodes}"
        );
    }
    let labelled = c.ok(&[
        "get",
        "nodes",
        "-l",
        "kubevirt.io/schedulable=true",
        "-o",
        "name",
    ]);
    assert_eq!(labelled.lines().count(), 2, "{labelled}");
    // Each node has its own network namespace, and the cluster its own fabric.
    let ns = c.netns();
    for n in [
        format!("kvrs-{}01", c.prefix),
        format!("kvrs-{}02", c.prefix),
        format!("kvrs-fabric-{}", c.prefix),
    ] {
        assert!(ns.contains(&n), "{n} not in {ns:?}");
    }
    assert!(
        c.ok(&["api-versions"])
            .contains("subresources.kubevirt.io/v1"),
        "aggregated API missing"
    );
    // The KubeVirt resource reads as an installed KubeVirt's.
    c.ok(&[
        "wait",
        "-n",
        "kubevirt",
        "kv/kubevirt",
        "--for=condition=Available",
        "--timeout=90s",
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "kv",
            "-n",
            "kubevirt",
            "kubevirt",
            "-o",
            "jsonpath={.status.phase}"
        ]),
        "Deployed"
    );

    // status lists every process up, with no restarts.
    let s = c.run(&["status"]);
    let st = text(&s);
    assert!(s.status.success(), "{st}");
    for name in [
        "apiserver",
        "scheduler",
        "virt-api",
        "virt-controller",
        &format!("kubelet-{}01", c.prefix),
        &format!("virt-handler-{}02", c.prefix),
    ] {
        let line = st
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {st}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[2], "up", "{line}");
        assert_eq!(cols[3], "0", "{line}");
    }
    assert!(st.contains("VMs: 0"), "{st}");

    // A second `up` refuses (exit 1) and leaves the cluster alone.
    let again = c.up(2);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already running"),
        "{}",
        text(&again)
    );

    eprintln!("[{:?}] checked, status, second up", t0.elapsed());
    // A killed component comes back.
    let old = c.pid("virt-controller").expect("virt-controller pid");
    Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .expect("kill");
    wait_for("virt-controller restarted", Duration::from_secs(60), || {
        c.pid("virt-controller").is_some_and(|p| p != old)
    });
    // The supervisor writes the new pid file before it records the restart in its state file:
    // wait for the count rather than read it once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = text(&c.run(&["status"]));
        let restarts = st
            .lines()
            .find(|l| l.split_whitespace().next() == Some("virt-controller"))
            .and_then(|l| l.split_whitespace().nth(3));
        if restarts == Some("1") {
            break;
        }
        assert!(
            restarts == Some("0") && Instant::now() < deadline,
            "virt-controller restarts should become 1 (got {restarts:?}):\n{st}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // virt-api too, and it is registered again (its new CA in the webhook configurations and
    // the APIService): a VM write goes through its webhooks.
    let vm = c.dir.join("vm.yaml");
    std::fs::write(
        &vm,
        include_str!("data/testvm.yaml").replace("  running: false\n", "  runStrategy: Halted\n"),
    )
    .expect("write");
    let old = c.pid("virt-api").expect("virt-api pid");
    Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .expect("kill");
    // The supervisor allows a restarted virt-api 60 s to be registered again: wait longer.
    wait_for("virt-api restarted", Duration::from_secs(90), || {
        c.pid("virt-api").is_some_and(|p| p != old)
    });
    wait_for("webhooks answer again", Duration::from_secs(90), || {
        c.kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            vm.to_str().expect("path"),
        ])
        .status
        .success()
    });
    c.ok(&[
        "wait",
        "--for=condition=Available",
        "--timeout=90s",
        "apiservice/v1.subresources.kubevirt.io",
    ]);

    // Objects made now survive down + up.
    c.ok(&["apply", "-f", vm.to_str().expect("path")]);
    c.ok(&["create", "configmap", "keep", "--from-literal=a=b"]);
    // A VM that always runs (its image cannot be pulled: the test needs no registry, and its
    // instance never gets a guest): virt-controller makes its VMI now and again after `up`.
    let always = c.dir.join("always.yaml");
    std::fs::write(
        &always,
        include_str!("data/testvm.yaml")
            .replace("name: testvm", "name: always")
            .replace("  running: false\n", "  runStrategy: Always\n")
            .replace(
                "quay.io/kubevirt/cirros-container-disk-demo",
                "127.0.0.1:1/kubevirt-rs/none",
            ),
    )
    .expect("write");
    c.ok(&["apply", "-f", always.to_str().expect("path")]);
    let vmi_uid = || {
        c.kubectl(&["get", "vmi", "always", "-o", "jsonpath={.metadata.uid}"])
            .stdout
    };
    wait_for("the VMI of VM always", Duration::from_secs(120), || {
        !vmi_uid().is_empty()
    });
    let first_uid = vmi_uid();

    eprintln!("[{:?}] restarted, objects made", t0.elapsed());
    let d = c.run(&["down"]);
    assert!(d.status.success(), "{}", text(&d));
    eprintln!("[{:?}] down", t0.elapsed());
    // Nothing of the cluster is left: processes, namespaces, mounts.
    wait_for("processes gone", Duration::from_secs(30), || {
        c.processes().is_empty()
    });
    assert!(c.netns().is_empty(), "{:?}", c.netns());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = c.dir.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&dir)),
        "mounts left under {dir}"
    );
    let st = c.run(&["status"]);
    assert_eq!(st.status.code(), Some(3), "{}", text(&st));
    assert!(String::from_utf8_lossy(&st.stdout).contains("not running"));

    // up again (same address and nodes from DATA/cluster.json): the objects are there.
    let o = c.run(&["up", "--timeout", "180"]);
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("[{:?}] up again", t0.elapsed());
    c.ok(&["get", "vm", "testvm"]);
    // Per their runStrategy: `always` has a new instance, `testvm` (Halted) none.
    wait_for("a new VMI of VM always", Duration::from_secs(120), || {
        let uid = vmi_uid();
        !uid.is_empty() && uid != first_uid
    });
    assert!(!c.kubectl(&["get", "vmi", "testvm"]).status.success());
    assert_eq!(
        c.ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    let nodes = c.ok(&[
        "get",
        "nodes",
        "-l",
        "kubevirt.io/schedulable=true",
        "-o",
        "name",
    ]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    let d = c.run(&["down"]);
    assert!(d.status.success(), "{}", text(&d));
    assert!(c.netns().is_empty(), "{:?}", c.netns());
}

/// Two clusters at once on one machine: their own ports, nodes and namespaces.
#[test]
fn two_clusters_side_by_side() {
    let a = Cluster::new("b");
    let b = Cluster::new("c");
    let (oa, ob) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.up(1));
        let tb = s.spawn(|| b.up(1));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    assert!(oa.status.success(), "{}", text(&oa));
    assert!(ob.status.success(), "{}", text(&ob));
    let na = a.ok(&["get", "nodes", "-o", "name"]);
    let nb = b.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(na.trim(), format!("node/{}01", a.prefix));
    assert_eq!(nb.trim(), format!("node/{}01", b.prefix));
    let da = a.run(&["down"]);
    assert!(da.status.success(), "{}", text(&da));
    // Stopping one leaves the other running.
    assert!(a.netns().is_empty(), "{:?}", a.netns());
    assert!(!b.netns().is_empty());
    b.ok(&["get", "nodes"]);
    let st = b.run(&["status"]);
    assert!(st.status.success(), "{}", text(&st));
}
