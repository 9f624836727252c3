//! Authorization: a user bound to `kubevirt.io:edit` in namespace `a` works with VMs there and is
//! refused in `b` with the 403 Kubernetes gives; aggregated roles; `kubectl auth can-i` and
//! `whoami`; each component's identity can do what it needs and no more. With kubectl and
//! kube-rs.

mod common;

use common::{KUBECTL_133, Server, repo_root};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;

fn kubectl_as(s: &Server, kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(KUBECTL_133)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(s.dir.join(format!(
            "cache-{}",
            kubeconfig.file_name().and_then(|f| f.to_str()).unwrap_or("x")
        )))
        .args(args)
        .env("HOME", &s.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl")
}

fn user_kubeconfig(s: &Server, user: &str, groups: &[&str]) -> std::path::PathBuf {
    let out = s.dir.join(format!("{user}.kubeconfig"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_virt-cluster"));
    cmd.args(["kubeconfig", "--data-dir"])
        .arg(&s.dir)
        .args(["--user", user, "--out"])
        .arg(&out);
    for g in groups {
        cmd.args(["--group", g]);
    }
    let o = cmd.output().expect("virt-cluster kubeconfig");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// `kubectl auth can-i` as the holder of `kubeconfig`: true for "yes".
fn can_i(s: &Server, kubeconfig: &std::path::Path, args: &[&str]) -> bool {
    let mut a = vec!["auth", "can-i"];
    a.extend_from_slice(args);
    let out = kubectl_as(s, kubeconfig, &a);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match text.as_str() {
        "yes" => {
            assert!(out.status.success());
            true
        }
        "no" => false,
        _ => panic!(
            "can-i {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A SelfSubjectAccessReview for a `subresources.kubevirt.io` subresource, created with kubectl.
fn ssar(
    s: &Server,
    kubeconfig: &std::path::Path,
    verb: &str,
    resource: &str,
    sub: &str,
    ns: &str,
) -> bool {
    let path = s
        .dir
        .join(format!("ssar-{verb}-{resource}-{sub}-{ns}.json"));
    std::fs::write(
        &path,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"group": "subresources.kubevirt.io", "resource": resource,
                        "subresource": sub, "verb": verb, "namespace": ns}}})
        .to_string(),
    )
    .expect("write");
    let out = kubectl_as(
        s,
        kubeconfig,
        &[
            "create",
            "-f",
            path.to_str().expect("path"),
            "-o",
            "jsonpath={.status.allowed}",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout) == "true"
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn vm_resource() -> ApiResource {
    ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        plural: "virtualmachines".into(),
    }
}

fn vm(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64M"}}}}}}
    }))
    .expect("vm")
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_matrix() {
    let s = Server::start();
    let k = KUBECTL_133;
    let crds = repo_root().join("deploy/crds");
    s.ok(k, &["apply", "-f", crds.to_str().expect("path")]);
    for ns in ["a", "b"] {
        s.ok(k, &["create", "namespace", ns]);
    }
    s.ok(
        k,
        &[
            "create",
            "rolebinding",
            "dave-edit",
            "-n",
            "a",
            "--clusterrole=kubevirt.io:edit",
            "--user=dave",
        ],
    );
    let dave = user_kubeconfig(&s, "dave", &["developers"]);
    let vm_yaml = s.dir.join("vm.yaml");
    std::fs::write(&vm_yaml, include_str!("data/testvm.yaml")).expect("write");
    let vm_path = vm_yaml.to_str().expect("path");

    // kubectl: VMs in `a`, 403 in `b` worded as upstream's.
    let out = kubectl_as(&s, &dave, &["create", "-n", "a", "-f", vm_path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl_as(&s, &dave, &["create", "-n", "b", "-f", vm_path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains("virtualmachines.kubevirt.io is forbidden: User \"dave\" cannot create resource \"virtualmachines\" in API group \"kubevirt.io\" in the namespace \"b\""),
        "{err}"
    );
    let out = kubectl_as(&s, &dave, &["get", "pods", "-n", "a"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods is forbidden: User \"dave\" cannot list resource \"pods\" in API group \"\" in the namespace \"a\""),
        "{err}"
    );
    let out = kubectl_as(&s, &dave, &["get", "vm", "-n", "a", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "virtualmachine.kubevirt.io/testvm"
    );

    // kubectl auth can-i and whoami.
    assert!(can_i(
        &s,
        &dave,
        &["create", "virtualmachines.kubevirt.io", "-n", "a"]
    ));
    assert!(!can_i(
        &s,
        &dave,
        &["create", "virtualmachines.kubevirt.io", "-n", "b"]
    ));
    // KubeVirt's subresources (served by virt-api through aggregation, not registered here,
    // so asked with a SelfSubjectAccessReview naming the group).
    assert!(ssar(
        &s,
        &dave,
        "get",
        "virtualmachineinstances",
        "console",
        "a"
    ));
    assert!(ssar(&s, &dave, "update", "virtualmachines", "start", "a"));
    assert!(!ssar(
        &s,
        &dave,
        "get",
        "virtualmachineinstances",
        "vnc",
        "b"
    ));
    assert!(!can_i(&s, &dave, &["get", "pods", "-n", "a"]));
    assert!(!can_i(&s, &dave, &["list", "nodes"]));
    assert!(can_i(&s, &s.kubeconfig, &["*", "*"]));
    let who = kubectl_as(
        &s,
        &dave,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&who.stdout), "dave");
    let list = kubectl_as(&s, &dave, &["auth", "can-i", "--list", "-n", "a"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("virtualmachines.kubevirt.io"), "{list}");

    // Aggregated roles: `view` in `b` includes kubevirt.io:view (read, not write).
    s.ok(
        k,
        &[
            "create",
            "rolebinding",
            "dave-view",
            "-n",
            "b",
            "--clusterrole=view",
            "--user=dave",
        ],
    );
    assert!(can_i(
        &s,
        &dave,
        &["list", "virtualmachines.kubevirt.io", "-n", "b"]
    ));
    assert!(can_i(&s, &dave, &["list", "pods", "-n", "b"]));
    assert!(!can_i(
        &s,
        &dave,
        &["create", "virtualmachines.kubevirt.io", "-n", "b"]
    ));
    // A new role labelled for aggregation joins `view` at once.
    let extra = s.dir.join("extra.json");
    std::fs::write(
        &extra,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "extra-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
               "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]})
        .to_string(),
    )
    .expect("write");
    s.ok(k, &["apply", "-f", extra.to_str().expect("path")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s
        .ok(k, &["get", "clusterrole", "view", "-o", "json"])
        .contains("\"nodes\"")
    {
        assert!(std::time::Instant::now() < deadline, "aggregation");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // kube-rs: the same answers.
    let dc = client(&dave).await;
    let vms_a: Api<DynamicObject> = Api::namespaced_with(dc.clone(), "a", &vm_resource());
    vms_a
        .create(&PostParams::default(), &vm("from-kube-rs"))
        .await
        .expect("create in a");
    let vms_b: Api<DynamicObject> = Api::namespaced_with(dc.clone(), "b", &vm_resource());
    match vms_b
        .create(&PostParams::default(), &vm("from-kube-rs"))
        .await
    {
        Err(kube::Error::Api(st)) => {
            assert_eq!((st.code, st.reason.as_str()), (403, "Forbidden"));
        }
        other => panic!("expected 403, got {other:?}"),
    }
    vms_b.list(&Default::default()).await.expect("view in b");
    let pods_a: Api<Pod> = Api::namespaced(dc, "a");
    assert!(
        matches!(pods_a.list(&Default::default()).await, Err(kube::Error::Api(st)) if st.code == 403)
    );

    // Components: what they need, and no more.
    let comp = |c: &str| s.dir.join(format!("kubeconfigs/{c}.kubeconfig"));
    let node = s.dir.join("node1.kubeconfig");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_virt-cluster"))
        .args(["kubeconfig", "--data-dir"])
        .arg(&s.dir)
        .args(["--node", "node1", "--out"])
        .arg(&node)
        .output()
        .expect("kubeconfig");
    assert!(o.status.success());
    let cases: &[(&std::path::Path, &[&str], bool)] = &[
        (
            &comp("virt-controller"),
            &["create", "pods", "-n", "a"],
            true,
        ),
        (
            &comp("virt-controller"),
            &[
                "update",
                "virtualmachineinstances.kubevirt.io",
                "--subresource=status",
                "-n",
                "a",
            ],
            true,
        ),
        (
            &comp("virt-controller"),
            &["create", "secrets", "-n", "a"],
            false,
        ),
        (
            &comp("virt-controller"),
            &["create", "clusterrolebindings"],
            false,
        ),
        (
            &comp("virt-handler"),
            &["patch", "virtualmachineinstances.kubevirt.io", "-n", "a"],
            true,
        ),
        (&comp("virt-handler"), &["patch", "nodes"], true),
        (&comp("virt-handler"), &["create", "pods", "-n", "a"], false),
        (
            &comp("virt-handler"),
            &["delete", "virtualmachines.kubevirt.io", "-n", "a"],
            false,
        ),
        (
            &comp("virt-api"),
            &["patch", "virtualmachines.kubevirt.io", "-n", "a"],
            true,
        ),
        (&comp("virt-api"), &["create", "pods", "-n", "a"], false),
        (
            &comp("scheduler"),
            &["create", "pods", "--subresource=binding", "-n", "a"],
            true,
        ),
        (&comp("scheduler"), &["list", "nodes"], true),
        (&comp("scheduler"), &["get", "secrets", "-n", "a"], false),
        (&comp("scheduler"), &["create", "pods", "-n", "a"], false),
        (
            &node,
            &["patch", "pods", "--subresource=status", "-n", "a"],
            true,
        ),
        (
            &node,
            &[
                "create",
                "serviceaccounts",
                "--subresource=token",
                "-n",
                "a",
            ],
            true,
        ),
        (
            &node,
            &[
                "update",
                "leases.coordination.k8s.io",
                "-n",
                "kube-node-lease",
            ],
            true,
        ),
        (
            &node,
            &["delete", "virtualmachines.kubevirt.io", "-n", "a"],
            false,
        ),
        (
            &node,
            &["list", "clusterroles.rbac.authorization.k8s.io"],
            false,
        ),
    ];
    for (kc, args, want) in cases {
        assert_eq!(can_i(&s, kc, args), *want, "{} {args:?}", kc.display());
    }
    // The node authorizer's part: a kubelet changes only its own Node and the pods bound to it.
    {
        use k8s_openapi::api::core::v1::Node;
        use kube::api::{Patch, PatchParams};
        let admin = s.client().await;
        for n in ["node1", "node2"] {
            let node: Node =
                serde_json::from_value(json!({"metadata": {"name": n}})).expect("node");
            Api::<Node>::all(admin.clone())
                .create(&PostParams::default(), &node)
                .await
                .expect("node");
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("on-{n}")},
                "spec": {"nodeName": n, "containers": [{"name": "c", "image": "busybox"}]}}))
            .expect("pod");
            Api::<Pod>::namespaced(admin.clone(), "a")
                .create(&PostParams::default(), &pod)
                .await
                .expect("pod");
        }
        let kubelet = client(&node).await;
        let status = Patch::Merge(json!({"status": {"phase": "Running"}}));
        let pods = Api::<Pod>::namespaced(kubelet.clone(), "a");
        pods.patch_status("on-node1", &PatchParams::default(), &status)
            .await
            .expect("own pod");
        match pods
            .patch_status("on-node2", &PatchParams::default(), &status)
            .await
        {
            Err(kube::Error::Api(st)) => assert_eq!(st.code, 403, "{}", st.message),
            other => panic!("expected 403, got {other:?}"),
        }
        let nodes = Api::<Node>::all(kubelet);
        let ready = Patch::Merge(json!({"status": {"phase": "Running"}}));
        nodes
            .patch_status("node1", &PatchParams::default(), &ready)
            .await
            .expect("own node");
        assert!(matches!(
            nodes.patch_status("node2", &PatchParams::default(), &ready).await,
            Err(kube::Error::Api(st)) if st.code == 403
        ));
    }
    // And real calls agree with the answers.
    let ctrl = client(&comp("virt-controller")).await;
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "launcher"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .expect("pod");
    Api::<Pod>::namespaced(ctrl.clone(), "a")
        .create(&PostParams::default(), &pod)
        .await
        .expect("controller creates pods");
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("secret");
    assert!(matches!(
        Api::<Secret>::namespaced(ctrl, "a").create(&PostParams::default(), &secret).await,
        Err(kube::Error::Api(st)) if st.code == 403
    ));
}
