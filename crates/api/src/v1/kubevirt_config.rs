//! KubeVirtConfiguration: the cluster-wide settings under a KubeVirt CR's `.spec.configuration`
//! (feature gates, emulation fallback, overcommit, migrations, devices, TLS, rate limits, ...).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

use super::MigrationConfiguration;
use crate::schema::{integer, integer_map, number};

/// Writes a float the way Go does: whole values without a fractional part (`7`, not `7.0`), so
/// what was read is written back unchanged.
fn serialize_float<S: Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f32(*value)
    }
}

/// Names of the feature gates listed in `developerConfiguration.featureGates` that our code
/// looks at. Any other string is accepted too.
pub mod feature_gates {
    /// Live migration of virtual machine instances (graduated upstream; still accepted).
    pub const LIVE_MIGRATION: &str = "LiveMigration";
    /// Live migration of instances with SR-IOV interfaces.
    pub const SRIOV_LIVE_MIGRATION: &str = "SRIOVLiveMigration";
    /// VM snapshots and restores.
    pub const SNAPSHOT: &str = "Snapshot";
    /// Adding and removing volumes of a running instance.
    pub const HOTPLUG_VOLUMES: &str = "HotplugVolumes";
    /// Hotplugging volumes by editing the VM spec instead of calling subresources.
    pub const DECLARATIVE_HOTPLUG_VOLUMES: &str = "DeclarativeHotplugVolumes";
    /// Growing a disk image when its backing PVC grows.
    pub const EXPAND_DISKS: &str = "ExpandDisks";
    /// Disks backed by files on the host (`hostDisk` volumes).
    pub const HOST_DISK: &str = "HostDisk";
    /// Passing through host PCI and mediated devices.
    pub const HOST_DEVICES: &str = "HostDevices";
    /// Passing through GPUs (graduated upstream; still accepted).
    pub const GPU: &str = "GPU";
    /// Dedicated CPU placement through the kubelet CPU manager.
    pub const CPU_MANAGER: &str = "CPUManager";
    /// Guest NUMA topology mirroring the host.
    pub const NUMA: &str = "NUMA";
    /// Sidecar hooks in the launcher pod.
    pub const SIDECAR: &str = "Sidecar";
    /// Ignition user data for the guest.
    pub const IGNITION: &str = "ExperimentalIgnitionSupport";
    /// virtiofs shared filesystems (older gate name).
    pub const VIRTIOFS: &str = "ExperimentalVirtiofsSupport";
    /// virtiofs for config volumes (ConfigMap, Secret, ...).
    pub const VIRTIOFS_CONFIG_VOLUMES: &str = "EnableVirtioFsConfigVolumes";
    /// virtiofs for storage volumes (PVCs, DataVolumes).
    pub const VIRTIOFS_STORAGE_VOLUMES: &str = "EnableVirtioFsStorageVolumes";
    /// Exporting VMs, snapshots and volumes.
    pub const VM_EXPORT: &str = "VMExport";
    /// Persistent TPM and EFI state kept in a PVC.
    pub const VM_PERSISTENT_STATE: &str = "VMPersistentState";
    /// Live updates of CPU, memory, affinity and tolerations of running VMs.
    pub const VM_LIVE_UPDATE_FEATURES: &str = "VMLiveUpdateFeatures";
    /// Hotplugging network interfaces.
    pub const HOTPLUG_NICS: &str = "HotplugNICs";
    /// Downward metrics exposed to the guest.
    pub const DOWNWARD_METRICS: &str = "DownwardMetrics";
    /// Running the launcher as root instead of the default non-root user.
    pub const ROOT: &str = "Root";
    /// The deprecated gate for running non-root (now the default).
    pub const NON_ROOT: &str = "NonRoot";
    /// AMD SEV memory encryption.
    pub const WORKLOAD_ENCRYPTION_SEV: &str = "WorkloadEncryptionSEV";
    /// Intel TDX trust domains.
    pub const WORKLOAD_ENCRYPTION_TDX: &str = "WorkloadEncryptionTDX";
    /// VSOCK devices for host-guest communication.
    pub const VSOCK: &str = "VSOCK";
    /// Panic notifier devices.
    pub const PANIC_DEVICES: &str = "PanicDevices";
    /// Choosing the video device type.
    pub const VIDEO_CONFIG: &str = "VideoConfig";
    /// Changing a VM's volumes (storage migration) through its spec.
    pub const VOLUMES_UPDATE_STRATEGY: &str = "VolumesUpdateStrategy";
    /// Migrating volumes to other storage.
    pub const VOLUME_MIGRATION: &str = "VolumeMigration";
    /// Choosing the instancetype reference policy.
    pub const INSTANCETYPE_REFERENCE_POLICY: &str = "InstancetypeReferencePolicy";
    /// Deploying the common instancetypes and preferences.
    pub const COMMON_INSTANCETYPES_DEPLOYMENT: &str = "CommonInstancetypesDeploymentGate";
    /// Scheduling on nodes of several CPU architectures.
    pub const MULTI_ARCHITECTURE: &str = "MultiArchitecture";
    /// Setting CPU and memory limits on the launcher automatically.
    pub const AUTO_RESOURCE_LIMITS: &str = "AutoResourceLimitsGate";
    /// SCSI persistent reservations.
    pub const PERSISTENT_RESERVATION: &str = "PersistentReservation";
    /// Network binding plugins.
    pub const NETWORK_BINDING_PLUGINS: &str = "NetworkBindingPlugins";
    /// The passt network binding built into KubeVirt.
    pub const PASST_BINDING: &str = "PasstBinding";
    /// Profiling the control plane through the cluster profiler.
    pub const CLUSTER_PROFILER: &str = "ClusterProfiler";
    /// Letting virt-handler change only its own node's objects.
    pub const NODE_RESTRICTION: &str = "NodeRestriction";
    /// Choosing a hypervisor other than KVM.
    pub const CONFIGURABLE_HYPERVISOR: &str = "ConfigurableHypervisor";
    /// Opting out of aggregating KubeVirt's roles into the default ones.
    pub const OPT_OUT_ROLE_AGGREGATION: &str = "OptOutRoleAggregation";
    /// Deploying virt-template.
    pub const TEMPLATE: &str = "Template";
    /// Incremental backups through changed block tracking.
    pub const INCREMENTAL_BACKUP: &str = "IncrementalBackup";
    /// Image volumes (OCI images mounted as volumes).
    pub const IMAGE_VOLUME: &str = "ImageVolume";
    /// Live migration between clusters, coordinated by each side.
    pub const DECENTRALIZED_LIVE_MIGRATION: &str = "DecentralizedLiveMigration";
}

/// The cluster-wide configuration of KubeVirt (`.spec.configuration` of the KubeVirt CR).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtConfiguration {
    /// The factor by which to grow KubeVirt's estimate of per-VM memory overhead (a decimal as a
    /// string, e.g. "1.5"); 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_guest_memory_overhead_ratio: Option<String>,
    /// Rate limits of virt-api's client to the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_configuration: Option<ReloadableComponentConfiguration>,
    /// Per-architecture defaults (machine type, firmware, emulated machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture_configuration: Option<ArchConfiguration>,
    /// Namespaces whose instances get a CPU limit equal to their vCPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "autoCPULimitNamespaceLabelSelector")]
    pub auto_cpu_limit_namespace_label_selector: Option<LabelSelector>,
    /// Which VMs get changed block tracking (needed for backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_block_tracking_label_selectors: Option<ChangedBlockTrackingSelectors>,
    /// Whether the operator deploys the common instancetypes and preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_instancetypes_deployment: Option<CommonInstancetypesDeployment>,
    /// Settings for confidential computing (Intel TDX attestation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidential_compute: Option<ConfidentialComputeConfiguration>,
    /// Rate limits of virt-controller's client to the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_configuration: Option<ReloadableComponentConfiguration>,
    /// The CPU model instances get when they do not name one (e.g. host-model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// The CPU each launcher pod requests per instance when it asks for none itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<Quantity>,
    /// The runtime class launcher pods run with when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_runtime_class: Option<String>,
    /// Feature gates, emulation fallback, overcommit and logging knobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_configuration: Option<DeveloperConfiguration>,
    /// Deprecated: machine types guests may use; use architectureConfiguration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emulated_machines: Vec<String>,
    /// The eviction strategy of instances that set none (None, LiveMigrate,
    /// LiveMigrateIfPossible, External).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_strategy: Option<String>,
    /// Rate limits of virt-handler's client to the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_configuration: Option<ReloadableComponentConfiguration>,
    /// The hypervisor the cluster's nodes provide (at most one entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervisors: Vec<HypervisorConfiguration>,
    /// The pull policy of images in workload pods (launchers, exporters, ...): Always,
    /// IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// How VMs refer to their instancetypes and preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instancetype: Option<InstancetypeConfiguration>,
    /// Where kernel samepage merging is turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ksm_configuration: Option<KSMConfiguration>,
    /// Defaults for hotplugging CPU and memory into running VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_update_configuration: Option<LiveUpdateConfiguration>,
    /// Deprecated: the default machine type; use architectureConfiguration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Which mediated device types virt-handler creates on the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mediated_devices_configuration: Option<MediatedDevicesConfiguration>,
    /// How often, in seconds, the memory balloon reports statistics (0 turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_balloon_stats_period: Option<i32>,
    /// Cluster-wide live-migration settings (migration policies can override some per VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationConfiguration>,
    /// Deprecated: the oldest CPU model nodes are labelled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "minCPUModel")]
    pub min_cpu_model: Option<String>,
    /// Interface, pod-network and binding-plugin settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkConfiguration>,
    /// CPU models that are never offered to guests (name -> obsolete).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(rename = "obsoleteCPUModels")]
    pub obsolete_cpu_models: BTreeMap<String, bool>,
    /// Deprecated: where the OVMF (UEFI) firmware lives; use architectureConfiguration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ovmf_path: Option<String>,
    /// Host devices (PCI, mediated, USB) instances may have passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted_host_devices: Option<PermittedHostDevices>,
    /// Whether SCSI persistent reservations are supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_reservation_configuration: Option<PersistentReservationConfiguration>,
    /// Whether KubeVirt's cluster roles are aggregated into admin, edit and view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_aggregation_strategy: Option<RoleAggregationStrategy>,
    /// The seccomp profile launcher pods use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_configuration: Option<SeccompConfiguration>,
    /// The SELinux type launcher pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux_launcher_type: Option<String>,
    /// The SMBIOS identity guests see by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smbios: Option<SMBiosConfiguration>,
    /// Resources of the helper containers (container disks, hotplug, virtiofs, sidecars, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support_container_resources: Vec<SupportContainerResources>,
    /// Deprecated: guest agent versions considered supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_guest_agent_versions: Vec<String>,
    /// TLS versions and ciphers KubeVirt's endpoints accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_configuration: Option<TLSConfiguration>,
    /// Whether the operator deploys virt-template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virt_template_deployment: Option<VirtTemplateDeployment>,
    /// The most instances a node runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub virtual_machine_instances_per_node: Option<i64>,
    /// Cluster-wide defaults of per-VM options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_options: Option<VirtualMachineOptions>,
    /// How changes to live-updatable VM fields reach the running instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_rollout_strategy: Option<VMRolloutStrategy>,
    /// The storage class of the PVCs that keep VM state (TPM, EFI variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_state_storage_class: Option<String>,
    /// Rate limits of the admission webhooks' client to the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_configuration: Option<ReloadableComponentConfiguration>,
}

impl KubeVirtConfiguration {
    /// Whether KubeVirt may fall back to software emulation where /dev/kvm is missing
    /// (`developerConfiguration.useEmulation`; false when unset).
    pub fn use_emulation(&self) -> bool {
        self.developer_configuration
            .as_ref()
            .and_then(|d| d.use_emulation)
            .unwrap_or(false)
    }

    /// Whether the named feature gate is enabled (see [`feature_gates`]).
    pub fn has_feature_gate(&self, name: &str) -> bool {
        self.developer_configuration
            .as_ref()
            .is_some_and(|d| d.has_feature_gate(name))
    }
}

/// Settings meant for development and experimentation: feature gates, emulation, overcommit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeveloperConfiguration {
    /// Whether the control plane can be profiled with pprof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_profiler: Option<bool>,
    /// How many vCPUs share one physical CPU thread when sizing launcher CPU requests; 10 when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub cpu_allocation_ratio: Option<i64>,
    /// Feature gates explicitly turned off (a gate may not be both enabled and disabled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_feature_gates: Vec<String>,
    /// Limits for checking container disk images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_verification: Option<DiskVerification>,
    /// Feature gates turned on (see [`feature_gates`] for the names we know).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_gates: Vec<String>,
    /// Log verbosity of each component, and per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_verbosity: Option<LogVerbosity>,
    /// The guest memory as a percentage of the launcher pod's memory (over 100 overcommits);
    /// 100 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub memory_overcommit: Option<i64>,
    /// Pins the cluster's minimum TSC frequency (Hz) instead of detecting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "minimumClusterTSCFrequency")]
    pub minimum_cluster_tsc_frequency: Option<i64>,
    /// Bytes to leave free on PVC-backed disks; 131072 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "minimumReservePVCBytes")]
    pub minimum_reserve_pvc_bytes: Option<i64>,
    /// Labels a node must have for instances to run on it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selectors: BTreeMap<String, String>,
    /// How much smaller, in percent, a PVC may be than the disk asks for; 10 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub pvc_tolerate_less_space_up_to_percent: Option<i64>,
    /// Fall back to software emulation (QEMU TCG) where hardware virtualization (/dev/kvm) is
    /// missing; false when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_emulation: Option<bool>,
}

impl DeveloperConfiguration {
    /// Whether the named feature gate is enabled (listed in featureGates and not disabled).
    pub fn has_feature_gate(&self, name: &str) -> bool {
        self.feature_gates.iter().any(|g| g == name)
            && !self.disabled_feature_gates.iter().any(|g| g == name)
    }
}

/// Limits for verifying container disk images.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskVerification {
    /// The memory the image check may use.
    pub memory_limit: Quantity,
}

/// Log verbosity levels of KubeVirt's components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogVerbosity {
    /// Verbosity per node name (applies to that node's virt-handler and launchers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "integer_map")]
    pub node_verbosity: BTreeMap<String, i32>,
    /// Verbosity of virt-api.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "virtAPI")]
    #[schemars(schema_with = "integer")]
    pub virt_api: Option<i32>,
    /// Verbosity of virt-controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub virt_controller: Option<i32>,
    /// Verbosity of virt-handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub virt_handler: Option<i32>,
    /// Verbosity of virt-launcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub virt_launcher: Option<i32>,
    /// Verbosity of virt-operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub virt_operator: Option<i32>,
    /// Verbosity of virt-synchronization-controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub virt_synchronization_controller: Option<i32>,
}

/// Settings of a component that can change while it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadableComponentConfiguration {
    /// The component's Kubernetes API client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_client: Option<RESTClientConfiguration>,
}

/// Settings of a Kubernetes API client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RESTClientConfiguration {
    /// How fast the client may send requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

/// A client-side request rate limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimiter {
    /// A token bucket: a steady rate with bursts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_bucket_rate_limiter: Option<TokenBucketRateLimiter>,
}

/// A token-bucket limit: `qps` requests per second on average, up to `burst` at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenBucketRateLimiter {
    /// The most requests allowed at once.
    #[schemars(schema_with = "integer")]
    pub burst: i64,
    /// The sustained requests per second.
    #[serde(serialize_with = "serialize_float")]
    #[schemars(schema_with = "number")]
    pub qps: f32,
}

/// Per-architecture defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchConfiguration {
    /// Defaults for x86_64 guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd64: Option<ArchSpecificConfiguration>,
    /// Defaults for aarch64 guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm64: Option<ArchSpecificConfiguration>,
    /// The architecture of instances that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_architecture: Option<String>,
    /// Defaults for ppc64le guests (no longer supported upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppc64le: Option<ArchSpecificConfiguration>,
    /// Defaults for s390x guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s390x: Option<ArchSpecificConfiguration>,
}

/// The defaults for one CPU architecture.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchSpecificConfiguration {
    /// Machine types (glob patterns allowed) guests may ask for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emulated_machines: Vec<String>,
    /// The machine type guests get when they name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// The directory holding the UEFI (OVMF/AAVMF) firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ovmf_path: Option<String>,
}

/// Label selectors choosing the VMs that get changed block tracking.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangedBlockTrackingSelectors {
    /// VMs in namespaces matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_label_selector: Option<LabelSelector>,
    /// VMs whose own labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_label_selector: Option<LabelSelector>,
}

/// Whether the common instancetypes and preferences are deployed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonInstancetypesDeployment {
    /// Deploy them; true when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Whether virt-template is deployed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtTemplateDeployment {
    /// Deploy it; true when unset and its feature gate is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Whether SCSI persistent reservations are supported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentReservationConfiguration {
    /// Deploy the helper (pr-helper) that makes reservations work; false when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Confidential-computing settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfidentialComputeConfiguration {
    /// Intel TDX settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TDXConfiguration>,
}

/// Intel TDX settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TDXConfiguration {
    /// Attestation through the quote generation service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<TDXAttestationConfiguration>,
}

/// Attestation of TDX guests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TDXAttestationConfiguration {
    /// Schedule TDX guests only where the quote generation service runs; false when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    /// The socket of the quote generation service; /var/run/tdx-qgs/qgs.socket when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qgs_socket_path: Option<String>,
}

/// A hypervisor the cluster's nodes offer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HypervisorConfiguration {
    /// Which hypervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<HypervisorName>,
}

/// The hypervisors KubeVirt can drive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HypervisorName {
    /// Linux KVM (the default).
    #[default]
    #[serde(rename = "kvm")]
    Kvm,
    /// Microsoft Hyper-V with direct virtualization.
    #[serde(rename = "hyperv-direct")]
    HypervDirect,
}

/// How VMs refer to their instancetypes and preferences.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancetypeConfiguration {
    /// Keep a reference (the default) or expand the instancetype into the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_policy: Option<InstancetypeReferencePolicy>,
}

/// What happens to a VM's instancetype and preference references once it is submitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InstancetypeReferencePolicy {
    /// Snapshot the instancetype in a ControllerRevision and keep referring to it (the default).
    #[default]
    #[serde(rename = "reference")]
    Reference,
    /// Copy the instancetype into VMs that have not captured a revision yet.
    #[serde(rename = "expand")]
    Expand,
    /// Copy the instancetype into every VM, revision or not.
    #[serde(rename = "expandAll")]
    ExpandAll,
}

/// Where kernel samepage merging is on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KSMConfiguration {
    /// Nodes matching this selector get KSM; an empty selector means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label_selector: Option<LabelSelector>,
}

/// Defaults for hotplugging CPU and memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveUpdateConfiguration {
    /// The most CPU sockets a VM can grow to when it sets no limit itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_sockets: Option<i32>,
    /// The most guest memory a VM can grow to when it sets no limit itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_guest: Option<Quantity>,
    /// The multiple of the initial size used as limit when no explicit maximum is set; 4 when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hotplug_ratio: Option<i32>,
}

/// Which mediated device types virt-handler creates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediatedDevicesConfiguration {
    /// Whether virt-handler creates and removes mediated devices at all; true when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The mediated device types to create on every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mediated_device_types: Vec<String>,
    /// Deprecated spelling of mediatedDeviceTypes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mediated_devices_types: Vec<String>,
    /// Types to create on the nodes matching a selector, instead of the cluster-wide list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_mediated_device_types: Vec<NodeMediatedDeviceTypesConfig>,
}

/// Mediated device types for the nodes matching a selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeMediatedDeviceTypesConfig {
    /// The mediated device types to create on these nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mediated_device_types: Vec<String>,
    /// Deprecated spelling of mediatedDeviceTypes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mediated_devices_types: Vec<String>,
    /// The labels a node must have for this entry to apply.
    pub node_selector: BTreeMap<String, String>,
}

/// Network settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    /// Network binding plugins, by the name interfaces use to pick them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binding: BTreeMap<String, InterfaceBindingPlugin>,
    /// The binding of the pod network interface when none is given (bridge, masquerade, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_network_interface: Option<String>,
    /// Whether bridge binding may be used on the pod network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_bridge_interface_on_pod_network: Option<bool>,
    /// Deprecated and ignored: whether slirp binding may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_slirp_interface: Option<bool>,
}

/// A network binding plugin: how an interface with this binding is wired into the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceBindingPlugin {
    /// Extra resources the launcher's compute container needs when the binding is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_resource_overhead: Option<ResourceRequirementsWithoutClaims>,
    /// A built-in way to attach the interface to the domain (tap, managedTap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_attachment_type: Option<String>,
    /// What data the plugin's sidecar gets through the downward API (device-info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<String>,
    /// Whether, and how, VMs using the plugin can migrate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<InterfaceBindingMigration>,
    /// The NetworkAttachmentDefinition (`name` or `namespace/name`) the plugin uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_attachment_definition: Option<String>,
    /// The image of the sidecar that configures the domain for this binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_image: Option<String>,
}

/// Known values of [`InterfaceBindingPlugin::domain_attachment_type`].
pub mod domain_attachment_types {
    /// A generic tap device.
    pub const TAP: &str = "tap";
    /// A tap device KubeVirt creates on a bridge in the pod.
    pub const MANAGED_TAP: &str = "managedTap";
}

/// How VMs using a binding plugin migrate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceBindingMigration {
    /// The migration method (link-refresh: bounce the link so the guest renews its lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Compute requests and limits, without resource claims.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirementsWithoutClaims {
    /// The most of each resource that may be used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// The amount of each resource to reserve.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// Host devices that may be passed through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermittedHostDevices {
    /// Mediated devices (vGPUs, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mediated_devices: Vec<MediatedHostDevice>,
    /// PCI devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci_host_devices: Vec<PciHostDevice>,
    /// USB devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usb: Vec<USBHostDevice>,
}

/// A permitted mediated device type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediatedHostDevice {
    /// Leave allocation and health checks to an external device plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_resource_provider: Option<bool>,
    /// The mediated device type name to match (as in sysfs).
    pub mdev_name_selector: String,
    /// The resource name instances request it by.
    pub resource_name: String,
}

/// A permitted PCI device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PciHostDevice {
    /// Leave allocation and health checks to an external device plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_resource_provider: Option<bool>,
    /// The `vendor:product` IDs of the device.
    pub pci_vendor_selector: String,
    /// The resource name instances request it by (e.g. vendor.com/device).
    pub resource_name: String,
}

/// A permitted group of USB devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct USBHostDevice {
    /// Leave allocation and health checks to an external device plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_resource_provider: Option<bool>,
    /// The resource name instances request it by.
    pub resource_name: String,
    /// The devices that make up one allocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<USBSelector>,
}

/// A USB device by vendor and product ID.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct USBSelector {
    /// The product ID (hex).
    pub product: String,
    /// The vendor ID (hex).
    pub vendor: String,
}

/// Whether KubeVirt's cluster roles are aggregated into the default ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RoleAggregationStrategy {
    /// Aggregate into admin, edit and view (the default).
    #[default]
    AggregateToDefault,
    /// Do not aggregate; grant access by hand.
    Manual,
}

/// Seccomp settings for KubeVirt's pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeccompConfiguration {
    /// The profile launcher pods use; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_instance_profile: Option<VirtualMachineInstanceProfile>,
}

/// The seccomp profile of launcher pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceProfile {
    /// A profile of the operator's choosing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_profile: Option<CustomProfile>,
}

/// A seccomp profile chosen by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomProfile {
    /// A profile file on the node, relative to the kubelet's seccomp directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
    /// Use the container runtime's default profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_default_profile: Option<bool>,
}

/// The SMBIOS system information guests see.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SMBiosConfiguration {
    /// The product family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// The product name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The SKU number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// The product version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Resources of one kind of helper container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupportContainerResources {
    /// The requests and limits to give those containers.
    pub resources: ResourceRequirementsWithoutClaims,
    /// Which helper containers (see [`support_container_types`]).
    #[serde(rename = "type")]
    pub type_: String,
}

/// Known values of [`SupportContainerResources::type_`].
pub mod support_container_types {
    /// The pod that attaches hotplugged disks.
    pub const HOTPLUG_DISK: &str = "hotplug-disk";
    /// The containers that serve container disks.
    pub const CONTAINER_DISK: &str = "container-disk";
    /// The virtiofs daemons.
    pub const VIRTIOFS: &str = "virtiofs";
    /// Hook sidecars.
    pub const SIDECAR: &str = "sidecar";
    /// The VM export server pod.
    pub const VM_EXPORT: &str = "vmexport";
    /// The container that streams the serial console log.
    pub const GUEST_CONSOLE_LOG: &str = "guest-console-log";
}

/// TLS settings of KubeVirt's endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TLSConfiguration {
    /// The cipher suites allowed (OpenSSL/IANA names); TLS 1.3 suites are not configurable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
    /// The oldest TLS version accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "minTLSVersion")]
    pub min_tls_version: Option<TLSProtocolVersion>,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TLSProtocolVersion {
    /// TLS 1.0.
    #[serde(rename = "VersionTLS10")]
    VersionTLS10,
    /// TLS 1.1.
    #[serde(rename = "VersionTLS11")]
    VersionTLS11,
    /// TLS 1.2.
    #[default]
    #[serde(rename = "VersionTLS12")]
    VersionTLS12,
    /// TLS 1.3.
    #[serde(rename = "VersionTLS13")]
    VersionTLS13,
}

/// Cluster-wide defaults of per-VM options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineOptions {
    /// When present, the memory balloon does not report free pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_free_page_reporting: Option<DisableFreePageReporting>,
    /// When present, the default serial console is not logged (VMs can override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_serial_console_log: Option<DisableSerialConsoleLog>,
}

/// Marker: turn off free page reporting of the memory balloon.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DisableFreePageReporting {}

/// Marker: do not log the auto-attached serial console.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DisableSerialConsoleLog {}

/// How changes to live-updatable VM fields reach the running instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VMRolloutStrategy {
    /// Keep changes until the next restart (the default).
    #[default]
    Stage,
    /// Apply changes to the running instance where possible.
    LiveUpdate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_and_feature_gates_read_from_developer_configuration() {
        let mut config = KubeVirtConfiguration::default();
        assert!(!config.use_emulation());
        assert!(!config.has_feature_gate(feature_gates::SNAPSHOT));
        config.developer_configuration = Some(DeveloperConfiguration {
            use_emulation: Some(true),
            feature_gates: vec![
                feature_gates::SNAPSHOT.to_string(),
                feature_gates::HOTPLUG_VOLUMES.to_string(),
            ],
            disabled_feature_gates: vec![feature_gates::HOTPLUG_VOLUMES.to_string()],
            ..Default::default()
        });
        assert!(config.use_emulation());
        assert!(config.has_feature_gate(feature_gates::SNAPSHOT));
        assert!(!config.has_feature_gate(feature_gates::HOTPLUG_VOLUMES));
    }

    #[test]
    fn qps_is_written_back_as_read() {
        let limiter: TokenBucketRateLimiter =
            serde_json::from_str(r#"{"burst":10,"qps":7}"#).expect("decodes");
        assert_eq!(
            serde_json::to_string(&limiter).expect("encodes"),
            r#"{"burst":10,"qps":7}"#
        );
        let limiter: TokenBucketRateLimiter =
            serde_json::from_str(r#"{"burst":10,"qps":0.5}"#).expect("decodes");
        assert_eq!(
            serde_json::to_string(&limiter).expect("encodes"),
            r#"{"burst":10,"qps":0.5}"#
        );
    }
}
