//! start/stop/restart against the embedded API server: the VM's run strategy and status change
//! as upstream's virt-api changes them, and refusals come back as 409 Status objects.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use kube::api::{Api, PostParams};
use kubevirt_api::v1::VirtualMachine;
use tower::ServiceExt;
use virt_api::subresources::{Subresources, router};

async fn cluster(
    dir: &std::path::Path,
) -> (kubevirt_embedded_apiserver::server::Running, kube::Client) {
    let cfg =
        kubevirt_embedded_apiserver::server::Config::new(dir, "127.0.0.1:0".parse().expect("addr"));
    let running = kubevirt_embedded_apiserver::server::start(cfg)
        .await
        .expect("apiserver starts");
    let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in kubevirt_api::crd::all() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD created");
    }
    (running, client)
}

async fn call(app: &axum::Router, action: &str, body: &str) -> (StatusCode, String) {
    call_vm(app, "testvm", action, body).await
}

async fn call_vm(app: &axum::Router, vm: &str, action: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(Method::PUT)
        // As the aggregator names the caller; virt-api reviews it with a SubjectAccessReview.
        .header("x-remote-user", "admin")
        .header("x-remote-group", "system:masters")
        .uri(format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/{vm}/{action}"
        ))
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("answered");
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn start_stop_restart_follow_upstream() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (running, client) = cluster(tmp.path()).await;
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), "default");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/testvm.yaml"
    ))
    .expect("example");
    let vm: VirtualMachine = example_vm(&text);
    // Wait for the CRD to be served (the API server establishes it within a second).
    let mut created = None;
    for _ in 0..50 {
        match vms.create(&PostParams::default(), &vm).await {
            Ok(v) => {
                created = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(created.is_some(), "the VM could be created");
    let app = router(Arc::new(Subresources {
        client: client.clone(),
        handler_tls: None,
        require_proxy_cert: false,
    }));

    let (code, body) = call(&app, "restart", "").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body.contains("RunStategy Halted does not support manual restart requests"),
        "{body}"
    );

    let (code, body) = call(&app, "start", "{}").await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Always")
    );

    let (code, body) = call(&app, "start", "").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body.contains("Always does not support manual start requests"),
        "{body}"
    );

    let (code, body) = call(&app, "stop", r#"{"dryRun": ["All"]}"#).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Always"),
        "dry run changes nothing"
    );
    let (code, body) = call(&app, "stop", "").await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        vms.get("testvm")
            .await
            .expect("vm")
            .spec
            .run_strategy
            .as_deref(),
        Some("Halted")
    );

    let (code, body) = call(&app, "stop", "{not json").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (code, body) = call_vm(&app, "nope", "start", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    // Without the aggregator's X-Remote-User there is nobody to authorize: 401, as upstream.
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/testvm/start")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.clone().oneshot(req).await.expect("answered").status(),
        StatusCode::UNAUTHORIZED
    );
    running.task.abort();
}

fn example_vm(text: &str) -> VirtualMachine {
    match kubevirt_api::manifest::parse(text, kubevirt_api::manifest::Strictness::Strict)
        .expect("parses")
        .pop()
    {
        Some(kubevirt_api::manifest::Object::VirtualMachine(vm)) => *vm,
        other => panic!("not a VM: {other:?}"),
    }
}
