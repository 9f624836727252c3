//! The real kubectl (1.32 and 1.33) against a fresh `virt-cluster apiserver`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{KUBECTL_132, KUBECTL_133, Server, repo_root, write_crds};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Installs the CRDs: those in deploy/crds, then the current ones from the API types (the same
/// names, so the second apply is an update of every definition).
fn install_crds(s: &Server, k: &str) {
    let deploy = repo_root().join("deploy/crds");
    let out = s.ok(k, &["apply", "-f", deploy.to_str().expect("path")]);
    assert!(out.contains("virtualmachines.kubevirt.io created"), "{out}");
    let current = write_crds(&s.dir);
    s.ok(k, &["apply", "-f", current.to_str().expect("path")]);
    s.ok(
        k,
        &[
            "wait",
            "--for=condition=established",
            "--timeout=30s",
            "crd/virtualmachines.kubevirt.io",
        ],
    );
}

fn vm_manifest(s: &Server, name: &str, size: &str, extra: &str) -> String {
    let base = include_str!("data/testvm.yaml")
        .replace("name: testvm", &format!("name: {name}"))
        .replace("size: small", &format!("size: {size}"))
        .replace("      domain:\n", &format!("      domain:\n{extra}"));
    let path = s.dir.join(format!("{name}-{size}.yaml"));
    std::fs::write(&path, base).expect("write manifest");
    path.to_string_lossy().into_owned()
}

fn suite(k: &str) {
    let s = Server::start();
    let ns = "suite";
    let out = s.ok(k, &["create", "namespace", ns]);
    assert!(out.contains("namespace/suite created"), "{out}");
    assert!(s.ok(k, &["get", "ns"]).contains("kube-system"));
    install_crds(&s, k);

    // Client-side apply twice (the second with a change), then server-side apply.
    let small = vm_manifest(&s, "testvm", "small", "");
    let out = s.ok(k, &["apply", "-n", ns, "-f", &small]);
    assert!(
        out.contains("virtualmachine.kubevirt.io/testvm created"),
        "{out}"
    );
    let out = s.ok(k, &["apply", "-n", ns, "-f", &small]);
    assert!(out.contains("unchanged"), "{out}");
    let large = vm_manifest(&s, "testvm", "large", "");
    let out = s.ok(k, &["apply", "-n", ns, "-f", &large]);
    assert!(out.contains("configured"), "{out}");
    let size = s.ok(
        k,
        &[
            "get",
            "vm",
            "testvm",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.metadata.labels.kubevirt\\.io/size}",
        ],
    );
    assert_eq!(size, "large");
    // kubectl diff (a server-side dry-run patch) shows exactly the change.
    let nothing = s.kubectl(k, &["diff", "-n", ns, "-f", &large]);
    assert_eq!(
        nothing.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&nothing.stdout)
    );
    let huge = vm_manifest(&s, "testvm", "huge", "");
    let d = s.kubectl(k, &["diff", "-n", ns, "-f", &huge]);
    let text = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.status.code(), Some(1), "{text}");
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| (l.starts_with("- ") || l.starts_with("+ ")) && !l.contains("generation"))
        .collect();
    assert_eq!(changed.len(), 2, "{text}");
    assert!(changed[1].contains("kubevirt.io/size: huge"), "{text}");
    let ssa = vm_manifest(&s, "ssavm", "small", "");
    let out = s.ok(k, &["apply", "--server-side", "-n", ns, "-f", &ssa]);
    assert!(out.contains("serverside-applied"), "{out}");
    let ssa2 = vm_manifest(&s, "ssavm", "medium", "");
    s.ok(k, &["apply", "--server-side", "-n", ns, "-f", &ssa2]);
    let size = s.ok(
        k,
        &[
            "get",
            "vm",
            "ssavm",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.metadata.labels.kubevirt\\.io/size}",
        ],
    );
    assert_eq!(size, "medium");
    // A different manager changing an applied field conflicts unless forced.
    let other = s.fails(
        k,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-n",
            ns,
            "-f",
            &ssa,
        ],
    );
    assert!(other.contains("conflict"), "{other}");
    s.ok(
        k,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=other",
            "-n",
            ns,
            "-f",
            &ssa,
        ],
    );

    // get in every format; printer columns.
    let table = s.ok(k, &["get", "vm", "-n", ns]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, vec!["NAME", "AGE", "STATUS", "READY"], "{table}");
    assert!(
        table.contains("testvm") && table.contains("ssavm"),
        "{table}"
    );
    let wide = s.ok(k, &["get", "vms", "-n", ns, "-o", "wide"]);
    assert!(wide.contains("testvm"), "{wide}");
    let y = s.ok(k, &["get", "vm", "testvm", "-n", ns, "-o", "yaml"]);
    assert!(
        y.contains("kind: VirtualMachine") && y.contains("uid:"),
        "{y}"
    );
    let j = json(&s.ok(k, &["get", "vm/testvm", "-n", ns, "-o", "json"]));
    assert_eq!(j["metadata"]["generation"], 2, "{j}");
    assert!(
        j["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let pods = s.ok(k, &["get", "pods", "-A"]);
    assert!(
        pods.contains("No resources found") || pods.is_empty(),
        "{pods}"
    );
    let all = s.ok(k, &["get", "all", "-n", ns]);
    assert!(all.contains("testvm"), "{all}");

    // describe, label, annotate.
    let d = s.ok(k, &["describe", "vm", "testvm", "-n", ns]);
    assert!(
        d.contains("Name:") && d.contains("testvm") && d.contains("Namespace:"),
        "{d}"
    );
    s.ok(k, &["label", "vm", "testvm", "-n", ns, "env=test"]);
    s.ok(k, &["annotate", "vm", "testvm", "-n", ns, "note=hello"]);
    let sel = s.ok(k, &["get", "vm", "-n", ns, "-l", "env=test", "-o", "name"]);
    assert_eq!(sel.trim(), "virtualmachine.kubevirt.io/testvm");
    let sel = s.ok(
        k,
        &[
            "get",
            "vm",
            "-n",
            ns,
            "-l",
            "env notin (test),!nope",
            "-o",
            "name",
        ],
    );
    assert_eq!(sel.trim(), "virtualmachine.kubevirt.io/ssavm");
    let note = s.ok(
        k,
        &[
            "get",
            "vm",
            "testvm",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ],
    );
    assert_eq!(note, "hello");
    s.ok(k, &["label", "vm", "testvm", "-n", ns, "env-"]);

    // patch, every legal type; strategic merge on a custom resource is refused.
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "testvm",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"runStrategy":"Halted","running":null}}"#,
        ],
    );
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "testvm",
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/runStrategy","value":"Manual"}]"#,
        ],
    );
    let rs = s.ok(
        k,
        &[
            "get",
            "vm",
            "testvm",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.runStrategy}",
        ],
    );
    assert_eq!(rs, "Manual");
    let smp = s.fails(
        k,
        &[
            "patch",
            "vm",
            "testvm",
            "-n",
            ns,
            "--type=strategic",
            "-p",
            r#"{"metadata":{"labels":{"s":"1"}}}"#,
        ],
    );
    assert!(
        smp.contains("unknown format")
            || smp.contains("415")
            || smp.contains("UnsupportedMediaType"),
        "{smp}"
    );
    s.ok(
        k,
        &["create", "configmap", "cm1", "-n", ns, "--from-literal=a=1"],
    );
    s.ok(
        k,
        &[
            "patch",
            "configmap",
            "cm1",
            "-n",
            ns,
            "-p",
            r#"{"data":{"b":"2"}}"#,
        ],
    );
    let data = json(&s.ok(k, &["get", "cm", "cm1", "-n", ns, "-o", "json"]));
    assert_eq!(data["data"], serde_json::json!({"a": "1", "b": "2"}));
    // Status subresource: the main endpoint ignores status, the status endpoint changes it.
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "testvm",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"status":{"printableStatus":"Ignored"}}"#,
        ],
    );
    let st = s.ok(
        k,
        &[
            "get",
            "vm",
            "testvm",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.printableStatus}",
        ],
    );
    assert_eq!(st, "");
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "testvm",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"printableStatus":"Stopped"}}"#,
        ],
    );
    let table = s.ok(k, &["get", "vm", "testvm", "-n", ns]);
    assert!(table.contains("Stopped"), "{table}");

    // replace.
    let mut cur = json(&s.ok(k, &["get", "vm", "testvm", "-n", ns, "-o", "json"]));
    cur["metadata"]["labels"]["replaced"] = Value::from("yes");
    let path = s.dir.join("replace.json");
    std::fs::write(&path, cur.to_string()).expect("write");
    s.ok(k, &["replace", "-f", path.to_str().expect("path")]);
    let l = s.ok(
        k,
        &[
            "get",
            "vm",
            "testvm",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.labels.replaced}",
        ],
    );
    assert_eq!(l, "yes");
    // A stale resourceVersion conflicts.
    let stale = s.fails(k, &["replace", "-f", path.to_str().expect("path")]);
    assert!(stale.contains("the object has been modified"), "{stale}");

    // wait for a condition set later.
    let waiter = s
        .kubectl_cmd(
            k,
            &[
                "wait",
                "--for=condition=Ready",
                "vm/testvm",
                "-n",
                ns,
                "--timeout=30s",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "testvm",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    );
    let out = waiter.wait_with_output().expect("wait output");
    assert!(
        out.status.success(),
        "wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));

    // get -w sees an update.
    let mut watcher = s
        .kubectl_cmd(
            k,
            &[
                "get",
                "vm",
                "testvm",
                "-n",
                ns,
                "-w",
                "--no-headers",
                "-o",
                "custom-columns=NAME:.metadata.name,W:.metadata.labels.watched",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watch");
    let stdout = watcher.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial watch line");
    assert!(
        first.contains("testvm") && first.contains("<none>"),
        "{first}"
    );
    s.ok(k, &["label", "vm", "testvm", "-n", ns, "watched=yes"]);
    let next = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watch saw the update");
    assert!(next.contains("testvm") && next.contains("yes"), "{next}");
    let _ = watcher.kill();
    let _ = watcher.wait();

    // explain, api-resources, api-versions.
    let e = s.ok(k, &["explain", "vm.spec.template.spec.domain.devices"]);
    assert!(e.contains("disks") && e.contains("KIND:"), "{e}");
    let e = s.ok(k, &["explain", "pods.spec.containers"]);
    assert!(e.contains("image"), "{e}");
    let r = s.ok(k, &["api-resources"]);
    assert!(
        r.lines()
            .any(|l| l.starts_with("virtualmachines ") && l.contains("vm")),
        "{r}"
    );
    let v = s.ok(k, &["api-versions"]);
    assert!(
        v.lines().any(|l| l == "kubevirt.io/v1") && v.lines().any(|l| l == "v1"),
        "{v}"
    );

    // --dry-run=server stores nothing.
    let out = s.ok(
        k,
        &[
            "create",
            "configmap",
            "dry",
            "-n",
            ns,
            "--from-literal=a=b",
            "--dry-run=server",
        ],
    );
    assert!(out.contains("server dry run"), "{out}");
    s.fails(k, &["get", "cm", "dry", "-n", ns]);
    let dry_vm = vm_manifest(&s, "dryvm", "small", "");
    s.ok(k, &["apply", "-n", ns, "-f", &dry_vm, "--dry-run=server"]);
    s.fails(k, &["get", "vm", "dryvm", "-n", ns]);

    // An unknown field is rejected under Strict (kubectl's default), accepted with a warning
    // when validation is off.
    let bogus = vm_manifest(&s, "bogus", "small", "        bogus: 1\n");
    let err = s.fails(k, &["apply", "-n", ns, "-f", &bogus]);
    assert!(
        err.contains("unknown field \"spec.template.spec.domain.bogus\""),
        "{err}"
    );
    let meta_bogus = s.dir.join("meta-bogus.yaml");
    std::fs::write(
        &meta_bogus,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mb\n  labelz: {a: b}\n",
    )
    .expect("write");
    let err = s.fails(
        k,
        &["apply", "-n", ns, "-f", meta_bogus.to_str().expect("path")],
    );
    assert!(err.contains("unknown field \"metadata.labelz\""), "{err}");
    let out = s.kubectl(k, &["apply", "-n", ns, "-f", &bogus, "--validate=warn"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));

    // delete --wait without finalizers.
    let out = s.ok(
        k,
        &["delete", "vm", "bogus", "-n", ns, "--wait", "--timeout=30s"],
    );
    assert!(out.contains("deleted"), "{out}");
    s.fails(k, &["get", "vm", "bogus", "-n", ns]);
    // With a finalizer: marked, then gone once the finalizer is removed.
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "ssavm",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ],
    );
    s.ok(k, &["delete", "vm", "ssavm", "-n", ns, "--wait=false"]);
    let ts = s.ok(
        k,
        &[
            "get",
            "vm",
            "ssavm",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
    );
    assert!(!ts.is_empty());
    // `delete --wait` waits while the finalizer holds the object (here: until its timeout).
    let held = s.kubectl(
        k,
        &["delete", "vm", "ssavm", "-n", ns, "--wait", "--timeout=2s"],
    );
    assert!(
        !held.status.success(),
        "delete --wait returned while a finalizer held the object"
    );
    let waiter = s
        .kubectl_cmd(
            k,
            &[
                "wait",
                "--for=delete",
                "vm/ssavm",
                "-n",
                ns,
                "--timeout=30s",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait --for=delete");
    s.ok(
        k,
        &[
            "patch",
            "vm",
            "ssavm",
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    );
    let out = waiter.wait_with_output().expect("wait output");
    assert!(
        out.status.success(),
        "wait --for=delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.fails(k, &["get", "vm", "ssavm", "-n", ns]);

    // Deleting the namespace removes its contents, then the namespace.
    s.ok(k, &["delete", "namespace", ns, "--wait", "--timeout=60s"]);
    s.fails(k, &["get", "namespace", ns]);
    let left = s.ok(k, &["get", "vm", "-A", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn kubectl_1_33() {
    suite(KUBECTL_133);
}

#[test]
fn kubectl_1_32() {
    suite(KUBECTL_132);
}

#[test]
fn version_discovery_and_raw_paths() {
    let s = Server::start();
    // /usr/bin/kubectl is a dispatcher that picks kubectl.1.<server minor>.
    let dispatcher = if std::path::Path::new("/usr/bin/kubectl").exists() {
        "/usr/bin/kubectl"
    } else {
        KUBECTL_133
    };
    let v = json(&s.ok(dispatcher, &["version", "-o", "json"]));
    assert_eq!(v["serverVersion"]["minor"], "33");
    assert_eq!(v["clientVersion"]["minor"], "33");
    let missing = s.fails(KUBECTL_133, &["get", "--raw", "/apis/kubevirt.io/v1"]);
    assert!(missing.contains("NotFound"), "{missing}");
    let core = json(&s.ok(KUBECTL_133, &["get", "--raw", "/api/v1"]));
    assert_eq!(core["kind"], "APIResourceList");
    let index = json(&s.ok(KUBECTL_133, &["get", "--raw", "/openapi/v3"]));
    assert!(
        index["paths"]["apis/apps/v1"]["serverRelativeURL"].is_string(),
        "{index}"
    );
    for p in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(s.ok(KUBECTL_133, &["get", "--raw", p]), "ok");
    }
}

#[test]
fn pods_nodes_bindings_and_crd_deletion() {
    let s = Server::start();
    let k = KUBECTL_133;
    let node = s.dir.join("node.json");
    std::fs::write(
        &node,
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1","labels":{"node-role.kubernetes.io/worker":""}},
            "status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"10.244.1.1"}],
                      "nodeInfo":{"kubeletVersion":"v1.33.0","osImage":"Debian","kernelVersion":"6.1","containerRuntimeVersion":"kvrs://1",
                                  "architecture":"amd64","bootID":"","containerRuntimeVersion":"kvrs://1","kubeProxyVersion":"","machineID":"","operatingSystem":"linux","systemUUID":""}}}"#,
    )
    .expect("write node");
    s.ok(k, &["create", "-f", node.to_str().expect("path")]);
    let nodes = s.ok(k, &["get", "nodes", "-o", "wide"]);
    assert!(
        nodes.contains("node1") && nodes.contains("worker") && nodes.contains("10.244.1.1"),
        "{nodes}"
    );
    s.ok(k, &["run", "p1", "--image=busybox", "--restart=Never"]);
    let pod = json(&s.ok(k, &["get", "pod", "p1", "-o", "json"]));
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let wide = s.ok(k, &["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        &header[..5],
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{wide}"
    );
    assert!(wide.contains("0/1"), "{wide}");
    // Binding (what a scheduler does), then the field selector a kubelet uses.
    let binding = s.dir.join("binding.json");
    std::fs::write(
        &binding,
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p1"},"target":{"apiVersion":"v1","kind":"Node","name":"node1"}}"#,
    )
    .expect("write binding");
    s.ok(
        k,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p1/binding",
            "-f",
            binding.to_str().expect("path"),
        ],
    );
    let again = s.fails(
        k,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p1/binding",
            "-f",
            binding.to_str().expect("path"),
        ],
    );
    assert!(again.contains("already assigned"), "{again}");
    let on_node = s.ok(
        k,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=node1",
            "-o",
            "name",
        ],
    );
    assert_eq!(on_node.trim(), "pod/p1");
    let elsewhere = s.ok(
        k,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=node2,status.phase=Pending",
            "-o",
            "name",
        ],
    );
    assert!(elsewhere.trim().is_empty(), "{elsewhere}");
    let bad = s.fails(k, &["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(bad.contains("field label not supported"), "{bad}");
    // A bound pod is deleted gracefully: marked until its kubelet (here: a forced delete) ends it.
    s.ok(k, &["delete", "pod", "p1", "--wait=false"]);
    let ts = s.ok(
        k,
        &[
            "get",
            "pod",
            "p1",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ],
    );
    assert_eq!(ts, "30");
    assert!(s.ok(k, &["get", "pods"]).contains("Terminating"));
    s.ok(k, &["delete", "pod", "p1", "--grace-period=0", "--force"]);
    s.fails(k, &["get", "pod", "p1"]);

    // Client-side apply of a built-in kind (kubectl computes a strategic merge patch).
    let cm = s.dir.join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n  b: \"2\"\n").expect("write");
    s.ok(k, &["apply", "-f", cm.to_str().expect("path")]);
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"3\"\n",
    )
    .expect("write");
    let out = s.ok(k, &["apply", "-f", cm.to_str().expect("path")]);
    assert!(out.contains("configured"), "{out}");
    let data = json(&s.ok(k, &["get", "cm", "applied", "-o", "json"]));
    assert_eq!(data["data"], serde_json::json!({"a": "3"}));
    // Typed (protobuf) creates of several kinds.
    s.ok(
        k,
        &["create", "secret", "generic", "sec", "--from-literal=k=v"],
    );
    let sec = json(&s.ok(k, &["get", "secret", "sec", "-o", "json"]));
    assert_eq!(sec["data"]["k"], "dg==");
    s.ok(k, &["create", "serviceaccount", "robot"]);
    s.ok(
        k,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
        ],
    );
    let dep = json(&s.ok(k, &["get", "deployment", "web", "-o", "json"]));
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    s.ok(k, &["scale", "deployment", "web", "--replicas=3"]);
    let r = s.ok(
        k,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(r, "3");
    s.ok(
        k,
        &["create", "role", "reader", "--verb=get", "--resource=pods"],
    );
    s.ok(
        k,
        &[
            "create",
            "rolebinding",
            "reader",
            "--role=reader",
            "--serviceaccount=default:robot",
        ],
    );

    // Services get a ClusterIP from 10.96.0.0/16; `kubernetes` holds the first one.
    s.ok(
        k,
        &["create", "service", "clusterip", "websvc", "--tcp=80:8080"],
    );
    let ip = s.ok(
        k,
        &["get", "svc", "websvc", "-o", "jsonpath={.spec.clusterIP}"],
    );
    assert!(ip.starts_with("10.96.") && ip != "10.96.0.1", "{ip}");
    let svcs = s.ok(k, &["get", "svc"]);
    assert!(
        svcs.contains("kubernetes") && svcs.contains("10.96.0.1") && svcs.contains("80/TCP"),
        "{svcs}"
    );
    let ca = s.ok(
        k,
        &[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    );
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");

    // Deleting a CRD deletes its objects, then stops serving it.
    let crds = write_crds(&s.dir);
    s.ok(k, &["apply", "-f", crds.to_str().expect("path")]);
    let vm = vm_manifest(&s, "gone", "small", "");
    s.ok(k, &["apply", "-f", &vm]);
    // The scale subresource a CRD declares (VirtualMachineInstanceReplicaSet).
    let rs = s.dir.join("rs.yaml");
    std::fs::write(
        &rs,
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceReplicaSet\nmetadata:\n  name: rs1\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      a: b\n  template:\n    metadata:\n      labels:\n        a: b\n    spec:\n      domain:\n        devices: {}\n        resources:\n          requests:\n            memory: 64M\n",
    )
    .expect("write");
    s.ok(k, &["apply", "-f", rs.to_str().expect("path")]);
    s.ok(k, &["scale", "vmirs", "rs1", "--replicas=3"]);
    let scale = json(&s.ok(
        k,
        &[
            "get",
            "--raw",
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstancereplicasets/rs1/scale",
        ],
    ));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    s.ok(
        k,
        &[
            "delete",
            "crd",
            "virtualmachines.kubevirt.io",
            "--wait",
            "--timeout=30s",
        ],
    );
    let r = s.ok(k, &["api-resources", "--api-group=kubevirt.io"]);
    assert!(!r.contains("virtualmachines "), "{r}");
    s.ok(k, &["apply", "-f", crds.to_str().expect("path")]);
    let left = s.ok(k, &["get", "vm", "-A", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn http2_and_chunked_watches() {
    // curl shows the negotiated protocol; skip quietly where it is not installed.
    if !std::path::Path::new("/usr/bin/curl").exists() {
        return;
    }
    let s = Server::start();
    let ca = s.dir.join("pki/ca.crt");
    let url = format!(
        "https://{}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        s.addr
    );
    let run = |proto: &str| {
        std::process::Command::new("/usr/bin/curl")
            .args(["-s", proto, "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(s.dir.join("pki/admin.crt"))
            .arg("--key")
            .arg(s.dir.join("pki/admin.key"))
            .args(["-o", "/dev/null", "-D", "-", "-w", "%{http_version}", &url])
            .output()
            .expect("curl")
    };
    let h2 = String::from_utf8_lossy(&run("--http2").stdout).into_owned();
    assert!(
        h2.trim_end().ends_with('2') && h2.starts_with("HTTP/2 200"),
        "{h2}"
    );
    let h1 = String::from_utf8_lossy(&run("--http1.1").stdout).to_lowercase();
    assert!(h1.contains("transfer-encoding: chunked"), "{h1}");
}
