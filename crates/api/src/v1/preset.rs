//! VirtualMachineInstancePreset (deprecated upstream): domain settings applied to matching instances.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DomainSpec;

/// Settings a preset applies to the instances its selector matches.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstancePreset",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmipreset",
    shortname = "vmipresets",
    category = "all",
    category = "kubevirt",
    doc = "Deprecated: domain settings applied at creation to every instance the selector matches. Use instancetypes and preferences instead."
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstancePresetSpec {
    /// The domain settings merged into each matching instance's `spec.domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainSpec>,
    /// Which instances (by label) the preset applies to.
    pub selector: LabelSelector,
}
