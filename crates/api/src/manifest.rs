//! Reading user manifests (YAML or JSON, one or many documents) into typed KubeVirt objects, with
//! errors that name the document, the field and the problem instead of failing opaquely.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{cdi, instancetype, migrations, pool, structural, v1};

/// A decoded object of one of the kinds this crate defines.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    VirtualMachine(Box<v1::VirtualMachine>),
    VirtualMachineInstance(Box<v1::VirtualMachineInstance>),
    VirtualMachineInstanceReplicaSet(Box<v1::VirtualMachineInstanceReplicaSet>),
    VirtualMachineInstancePreset(Box<v1::VirtualMachineInstancePreset>),
    VirtualMachineInstanceMigration(Box<v1::VirtualMachineInstanceMigration>),
    KubeVirt(Box<v1::KubeVirt>),
    VirtualMachinePool(Box<pool::VirtualMachinePool>),
    VirtualMachineInstancetype(Box<instancetype::VirtualMachineInstancetype>),
    VirtualMachineClusterInstancetype(Box<instancetype::VirtualMachineClusterInstancetype>),
    VirtualMachinePreference(Box<instancetype::VirtualMachinePreference>),
    VirtualMachineClusterPreference(Box<instancetype::VirtualMachineClusterPreference>),
    MigrationPolicy(Box<migrations::MigrationPolicy>),
    DataVolume(Box<cdi::DataVolume>),
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    /// The text is not YAML (or JSON) at all.
    #[error("invalid YAML: {0}")]
    Syntax(String),
    /// A document is not a mapping, or lacks `apiVersion`/`kind`.
    #[error("document {doc}: {message}")]
    NotAnObject { doc: usize, message: String },
    /// The kind is not one of ours.
    #[error(
        "document {doc}: kind {kind:?} in {api_version:?} is not a KubeVirt kind this cluster serves"
    )]
    UnknownKind {
        doc: usize,
        api_version: String,
        kind: String,
    },
    /// A known kind under a version nobody serves any more (or never did).
    #[error("document {}: {}", .0.doc, .0)]
    UnservedVersion(Box<Unserved>),
    /// A field has the wrong type or an unreadable value.
    #[error("document {doc}: {path}: {message}")]
    Field {
        doc: usize,
        path: String,
        message: String,
    },
    /// Fields the schema does not know (reported when decoding strictly).
    #[error("document {doc}: unknown field(s): {}", fields.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", "))]
    UnknownFields { doc: usize, fields: Vec<String> },
}

/// The details of a manifest written for a version this cluster does not serve.
#[derive(Debug, PartialEq)]
pub struct Unserved {
    pub doc: usize,
    pub api_version: String,
    pub kind: String,
    /// The versions that are served, as `group/version`.
    pub served: Vec<String>,
    /// The version objects are stored as, whose schema the fields were checked against.
    pub storage: String,
    /// Fields the stored version does not have.
    pub fields: Vec<String>,
}

impl std::fmt::Display for Unserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not served (served: {})",
            self.api_version,
            self.served.join(", ")
        )?;
        if !self.fields.is_empty() {
            write!(
                f,
                "; {} in {} uses fields that {} does not have: {}",
                self.kind,
                self.api_version,
                self.storage,
                self.fields.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Whether fields unknown to the schema are an error (`kubectl --validate=strict`) or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    Strict,
    Prune,
}

/// Parses every document in `text` (YAML or JSON; empty documents are skipped).
pub fn parse(text: &str, strictness: Strictness) -> Result<Vec<Object>, ManifestError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
    docs.into_iter()
        .filter(|d| !d.is_null())
        .enumerate()
        .map(|(i, d)| from_value(d, i, strictness))
        .collect()
}

/// Decodes one document (index `doc`, for error messages) into its typed object.
pub fn from_value(
    mut value: Value,
    doc: usize,
    strictness: Strictness,
) -> Result<Object, ManifestError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ManifestError::NotAnObject {
            doc,
            message: "a manifest must be a mapping with apiVersion and kind".into(),
        })?;
    let field = |name: &str| obj.get(name).and_then(Value::as_str).map(str::to_string);
    let api_version = field("apiVersion").ok_or_else(|| ManifestError::NotAnObject {
        doc,
        message: "apiVersion is missing".into(),
    })?;
    let kind = field("kind").ok_or_else(|| ManifestError::NotAnObject {
        doc,
        message: "kind is missing".into(),
    })?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };

    let Some(crd) = crate::crd::cached()
        .iter()
        .find(|c| c.spec.group == group && c.spec.names.kind == kind)
    else {
        return Err(ManifestError::UnknownKind {
            doc,
            api_version,
            kind,
        });
    };
    let storage = crd.spec.versions.iter().find(|v| v.storage);
    let served = crd
        .spec
        .versions
        .iter()
        .find(|v| v.served && v.name == version);
    let Some(served) = served else {
        // Name the fields the stored version would not accept, so the user knows what to change.
        let fields = storage
            .and_then(|v| v.schema.as_ref()?.open_api_v3_schema.as_ref())
            .map(|s| structural::unknown_fields(s, &value))
            .unwrap_or_default();
        let served_list: Vec<String> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| format!("{group}/{}", v.name))
            .collect();
        return Err(ManifestError::UnservedVersion(Box::new(Unserved {
            doc,
            api_version,
            kind,
            served: served_list,
            storage: storage
                .map(|v| format!("{group}/{}", v.name))
                .unwrap_or_default(),
            fields,
        })));
    };
    if let Some(schema) = served
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    {
        let unknown = structural::prune(schema, &mut value);
        if strictness == Strictness::Strict && !unknown.is_empty() {
            return Err(ManifestError::UnknownFields {
                doc,
                fields: unknown,
            });
        }
    }
    // Every served version shares one schema, so the value decodes as the Rust (v1) type.
    decode_kind(&kind, value, doc)
}

fn decode<T: DeserializeOwned>(value: Value, doc: usize) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ManifestError::Field {
            doc,
            path,
            message: e.into_inner().to_string(),
        }
    })
}

fn decode_kind(kind: &str, value: Value, doc: usize) -> Result<Object, ManifestError> {
    use Object as O;
    Ok(match kind {
        "VirtualMachine" => O::VirtualMachine(Box::new(decode(value, doc)?)),
        "VirtualMachineInstance" => O::VirtualMachineInstance(Box::new(decode(value, doc)?)),
        "VirtualMachineInstanceReplicaSet" => {
            O::VirtualMachineInstanceReplicaSet(Box::new(decode(value, doc)?))
        }
        "VirtualMachineInstancePreset" => {
            O::VirtualMachineInstancePreset(Box::new(decode(value, doc)?))
        }
        "VirtualMachineInstanceMigration" => {
            O::VirtualMachineInstanceMigration(Box::new(decode(value, doc)?))
        }
        "KubeVirt" => O::KubeVirt(Box::new(decode(value, doc)?)),
        "VirtualMachinePool" => O::VirtualMachinePool(Box::new(decode(value, doc)?)),
        "VirtualMachineInstancetype" => {
            O::VirtualMachineInstancetype(Box::new(decode(value, doc)?))
        }
        "VirtualMachineClusterInstancetype" => {
            O::VirtualMachineClusterInstancetype(Box::new(decode(value, doc)?))
        }
        "VirtualMachinePreference" => O::VirtualMachinePreference(Box::new(decode(value, doc)?)),
        "VirtualMachineClusterPreference" => {
            O::VirtualMachineClusterPreference(Box::new(decode(value, doc)?))
        }
        "MigrationPolicy" => O::MigrationPolicy(Box::new(decode(value, doc)?)),
        "DataVolume" => O::DataVolume(Box::new(decode(value, doc)?)),
        other => {
            return Err(ManifestError::UnknownKind {
                doc,
                api_version: String::new(),
                kind: other.to_string(),
            });
        }
    })
}
