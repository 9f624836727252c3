//! VirtualMachineInstanceMigration: a request to live-migrate an instance to another node.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{VirtualMachineCondition, VirtualMachineInstanceMigrationState};

/// Which instance to migrate, and how.
// Printer columns repeat `type_`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstanceMigration",
    namespaced,
    status = "VirtualMachineInstanceMigrationStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmim",
    shortname = "vmims",
    category = "all",
    category = "kubevirt",
    doc = "A live migration of one virtual machine instance to another node.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "VMI", type_ = "string", json_path = ".spec.vmiName")
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationSpec {
    /// Extra node labels the target node must have, on top of the instance's own node
    /// selector and affinity (which win on conflicting keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub added_node_selector: BTreeMap<String, String>,
    /// How urgent the migration is: system-critical, user-triggered or system-maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Makes this the target side of a cross-cluster migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<VirtualMachineInstanceMigrationTarget>,
    /// Makes this the source side of a cross-cluster migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_to: Option<VirtualMachineInstanceMigrationSource>,
    /// The name of the instance (in the migration's namespace) to migrate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmi_name: Option<String>,
}

impl VirtualMachineInstanceMigrationSpec {
    /// Whether this is one side of a cross-cluster (decentralized) migration: exactly one of
    /// `sendTo` and `receive` is set.
    pub fn is_decentralized(&self) -> bool {
        self.send_to.is_some() != self.receive.is_some()
    }
}

/// Known values of [`VirtualMachineInstanceMigrationSpec::priority`].
pub mod migration_priorities {
    /// Needed to keep the cluster healthy.
    pub const SYSTEM_CRITICAL: &str = "system-critical";
    /// Requested by a user.
    pub const USER_TRIGGERED: &str = "user-triggered";
    /// Part of maintenance such as draining a node or updating KubeVirt.
    pub const SYSTEM_MAINTENANCE: &str = "system-maintenance";
}

/// The source side of a cross-cluster migration: where to send the instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationSource {
    /// The URL of the target's synchronization controller.
    #[serde(rename = "connectURL")]
    pub connect_url: String,
    /// The identifier both sides of the migration share.
    #[serde(rename = "migrationID")]
    pub migration_id: String,
}

/// The target side of a cross-cluster migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationTarget {
    /// The identifier both sides of the migration share.
    #[serde(rename = "migrationID")]
    pub migration_id: String,
}

/// The observed state of a migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationStatus {
    /// The conditions of the migration (migrationAbortRequested, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachineInstanceMigrationCondition>,
    /// The progress and outcome of the migration, as also shown on the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_state: Option<VirtualMachineInstanceMigrationState>,
    /// The migration's phase: Pending, Scheduling, Scheduled, PreparingTarget, TargetReady,
    /// Running, Succeeded or Failed (WaitingForSync, Synchronizing across clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the migration entered each phase it has been through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_transition_timestamps: Vec<VirtualMachineInstanceMigrationPhaseTransitionTimestamp>,
    /// The addresses (with port) of this side's synchronization controller, preferred first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synchronization_addresses: Vec<String>,
}

impl VirtualMachineInstanceMigrationStatus {
    /// Whether the migration has ended, successfully or not.
    pub fn is_final(&self) -> bool {
        matches!(
            self.phase.as_deref(),
            Some(migration_phases::SUCCEEDED | migration_phases::FAILED)
        )
    }
}

/// Known values of [`VirtualMachineInstanceMigrationStatus::phase`].
pub mod migration_phases {
    /// Accepted; waiting to be started.
    pub const PENDING: &str = "Pending";
    /// The target pod is being scheduled.
    pub const SCHEDULING: &str = "Scheduling";
    /// The target pod is running.
    pub const SCHEDULED: &str = "Scheduled";
    /// The target pod is being prepared to receive the instance.
    pub const PREPARING_TARGET: &str = "PreparingTarget";
    /// The target is ready to receive the instance.
    pub const TARGET_READY: &str = "TargetReady";
    /// The instance is being transferred.
    pub const RUNNING: &str = "Running";
    /// The instance runs on the target.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The migration failed; the instance stays on the source.
    pub const FAILED: &str = "Failed";
    /// A cross-cluster migration waits for the other side to connect.
    pub const WAITING_FOR_SYNC: &str = "WaitingForSync";
    /// A cross-cluster migration exchanges the instance's state with the other side.
    pub const SYNCHRONIZING: &str = "Synchronizing";
}

/// One condition of a migration; the same shape as a virtual machine's.
pub type VirtualMachineInstanceMigrationCondition = VirtualMachineCondition;

/// Known values of the `type` of a [`VirtualMachineInstanceMigrationCondition`].
pub mod migration_condition_types {
    /// Someone asked to abort the migration.
    pub const ABORT_REQUESTED: &str = "migrationAbortRequested";
    /// The target pod was refused by a resource quota.
    pub const REJECTED_BY_RESOURCE_QUOTA: &str = "migrationRejectedByResourceQuota";
    /// The migration waits for utility volumes to be detached.
    pub const BLOCKED_BY_UTILITY_VOLUMES: &str = "migrationBlockedByUtilityVolumes";
    /// A cross-cluster migration cannot go on.
    pub const DECENTRALIZED_MIGRATION_BLOCKED: &str = "decentralizedMigrationBlocked";
    /// The migration waits for a backup to finish or be aborted.
    pub const BLOCKED_BY_BACKUP: &str = "migrationBlockedByBackup";
}

/// When a migration entered one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationPhaseTransitionTimestamp {
    /// The phase entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the phase was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_transition_timestamp: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decentralized_means_exactly_one_side() {
        let mut spec = VirtualMachineInstanceMigrationSpec::default();
        assert!(!spec.is_decentralized());
        spec.receive = Some(VirtualMachineInstanceMigrationTarget {
            migration_id: "m".into(),
        });
        assert!(spec.is_decentralized());
        spec.send_to = Some(VirtualMachineInstanceMigrationSource {
            connect_url: "https://peer:9185".into(),
            migration_id: "m".into(),
        });
        assert!(!spec.is_decentralized());
    }
}
