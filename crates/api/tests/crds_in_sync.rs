//! `deploy/crds` must be exactly what `crdgen` writes from the types; regenerate with
//! `cargo run -p kubevirt-api --bin crdgen` after changing them.

use std::collections::BTreeSet;
use std::path::PathBuf;

#[test]
fn deploy_crds_match_the_generator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for crd in kubevirt_api::crd::all() {
        let name = kubevirt_api::crd::file_name(&crd);
        let want = kubevirt_api::crd::to_yaml(&crd).expect("renders");
        let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        if have != want {
            stale.push(name.clone());
        }
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("deploy/crds exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    let extra: Vec<_> = present.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "deploy/crds drifted from the types (stale: {stale:?}, unexpected: {extra:?}); run `cargo run -p kubevirt-api --bin crdgen`"
    );
}

#[test]
fn generated_crds_parse_back_as_crds() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    for crd in kubevirt_api::crd::all() {
        let text = std::fs::read_to_string(dir.join(kubevirt_api::crd::file_name(&crd)))
            .unwrap_or_default();
        let back: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&text).expect("deploy/crds YAML parses as a CRD");
        assert_eq!(back, crd);
    }
}
