//! Every field of every kind survives decoding into our Rust types and encoding back:
//! objects are generated from our own CRD schemas (so every schema node is exercised), decoded
//! strictly through `manifest::from_value`, re-encoded, and compared with the input.

mod common;

use common::{fullest, own_schema, sparse, with_header};
use kubevirt_api::manifest::{self, Strictness};
use proptest::prelude::*;
use serde_json::Value;

fn round_trip(input: &Value) -> Result<Value, String> {
    let obj =
        manifest::from_value(input.clone(), 0, Strictness::Strict).map_err(|e| e.to_string())?;
    use manifest::Object as O;
    let out = match obj {
        O::VirtualMachine(o) => serde_json::to_value(o),
        O::VirtualMachineInstance(o) => serde_json::to_value(o),
        O::VirtualMachineInstanceReplicaSet(o) => serde_json::to_value(o),
        O::VirtualMachineInstancePreset(o) => serde_json::to_value(o),
        O::VirtualMachineInstanceMigration(o) => serde_json::to_value(o),
        O::KubeVirt(o) => serde_json::to_value(o),
        O::VirtualMachinePool(o) => serde_json::to_value(o),
        O::VirtualMachineInstancetype(o) => serde_json::to_value(o),
        O::VirtualMachineClusterInstancetype(o) => serde_json::to_value(o),
        O::VirtualMachinePreference(o) => serde_json::to_value(o),
        O::VirtualMachineClusterPreference(o) => serde_json::to_value(o),
        O::MigrationPolicy(o) => serde_json::to_value(o),
        O::DataVolume(o) => serde_json::to_value(o),
    };
    out.map_err(|e| e.to_string())
}

/// The first path where two values differ, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(u, v, &p) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{p}: in {u:?} out {v:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: in {a} out {b}")),
    }
}

fn without_metadata(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
    }
    v
}

#[test]
fn the_fullest_object_of_every_kind_round_trips() {
    let mut failures = Vec::new();
    for crd in kubevirt_api::crd::all() {
        let (api_version, schema) = own_schema(&crd);
        let input = with_header(&api_version, &crd.spec.names.kind, fullest(&schema, 0));
        match round_trip(&input) {
            Ok(out) => {
                if let Some(d) =
                    first_difference(&without_metadata(input), &without_metadata(out), "")
                {
                    failures.push(format!("{}: {d}", crd.spec.names.kind));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", crd.spec.names.kind)),
        }
    }
    assert!(
        failures.is_empty(),
        "lossy round trips:\n{}",
        failures.join("\n")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sparse_objects_round_trip(
        (api_version, kind, body) in proptest::sample::select(kubevirt_api::crd::all())
            .prop_flat_map(|crd| {
                let (api_version, schema) = own_schema(&crd);
                let kind = crd.spec.names.kind.clone();
                sparse(&schema).prop_map(move |b| (api_version.clone(), kind.clone(), b))
            })
    ) {
        let input = with_header(&api_version, &kind, body);
        let out = round_trip(&input).map_err(TestCaseError::fail)?;
        let diff = first_difference(&without_metadata(input), &without_metadata(out), "");
        prop_assert!(diff.is_none(), "{kind}: {diff:?}");
    }
}
