//! Live-migration settings: the cluster-wide `MigrationConfiguration` of the KubeVirt CR
//! (`.spec.configuration.migrations`), the effective per-migration options recorded in an
//! instance's migration state (`VMIMConfigurationOptions`), and the experimental tunables a
//! MigrationPolicy or the effective options may carry.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default values upstream applies to the migration settings when they are left unset.
pub mod migration_defaults {
    /// The taint key that marks a node to be drained.
    pub const NODE_DRAIN_TAINT_KEY: &str = "kubevirt.io/drain";
    /// Outgoing migrations allowed at once per node.
    pub const PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE: i32 = 2;
    /// Migrations allowed at once in the whole cluster.
    pub const PARALLEL_MIGRATIONS_PER_CLUSTER: i32 = 5;
    /// Bandwidth limit per migration; "0" means unlimited.
    pub const BANDWIDTH_PER_MIGRATION: &str = "0Mi";
    /// Seconds allowed per GiB of guest memory before the migration is considered too slow.
    pub const COMPLETION_TIMEOUT_PER_GIB: i64 = 150;
    /// The largest pause of the guest, in milliseconds, the switchover may cause.
    pub const MAX_DOWNTIME_MS: i64 = 900;
    /// Seconds without any data transferred before a migration is cancelled.
    pub const PROGRESS_TIMEOUT: i64 = 150;
    /// Seconds a pending migration waits for utility volumes to be detached.
    pub const UTILITY_VOLUMES_TIMEOUT: i64 = 150;
}

/// The cluster-wide live-migration settings (`.spec.configuration.migrations` of the KubeVirt
/// CR); MigrationPolicies may override them for selected instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationConfiguration {
    /// Whether the guest's vCPUs may be throttled so that a busy instance's migration can
    /// converge; false when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_auto_converge: Option<bool>,
    /// Whether a migration may switch to post-copy when it would otherwise time out; false when
    /// unset. A network failure during post-copy loses the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_post_copy: Option<bool>,
    /// Whether a migration that exceeds its completion time may disrupt the guest (post-copy or
    /// pausing it) instead of being cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_workload_disruption: Option<bool>,
    /// The network bandwidth each migration may use, per second; 0 (unlimited) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_per_migration: Option<Quantity>,
    /// Seconds a migration may take per GiB of guest memory before it is cancelled, switched
    /// to post-copy or the guest paused; 150 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "completionTimeoutPerGiB")]
    pub completion_timeout_per_gib: Option<i64>,
    /// Turns off KubeVirt's own TLS layer around migration traffic (not recommended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "disableTLS")]
    pub disable_tls: Option<bool>,
    /// Lets the target launcher pod get its own SELinux level instead of the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "matchSELinuxLevelOnMigration")]
    pub match_selinux_level_on_migration: Option<bool>,
    /// The longest pause of the guest, in milliseconds, allowed at switchover; 900 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downtime_ms: Option<i64>,
    /// The name of a dedicated network (NetworkAttachmentDefinition) for migration traffic;
    /// the pod network when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The taint key marking a node to be drained of instances; `kubevirt.io/drain` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_drain_taint_key: Option<String>,
    /// How many migrations may run at once in the cluster; 5 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_migrations_per_cluster: Option<i32>,
    /// How many migrations may leave one node at once; 2 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_outbound_migrations_per_node: Option<i32>,
    /// Seconds a migration may transfer nothing before it is cancelled as stuck; 150 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_timeout: Option<i64>,
    /// Lets migrations proceed even when the compatibility check calls them unsafe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_migration_override: Option<bool>,
    /// Seconds a pending migration waits for utility volumes to be detached before it fails;
    /// 150 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utility_volumes_timeout: Option<i64>,
}

/// The migration settings in effect for one migration (the cluster's settings merged with the
/// matching MigrationPolicy), as recorded in the instance's migration state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VMIMConfigurationOptions {
    /// Whether the guest's vCPUs may be throttled so that the migration converges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_auto_converge: Option<bool>,
    /// Whether the migration may switch to post-copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_post_copy: Option<bool>,
    /// Whether the migration may disrupt the guest rather than be cancelled when it runs late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_workload_disruption: Option<bool>,
    /// The network bandwidth the migration may use, per second; 0 means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_per_migration: Option<Quantity>,
    /// Seconds the migration may take per GiB of guest memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "completionTimeoutPerGiB")]
    pub completion_timeout_per_gib: Option<i64>,
    /// Whether KubeVirt's own TLS layer around migration traffic is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "disableTLS")]
    pub disable_tls: Option<bool>,
    /// Experimental tunables (alpha; may change or go away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experimental: Option<ExperimentalMigrationOptions>,
    /// Whether the target launcher pod gets its own SELinux level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "matchSELinuxLevelOnMigration")]
    pub match_selinux_level_on_migration: Option<bool>,
    /// The longest pause of the guest, in milliseconds, allowed at switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downtime_ms: Option<i64>,
    /// The dedicated migration network, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The taint key marking a node to be drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_drain_taint_key: Option<String>,
    /// How many migrations may run at once in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_migrations_per_cluster: Option<i32>,
    /// How many migrations may leave one node at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_outbound_migrations_per_node: Option<i32>,
    /// Seconds the migration may transfer nothing before it is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_timeout: Option<i64>,
    /// Whether the migration proceeds even when the compatibility check calls it unsafe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_migration_override: Option<bool>,
    /// Seconds the pending migration waits for utility volumes to be detached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utility_volumes_timeout: Option<i64>,
}

impl From<MigrationConfiguration> for VMIMConfigurationOptions {
    fn from(c: MigrationConfiguration) -> Self {
        Self {
            allow_auto_converge: c.allow_auto_converge,
            allow_post_copy: c.allow_post_copy,
            allow_workload_disruption: c.allow_workload_disruption,
            bandwidth_per_migration: c.bandwidth_per_migration,
            completion_timeout_per_gib: c.completion_timeout_per_gib,
            disable_tls: c.disable_tls,
            experimental: None,
            match_selinux_level_on_migration: c.match_selinux_level_on_migration,
            max_downtime_ms: c.max_downtime_ms,
            network: c.network,
            node_drain_taint_key: c.node_drain_taint_key,
            parallel_migrations_per_cluster: c.parallel_migrations_per_cluster,
            parallel_outbound_migrations_per_node: c.parallel_outbound_migrations_per_node,
            progress_timeout: c.progress_timeout,
            unsafe_migration_override: c.unsafe_migration_override,
            utility_volumes_timeout: c.utility_volumes_timeout,
        }
    }
}

/// Experimental live-migration tunables (an alpha API that may change or go away).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentalMigrationOptions {
    /// How the migration stream is compressed; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<MigrationCompression>,
    /// Raising the allowed downtime step by step while a migration struggles to converge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_tuning: Option<DowntimeTuningOptions>,
    /// Detecting migrations that stop making progress, and what to do about them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_detector: Option<StallDetectorOptions>,
}

/// The compression applied to live-migration data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MigrationCompression {
    /// No compression (the default).
    #[default]
    #[serde(rename = "none")]
    None,
    /// zstd compression of the parallel migration channels.
    #[serde(rename = "zstd")]
    Zstd,
}

/// How the allowed switchover downtime is raised during a migration that does not converge:
/// from `initialMs` up to the configured maximum in `steps` equal increments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DowntimeTuningOptions {
    /// The least number of seconds between two increases; 10 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<i32>,
    /// The allowed downtime, in milliseconds, at the start of the migration; 150 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_ms: Option<i64>,
    /// The memory-copy iteration after which increases may begin; 3 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after_iteration: Option<i64>,
    /// How many increments lead from the initial to the maximum downtime; 7 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i32>,
}

/// Tunables of the detector that notices a migration has stopped converging.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StallDetectorOptions {
    /// The factor applied to the completion timeout when judging whether a forced switchover
    /// can still finish in time (a decimal quantity); 2 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timeout_factor: Option<Quantity>,
    /// The smoothing factor, in (0, 1], of the moving average of the observed bandwidth;
    /// 0.4 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ewma_alpha: Option<Quantity>,
    /// The factor by which the patience window shrinks after each relaxation step; 0.5 when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience_window_decay_factor: Option<Quantity>,
    /// How far the estimated downtime may exceed the maximum while a gentle stop-and-copy is
    /// still tried rather than aborting; 1.5 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precopy_possible_factor: Option<Quantity>,
    /// Whether to wait for the remaining bytes to reach a local minimum before acting on a
    /// stall; true when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_local_minima: Option<bool>,
    /// The tolerance, in percent (0-100), when comparing the remaining bytes with the best seen
    /// so far; 4 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_margin: Option<i64>,
    /// The length, in seconds, of the window over which progress is tracked; 40 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_progress_timeout: Option<i64>,
    /// Seconds a triggered switchover may take before the migration is aborted; 60 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_timeout: Option<i64>,
}
