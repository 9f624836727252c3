//! The live-migration state of an instance (`status.migrationState` of a VirtualMachineInstance,
//! also reported by VirtualMachineInstanceMigration): where the instance moves from and to, how
//! far the migration got, and the settings it runs with.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::VMIMConfigurationOptions;
use crate::schema::{integer_list, integer_map};

/// Values of `status.migrationMethod`.
pub mod migration_methods {
    /// The disks stay where they are (shared storage); only memory and state move.
    pub const LIVE_MIGRATION: &str = "LiveMigration";
    /// The disks are copied to the target along with memory and state.
    pub const BLOCK_MIGRATION: &str = "BlockMigration";
}

/// Values of `status.migrationTransport`.
pub mod migration_transports {
    /// Migration traffic goes through Unix sockets proxied between the nodes.
    pub const UNIX: &str = "Unix";
}

/// Values of `migrationState.mode`.
pub mod migration_modes {
    /// Memory is copied while the guest keeps running on the source.
    pub const PRE_COPY: &str = "PreCopy";
    /// The guest runs on the target and fetches missing memory from the source.
    pub const POST_COPY: &str = "PostCopy";
    /// The guest is paused so that the migration can complete.
    pub const PAUSED: &str = "Paused";
}

/// Values of `migrationState.abortStatus`.
pub mod migration_abort_statuses {
    /// The migration was aborted.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Aborting the migration failed.
    pub const FAILED: &str = "Failed";
    /// The migration is being aborted.
    pub const ABORTING: &str = "Aborting";
}

/// Values of `migrationState.migrationNetworkType`.
pub mod migration_network_types {
    /// Migration traffic uses the pod network.
    pub const POD: &str = "Pod";
    /// Migration traffic uses the dedicated migration network.
    pub const MIGRATION: &str = "Migration";
}

/// The state of an instance's current or latest live migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationState {
    /// Whether an abort of the migration was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_requested: Option<bool>,
    /// How the abort went: Succeeded, Failed or Aborting (see `migration_abort_statuses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_status: Option<String>,
    /// Whether the migration completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    /// When the migration ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<Time>,
    /// Whether the migration failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    /// Why the migration failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The migration settings in effect for this migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_configuration: Option<VMIMConfigurationOptions>,
    /// The network migration traffic uses: Pod or Migration (see `migration_network_types`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_network_type: Option<String>,
    /// The MigrationPolicy that applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_policy_name: Option<String>,
    /// The UID of the VirtualMachineInstanceMigration object behind this migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_uid: Option<String>,
    /// PreCopy, PostCopy or Paused (see `migration_modes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The node the instance moves from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<String>,
    /// The PVC holding the instance's persistent state (TPM, EFI) on the source side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "sourcePersistentStatePVCName")]
    pub source_persistent_state_pvc_name: Option<String>,
    /// The launcher pod the instance moves from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_pod: Option<String>,
    /// The state kept by the source node's handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_state: Option<VirtualMachineInstanceMigrationSourceState>,
    /// When the migration started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// The UID of the target's attachment pod for hotplugged volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "targetAttachmentPodUID")]
    pub target_attachment_pod_uid: Option<String>,
    /// The dedicated CPUs the instance gets on the target node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "targetCPUSet")]
    #[schemars(schema_with = "integer_list")]
    pub target_cpu_set: Vec<i64>,
    /// The ports opened for the migration on the target node, by purpose.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "integer_map")]
    pub target_direct_migration_node_ports: BTreeMap<String, i64>,
    /// The memory overhead of the target launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory_overhead: Option<Quantity>,
    /// The node the instance moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    /// The address of the target node migration traffic goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node_address: Option<String>,
    /// Whether the target node has seen the domain start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node_domain_detected: Option<bool>,
    /// When the target node saw the domain become active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node_domain_ready_timestamp: Option<Time>,
    /// The NUMA topology of the dedicated CPUs on the target node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node_topology: Option<String>,
    /// The PVC holding the instance's persistent state (TPM, EFI) on the target side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "targetPersistentStatePVCName")]
    pub target_persistent_state_pvc_name: Option<String>,
    /// The launcher pod the instance moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pod: Option<String>,
    /// The state kept by the target node's handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_state: Option<VirtualMachineInstanceMigrationTargetState>,
}

impl VirtualMachineInstanceMigrationState {
    /// Whether the migration has ended, successfully or not.
    pub fn is_finished(&self) -> bool {
        self.completed == Some(true) || self.failed == Some(true)
    }
}

/// What the source and the target side of a migration each record about themselves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceCommonMigrationState {
    /// The name of the libvirt domain on this side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// The namespace part of the libvirt domain's name on this side (used to rewrite paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_namespace: Option<String>,
    /// The UID of this side's VirtualMachineInstanceMigration object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "migrationUID")]
    pub migration_uid: Option<String>,
    /// This side's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The PVC holding the instance's persistent state (TPM, EFI) on this side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "persistentStatePVCName")]
    pub persistent_state_pvc_name: Option<String>,
    /// This side's launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The SELinux context of this side's launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux_context: Option<String>,
    /// The host:port through which this side synchronizes the instance with the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_address: Option<String>,
    /// The UID of this side's VirtualMachineInstance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "virtualMachineInstanceUID")]
    pub virtual_machine_instance_uid: Option<String>,
}

/// What the source side of a migration records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationSourceState {
    /// The fields both sides record.
    #[serde(flatten)]
    pub common: VirtualMachineInstanceCommonMigrationState,
    /// Node selectors the target's receiving pod must use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selectors: BTreeMap<String, String>,
}

/// What the target side of a migration records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationTargetState {
    /// The fields both sides record.
    #[serde(flatten)]
    pub common: VirtualMachineInstanceCommonMigrationState,
    /// The UID of the target's attachment pod for hotplugged volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "attachmentPodUID")]
    pub attachment_pod_uid: Option<String>,
    /// The dedicated CPUs the instance gets on the target node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "cpuSet")]
    #[schemars(schema_with = "integer_list")]
    pub cpu_set: Vec<i64>,
    /// The ports opened for the migration on the target node, by purpose.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "integer_map")]
    pub direct_migration_node_ports: BTreeMap<String, i64>,
    /// Whether the target node has seen the domain start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_detected: Option<bool>,
    /// When the target node saw the domain become active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_ready_timestamp: Option<Time>,
    /// The address of the target node migration traffic goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_address: Option<String>,
    /// The NUMA topology of the dedicated CPUs on the target node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_topology: Option<String>,
}
