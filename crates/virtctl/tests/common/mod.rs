//! Shared by virtctl's integration tests: an embedded API server with the kubevirt CRDs and the
//! example testvm, a kube client for it, and running the virtctl binary.
#![allow(dead_code)]

use std::process::Command;

use kube::api::{Api, PostParams};
use kubevirt_api::v1::VirtualMachine;

pub async fn kube_client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Runs virtctl with `kubeconfig`: (success, stdout, stderr), trimmed.
pub fn virtctl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_virtctl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("virtctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// An API server in `dir` with the kubevirt CRDs, and a client of it.
pub async fn apiserver_with_crds(
    dir: &std::path::Path,
) -> (kubevirt_embedded_apiserver::server::Running, kube::Client) {
    let cfg =
        kubevirt_embedded_apiserver::server::Config::new(dir, "127.0.0.1:0".parse().expect("addr"));
    let apiserver = kubevirt_embedded_apiserver::server::start(cfg)
        .await
        .expect("apiserver");
    let client = kube_client(&apiserver.kubeconfig).await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in kubevirt_api::crd::all() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    (apiserver, client)
}

/// [`apiserver_with_crds`] with examples/testvm.yaml created in `default`.
pub async fn apiserver_with_testvm(
    dir: &std::path::Path,
) -> (kubevirt_embedded_apiserver::server::Running, kube::Client) {
    let (apiserver, client) = apiserver_with_crds(dir).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/testvm.yaml"
    ))
    .expect("example");
    let Some(kubevirt_api::manifest::Object::VirtualMachine(vm)) =
        kubevirt_api::manifest::parse(&text, kubevirt_api::manifest::Strictness::Strict)
            .expect("parses")
            .pop()
    else {
        panic!("the example is a VM");
    };
    // CRDs are served within a moment of their creation.
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), "default");
    let mut ok = false;
    for _ in 0..50 {
        if vms.create(&PostParams::default(), &vm).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "VM created");
    (apiserver, client)
}
