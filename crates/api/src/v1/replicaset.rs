//! VirtualMachineInstanceReplicaSet: keeps a number of identical instances running.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{VirtualMachineCondition, VirtualMachineInstanceTemplateSpec};

/// The desired state of a replica set of virtual machine instances.
// Printer columns repeat `type_`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstanceReplicaSet",
    namespaced,
    status = "VirtualMachineInstanceReplicaSetStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmirs",
    shortname = "vmirss",
    category = "all",
    category = "kubevirt",
    doc = "A replica set of virtual machine instances: keeps the requested number of instances from one template running.",
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
pub struct VirtualMachineInstanceReplicaSetSpec {
    /// Whether the controller stops creating and deleting instances for this replica set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// How many instances should run (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Which instances belong to the replica set; must match the template's labels.
    pub selector: LabelSelector,
    /// The instance each replica is created from.
    pub template: VirtualMachineInstanceTemplateSpec,
}

/// The observed state of a replica set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceReplicaSetStatus {
    /// The conditions of the replica set (ReplicaFailure, ReplicaPaused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachineInstanceReplicaSetCondition>,
    /// The selector in its string form, for the scale subresource (and so the autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// How many of the instances are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// How many instances exist that the selector matches and that are not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// One condition of a replica set; the same shape as a virtual machine's.
pub type VirtualMachineInstanceReplicaSetCondition = VirtualMachineCondition;

/// Known values of the `type` of a [`VirtualMachineInstanceReplicaSetCondition`].
pub mod replica_set_condition_types {
    /// Creating or deleting an instance failed (quota, limits, scheduling constraints, ...).
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// The replica set is paused: instances may be added or removed by hand.
    pub const REPLICA_PAUSED: &str = "ReplicaPaused";
}
