//! End to end (issue 8): KubeVirt's VM lifecycle on `virt-cluster up`, with the real kubectl,
//! our virtctl, and the test guest booting under QEMU from its containerDisk in the local
//! registry. Each test runs its own cluster (data directory, free port, node prefix); a guard
//! runs `down` and kills by pid file when dropped, and `down` kills what is left in the pods'
//! cgroups, so a failing test leaves no QEMU behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const EXE: &str = env!("CARGO_BIN_EXE_virt-cluster");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .expect("repo root")
        .to_path_buf()
}

/// The binaries `up` starts, and virtctl, built next to `virt-cluster` (a no-op after a
/// workspace build); the guest image pushed to the local registry (cached by content).
fn prepare() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--bins"]);
        for p in [
            "virt-api",
            "virt-controller",
            "virt-handler",
            "virt-launcher",
            "virtctl",
            // kvrs-shim, which the kubelet runs containers under when it is there.
            "kubevirt-embedded-kubelet",
        ] {
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
        assert!(
            out.status.success() || bin("virtctl").exists(),
            "building the components failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = repo_root();
        for script in [&["registry", "start"][..], &["guest-image", "--push"][..]] {
            let out = Command::new(root.join("scripts").join(script[0]))
                .args(&script[1..])
                .current_dir(&root)
                .stdin(Stdio::null())
                .output()
                .expect("run a script");
            assert!(
                out.status.success(),
                "scripts/{} failed (the end-to-end tests need the guest image in the local \
                 registry):\n{}{}",
                script.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

fn bin(name: &str) -> PathBuf {
    Path::new(EXE).parent().expect("bin dir").join(name)
}

struct Cluster {
    dir: PathBuf,
    prefix: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// A running one-node cluster.
    fn up(tag: &str) -> Cluster {
        Cluster::up_nodes(tag, 1)
    }

    /// A cluster not started yet: its own data directory and node names, with the guard that
    /// stops whatever gets started in it.
    fn unstarted(tag: &str) -> Cluster {
        prepare();
        let tmp = tempfile::tempdir().expect("temp dir");
        Cluster {
            dir: tmp.path().to_path_buf(),
            prefix: format!("e{}{tag}", std::process::id() % 100_000),
            _tmp: tmp,
        }
    }

    /// A running cluster of `nodes` nodes.
    fn up_nodes(tag: &str, nodes: u32) -> Cluster {
        let c = Cluster::unstarted(tag);
        let out = c.run(&[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--node-prefix",
            &c.prefix,
            "--timeout",
            "180",
            // Room for a guest's 30 s grace period on a loaded machine at `down`.
            "--vm-timeout",
            "150",
            "--nodes",
            &nodes.to_string(),
        ]);
        assert!(out.status.success(), "virt-cluster up: {}", text(&out));
        c
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
        assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a YAML text.
    fn apply(&self, yaml: &str) -> Output {
        let file = self.dir.join(format!("apply-{}.yaml", rand_suffix(yaml)));
        std::fs::write(&file, yaml).expect("write manifest");
        self.kubectl(&["apply", "-f", file.to_str().expect("utf-8 path")])
    }

    /// `virtctl args` against this cluster, its stdio still to be set.
    fn virtctl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("virtctl"));
        cmd.args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir);
        cmd
    }

    fn virtctl(&self, args: &[&str]) -> Output {
        self.virtctl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run virtctl")
    }

    fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let o = self.kubectl(&[what, &["-o", &format!("jsonpath={path}")]].concat());
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn vmi_uid(&self, name: &str) -> String {
        self.jsonpath(&["get", "vmi", name], "{.metadata.uid}")
    }

    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() >= deadline {
                let state = self.kubectl(&["get", "vm,vmi,pods", "-o", "wide"]);
                panic!(
                    "timed out waiting for {what}\n{}\nvirt-handler log tail:\n{}",
                    text(&state),
                    self.log_tail("virt-handler")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self, component: &str) -> String {
        let Ok(rd) = std::fs::read_dir(self.dir.join("logs")) else {
            return String::new();
        };
        let mut out = String::new();
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(component) {
                let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = t.lines().collect();
                out += &lines[lines.len().saturating_sub(15)..].join("\n");
            }
        }
        out
    }

    /// The serial console log of the VMI's current launcher pod (the launcher writes it next
    /// to the console socket in the pod's sockets emptyDir).
    fn serial_log(&self, vmi: &str) -> String {
        let uid = self.jsonpath(
            &[
                "get",
                "pods",
                "-l",
                &format!("kubevirt.io/created-by={}", self.vmi_uid(vmi)),
            ],
            "{.items[0].metadata.uid}",
        );
        if uid.is_empty() {
            return String::new();
        }
        let node = format!("{}01", self.prefix);
        let path = self
            .dir
            .join("nodes")
            .join(node)
            .join("kubelet/pods")
            .join(uid)
            .join("volumes/kubernetes.io~empty-dir/sockets/virt-serial0-log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The serial console log the launcher of pod `pod` writes (on the pod's node).
    fn pod_serial_log(&self, pod: &str) -> String {
        let uid = self.jsonpath(&["get", "pod", pod], "{.metadata.uid}");
        let node = self.jsonpath(&["get", "pod", pod], "{.spec.nodeName}");
        if uid.is_empty() || node.is_empty() {
            return String::new();
        }
        let path = self
            .dir
            .join("nodes")
            .join(node)
            .join("kubelet/pods")
            .join(uid)
            .join("volumes/kubernetes.io~empty-dir/sockets/virt-serial0-log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// A `virtctl console` dialogue: once connected, types each input and waits until the
    /// console shows its expected text (in what arrived after the input; the first input is
    /// typed again every 10 s while nothing is expected yet, as a user presses Enter at a
    /// quiet console), then hangs up. Returns what the console showed. Waits are generous:
    /// under TCG on a loaded machine the guest can take a while to answer.
    fn console_session(&self, vmi: &str, steps: &[(&str, &str)]) -> String {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let mut console = self
            .virtctl_cmd(&["console", vmi])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("virtctl console");
        let shown = Arc::new(Mutex::new(Vec::<u8>::new()));
        let said = Arc::new(Mutex::new(Vec::<u8>::new()));
        let pump = |mut from: Box<dyn Read + Send>, into: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    into.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            })
        };
        let out_thread = pump(
            Box::new(console.stdout.take().expect("stdout")),
            Arc::clone(&shown),
        );
        let _err_thread = pump(
            Box::new(console.stderr.take().expect("stderr")),
            Arc::clone(&said),
        );
        let text_of = |b: &Arc<Mutex<Vec<u8>>>, from: usize| {
            let b = b.lock().expect("lock");
            String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned()
        };
        let connected = Instant::now() + Duration::from_secs(90);
        while !text_of(&said, 0).contains("Successfully connected") {
            assert!(
                Instant::now() < connected && console.try_wait().expect("wait").is_none(),
                "virtctl console did not connect: {}",
                text_of(&said, 0)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut stdin = console.stdin.take().expect("stdin");
        for (i, (input, expect)) in steps.iter().enumerate() {
            let from = shown.lock().expect("lock").len();
            let deadline = Instant::now() + Duration::from_secs(120);
            let _ = stdin.write_all(input.as_bytes());
            let _ = stdin.flush();
            let mut typed = Instant::now();
            while !text_of(&shown, from).contains(expect) {
                assert!(
                    Instant::now() < deadline,
                    "the console never showed {expect:?} after {input:?}: {}",
                    text_of(&shown, 0)
                );
                if i == 0 && typed.elapsed() >= Duration::from_secs(10) {
                    let _ = stdin.write_all(input.as_bytes());
                    let _ = stdin.flush();
                    typed = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Closing stdin ends the session.
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(15);
        while console.try_wait().expect("wait").is_none() {
            if Instant::now() >= deadline {
                let _ = console.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = console.wait();
        let _ = out_thread.join();
        text_of(&shown, 0)
    }

    /// The first line a TCP service in the guest sends, through `virtctl port-forward --stdio`.
    fn forwarded_banner(&self, target: &str, port: u16) -> String {
        use std::io::BufRead;
        let mut child = self
            .virtctl_cmd(&["port-forward", "--stdio=true", target, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("virtctl port-forward");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let _ = child.kill();
        let out = child.wait_with_output().expect("virtctl port-forward");
        if line.is_empty() {
            eprintln!("nothing forwarded: {}", text(&out));
        }
        line.trim_end().to_string()
    }

    /// Through `virtctl vnc --proxy-only`: the RFB handshake (version 3.8, security None,
    /// shared), then one full framebuffer update request. Returns the screen's width and
    /// height and the number of rectangles in the update.
    fn vnc_frame(&self, vmi: &str) -> (u16, u16, u16) {
        use std::io::{BufRead, Read, Write};
        let mut proxy = self
            .virtctl_cmd(&["vnc", "--proxy-only", vmi])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("virtctl vnc");
        // Killed however the handshake ends.
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let stdout = proxy.stdout.take().expect("stdout");
        let proxy = Kill(proxy);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("virtctl vnc output");
        let port = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .unwrap_or_else(|| panic!("virtctl vnc --proxy-only printed {line:?}"));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut version = [0u8; 12];
        s.read_exact(&mut version).expect("RFB version");
        assert!(
            version.starts_with(b"RFB 003."),
            "server version {version:?}"
        );
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut n = [0u8; 1];
        s.read_exact(&mut n).expect("security types");
        assert!(n[0] > 0, "the server refused the connection");
        let mut types = vec![0u8; n[0] as usize];
        s.read_exact(&mut types).unwrap();
        assert!(types.contains(&1), "no security type None: {types:?}");
        s.write_all(&[1]).unwrap();
        let mut result = [0u8; 4];
        s.read_exact(&mut result).expect("security result");
        assert_eq!(result, [0; 4], "security handshake failed");
        s.write_all(&[1]).unwrap(); // ClientInit: shared
        let mut init = [0u8; 24];
        s.read_exact(&mut init).expect("ServerInit");
        let width = u16::from_be_bytes([init[0], init[1]]);
        let height = u16::from_be_bytes([init[2], init[3]]);
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        let mut name = vec![0u8; name_len as usize];
        s.read_exact(&mut name).unwrap();
        // FramebufferUpdateRequest: not incremental, the whole screen.
        let mut req = vec![3u8, 0, 0, 0, 0, 0];
        req.extend_from_slice(&width.to_be_bytes());
        req.extend_from_slice(&height.to_be_bytes());
        s.write_all(&req).unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).expect("FramebufferUpdate");
        assert_eq!(head[0], 0, "server message type {}", head[0]);
        drop(proxy);
        (width, height, u16::from_be_bytes([head[2], head[3]]))
    }

    /// QEMU processes of this cluster's pods on any of its nodes (by their cgroup, which
    /// names the node).
    fn all_qemu_pids(&self) -> Vec<u32> {
        self.qemu_pids_matching(&format!("/{}0", self.prefix))
    }

    /// QEMU processes of this cluster's pods on its first node.
    fn qemu_pids(&self) -> Vec<u32> {
        self.qemu_pids_matching(&format!("/{}01/", self.prefix))
    }

    fn qemu_pids_matching(&self, cgroup_part: &str) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                String::from_utf8_lossy(&cmd).contains("qemu-system")
                    && String::from_utf8_lossy(&cmd).contains("guest=")
                    && cg.contains(cgroup_part)
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--timeout", "60"]);
        if let Ok(rd) = std::fs::read_dir(self.dir.join("run")) {
            for e in rd.flatten() {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
                {
                    let _ = Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

fn rand_suffix(s: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    Instant::now().hash(&mut h);
    format!("{:x}", h.finish())
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn testvm() -> String {
    std::fs::read_to_string(repo_root().join("examples/testvm.yaml")).expect("examples/testvm.yaml")
}

#[test]
fn testvm_start_console_stop_restart_crash_and_delete() {
    let c = Cluster::up("a");
    // A key of this test's own, for `virtctl ssh` below. It reaches the guest as a user would
    // hand it over: a Secret named in `accessCredentials`, propagated at boot through the
    // NoCloud meta-data (virt-controller mounts the Secret, the launcher writes `public-keys`)
    // and kept in sync through the guest agent (a rotation below).
    let key = c.dir.join("id_ed25519");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "{}", text(&o));
    let public = key.with_extension("pub");
    let public = public.to_str().expect("path");
    c.ok(&[
        "create",
        "secret",
        "generic",
        "testvm-keys",
        &format!("--from-file=key={public}"),
    ]);
    let o = c.apply(&testvm());
    assert!(o.status.success(), "{}", text(&o));
    c.ok(&[
        "patch",
        "vm",
        "testvm",
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/spec/template/spec/accessCredentials", "value": [{"sshPublicKey": {"source": {"secret": {"secretName": "testvm-keys"}}, "propagationMethod": {"noCloud": {}}}}, {"sshPublicKey": {"source": {"secret": {"secretName": "testvm-keys"}}, "propagationMethod": {"qemuGuestAgent": {"users": ["root"]}}}}]}]"#,
    ]);
    c.wait("VM printableStatus Stopped", Duration::from_secs(30), |c| {
        c.jsonpath(&["get", "vm", "testvm"], "{.status.printableStatus}") == "Stopped"
    });

    // start; kubectl wait for Ready; the console shows the boot and the login prompt.
    let t0 = Instant::now();
    let o = c.virtctl(&["start", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the VMI to exist", Duration::from_secs(30), |c| {
        !c.vmi_uid("testvm").is_empty()
    });
    let o = c.kubectl(&[
        "wait",
        "vmi/testvm",
        "--for=condition=Ready",
        "--timeout=300s",
    ]);
    assert!(o.status.success(), "kubectl wait: {}", text(&o));
    eprintln!("testvm Ready {:?} after virtctl start", t0.elapsed());
    assert_eq!(
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}"),
        "Running"
    );
    assert_eq!(
        c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.status.conditions[?(@.type==\"SoftwareEmulation\")].status}"
        ),
        "True",
        "no KVM here: the SoftwareEmulation condition"
    );
    assert!(
        !c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.status.interfaces[0].ipAddress}"
        )
        .is_empty()
    );
    c.wait(
        "the login prompt on the console",
        Duration::from_secs(180),
        |c| c.serial_log("testvm").contains("testvm login:"),
    );
    let console = c.serial_log("testvm");
    assert!(
        console.contains("guest-init: kubevirt-rs guest")
            && console.contains("cloud-init: hostname testvm"),
        "boot lines: {console}"
    );
    c.wait("VM printableStatus Running", Duration::from_secs(30), |c| {
        c.jsonpath(&["get", "vm", "testvm"], "{.status.printableStatus}") == "Running"
    });

    // The guest agent (qemu-ga in the test guest, on the channel the launcher's domain has):
    // the AgentConnected condition and guestOSInfo in the status, and virtctl's guest-agent
    // verbs through virt-api and virt-handler, with upstream's bodies.
    c.wait(
        "the AgentConnected condition",
        Duration::from_secs(120),
        |c| {
            c.jsonpath(
                &["get", "vmi", "testvm"],
                "{.status.conditions[?(@.type==\"AgentConnected\")].status}",
            ) == "True"
        },
    );
    assert_eq!(
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.guestOSInfo.id}"),
        "kubevirt-rs-guest"
    );
    let agent_json = |verb: &str| -> serde_json::Value {
        let o = c.virtctl(&[verb, "testvm"]);
        assert!(o.status.success(), "virtctl {verb}: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{verb}: {e}: {}", text(&o)))
    };
    let info = agent_json("guestosinfo");
    assert_eq!(info["os"]["id"], "kubevirt-rs-guest", "{info}");
    assert_eq!(info["hostname"], "testvm", "{info}");
    assert!(
        info["guestAgentVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{info}"
    );
    let users = agent_json("userlist");
    assert!(users["items"].is_array(), "{users}");
    let fs = agent_json("fslist");
    assert!(
        fs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["mountPoint"] == "/run/disk" && f["fileSystemType"] == "ext4"),
        "{fs}"
    );

    // The console stream (kubectl's API server -> virt-api -> virt-handler over mutual TLS ->
    // the launcher's serial socket): a carriage return brings the login prompt back.
    let shown = c.console_session("testvm", &[("\r", "testvm login:")]);
    assert!(shown.contains("testvm login:"), "console: {shown}");

    // VNC (API server -> virt-api -> virt-handler -> the launcher's VNC socket, QEMU's VNC
    // server): `virtctl vnc --proxy-only` gives a local port that speaks RFB; a client gets
    // through the handshake and receives a framebuffer update of the guest's screen.
    let (width, height, rects) = c.vnc_frame("testvm");
    assert!(width > 0 && height > 0, "VNC screen {width}x{height}");
    assert!(rects > 0, "no rectangles in the VNC framebuffer update");
    // `virtctl vnc screenshot` (virt-api's vnc/screenshot -> the handler reads one frame over
    // RFB): a PNG of that screen, whose image data inflates to one filtered row per line.
    let png_path = c.dir.join("screen.png");
    let o = c.virtctl(&[
        "vnc",
        "screenshot",
        "testvm",
        "--file",
        png_path.to_str().expect("path"),
    ]);
    assert!(o.status.success(), "vnc screenshot: {}", text(&o));
    let png = std::fs::read(&png_path).expect("the screenshot file");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be32 = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!(
        (be32(16), be32(20)),
        (u32::from(width), u32::from(height)),
        "the screenshot's size is the VNC screen's"
    );
    let idat_len = be32(33) as usize;
    assert_eq!(&png[37..41], b"IDAT");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::ZlibDecoder::new(&png[41..41 + idat_len]),
        &mut raw,
    )
    .expect("inflating IDAT");
    assert_eq!(
        raw.len(),
        usize::from(height) * (1 + 3 * usize::from(width))
    );

    // port-forward to the VM (API server -> virt-api's VM portforward -> virt-handler, which
    // connects inside the pod -> masquerade NAT -> the guest): dropbear's SSH banner.
    // A few tries: dropbear may still be starting right after the login prompt shows.
    let mut banner = String::new();
    for _ in 0..4 {
        banner = c.forwarded_banner("vm/testvm", 22);
        if banner.starts_with("SSH-2.0-") {
            break;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    assert!(
        banner.starts_with("SSH-2.0-"),
        "port 22 answered {banner:?}"
    );

    // virtctl ssh (the local ssh client through the same port-forward) with that key.
    let key_path = key.to_str().expect("path");
    // `verb` with the key and batch-mode client options, then `rest`.
    let with_key = |verb: &str, rest: &[&str]| {
        let mut args = vec![
            verb,
            "-i",
            key_path,
            "--local-ssh-opts=-o StrictHostKeyChecking=no",
            "--local-ssh-opts=-o UserKnownHostsFile=/dev/null",
            "--local-ssh-opts=-o BatchMode=yes",
            "--local-ssh-opts=-o ConnectTimeout=60",
        ];
        args.extend_from_slice(rest);
        c.virtctl(&args)
    };
    let ssh = || {
        with_key(
            "ssh",
            &["root@vm/testvm", "-c", "echo SSH$((6*7)) $(hostname)"],
        )
    };
    let mut o = ssh();
    // One more try after a transport failure (ssh's 255) on a loaded machine; a refused key
    // fails the same way twice.
    if o.status.code() == Some(255) {
        std::thread::sleep(Duration::from_secs(5));
        o = ssh();
    }
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("SSH42 testvm"),
        "virtctl ssh: {}",
        text(&o)
    );

    // virtctl scp into the guest (OpenSSH's scp speaks SFTP: the guest's sftp-server), read
    // back over ssh.
    let local = c.dir.join("to-guest.txt");
    std::fs::write(&local, "scp42\n").expect("write");
    let o = with_key(
        "scp",
        &[
            local.to_str().expect("path"),
            "root@vm/testvm:/root/from-host.txt",
        ],
    );
    assert!(o.status.success(), "virtctl scp: {}", text(&o));
    let o = with_key("ssh", &["root@vm/testvm", "-c", "cat /root/from-host.txt"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "scp42\n",
        "after virtctl scp: {}",
        text(&o)
    );

    // The key rotated in the Secret reaches the running guest through the agent (the kubelet
    // refreshes the mounted Secret, the launcher resets root's authorized_keys): the new key
    // logs in, the old one no longer does, and the VMI says the credentials are in sync.
    c.wait(
        "the AccessCredentialsSynchronized condition",
        Duration::from_secs(60),
        |c| {
            c.jsonpath(
                &["get", "vmi", "testvm"],
                "{.status.conditions[?(@.type==\"AccessCredentialsSynchronized\")].status}",
            ) == "True"
        },
    );
    let key2 = c.dir.join("id_rotated");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e-rotated", "-f"])
        .arg(&key2)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "{}", text(&o));
    let rotated = c.ok(&[
        "create",
        "secret",
        "generic",
        "testvm-keys",
        &format!(
            "--from-file=key={}",
            key2.with_extension("pub").to_str().expect("path")
        ),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let o = c.apply(&rotated);
    assert!(o.status.success(), "{}", text(&o));
    let key2_path = key2.to_str().expect("path");
    let ssh_with = |key: &str| {
        c.virtctl(&[
            "ssh",
            "-i",
            key,
            "--local-ssh-opts=-o StrictHostKeyChecking=no",
            "--local-ssh-opts=-o UserKnownHostsFile=/dev/null",
            "--local-ssh-opts=-o BatchMode=yes",
            "--local-ssh-opts=-o ConnectTimeout=60",
            "root@vm/testvm",
            "-c",
            "echo ROTATED$((6*7))",
        ])
    };
    c.wait(
        "the rotated key to log in",
        Duration::from_secs(180),
        |_| String::from_utf8_lossy(&ssh_with(key2_path).stdout).contains("ROTATED42"),
    );
    let o = ssh_with(key_path);
    assert!(
        !o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("ROTATED42"),
        "the old key still logs in: {}",
        text(&o)
    );

    // `virtctl soft-reboot` (virt-api -> virt-handler -> the launcher -> libvirt's reboot
    // through the guest agent, as AgentConnected is true: qemu-ga runs the guest's
    // `shutdown -r`): the guest boots again to its login prompt, in the same instance and the
    // same QEMU.
    let uid_before = c.vmi_uid("testvm");
    let qemu_before = c.all_qemu_pids();
    let logins = c.serial_log("testvm").matches("testvm login:").count();
    let o = c.virtctl(&["soft-reboot", "testvm"]);
    assert!(o.status.success(), "soft-reboot: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("VMI testvm was scheduled to soft-reboot"),
        "{}",
        text(&o)
    );
    c.wait(
        "the login prompt again after the soft reboot",
        Duration::from_secs(240),
        |c| c.serial_log("testvm").matches("testvm login:").count() > logins,
    );
    assert!(
        c.serial_log("testvm")
            .contains("guest-init: shutdown: reboot"),
        "the reboot went through the guest agent"
    );
    assert_eq!(c.vmi_uid("testvm"), uid_before, "the same instance");
    assert_eq!(c.all_qemu_pids(), qemu_before, "the same QEMU");
    assert_eq!(
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}"),
        "Running"
    );

    // The VMI's events, with upstream's reasons: the controllers' and the handler's.
    let reasons = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=VirtualMachineInstance,involvedObject.name=testvm",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    for want in [
        "SuccessfulCreate",
        "Created",
        "Started",
        "AccessCredentialsSyncSuccess",
    ] {
        assert!(
            reasons.lines().any(|r| r == want),
            "VMI event {want} missing: {reasons}"
        );
    }

    // pause and unpause (virt-api -> virt-handler over mutual TLS -> launcher).
    let o = c.virtctl(&["pause", "vm", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the Paused condition", Duration::from_secs(30), |c| {
        c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.status.conditions[?(@.type==\"Paused\")].status}",
        ) == "True"
    });
    c.wait("VM printableStatus Paused", Duration::from_secs(30), |c| {
        c.jsonpath(&["get", "vm", "testvm"], "{.status.printableStatus}") == "Paused"
    });
    let o = c.virtctl(&["unpause", "vm", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the Paused condition gone", Duration::from_secs(30), |c| {
        c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.status.conditions[?(@.type==\"Paused\")].status}",
        )
        .is_empty()
    });

    // runStrategy Always (set by start): killing QEMU brings a new VMI.
    let first = c.vmi_uid("testvm");
    let qemu = c.qemu_pids();
    assert_eq!(qemu.len(), 1, "one QEMU for testvm: {qemu:?}");
    let _ = Command::new("kill")
        .args(["-9", &qemu[0].to_string()])
        .status();
    c.wait(
        "a new VMI after QEMU was killed",
        Duration::from_secs(240),
        |c| {
            let uid = c.vmi_uid("testvm");
            !uid.is_empty()
                && uid != first
                && c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}") == "Running"
        },
    );

    // restart: a new VMI uid.
    let second = c.vmi_uid("testvm");
    let o = c.virtctl(&["restart", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("a new VMI after restart", Duration::from_secs(240), |c| {
        let uid = c.vmi_uid("testvm");
        !uid.is_empty()
            && uid != second
            && c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}") == "Running"
    });

    // stop: the VMI goes, the VM is Stopped.
    let o = c.virtctl(&["stop", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the VMI gone after stop", Duration::from_secs(240), |c| {
        c.vmi_uid("testvm").is_empty()
    });
    c.wait("VM Stopped", Duration::from_secs(30), |c| {
        c.jsonpath(&["get", "vm", "testvm"], "{.status.printableStatus}") == "Stopped"
    });
    assert!(c.qemu_pids().is_empty(), "QEMU left after stop");

    // start again, then delete the VM: VMI and pod go.
    let o = c.virtctl(&["start", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the VMI running again", Duration::from_secs(240), |c| {
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}") == "Running"
    });
    c.ok(&["delete", "vm", "testvm", "--timeout=300s"]);
    c.wait(
        "VMI and pod gone with the VM",
        Duration::from_secs(240),
        |c| {
            c.ok(&["get", "vmi,pods", "--no-headers", "-o", "name"])
                .trim()
                .is_empty()
        },
    );
    assert!(
        c.qemu_pids().is_empty(),
        "QEMU left after the VM was deleted"
    );
}

/// The README's demo, headless: `scripts/demo` on a data directory, port and node names of its
/// own, with the binaries this suite built, boots testvm from examples/testvm.yaml, prints the
/// guest's boot lines and login prompt and the running VM, and says how to go on.
#[test]
fn demo_script_boots_testvm_headless() {
    let c = Cluster::unstarted("demo");
    let profile = if EXE.contains("/release/") {
        "release"
    } else {
        "debug"
    };
    let out = Command::new(repo_root().join("scripts/demo"))
        .current_dir(repo_root())
        .env("KUBEVIRT_RS_DATA", &c.dir)
        .env("KUBEVIRT_RS_LISTEN", "127.0.0.1:0")
        .env("KUBEVIRT_RS_NODE_PREFIX", &c.prefix)
        .env("KUBEVIRT_RS_PROFILE", profile)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/demo");
    let shown = text(&out);
    assert!(out.status.success(), "scripts/demo failed: {shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "guest-init: kubevirt-rs guest",
        "cloud-init: hostname testvm",
        "testvm login:",
        "virtctl console testvm",
    ] {
        assert!(
            stdout.contains(want),
            "{want:?} not in the demo's output: {shown}"
        );
    }
    // The VM it started runs, and `virtctl console` reaches it, as the demo's last lines say.
    assert_eq!(
        c.jsonpath(&["get", "vm", "testvm"], "{.status.printableStatus}"),
        "Running"
    );
    let console = c.console_session("testvm", &[("\r", "testvm login:")]);
    assert!(console.contains("testvm login:"), "console: {console}");
}

#[test]
fn bad_manifests_are_refused_with_upstreams_messages() {
    let c = Cluster::up("b");
    // No disk for a volume, and a negative memory request: the validating webhook refuses both.
    let bad = r#"apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: bad
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        devices:
          disks:
            - name: missing
              disk: {bus: virtio}
        resources:
          requests:
            memory: 128Mi
      volumes:
        - name: root
          containerDisk: {image: 127.0.0.1:5000/kubevirt-rs/guest:latest}
"#;
    let o = c.apply(bad);
    assert!(!o.status.success(), "accepted: {}", text(&o));
    // Upstream's validator answers 422 with causes, which kubectl prints as below.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "The request is invalid: spec.template.spec.domain.devices.disks[0].name: \
             spec.template.spec.domain.devices.disks[0].Name 'missing' not found."
        ),
        "{err}"
    );
    // An unknown field is named by the API server (strict decoding by kubectl's default).
    let unknown = testvm().replace(
        "runStrategy: Halted",
        "runStrategy: Halted\n  runStrategyy: x",
    );
    let o = c.apply(&unknown);
    assert!(!o.status.success(), "accepted: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("runStrategyy"),
        "{}",
        text(&o)
    );
    assert!(c.ok(&["get", "vm", "--no-headers"]).trim().is_empty());
}

#[test]
fn replicaset_scales_and_instancetype_sizes_the_vmi() {
    let c = Cluster::up("c");
    // An instancetype gives the VMI its cpu and memory.
    let o = c.apply(
        r#"apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata:
  name: tiny
spec:
  cpu: {guest: 2}
  memory: {guest: 96Mi}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: sized
spec:
  runStrategy: Always
  instancetype: {name: tiny, kind: VirtualMachineInstancetype}
  template:
    spec:
      domain:
        devices:
          disks:
            - name: root
              disk: {bus: virtio}
      volumes:
        - name: root
          containerDisk: {image: 127.0.0.1:5000/kubevirt-rs/guest:latest}
"#,
    );
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the sized VMI", Duration::from_secs(180), |c| {
        !c.vmi_uid("sized").is_empty()
    });
    let topology = c.jsonpath(
        &["get", "vmi", "sized"],
        "{.spec.domain.cpu.sockets} {.spec.domain.cpu.cores} {.spec.domain.cpu.threads}",
    );
    let vcpus: u32 = topology
        .split_whitespace()
        .map(|n| n.parse::<u32>().unwrap_or(1))
        .product();
    assert_eq!(vcpus, 2, "cpu topology {topology:?}");
    assert_eq!(
        c.jsonpath(&["get", "vmi", "sized"], "{.spec.domain.memory.guest}"),
        "96Mi"
    );
    c.ok(&["delete", "vm", "sized", "--timeout=300s"]);

    // A VMIRS scales 0 -> 3 -> 1, each replica running the guest.
    let o = c.apply(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceReplicaSet
metadata:
  name: rs
spec:
  replicas: 0
  selector:
    matchLabels: {app: rs}
  template:
    metadata:
      labels: {app: rs}
    spec:
      domain:
        devices:
          disks:
            - name: root
              disk: {bus: virtio}
        resources:
          requests: {memory: 64Mi, cpu: 10m}
      volumes:
        - name: root
          containerDisk: {image: 127.0.0.1:5000/kubevirt-rs/guest:latest}
"#,
    );
    assert!(o.status.success(), "{}", text(&o));
    let running = |c: &Cluster| {
        c.jsonpath(&["get", "vmi", "-l", "app=rs"], "{.items[*].status.phase}")
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
    };
    c.ok(&["scale", "vmirs", "rs", "--replicas=3"]);
    c.wait("3 replicas running", Duration::from_secs(180), |c| {
        running(c) == 3
    });
    c.wait("readyReplicas 3", Duration::from_secs(180), |c| {
        c.jsonpath(&["get", "vmirs", "rs"], "{.status.readyReplicas}") == "3"
    });
    c.ok(&["scale", "vmirs", "rs", "--replicas=1"]);
    c.wait("1 replica left", Duration::from_secs(180), |c| {
        c.ok(&["get", "vmi", "-l", "app=rs", "--no-headers", "-o", "name"])
            .lines()
            .count()
            == 1
    });
    assert_eq!(running(&c), 1);

    // `virt-cluster down` with a guest running: its handler shuts it down (the power button,
    // pressed again if the guest was still booting) and the VMI ends, rather than being
    // released when the VM timeout runs out.
    let o = c.run(&["down", "--timeout", "240"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = std::fs::read_to_string(c.dir.join("logs/supervisor.log")).unwrap_or_default();
    assert!(
        !log.contains("VM timeout ran out"),
        "down had to release a running VMI: {}",
        text(&o)
    );
    assert!(c.all_qemu_pids().is_empty(), "QEMU left after down");
}

/// Live migration (`virtctl migrate`) between the two nodes of a `--nodes 2` cluster: the
/// migration goes through its phases to Succeeded, the instance keeps its uid and moves node,
/// the guest keeps running (no boot on the target, the console answers with a shell), the
/// source QEMU is gone, and stop on the new node works.
#[test]
fn testvm_live_migrates_to_the_other_node() {
    let c = Cluster::up_nodes("m", 2);
    let o = c.apply(&testvm());
    assert!(o.status.success(), "{}", text(&o));
    let o = c.virtctl(&["start", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the VMI to exist", Duration::from_secs(30), |c| {
        !c.vmi_uid("testvm").is_empty()
    });
    let o = c.kubectl(&[
        "wait",
        "vmi/testvm",
        "--for=condition=Ready",
        "--timeout=300s",
    ]);
    assert!(o.status.success(), "kubectl wait: {}", text(&o));
    let uid = c.vmi_uid("testvm");
    let source = c.jsonpath(&["get", "vmi", "testvm"], "{.status.nodeName}");
    let source_pod = c.jsonpath(
        &[
            "get",
            "pods",
            "-l",
            &format!("kubevirt.io/created-by={uid}"),
        ],
        "{.items[0].metadata.name}",
    );
    c.wait(
        "the login prompt on the console",
        Duration::from_secs(180),
        |c| c.pod_serial_log(&source_pod).contains("testvm login:"),
    );
    c.wait(
        "the LiveMigratable condition",
        Duration::from_secs(30),
        |c| {
            c.jsonpath(
                &["get", "vmi", "testvm"],
                "{.status.conditions[?(@.type==\"LiveMigratable\")].status}",
            ) == "True"
        },
    );

    let t0 = Instant::now();
    let o = c.virtctl(&["migrate", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("VM testvm was scheduled to migrate"),
        "{}",
        text(&o)
    );
    c.wait("a migration object", Duration::from_secs(30), |c| {
        !c.jsonpath(&["get", "vmim"], "{.items[0].metadata.name}")
            .is_empty()
    });
    let vmim = c.jsonpath(&["get", "vmim"], "{.items[0].metadata.name}");
    let o = c.kubectl(&[
        "wait",
        &format!("vmim/{vmim}"),
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=240s",
    ]);
    if !o.status.success() {
        panic!(
            "the migration did not succeed: {}\n{}\ncontroller:\n{}\nhandler:\n{}",
            text(&o),
            c.ok(&["get", "vmim,vmi,pods", "-o", "yaml"]),
            c.log_tail("virt-controller"),
            c.log_tail("virt-handler")
        );
    }
    eprintln!(
        "migration Succeeded {:?} after virtctl migrate",
        t0.elapsed()
    );
    let phases = c.jsonpath(
        &["get", "vmim", &vmim],
        "{.status.phaseTransitionTimestamps[*].phase}",
    );
    for p in ["Scheduling", "Scheduled", "PreparingTarget", "Succeeded"] {
        assert!(phases.split(' ').any(|x| x == p), "phase {p} in {phases:?}");
    }
    assert_eq!(c.vmi_uid("testvm"), uid, "the same instance");
    let target = c.jsonpath(&["get", "vmi", "testvm"], "{.status.nodeName}");
    assert!(
        !target.is_empty() && target != source,
        "moved from {source} to {target:?}"
    );
    assert_eq!(
        c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.metadata.labels.kubevirt\\.io/nodeName}"
        ),
        target
    );
    assert_eq!(
        c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.status.migrationState.completed}"
        ),
        "true"
    );
    assert_eq!(
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}"),
        "Running"
    );
    let target_pod = c.jsonpath(
        &["get", "vmi", "testvm"],
        "{.status.migrationState.targetPod}",
    );
    assert_eq!(
        c.jsonpath(&["get", "pod", &target_pod], "{.spec.nodeName}"),
        target
    );
    c.wait(
        "the source pod to complete",
        Duration::from_secs(240),
        |c| c.jsonpath(&["get", "pod", &source_pod], "{.status.phase}") == "Succeeded",
    );
    c.wait("one QEMU left", Duration::from_secs(180), |c| {
        c.all_qemu_pids().len() == 1
    });

    // The same guest, still running: the target never booted it, and its console answers.
    let shown = c.console_session(
        "testvm",
        &[
            ("\r", "testvm login:"),
            ("root\r", "assword:"),
            ("kubevirt\r", "#"),
            ("echo MARK$((6*7))\r", "MARK42"),
        ],
    );
    assert!(
        shown.contains("MARK42"),
        "a shell on the migrated guest: {shown}"
    );
    let target_log = c.pod_serial_log(&target_pod);
    assert!(
        !target_log.contains("guest-init: kubevirt-rs guest"),
        "the guest booted again on the target: {target_log}"
    );

    // A migration cancelled while it runs is aborted: the cluster's bandwidthPerMigration
    // (handed to the handlers as the attempt's migrationConfiguration) makes it slow enough
    // to catch under way.
    c.ok(&[
        "patch",
        "kubevirts.kubevirt.io",
        "kubevirt",
        "-n",
        "kubevirt",
        "--type=merge",
        "-p",
        r#"{"spec":{"configuration":{"migrations":{"bandwidthPerMigration":"1Mi"}}}}"#,
    ]);
    let o = c.virtctl(&["migrate", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait(
        "the second migration running",
        Duration::from_secs(240),
        |c| {
            c.jsonpath(&["get", "vmim"], "{.items[*].status.phase}")
                .split(' ')
                .any(|p| p == "Running")
        },
    );
    // Cancelled at once (at 1 MiB/s the guest's memory takes tens of seconds to copy); what
    // the attempt was handed is still in migrationState afterwards.
    let o = c.virtctl(&["migrate-cancel", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        c.jsonpath(
            &["get", "vmi", "testvm"],
            "{.status.migrationState.migrationConfiguration.bandwidthPerMigration}"
        ),
        "1Mi"
    );
    let second_target = c.jsonpath(
        &["get", "vmi", "testvm"],
        "{.status.migrationState.targetPod}",
    );
    c.wait(
        "the cancelled migration aborted and gone",
        Duration::from_secs(240),
        |c| {
            c.ok(&["get", "vmim", "--no-headers", "-o", "name"])
                .lines()
                .all(|l| l.trim() == format!("virtualmachineinstancemigration.kubevirt.io/{vmim}"))
        },
    );
    let state = |f: &str| {
        c.jsonpath(
            &["get", "vmi", "testvm"],
            &format!("{{.status.migrationState.{f}}}"),
        )
    };
    assert_eq!(state("abortRequested"), "true");
    assert_eq!(state("abortStatus"), "Succeeded");
    assert_eq!(state("failed"), "true");
    assert_eq!(
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.nodeName}"),
        target,
        "the aborted migration left the guest where it was"
    );
    c.wait(
        "the aborted target pod gone",
        Duration::from_secs(180),
        |c| {
            let phase = c.jsonpath(
                &["get", "pod", &second_target, "--ignore-not-found"],
                "{.status.phase}",
            );
            phase.is_empty() || phase == "Succeeded" || phase == "Failed"
        },
    );
    c.wait("one QEMU after the abort", Duration::from_secs(180), |c| {
        c.all_qemu_pids().len() == 1
    });
    assert_eq!(
        c.jsonpath(&["get", "vmi", "testvm"], "{.status.phase}"),
        "Running"
    );

    // Stop works from the new node.
    let o = c.virtctl(&["stop", "testvm"]);
    assert!(o.status.success(), "{}", text(&o));
    c.wait("the VMI gone after stop", Duration::from_secs(240), |c| {
        c.vmi_uid("testvm").is_empty()
    });
    c.wait("no QEMU left", Duration::from_secs(30), |c| {
        c.all_qemu_pids().is_empty()
    });
}
