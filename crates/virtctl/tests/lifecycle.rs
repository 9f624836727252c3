//! virtctl start/stop/restart against virt-api's subresource API (reached directly here, the test
//! standing in for the aggregator's identity headers; tests/streams.rs goes through the API
//! server), with upstream's messages and exit codes.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::virtctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_restart_with_upstream_messages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (apiserver, client) = common::apiserver_with_testvm(tmp.path()).await;
    let vms: kube::Api<kubevirt_api::v1::VirtualMachine> =
        kube::Api::namespaced(client.clone(), "default");

    // virt-api with the subresource API, and a kubeconfig that reaches it directly.
    let pki = kubevirt_https::SelfSigned::generate("virt-api-ca", &["localhost", "127.0.0.1"])
        .expect("pki");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // virt-api authorizes the caller the aggregator names in X-Remote-*; reached directly, the
    // test plays the aggregator for the cluster admin (the API server's own admin identity).
    let router = virt_api::subresources::router(Arc::new(virt_api::subresources::Subresources {
        client: client.clone(),
        handler_tls: None,
        require_proxy_cert: false,
    }))
    .layer(axum::middleware::map_request(
        |mut req: axum::extract::Request| async move {
            let h = req.headers_mut();
            h.insert(
                "x-remote-user",
                axum::http::HeaderValue::from_static("admin"),
            );
            h.insert(
                "x-remote-group",
                axum::http::HeaderValue::from_static("system:masters"),
            );
            req
        },
    ));
    let server = kubevirt_https::serve(listener, pki.server_config().expect("tls"), router);
    let kubeconfig = tmp.path().join("virt-api.kubeconfig");
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem);
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: default}}\ncurrent-context: c\n"
        ),
    )
    .expect("kubeconfig written");

    let kc = kubeconfig.clone();
    let run = move |args: Vec<&'static str>| {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || virtctl(&kc, &args))
    };
    let (ok, out, err) = run(vec!["start", "testvm"]).await.expect("joined");
    assert!(ok, "{err}");
    assert_eq!(out, "VM testvm was scheduled to start");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Always")
    );

    let (ok, _, err) = run(vec!["start", "testvm"]).await.expect("joined");
    assert!(!ok);
    assert_eq!(
        err,
        "Error starting VirtualMachine Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm\": Always does not support manual start requests"
    );
    let (ok, _, err) = run(vec!["stop", "testvm", "--grace-period", "0"])
        .await
        .expect("joined");
    assert!(!ok);
    assert_eq!(err, "Must both use --force=true and set --grace-period.");
    let (ok, out, err) = run(vec!["stop", "testvm"]).await.expect("joined");
    assert!(ok, "{err}");
    assert_eq!(out, "VM testvm was scheduled to stop");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Halted")
    );
    let (ok, _, err) = run(vec!["restart", "testvm"]).await.expect("joined");
    assert!(!ok);
    assert!(
        err.ends_with("RunStategy Halted does not support manual restart requests"),
        "{err}"
    );
    let (ok, _, err) = run(vec!["-n", "other", "start", "testvm"])
        .await
        .expect("joined");
    assert!(
        !ok && err.starts_with("Error starting VirtualMachine"),
        "{err}"
    );
    let (ok, out, err) = run(vec!["version"]).await.expect("joined");
    assert!(ok, "{err}");
    let version = concat!("v", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        out,
        format!("Client Version: {version}\nServer Version: {version}")
    );
    server.abort();
    apiserver.task.abort();
}
