//! Volumes of an instance (`spec.volumes`, `spec.utilityVolumes`): where the data behind its
//! disks and filesystems comes from.

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, PersistentVolumeClaimVolumeSource as K8sPvcSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Known values of `hostDisk.type`.
pub mod host_disk_types {
    /// The disk image must already exist at the path.
    pub const DISK: &str = "Disk";
    /// A sparse disk image of `capacity` is created at the path if none exists there.
    pub const DISK_OR_CREATE: &str = "DiskOrCreate";
}

/// Known values of `utilityVolumes[].type`.
pub mod utility_volume_types {
    /// The volume receives a memory dump of the guest.
    pub const MEMORY_DUMP: &str = "MemoryDump";
    /// The volume receives the output of a backup.
    pub const BACKUP: &str = "Backup";
}

/// Known values of `containerDisk.imagePullPolicy` (Kubernetes' pull policies).
pub mod pull_policies {
    /// Pull the image every time the pod starts.
    pub const ALWAYS: &str = "Always";
    /// Never pull; the image must already be on the node.
    pub const NEVER: &str = "Never";
    /// Pull only if the image is not on the node yet.
    pub const IF_NOT_PRESENT: &str = "IfNotPresent";
}

/// Volume labels commonly given to config disks (`volumeLabel`).
pub mod volume_labels {
    /// The label cloud-init's NoCloud data source looks for.
    pub const CIDATA: &str = "cidata";
    /// The label cloud-init's config-drive data source looks for.
    pub const CONFIG_2: &str = "config-2";
    /// The label a Kickstart installation looks for.
    pub const OEMDRV: &str = "OEMDRV";
}

/// A named volume of an instance; disks and filesystems refer to it by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// The volume's name: a DNS label, unique among the instance's volumes.
    pub name: String,
    /// Where the volume's data comes from (exactly one source).
    #[serde(flatten)]
    pub volume_source: VolumeSource,
}

impl Volume {
    /// The JSON name of the source this volume uses (e.g. `containerDisk`), or `None` when no
    /// source is set.
    pub fn source_kind(&self) -> Option<&'static str> {
        self.volume_source.kind()
    }
}

/// The source of a volume's data; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// Cloud-init data served to the guest as a config drive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init_config_drive: Option<CloudInitConfigDriveSource>,
    /// Cloud-init data served to the guest through the NoCloud data source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init_no_cloud: Option<CloudInitNoCloudSource>,
    /// A ConfigMap of the instance's namespace, presented as a disk or filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// A disk image shipped inside a container image; changes are lost when the instance stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_disk: Option<ContainerDiskSource>,
    /// A directory of the launcher container, shared with the guest over virtiofs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<ContainerPathVolumeSource>,
    /// A DataVolume (and the PVC it populates) of the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<DataVolumeSource>,
    /// Pod and instance metadata (labels, annotations, resources) presented as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<DownwardAPIVolumeSource>,
    /// A small disk with host and guest metrics in the vhostmd format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downward_metrics: Option<DownwardMetricsVolumeSource>,
    /// A blank, sparse disk that lives and dies with the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_disk: Option<EmptyDiskSource>,
    /// A PVC used read-only underneath a copy-on-write overlay discarded when the instance stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<EphemeralVolumeSource>,
    /// A disk image file at a path on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_disk: Option<HostDisk>,
    /// A PVC that receives a memory dump of the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_dump: Option<MemoryDumpVolumeSource>,
    /// A PersistentVolumeClaim of the instance's namespace, attached directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// A Secret of the instance's namespace, presented as a disk or filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// The token, CA and namespace of a ServiceAccount (at most one such volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountVolumeSource>,
    /// A Windows Sysprep answer file from a ConfigMap or Secret, attached as a CD-ROM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysprep: Option<SysprepSource>,
}

impl VolumeSource {
    /// The JSON names of every volume source, in the order `kind` checks them.
    pub const KINDS: &'static [&'static str] = &[
        "cloudInitConfigDrive",
        "cloudInitNoCloud",
        "configMap",
        "containerDisk",
        "containerPath",
        "dataVolume",
        "downwardAPI",
        "downwardMetrics",
        "emptyDisk",
        "ephemeral",
        "hostDisk",
        "memoryDump",
        "persistentVolumeClaim",
        "secret",
        "serviceAccount",
        "sysprep",
    ];

    /// The JSON names of the sources that are set (more than one is invalid).
    pub fn kinds(&self) -> Vec<&'static str> {
        let set = [
            self.cloud_init_config_drive.is_some(),
            self.cloud_init_no_cloud.is_some(),
            self.config_map.is_some(),
            self.container_disk.is_some(),
            self.container_path.is_some(),
            self.data_volume.is_some(),
            self.downward_api.is_some(),
            self.downward_metrics.is_some(),
            self.empty_disk.is_some(),
            self.ephemeral.is_some(),
            self.host_disk.is_some(),
            self.memory_dump.is_some(),
            self.persistent_volume_claim.is_some(),
            self.secret.is_some(),
            self.service_account.is_some(),
            self.sysprep.is_some(),
        ];
        Self::KINDS
            .iter()
            .zip(set)
            .filter_map(|(k, on)| on.then_some(*k))
            .collect()
    }

    /// The JSON name of the first source that is set, or `None` when none is.
    pub fn kind(&self) -> Option<&'static str> {
        self.kinds().into_iter().next()
    }
}

/// The sources a volume added to a running instance may use; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HotplugVolumeSource {
    /// A DataVolume (and the PVC it populates) of the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<DataVolumeSource>,
    /// A PersistentVolumeClaim of the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

/// A reference by name to a Secret or ConfigMap in the instance's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// The object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Cloud-init data for the NoCloud data source; user data and network data each come inline,
/// base64-encoded or from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitNoCloudSource {
    /// Network configuration, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<String>,
    /// Network configuration, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data_base64: Option<String>,
    /// A Secret whose `networkdata` (or `networkData`) key holds the network configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data_secret_ref: Option<LocalObjectRef>,
    /// A Secret whose `userdata` (or `userData`) key holds the user data, and optionally the
    /// network data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "secretRef")]
    pub user_data_secret_ref: Option<LocalObjectRef>,
    /// User data, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// User data, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_base64: Option<String>,
}

/// Cloud-init data for the config-drive data source; user data and network data each come
/// inline, base64-encoded or from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitConfigDriveSource {
    /// Network configuration, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<String>,
    /// Network configuration, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data_base64: Option<String>,
    /// A Secret whose `networkdata` (or `networkData`) key holds the network configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data_secret_ref: Option<LocalObjectRef>,
    /// A Secret whose `userdata` (or `userData`) key holds the user data, and optionally the
    /// network data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "secretRef")]
    pub user_data_secret_ref: Option<LocalObjectRef>,
    /// User data, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// User data, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_base64: Option<String>,
}

/// A Windows Sysprep answer file (`autounattend.xml`, optionally `unattend.xml`) from a
/// ConfigMap or a Secret; exactly one is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SysprepSource {
    /// The ConfigMap holding the answer file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<LocalObjectRef>,
    /// The Secret holding the answer file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<LocalObjectRef>,
}

/// A disk image inside a container image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDiskSource {
    /// The container image that holds the disk image.
    pub image: String,
    /// When to pull the image: Always, Never or IfNotPresent; Always for `:latest` tags and
    /// IfNotPresent otherwise when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The name of an existing registry-credentials Secret used to pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// The path of the disk image inside the container image; the first image found under
    /// `/disk` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A directory of the launcher's compute container (one of its volume mounts) shared with the
/// guest over virtiofs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPathVolumeSource {
    /// The absolute path inside the compute container; must be one of its volume mounts.
    pub path: String,
    /// Whether the guest sees the directory read-only; true when unset (write access is not
    /// supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// A DataVolume of the instance's namespace; the PVC it populates has the same name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSource {
    /// Whether the volume may be attached to and detached from the running instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotpluggable: Option<bool>,
    /// The name of the DataVolume and of its PVC.
    pub name: String,
}

/// Pod and instance metadata presented to the guest as files on a disk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownwardAPIVolumeSource {
    /// The files to create and what each contains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<DownwardAPIVolumeFile>,
    /// The filesystem label of the disk inside the guest (e.g. `cidata`, `config-2`, `OEMDRV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_label: Option<String>,
}

/// Marker: a small disk with host and guest metrics in the vhostmd format.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DownwardMetricsVolumeSource {}

/// A blank, sparse disk that lives and dies with the instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDiskSource {
    /// The size of the disk.
    pub capacity: Quantity,
}

/// A PVC used as a read-only base under a copy-on-write overlay that is discarded when the
/// instance stops.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralVolumeSource {
    /// The PVC that holds the base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<K8sPvcSource>,
}

/// A disk image file at a path on the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostDisk {
    /// The size of the image to create when `type` is DiskOrCreate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// The path of the image file on the node.
    pub path: String,
    /// Whether the path is on storage shared between nodes (which allows live migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// Disk (the image must exist) or DiskOrCreate (create it if missing); see
    /// `host_disk_types`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// A PVC that receives a memory dump of the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryDumpVolumeSource {
    /// The name of the PVC in the instance's namespace.
    pub claim_name: String,
    /// Whether the volume may be attached to and detached from the running instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotpluggable: Option<bool>,
    /// Whether the volume is mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// A PersistentVolumeClaim of the instance's namespace, attached directly to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimVolumeSource {
    /// The name of the PVC.
    pub claim_name: String,
    /// Whether the volume may be attached to and detached from the running instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotpluggable: Option<bool>,
    /// Whether the guest sees the volume read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// A ConfigMap of the instance's namespace presented to the guest as a disk or filesystem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    /// The ConfigMap's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the instance may start when the ConfigMap or its keys are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// The filesystem label of the disk inside the guest (e.g. `cidata`, `config-2`, `OEMDRV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_label: Option<String>,
}

/// A Secret of the instance's namespace presented to the guest as a disk or filesystem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    /// Whether the instance may start when the Secret or its keys are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// The Secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The filesystem label of the disk inside the guest (e.g. `cidata`, `config-2`, `OEMDRV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_label: Option<String>,
}

/// The credentials of a ServiceAccount (token, CA, namespace) presented to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountVolumeSource {
    /// The ServiceAccount's name in the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// A PVC attached to the launcher pod only (no disk in the guest), for operational data such
/// as memory dumps or backups.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtilityVolume {
    /// The name of the PVC.
    pub claim_name: String,
    /// The volume's name, unique among all the instance's volumes.
    pub name: String,
    /// Whether the volume is mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// What the volume is for: MemoryDump or Backup (see `utility_volume_types`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_sources_round_trip_and_are_named() {
        let json = serde_json::json!([
            {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:40"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data", "hotpluggable": true}},
            {"name": "init", "cloudInitNoCloud": {"userData": "#cloud-config\n", "secretRef": {"name": "s"}}},
            {"name": "meta", "downwardAPI": {"fields": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "none"}
        ]);
        let volumes: Vec<Volume> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&volumes).unwrap(), json);
        let kinds: Vec<_> = volumes.iter().map(Volume::source_kind).collect();
        assert_eq!(
            kinds,
            [
                Some("containerDisk"),
                Some("persistentVolumeClaim"),
                Some("cloudInitNoCloud"),
                Some("downwardAPI"),
                None
            ]
        );
        assert_eq!(VolumeSource::KINDS.len(), 16);
    }
}
