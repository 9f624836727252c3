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

/// An integer without a declared width (upstream's Go `int`/`uint` fields carry no `format`).
pub fn integer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer" })
}

/// A floating-point number without a declared width.
pub fn number(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "number" })
}

/// A list of integers without a declared width (upstream's Go `[]int`).
pub fn integer_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "integer" },
    })
}

/// A map from names to integers without a declared width (upstream's Go `map[string]int`).
pub fn integer_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "integer" },
    })
}

/// A map from resource names to quantities (written as `100m`, `2Gi` or plain numbers), without
/// repeating Kubernetes' long Quantity description at every entry.
pub fn quantity_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-int-or-string": true },
    })
}
