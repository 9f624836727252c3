//! `cdi.kubevirt.io/v1beta1` DataVolume: a PVC populated from a source (http, registry, pvc, upload, blank).
//!
//! The shape follows the CDI API version upstream KubeVirt builds against (v1.64), which is also
//! what a VirtualMachine's `dataVolumeTemplates[].spec` accepts.

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimSpec, TypedLocalObjectReference, TypedObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the Containerized Data Importer.
pub const GROUP: &str = "cdi.kubevirt.io";

/// Where a DataVolume's data comes from and the volume to hold it.
// Printer columns repeat `type_`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "DataVolume",
    namespaced,
    status = "DataVolumeStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "dv",
    shortname = "dvs",
    category = "all",
    doc = "A DataVolume: a persistent volume claim that is created and filled from a source.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the DataVolume is in its lifecycle."
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress",
        description = "How much of the data has been transferred, as a percentage, or N/A."
    ),
    printcolumn(
        name = "Restarts",
        type_ = "integer",
        json_path = ".status.restartCount",
        description = "How often the pod filling the volume has been restarted."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSpec {
    /// Checkpoints of a multi-stage (warm) import, one per stage, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<DataVolumeCheckpoint>,
    /// What the imported data is: a disk image (kubevirt, the default) or an archive to unpack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<DataVolumeContentType>,
    /// Whether the current checkpoint is the last stage of a multi-stage import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_checkpoint: Option<bool>,
    /// Whether the volume's storage is allocated in full up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
    /// The priority class of the importer, cloner and upload pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The claim to create, given as a full PVC spec (use `storage` to let CDI fill in defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PersistentVolumeClaimSpec>,
    /// Where the data comes from; at most one source may be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataVolumeSource>,
    /// An indirect source: a DataSource object that names the actual source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<DataVolumeSourceRef>,
    /// The claim to create, where CDI fills in what is left out from the storage profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// What the imported data is: a disk image (kubevirt, the default) or an archive to unpack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DataVolumeContentType {
    /// A virtual machine disk image (the default).
    #[default]
    #[serde(rename = "kubevirt")]
    Kubevirt,
    /// An archive whose contents are unpacked into the volume.
    #[serde(rename = "archive")]
    Archive,
}

/// One stage of a multi-stage import: the snapshot it starts from and the one it brings in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeCheckpoint {
    /// The identifier of the snapshot this stage imports.
    pub current: String,
    /// The identifier of the snapshot the previous stage imported.
    pub previous: String,
}

/// A claim specification where CDI completes missing settings (access modes, volume mode,
/// size overhead) from the storage class's profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The access modes the volume must offer (ReadWriteOnce, ReadWriteMany, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// An existing VolumeSnapshot or PVC to provision the volume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<TypedLocalObjectReference>,
    /// An object (possibly in another namespace) to populate the volume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_ref: Option<TypedObjectReference>,
    /// The size the volume must at least have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VolumeResourceRequirements>,
    /// Which existing volumes may be bound to the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The storage class of the claim; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Filesystem, Block, or FromStorageProfile to take it from the storage profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    /// The name of a specific PersistentVolume to bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
}

/// The `volumeMode` that asks CDI to pick the mode from the storage profile.
pub const VOLUME_MODE_FROM_STORAGE_PROFILE: &str = "FromStorageProfile";

/// Where a DataVolume's data comes from; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSource {
    /// An empty raw disk image of the volume's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blank: Option<DataVolumeBlankImage>,
    /// A file in Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<DataVolumeSourceGCS>,
    /// A file served over HTTP or HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<DataVolumeSourceHTTP>,
    /// A disk of an oVirt/RHV engine, read through ImageIO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imageio: Option<DataVolumeSourceImageIO>,
    /// An existing PVC to clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<DataVolumeSourcePVC>,
    /// A disk image inside a container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<DataVolumeSourceRegistry>,
    /// An object in an S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<DataVolumeSourceS3>,
    /// An existing VolumeSnapshot to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DataVolumeSourceSnapshot>,
    /// Data a client uploads through the CDI upload proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<DataVolumeSourceUpload>,
    /// A disk of a VMware virtual machine, read with the VDDK library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vddk: Option<DataVolumeSourceVDDK>,
}

/// Marker: create an empty raw image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataVolumeBlankImage {}

/// Marker: wait for a client to upload the data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataVolumeSourceUpload {}

/// An existing PVC to clone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourcePVC {
    /// The name of the PVC to clone.
    pub name: String,
    /// The namespace of the PVC to clone.
    pub namespace: String,
}

/// An existing VolumeSnapshot to restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceSnapshot {
    /// The name of the VolumeSnapshot.
    pub name: String,
    /// The namespace of the VolumeSnapshot.
    pub namespace: String,
}

/// An object in an S3-compatible bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceS3 {
    /// A ConfigMap with the CA certificate that signs the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// A Secret with the access key id and secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The URL of the object.
    pub url: String,
}

/// A file in Google Cloud Storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceGCS {
    /// A Secret with the credentials to read the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The URL of the object.
    pub url: String,
}

/// A disk image inside a container image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceRegistry {
    /// A ConfigMap with the CA certificate of the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// An OpenShift image stream to import from, instead of a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_stream: Option<String>,
    /// Which platform's image to pick from a multi-platform image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformOptions>,
    /// How the image is fetched: by an importer pod (`pod`, the default) or through the node's
    /// container runtime (`node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_method: Option<String>,
    /// A Secret with the registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The image reference, with a `docker://` or `oci-archive://` scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Known values of [`DataVolumeSourceRegistry::pull_method`].
pub mod registry_pull_methods {
    /// An importer pod pulls the image (the default).
    pub const POD: &str = "pod";
    /// The node's container runtime pulls the image, reusing its cache.
    pub const NODE: &str = "node";
}

/// Which platform's image to pick from a multi-platform image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformOptions {
    /// The CPU architecture of the image to pick (amd64, arm64, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

/// A file served over HTTP or HTTPS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceHTTP {
    /// A ConfigMap with the CA certificate that signs the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// Extra request headers, each as `Name: value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_headers: Vec<String>,
    /// Secrets that each hold one extra request header, for headers that carry credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_extra_headers: Vec<String>,
    /// A Secret with a user name (`accessKeyId`) and password (`secretKey`) for basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The URL of the file.
    pub url: String,
}

/// A disk of an oVirt/RHV engine, read through ImageIO.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceImageIO {
    /// A ConfigMap with the engine's CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// The id of the disk to import.
    pub disk_id: String,
    /// Whether the engine's certificate is accepted without verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// A Secret with the engine credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The URL of the engine's API.
    pub url: String,
}

/// A disk of a VMware virtual machine, read with the VDDK library.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceVDDK {
    /// The path of the virtual disk file on the vCenter or ESXi host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    /// A ConfigMap with extra arguments handed to the VDDK library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<String>,
    /// An image that carries the VDDK library, overriding the cluster-wide setting.
    #[serde(
        default,
        rename = "initImageURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub init_image_url: Option<String>,
    /// A Secret with the vCenter or ESXi user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The SHA-1 thumbprint of the host's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// The URL of the vCenter or ESXi host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The UUID of the VMware virtual machine the disk belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// An indirect source: an object that names where the data is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceRef {
    /// The kind of the referenced object; only DataSource is supported.
    pub kind: String,
    /// The name of the referenced object.
    pub name: String,
    /// The namespace of the referenced object; the DataVolume's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The kind a [`DataVolumeSourceRef`] may point at.
pub const DATA_SOURCE_KIND: &str = "DataSource";

/// The observed state of a DataVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeStatus {
    /// The name of the PVC that holds the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The conditions of the DataVolume (Bound, Ready, Running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<DataVolumeCondition>,
    /// Where the DataVolume is in its lifecycle: Pending, ImportScheduled, ImportInProgress,
    /// CloneInProgress, UploadReady, WaitForFirstConsumer, Succeeded, Failed, Paused, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// How much of the data has been transferred, e.g. `45.5%`, or `N/A` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// How often the pod filling the volume has been restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
}

impl DataVolumeStatus {
    /// The transfer progress as a number from 0 to 100, when `progress` holds a percentage.
    pub fn progress_percent(&self) -> Option<f64> {
        let value: f64 = self
            .progress
            .as_deref()?
            .trim()
            .strip_suffix('%')?
            .trim_end()
            .parse()
            .ok()?;
        value.is_finite().then_some(value)
    }
}

/// Known values of [`DataVolumeStatus::phase`].
pub mod data_volume_phases {
    /// Accepted; nothing has happened yet.
    pub const PENDING: &str = "Pending";
    /// The PVC exists and is bound.
    pub const PVC_BOUND: &str = "PVCBound";
    /// The importer pod is being scheduled.
    pub const IMPORT_SCHEDULED: &str = "ImportScheduled";
    /// The importer is copying the data.
    pub const IMPORT_IN_PROGRESS: &str = "ImportInProgress";
    /// The cloner is being scheduled.
    pub const CLONE_SCHEDULED: &str = "CloneScheduled";
    /// The source PVC is being cloned.
    pub const CLONE_IN_PROGRESS: &str = "CloneInProgress";
    /// A snapshot of the source is being taken for a smart clone.
    pub const SNAPSHOT_FOR_SMART_CLONE_IN_PROGRESS: &str = "SnapshotForSmartCloneInProgress";
    /// The volume is being restored from a source snapshot.
    pub const CLONE_FROM_SNAPSHOT_SOURCE_IN_PROGRESS: &str = "CloneFromSnapshotSourceInProgress";
    /// The PVC of a smart clone is being created from the snapshot.
    pub const SMART_CLONE_PVC_IN_PROGRESS: &str = "SmartClonePVCInProgress";
    /// The storage driver is cloning the volume (CSI clone).
    pub const CSI_CLONE_IN_PROGRESS: &str = "CSICloneInProgress";
    /// The PVC is being expanded.
    pub const EXPANSION_IN_PROGRESS: &str = "ExpansionInProgress";
    /// The PVC is being moved between namespaces.
    pub const NAMESPACE_TRANSFER_IN_PROGRESS: &str = "NamespaceTransferInProgress";
    /// The upload server pod is being scheduled.
    pub const UPLOAD_SCHEDULED: &str = "UploadScheduled";
    /// The upload server accepts data.
    pub const UPLOAD_READY: &str = "UploadReady";
    /// The storage class binds on first use; nothing happens until a pod uses the claim.
    pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
    /// A volume populator will fill the claim, which does not exist yet.
    pub const PENDING_POPULATION: &str = "PendingPopulation";
    /// The data is in place.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Filling the volume failed.
    pub const FAILED: &str = "Failed";
    /// The state cannot be determined.
    pub const UNKNOWN: &str = "Unknown";
    /// A multi-stage import waits for its next checkpoint.
    pub const PAUSED: &str = "Paused";
}

/// One condition of a DataVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeCondition {
    /// When the condition was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A machine-readable reason for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True, False or Unknown.
    pub status: String,
    /// Which condition this is: Bound, Ready or Running.
    #[serde(rename = "type")]
    pub type_: String,
}

/// Known values of [`DataVolumeCondition::type_`].
pub mod data_volume_condition_types {
    /// The PVC is bound to a volume.
    pub const BOUND: &str = "Bound";
    /// The data is in place and the volume can be used.
    pub const READY: &str = "Ready";
    /// A pod is filling the volume.
    pub const RUNNING: &str = "Running";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(p: &str) -> Option<f64> {
        DataVolumeStatus {
            progress: Some(p.to_string()),
            ..Default::default()
        }
        .progress_percent()
    }

    #[test]
    fn progress_percent_parses_percentages_only() {
        assert_eq!(progress("45.5%"), Some(45.5));
        assert_eq!(progress("100.0%"), Some(100.0));
        assert_eq!(progress("N/A"), None);
        assert_eq!(progress("45.5"), None);
        assert_eq!(DataVolumeStatus::default().progress_percent(), None);
    }

    #[test]
    fn spec_round_trips_upstream_json() {
        let json = serde_json::json!({
            "source": {"http": {"url": "https://example.com/disk.img"}, "blank": {}},
            "storage": {"resources": {"requests": {"storage": "10Gi"}}},
            "contentType": "archive",
        });
        let spec: DataVolumeSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(spec.content_type, Some(DataVolumeContentType::Archive));
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
    }
}
