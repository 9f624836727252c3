//! The CustomResourceDefinitions of every kind this crate defines, as upstream installs them:
//! derived from the Rust types, then adjusted where upstream's CRDs differ from what the derive
//! produces (extra served versions, kinds without a status subresource).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::{cdi, instancetype, migrations, pool, v1};

/// The warning clients see when they use the old `kubevirt.io/v1alpha3` version.
const V1ALPHA3_DEPRECATION: &str =
    "kubevirt.io/v1alpha3 is deprecated and will be removed; use kubevirt.io/v1";
const PRESET_DEPRECATION: &str = "VirtualMachineInstancePresets are deprecated and will be removed; use instancetypes and preferences";

/// Every CRD, built once per process (schema generation is not cheap) and shared.
pub fn cached() -> &'static [CustomResourceDefinition] {
    static CRDS: std::sync::OnceLock<Vec<CustomResourceDefinition>> = std::sync::OnceLock::new();
    CRDS.get_or_init(all)
}

/// Every CRD, in a stable order (the order `deploy/crds` lists them in).
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut vmi = with_v1alpha3(v1::VirtualMachineInstance::crd());
    // Upstream serves VMI status through the main resource (virt-handler writes it with update).
    drop_status_subresource(&mut vmi);
    let mut preset = with_v1alpha3(v1::VirtualMachineInstancePreset::crd());
    // Presets are stored as v1alpha3 upstream; both versions are deprecated.
    for v in &mut preset.spec.versions {
        v.storage = v.name == v1::VERSION_V1ALPHA3;
        v.deprecated = Some(true);
        v.deprecation_warning = Some(PRESET_DEPRECATION.to_string());
        // Upstream does not require a preset's spec at the top level.
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.required = None;
        }
    }
    let crds = vec![
        vmi,
        with_v1alpha3(v1::VirtualMachine::crd()),
        preset,
        with_v1alpha3(v1::VirtualMachineInstanceReplicaSet::crd()),
        with_v1alpha3(v1::VirtualMachineInstanceMigration::crd()),
        with_v1alpha3(v1::KubeVirt::crd()),
        with_extra_version(pool::VirtualMachinePool::crd(), "v1alpha1", None),
        instancetype::VirtualMachineInstancetype::crd(),
        instancetype::VirtualMachineClusterInstancetype::crd(),
        instancetype::VirtualMachinePreference::crd(),
        instancetype::VirtualMachineClusterPreference::crd(),
        migrations::MigrationPolicy::crd(),
        cdi::DataVolume::crd(),
    ];
    crds.into_iter().map(finish).collect()
}

/// Final touches every CRD gets: the standard top-level properties upstream lists, and no
/// `title`s (schemars adds the Rust type names, which mean nothing to users).
fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else {
            continue;
        };
        let Some(schema) = validation.open_api_v3_schema.as_mut() else {
            continue;
        };
        strip_titles(schema);
        let props = schema.properties.get_or_insert_with(Default::default);
        for (name, ty, description) in [
            (
                "apiVersion",
                "string",
                "The versioned schema of this object: the API group and version, e.g. kubevirt.io/v1.",
            ),
            (
                "kind",
                "string",
                "The kind of this object, e.g. VirtualMachine.",
            ),
            (
                "metadata",
                "object",
                "Standard object metadata: name, namespace, labels, annotations, owner references.",
            ),
        ] {
            props
                .entry(name.to_string())
                .or_insert_with(|| JSONSchemaProps {
                    type_: Some(ty.to_string()),
                    description: Some(description.to_string()),
                    ..Default::default()
                });
        }
    }
    crd
}

fn strip_titles(schema: &mut JSONSchemaProps) {
    schema.title = None;
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_titles(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        strip_titles(items);
    }
    if let Some(JSONSchemaPropsOrArray::Schemas(items)) = schema.items.as_mut() {
        items.iter_mut().for_each(strip_titles);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        strip_titles(extra);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        list.iter_mut().flatten().for_each(strip_titles);
    }
}

/// The file name `crdgen` writes a CRD to: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// Renders a CRD as YAML, the way `deploy/crds` holds it.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    let mut yaml = serde_saphyr::to_string(crd)?;
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    Ok(yaml)
}

fn with_v1alpha3(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    with_extra_version(crd, v1::VERSION_V1ALPHA3, Some(V1ALPHA3_DEPRECATION))
}

/// Serves the same schema under an additional, older version that is not the storage version.
fn with_extra_version(
    mut crd: CustomResourceDefinition,
    name: &str,
    deprecation: Option<&str>,
) -> CustomResourceDefinition {
    if let Some(first) = crd.spec.versions.first() {
        let extra = CustomResourceDefinitionVersion {
            name: name.to_string(),
            served: true,
            storage: false,
            deprecated: deprecation.map(|_| true),
            deprecation_warning: deprecation.map(str::to_string),
            ..first.clone()
        };
        crd.spec.versions.push(extra);
    }
    crd
}

fn drop_status_subresource(crd: &mut CustomResourceDefinition) {
    for v in &mut crd.spec.versions {
        if let Some(sub) = v.subresources.as_mut() {
            sub.status = None;
            if sub.scale.is_none() {
                v.subresources = None;
            }
        }
    }
}
