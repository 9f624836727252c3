//! Every manifest under `examples/` parses strictly, and its VMs and VMIs default and validate
//! cleanly (VMs using an instancetype are checked as upstream checks them: without memory).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::manifest::{self, Object, Strictness};
use kubevirt_api::{defaults, validation};

#[test]
fn examples_parse_default_and_validate() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let cfg = ClusterConfig::default();
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let objects = manifest::parse(&text, Strictness::Strict)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for object in objects {
            seen += 1;
            let causes = match object {
                Object::VirtualMachine(vm) => validation::vm(&vm, &cfg).expect("defaults"),
                Object::VirtualMachineInstance(mut vmi) => {
                    defaults::vmi(&mut vmi, &cfg, "00000000-0000-4000-8000-000000000001", &now)
                        .expect("defaults");
                    validation::vmi_create(&vmi, &cfg)
                }
                _ => Vec::new(),
            };
            assert!(causes.is_empty(), "{}: {causes:#?}", path.display());
        }
    }
    assert!(
        seen >= 5,
        "expected the examples to hold at least five objects, found {seen}"
    );
}
