//! Hand-written schema pieces for fields whose Rust type cannot say what upstream's schema says.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object whose contents the API server keeps as given (`x-kubernetes-preserve-unknown-fields`).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The `metadata` of an embedded template (a VMI template in a VM, a VM template in a pool):
/// upstream keeps it as a free-form, nullable object rather than a full ObjectMeta schema.
pub fn template_metadata(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
