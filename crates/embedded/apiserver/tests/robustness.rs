//! Bad input is never a 500, never a panic, never a half-written object: arbitrary bodies and
//! patches against the verb implementations, checked through the store.

use std::sync::{Arc, Mutex};

use kubevirt_embedded_apiserver::ops::{self, FieldValidation, Part, PatchType, WriteCtx};
use kubevirt_embedded_apiserver::resources::Registry;
use kubevirt_embedded_apiserver::store::Store;
use proptest::prelude::*;
use serde_json::{Value, json};

fn ctx(reg: &Registry, group: &str, resource: &str) -> WriteCtx {
    let def = reg.lookup(group, "v1", resource).expect("registered");
    WriteCtx {
        version: "v1".into(),
        def,
        namespace: "default".into(),
        validation: FieldValidation::Strict,
        warnings: Arc::new(Mutex::new(Vec::new())),
        field_manager: Some("fuzz".into()),
        applying: false,
        view: Default::default(),
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9_./-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_string()),
                    Just("spec".to_string()),
                    Just("status".to_string()),
                    Just("name".to_string()),
                    Just("labels".to_string()),
                    Just("finalizers".to_string()),
                    Just("template".to_string()),
                    Just("data".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    reg: Registry,
    rt: tokio::runtime::Runtime,
}

/// One store, registry and runtime shared by every case (building the CRD registry is slow).
fn env() -> &'static Env {
    static ENV: std::sync::OnceLock<Env> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let (_dir, store, reg, rt) = setup();
        Env {
            _dir,
            store,
            reg,
            rt,
        }
    })
}

fn setup() -> (tempfile::TempDir, Store, Registry, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 1000, |_| vec![]).expect("store");
    let reg = Registry::new(&kubevirt_api::crd::all());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ns = ctx(&reg, "", "namespaces");
    rt.block_on(store.write(ops::create(
        WriteCtx {
            namespace: String::new(),
            ..ns
        },
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
    )))
    .expect("namespace");
    (dir, store, reg, rt)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_creates_and_patches_are_client_errors(body in arb_json(), patch in arb_json()) {
        let Env { store, reg, rt, .. } = env();
        for (group, resource, kind) in [("", "configmaps", "ConfigMap"), ("kubevirt.io", "virtualmachines", "VirtualMachine"), ("", "pods", "Pod")] {
            let c = ctx(reg, group, resource);
            let before = store.read().rev;
            let mut obj = body.clone();
            let typed = ops::check_type_meta(&c.def, "v1", &mut obj);
            if let Err(e) = &typed {
                prop_assert!(e.code >= 400 && e.code < 500, "{e:?}");
                continue;
            }
            let created = rt.block_on(store.write(ops::create(c.clone(), obj)));
            match &created {
                Err(e) => {
                    prop_assert!(e.code >= 400 && e.code < 500, "{kind} create: {e:?}");
                    prop_assert_eq!(store.read().rev, before, "a failed create wrote nothing");
                }
                Ok(v) => prop_assert!(v["metadata"]["uid"].is_string()),
            }
            let name = match &created {
                Ok(v) => v["metadata"]["name"].as_str().unwrap_or("x").to_string(),
                Err(_) => "x".to_string(),
            };
            for ty in [PatchType::Merge, PatchType::Json, PatchType::Apply { force: false }] {
                let before = store.read().rev;
                let r = rt.block_on(store.write(ops::patch(c.clone(), name.clone(), ty, patch.clone(), Part::Main)));
                if let Err(e) = r {
                    prop_assert!(e.code >= 400 && e.code < 500, "{kind} patch {ty:?}: {e:?}");
                    prop_assert_eq!(store.read().rev, before, "a failed patch wrote nothing");
                }
            }
        }
    }
}
