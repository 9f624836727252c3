//! VirtualMachineInstancePreset (deprecated upstream): domain settings applied to matching instances.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
pub struct VirtualMachineInstancePresetSpec {}
