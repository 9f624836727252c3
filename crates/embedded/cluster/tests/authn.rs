//! Authentication: anonymous requests get 401 (health checks excepted), client certificates
//! signed by the cluster CA name their user, static tokens and service account tokens from the
//! TokenRequest API work until what they are bound to goes.

mod common;

use std::path::Path;

use common::{KUBECTL_133, Server};

/// A kubeconfig that trusts the cluster CA and carries no credentials.
fn anonymous_kubeconfig(s: &Server) -> String {
    let path = s.dir.join("anonymous.kubeconfig");
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}\n    certificate-authority: {}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: nobody\n    namespace: default\ncurrent-context: c\n",
        s.addr,
        s.dir.join("pki/ca.crt").display()
    );
    std::fs::write(&path, kc).expect("write kubeconfig");
    path.to_string_lossy().into_owned()
}

/// kubectl with another kubeconfig (and extra flags such as `--token`).
fn kubectl_as(s: &Server, kubeconfig: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(KUBECTL_133)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(s.dir.join(format!("cache-{}", kubeconfig.len())))
        .args(args)
        .env("HOME", &s.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn curl(s: &Server, path: &str) -> (String, String) {
    let out = std::process::Command::new("/usr/bin/curl")
        .args(["-s", "--cacert"])
        .arg(s.dir.join("pki/ca.crt"))
        .args(["-w", "\n%{http_code}", &format!("https://{}{path}", s.addr)])
        .output()
        .expect("curl");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_string(), code.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_certificates_and_tokens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cret-token,alice,1001,\"dev,ops\"\n").expect("token file");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let s = Server::start_with(
        &data,
        "127.0.0.1:0",
        &["--token-auth-file", tokens.to_str().expect("path")],
    );
    let k = KUBECTL_133;
    let anon = anonymous_kubeconfig(&s);

    // Anonymous (curl, kube-rs) and bad credentials (kubectl, which prompts for a password
    // when it has no credentials at all): 401 Unauthorized; health checks stay open.
    let out = kubectl_as(&s, &anon, &["--token", "not-a-token", "get", "pods"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("error: You must be logged in to the server ("),
        "{}",
        stderr(&out)
    );
    if Path::new("/usr/bin/curl").exists() {
        let (body, code) = curl(&s, "/api/v1/namespaces");
        assert_eq!(code, "401");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status");
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(status["code"], 401);
        assert_eq!(curl(&s, "/healthz"), ("ok".to_string(), "200".to_string()));
    }
    // kube-rs without credentials gets the same.
    let mut cfg = kube::Config::new(format!("https://{}", s.addr).parse().expect("url"));
    cfg.root_cert = Some(vec![rustls_pemfile_der(
        &std::fs::read(s.dir.join("pki/ca.crt")).expect("ca"),
    )]);
    let anon_client = kube::Client::try_from(cfg).expect("client");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(anon_client, "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(st)) => assert_eq!(st.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }

    // A static token.
    let out = kubectl_as(
        &s,
        &anon,
        &[
            "--token",
            "s3cret-token",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "alice [\"dev\",\"ops\",\"system:authenticated\"]"
    );
    let out = kubectl_as(&s, &anon, &["--token", "wrong", "get", "ns"]);
    assert!(
        stderr(&out).contains("You must be logged in to the server"),
        "{}",
        stderr(&out)
    );

    // A service account token from the TokenRequest API.
    let token = s.ok(k, &["create", "token", "default", "-n", "default"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let out = kubectl_as(&s, &anon, &["--token", token, "get", "--raw", "/api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = s.fails(
        k,
        &[
            "create",
            "token",
            "default",
            "-n",
            "default",
            "--duration=1m",
        ],
    );
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = s.fails(k, &["create", "token", "nobody", "-n", "default"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );

    // Bound to a pod: valid while the pod lives.
    s.ok(
        k,
        &[
            "run",
            "p1",
            "-n",
            "default",
            "--image=busybox",
            "--restart=Never",
        ],
    );
    let bound = s.ok(
        k,
        &[
            "create",
            "token",
            "default",
            "-n",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=p1",
        ],
    );
    let bound = bound.trim();
    let out = kubectl_as(&s, &anon, &["--token", bound, "get", "--raw", "/api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.ok(k, &["delete", "pod", "p1", "-n", "default", "--wait"]);
    let out = kubectl_as(&s, &anon, &["--token", bound, "get", "--raw", "/api"]);
    assert!(
        stderr(&out).contains("You must be logged in to the server"),
        "{}",
        stderr(&out)
    );

    // A service account that is deleted takes its tokens with it.
    s.ok(k, &["create", "serviceaccount", "temp", "-n", "default"]);
    let t = s.ok(k, &["create", "token", "temp", "-n", "default"]);
    let t = t.trim();
    assert!(
        kubectl_as(&s, &anon, &["--token", t, "get", "--raw", "/api"])
            .status
            .success()
    );
    s.ok(k, &["delete", "serviceaccount", "temp", "-n", "default"]);
    let out = kubectl_as(&s, &anon, &["--token", t, "get", "--raw", "/api"]);
    assert!(
        stderr(&out).contains("You must be logged in to the server"),
        "{}",
        stderr(&out)
    );

    // Component kubeconfigs (client certificates) and a node's from `virt-cluster kubeconfig`.
    for c in ["virt-api", "virt-controller", "virt-handler", "scheduler"] {
        let kc = s.dir.join(format!("kubeconfigs/{c}.kubeconfig"));
        assert!(kc.is_file(), "{c}");
        let out = kubectl_as(&s, kc.to_str().expect("path"), &["get", "--raw", "/api"]);
        assert!(out.status.success(), "{c}: {}", stderr(&out));
    }
    let node_kc = s.dir.join("node1.kubeconfig");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_virt-cluster"))
        .args(["kubeconfig", "--data-dir"])
        .arg(&s.dir)
        .args(["--node", "node1", "--out"])
        .arg(&node_kc)
        .output()
        .expect("virt-cluster kubeconfig");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kubectl_as(
        &s,
        node_kc.to_str().expect("path"),
        &["get", "--raw", "/api"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The first certificate of a PEM file as DER.
fn rustls_pemfile_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem)
        .expect("certificate")
        .to_vec()
}
