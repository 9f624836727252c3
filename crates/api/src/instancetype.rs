//! `instancetype.kubevirt.io/v1beta1`: instancetypes (resource sizes) and preferences (preferred
//! device settings), namespaced and cluster-wide.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of instancetypes and preferences.
pub const GROUP: &str = "instancetype.kubevirt.io";

/// The resources an instancetype gives a virtual machine.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineInstancetype",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    shortname = "vminstancetype",
    shortname = "vminstancetypes",
    shortname = "vmf",
    shortname = "vmfs",
    category = "all",
    category = "kubevirt",
    doc = "An instancetype: a named size (CPU, memory, ...) that virtual machines refer to instead of spelling out resources."
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstancetypeSpec {}

/// A preference: preferred device and feature settings a VM picks up unless it sets them itself.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachinePreference",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmpref",
    shortname = "vmprefs",
    shortname = "vmp",
    shortname = "vmps",
    category = "all",
    category = "kubevirt",
    doc = "A preference: preferred devices and features that virtual machines referring to it pick up."
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePreferenceSpec {}

/// The spec of a cluster-wide instancetype: the same fields as a namespaced one.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineClusterInstancetype",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmclusterinstancetype",
    shortname = "vmclusterinstancetypes",
    shortname = "vmcf",
    shortname = "vmcfs",
    category = "kubevirt",
    doc = "A cluster-wide instancetype, usable by virtual machines in every namespace."
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct VirtualMachineClusterInstancetypeSpec(pub VirtualMachineInstancetypeSpec);

impl std::ops::Deref for VirtualMachineClusterInstancetypeSpec {
    type Target = VirtualMachineInstancetypeSpec;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The spec of a cluster-wide preference: the same fields as a namespaced one.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineClusterPreference",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmcp",
    shortname = "vmcps",
    category = "kubevirt",
    doc = "A cluster-wide preference, usable by virtual machines in every namespace."
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct VirtualMachineClusterPreferenceSpec(pub VirtualMachinePreferenceSpec);

impl std::ops::Deref for VirtualMachineClusterPreferenceSpec {
    type Target = VirtualMachinePreferenceSpec;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
