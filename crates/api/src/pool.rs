//! `pool.kubevirt.io/v1beta1` VirtualMachinePool: a scalable set of stateful VirtualMachines.

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::v1::{VirtualMachineCondition, VirtualMachineSpec};

/// A 32-bit integer (upstream declares an unsigned Go field with the `int32` format).
fn int32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32" })
}

/// The API group of pools.
pub const GROUP: &str = "pool.kubevirt.io";

/// The desired state of a pool of virtual machines.
// Printer columns repeat `type_`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "pool.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachinePool",
    namespaced,
    status = "VirtualMachinePoolStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmpool",
    shortname = "vmpools",
    category = "all",
    category = "kubevirt",
    doc = "A pool of virtual machines made from one template and scaled as a whole.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Current", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolSpec {
    /// When a failing virtual machine is replaced by a freshly provisioned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autohealing: Option<VirtualMachinePoolAutohealingStrategy>,
    /// How many (or what percentage of the) virtual machines may be unready at once during an
    /// automatic update; 100% when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// How the names of per-VM ConfigMaps and Secrets are derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_generation: Option<VirtualMachinePoolNameGeneration>,
    /// Whether the controller stops creating, deleting and updating the pool's VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// How many virtual machines the pool should hold (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// How the pool removes virtual machines when it shrinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_strategy: Option<VirtualMachinePoolScaleInStrategy>,
    /// Which virtual machines belong to the pool; must match the template's labels.
    pub selector: LabelSelector,
    /// How the pool brings its virtual machines up to date with a changed template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<VirtualMachinePoolUpdateStrategy>,
    /// The virtual machine each member of the pool is created from.
    pub virtual_machine_template: VirtualMachineTemplateSpec,
}

/// A template for virtual machines, as embedded in a pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineTemplateSpec {
    /// Labels and annotations the created virtual machines get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The specification of the virtual machines made from this template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<VirtualMachineSpec>,
}

/// When a pool replaces a virtual machine that fails to start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolAutohealingStrategy {
    /// How long a VM must have been failing (not ready) before it is replaced, as a Go
    /// duration; 5 minutes when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_failing_to_start_duration: Option<String>,
    /// How many consecutive failed starts make a VM be replaced (at least 1; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int32")]
    pub start_up_failure_threshold: Option<u32>,
}

/// How the names of per-VM ConfigMaps and Secrets are derived.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolNameGeneration {
    /// Whether each VM refers to ConfigMaps named after the template's with the VM's index appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_index_to_config_map_refs: Option<bool>,
    /// Whether each VM refers to Secrets named after the template's with the VM's index appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_index_to_secret_refs: Option<bool>,
}

/// How a pool removes virtual machines when it shrinks; at most one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolScaleInStrategy {
    /// Only let the pool shrink as its VMs are deleted by other means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunistic: Option<VirtualMachinePoolOpportunisticScaleInStrategy>,
    /// Stop and remove surplus VMs right away (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proactive: Option<VirtualMachinePoolProactiveScaleInStrategy>,
    /// Never remove VMs; shrinking is left to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged: Option<VirtualMachinePoolUnmanagedStrategy>,
}

/// Scale-in that waits for VMs to be deleted by other means.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolOpportunisticScaleInStrategy {
    /// What is kept of a removed VM for reuse when the pool grows again; Disabled when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_preservation: Option<StatePreservation>,
}

/// Scale-in that stops and removes surplus VMs right away.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolProactiveScaleInStrategy {
    /// Which VMs are removed first; Random when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_policy: Option<VirtualMachinePoolSelectionPolicy>,
    /// What is kept of a removed VM for reuse when the pool grows again; Disabled when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_preservation: Option<StatePreservation>,
}

/// What a pool keeps of a VM it scales in, for reuse when it grows again; Disabled when unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StatePreservation {
    /// Nothing: the VM and its volumes are deleted (the default).
    #[default]
    Disabled,
    /// The VM's volumes, reused when the pool grows again.
    Offline,
    /// The VM's volumes and memory, so a reused VM also resumes where it was.
    Online,
}

/// The order in which a pool picks VMs to remove or update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolSelectionPolicy {
    /// VMs matching these selectors are picked before all others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<VirtualMachinePoolSelectors>,
    /// The order among the remaining VMs; Random when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_policy: Option<VirtualMachinePoolSortPolicy>,
}

/// Filters that pick VMs first; when both are set a VM must match both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolSelectors {
    /// The labels a VM must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Requirements on the labels of the node a VM runs on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selector_requirement_matcher: Vec<NodeSelectorRequirement>,
}

/// The order in which a pool picks VMs to remove or update; Random when unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VirtualMachinePoolSortPolicy {
    /// By index, lowest first.
    AscendingOrder,
    /// By index, highest first.
    DescendingOrder,
    /// Most recently created first.
    Newest,
    /// Least recently created first.
    Oldest,
    /// In random order (the default).
    #[default]
    Random,
}

/// How a pool updates its VMs after the template changes; at most one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolUpdateStrategy {
    /// Update the VM objects only; running instances pick the change up when they restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunistic: Option<VirtualMachineOpportunisticUpdateStrategy>,
    /// Update the VMs and restart their instances right away (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proactive: Option<VirtualMachinePoolProactiveUpdateStrategy>,
    /// Never update VMs automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged: Option<VirtualMachinePoolUnmanagedStrategy>,
}

/// Marker: the pool leaves this to the user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualMachinePoolUnmanagedStrategy {}

/// Marker: update VM objects only and let instances catch up on restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualMachineOpportunisticUpdateStrategy {}

/// Update that restarts VMs right away.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolProactiveUpdateStrategy {
    /// Which VMs are updated first; Random when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_policy: Option<VirtualMachinePoolSelectionPolicy>,
}

/// The observed state of a pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePoolStatus {
    /// The conditions of the pool (ReplicaFailure, ReplicaPaused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachinePoolCondition>,
    /// The selector in its string form, for the scale subresource (and so the autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// How many of the virtual machines are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// How many virtual machines exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// One condition of a pool; the same shape as a virtual machine's.
pub type VirtualMachinePoolCondition = VirtualMachineCondition;

/// Known values of the `type` of a [`VirtualMachinePoolCondition`].
pub mod pool_condition_types {
    /// Creating a virtual machine failed.
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// The pool is paused: VMs may be added or removed by hand.
    pub const REPLICA_PAUSED: &str = "ReplicaPaused";
}

/// The finalizer the pool controller puts on pools.
pub const FINALIZER: &str = "pool.kubevirt.io/finalizer";
