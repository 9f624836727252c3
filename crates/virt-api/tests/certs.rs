//! virt-api's certificate Secret against the embedded API server: created on first use, reused
//! while valid, replaced when close to expiry; the rotation updates the APIService's CA bundle
//! with the new and the previous CA.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use virt_api::certs::{self, Store};

#[tokio::test]
async fn secret_is_reused_then_rotated() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = kubevirt_embedded_apiserver::server::Config::new(
        tmp.path(),
        "127.0.0.1:0".parse().expect("addr"),
    );
    let running = kubevirt_embedded_apiserver::server::start(cfg)
        .await
        .expect("apiserver starts");
    let kc = kube::config::Kubeconfig::read_from(&running.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "kubevirt"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let store = Store {
        api: Api::namespaced(client.clone(), "kubevirt"),
        name: certs::DEFAULT_SECRET.into(),
    };
    let names = vec!["virt-api.kubevirt.svc".to_string(), "127.0.0.1".to_string()];
    let now = jiff::Timestamp::now();
    let (first, prev) = store.load_or_rotate(&names, now).await.expect("created");
    assert!(prev.is_none());
    let secret: Secret = store.api.get(certs::DEFAULT_SECRET).await.expect("secret");
    assert_eq!(certs::from_secret(&secret).as_ref(), Some(&first));

    // A restart reuses it.
    let (again, prev) = store.load_or_rotate(&names, now).await.expect("reused");
    assert_eq!(again, first);
    assert!(prev.is_none());

    // Close to expiry: a new CA and certificate replace it; the old CA is returned for bundles.
    let later = now
        .saturating_add(certs::VALIDITY - certs::RENEW_BEFORE / 2)
        .expect("time");
    let (rotated, prev) = store.load_or_rotate(&names, later).await.expect("rotated");
    assert_ne!(rotated.ca_pem, first.ca_pem);
    assert_eq!(prev.as_deref(), Some(first.ca_pem.as_str()));
    let secret: Secret = store.api.get(certs::DEFAULT_SECRET).await.expect("secret");
    assert_eq!(certs::from_secret(&secret).as_ref(), Some(&rotated));

    // The APIService's CA bundle follows (both CAs while clients catch up).
    let ar = kube::api::ApiResource {
        group: "apiregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiregistration.k8s.io/v1".into(),
        kind: "APIService".into(),
        plural: "apiservices".into(),
    };
    let services: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    let svc: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1.subresources.kubevirt.io"},
        "spec": {"group": "subresources.kubevirt.io", "version": "v1", "groupPriorityMinimum": 1000,
                 "versionPriority": 15, "service": {"namespace": "kubevirt", "name": "virt-api"}}
    }))
    .expect("apiservice");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("apiservice created");
    let bundle = certs::ca_bundle(&rotated.ca_pem, prev.as_deref());
    certs::update_ca_bundles(&client, &bundle)
        .await
        .expect("bundles updated");
    let got = services
        .get("v1.subresources.kubevirt.io")
        .await
        .expect("apiservice");
    use base64::Engine;
    let b64 = got.data["spec"]["caBundle"].as_str().expect("caBundle");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(String::from_utf8(pem).expect("pem"), bundle);
    running.task.abort();
}
