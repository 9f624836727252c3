//! Bad input gives an error that names the field (or the YAML position), never a panic.

use kubevirt_api::manifest::{self, ManifestError, Strictness};

fn vm_with_disk(disk: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: bad
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices:
          disks:
          - name: root
{disk}
        resources:
          requests:
            memory: 64M
"
    )
}

#[test]
fn a_wrong_type_names_the_field_path() {
    let err = manifest::parse(
        &vm_with_disk("            bootOrder: first"),
        Strictness::Strict,
    )
    .expect_err("bootOrder must be an integer");
    let ManifestError::Field { path, message, .. } = &err else {
        panic!("expected a field error, got {err:?}");
    };
    assert_eq!(path, "spec.template.spec.domain.devices.disks[0].bootOrder");
    assert!(message.contains("invalid type"), "{message}");
    assert!(
        err.to_string()
            .contains("spec.template.spec.domain.devices.disks[0].bootOrder")
    );
}

#[test]
fn an_unknown_field_is_named_when_strict_and_dropped_otherwise() {
    let text = vm_with_disk("            volumeName: root");
    let err =
        manifest::parse(&text, Strictness::Strict).expect_err("volumeName is gone since v1alpha2");
    assert_eq!(
        err,
        ManifestError::UnknownFields {
            doc: 0,
            fields: vec!["spec.template.spec.domain.devices.disks[0].volumeName".into()]
        }
    );
    assert!(manifest::parse(&text, Strictness::Prune).is_ok());
}

#[test]
fn malformed_yaml_and_json_are_syntax_errors() {
    for text in [
        "spec: [unclosed",
        "{\"apiVersion\": \"kubevirt.io/v1\", ",
        "a: b\n  c: d\n- e",
    ] {
        let err = manifest::parse(text, Strictness::Strict).expect_err(text);
        assert!(matches!(err, ManifestError::Syntax(_)), "{text}: {err:?}");
    }
}

#[test]
fn documents_without_kind_or_of_foreign_kinds_are_refused() {
    let err = manifest::parse(
        "apiVersion: kubevirt.io/v1\nmetadata: {name: x}\n",
        Strictness::Strict,
    )
    .expect_err("no kind");
    assert!(err.to_string().contains("kind is missing"), "{err}");
    let err =
        manifest::parse("apiVersion: v1\nkind: Pod\n", Strictness::Strict).expect_err("not ours");
    assert!(matches!(err, ManifestError::UnknownKind { .. }), "{err:?}");
    let err = manifest::parse("- 1\n- 2\n", Strictness::Strict).expect_err("a list");
    assert!(matches!(err, ManifestError::NotAnObject { .. }), "{err:?}");
}

#[test]
fn the_second_document_is_named_in_its_error() {
    let text = format!(
        "{}---\n{}",
        vm_with_disk("            disk: {bus: virtio}"),
        vm_with_disk("            bootOrder: [1]")
    );
    let err = manifest::parse(&text, Strictness::Strict).expect_err("second doc is bad");
    assert!(
        matches!(err, ManifestError::Field { doc: 1, .. }),
        "{err:?}"
    );
}
