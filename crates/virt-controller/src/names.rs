//! Upstream's well-known label, annotation, finalizer and event-reason strings (user-visible
//! API, so spelled exactly as upstream spells them).

/// `kubevirt.io`: marks objects that belong to KubeVirt; `virt-launcher` on launcher pods.
pub const APP_LABEL: &str = "kubevirt.io";
/// The UID of the instance a launcher pod was created for.
pub const CREATED_BY_LABEL: &str = "kubevirt.io/created-by";
/// The instance's (host)name on its launcher pod (deprecated upstream, still set).
pub const VM_NAME_LABEL: &str = "vm.kubevirt.io/name";
/// A short stable id of the instance on its launcher pod.
pub const VMI_ID_LABEL: &str = "vmi.kubevirt.io/id";
/// The node an instance was scheduled to, on the instance.
pub const NODE_NAME_LABEL: &str = "kubevirt.io/nodeName";
/// Set on instances whose launcher pod runs an image other than the configured one.
pub const OUTDATED_LAUNCHER_IMAGE_LABEL: &str = "kubevirt.io/outdatedLauncherImage";
/// Whether virt-handler on a node accepts new instances ("true"/"false").
pub const NODE_SCHEDULABLE_LABEL: &str = "kubevirt.io/schedulable";

/// The libvirt domain name, on launcher pods.
pub const DOMAIN_ANNOTATION: &str = "kubevirt.io/domain";
/// Which container `kubectl exec/logs` pick by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Marks launcher pods that migrate over unix sockets.
pub const MIGRATION_TRANSPORT_UNIX_ANNOTATION: &str = "kubevirt.io/migrationTransportUnix";
/// The VM generation an instance was started from.
pub const VM_GENERATION_ANNOTATION: &str = "kubevirt.io/vm-generation";
/// The time of virt-handler's latest heartbeat, on its node.
pub const HEARTBEAT_ANNOTATION: &str = "kubevirt.io/heartbeat";
/// Instancetype and preference names an instance was expanded from.
pub const INSTANCETYPE_ANNOTATION: &str = "kubevirt.io/instancetype-name";
pub const CLUSTER_INSTANCETYPE_ANNOTATION: &str = "kubevirt.io/cluster-instancetype-name";
pub const PREFERENCE_ANNOTATION: &str = "kubevirt.io/preference-name";
pub const CLUSTER_PREFERENCE_ANNOTATION: &str = "kubevirt.io/cluster-preference-name";
/// Prefix of the annotation recording each preset applied to an instance.
pub const PRESET_ANNOTATION_PREFIX: &str = "virtualmachinepreset.kubevirt.io/";
/// Opts an instance out of presets when set to "true".
pub const PRESET_EXCLUDE_ANNOTATION: &str =
    "virtualmachineinstancepresets.admission.kubevirt.io/exclude";

/// The VM controller's finalizer, on VMs and on the instances it created.
pub const VM_CONTROLLER_FINALIZER: &str = "kubevirt.io/virtualMachineControllerFinalize";
/// The VMI controller's finalizer (held until the launcher pod is gone).
pub const VMI_FINALIZER: &str = kubevirt_api::defaults::VMI_FINALIZER;
/// The pre-1.x spelling of [`VMI_FINALIZER`], migrated when seen.
pub const DEPRECATED_VMI_FINALIZER: &str = "foregroundDeleteVirtualMachine";

/// The readiness gate the VMI controller drives from the Paused condition.
pub const UNPAUSED_POD_CONDITION: &str = "kubevirt.io/virtual-machine-unpaused";

/// Event and condition reasons.
pub mod reasons {
    pub const SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
    pub const FAILED_CREATE: &str = "FailedCreate";
    pub const SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
    pub const FAILED_DELETE: &str = "FailedDelete";
    pub const FAILED_UPDATE: &str = "FailedUpdate";
    pub const FAILED_PVC_NOT_FOUND: &str = "FailedPvcNotFound";
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    pub const NODE_UNRESPONSIVE: &str = "NodeUnresponsive";
    pub const FAILED_FIND_INSTANCETYPE: &str = "FailedFindInstancetype";
    pub const FAILED_FIND_PREFERENCE: &str = "FailedFindPreference";
    pub const PRESET_FAILED: &str = "PresetFailed";
    pub const FAILED_GUARANTEE_RESOURCES: &str = "FailedGuaranteeResources";
}
