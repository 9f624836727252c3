//! What upstream's VMI mutating webhook does at creation (presets, then defaults: the
//! `kubevirt.io/foregroundDeleteVirtualMachine` finalizer, phase Pending, status seeds), done by
//! the VMI controller for instances no webhook has processed yet: their phase is still empty.
//! Once virt-api's mutating webhook runs, every instance arrives Pending and this is skipped.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstancePreset};

use crate::preset;

/// Why an instance could not be admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("{0}")]
    Presets(String),
    #[error(transparent)]
    Defaults(#[from] kubevirt_api::defaults::DefaultsError),
}

/// Whether the instance still needs what the mutating webhook would have done.
pub fn needs_admission(vmi: &VirtualMachineInstance) -> bool {
    vmi.metadata.deletion_timestamp.is_none()
        && vmi
            .status
            .as_ref()
            .map(|s| s.phase())
            .unwrap_or("")
            .is_empty()
}

/// The admitted instance and the presets applied to it. `firmware_uuid` is used when the
/// instance has no firmware UUID (instances of a VM already carry the VM's).
pub fn admit(
    vmi: &VirtualMachineInstance,
    presets: &[&VirtualMachineInstancePreset],
    cfg: &ClusterConfig,
    firmware_uuid: &str,
    now: Timestamp,
) -> Result<(VirtualMachineInstance, Vec<String>), AdmitError> {
    let mut out = vmi.clone();
    let applied = preset::apply(&mut out, presets).map_err(AdmitError::Presets)?;
    kubevirt_api::defaults::vmi(&mut out, cfg, firmware_uuid, &Time(now))?;
    Ok((out, applied))
}

#[cfg(test)]
mod tests {
    use kubevirt_api::v1::vmi_phases;

    use super::*;
    use crate::names;

    #[test]
    fn admission_sets_pending_and_the_finalizer_once() {
        let v = VirtualMachineInstance::default();
        assert!(needs_admission(&v));
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let (a, applied) = admit(&v, &[], &ClusterConfig::default(), "u-1", now).unwrap();
        assert!(applied.is_empty());
        assert_eq!(a.status.as_ref().unwrap().phase(), vmi_phases::PENDING);
        assert!(
            a.metadata
                .finalizers
                .as_ref()
                .unwrap()
                .iter()
                .any(|f| f == names::VMI_FINALIZER)
        );
        assert_eq!(
            a.spec.domain.firmware.as_ref().unwrap().uuid.as_deref(),
            Some("u-1")
        );
        assert!(!needs_admission(&a));
        let mut deleting = v.clone();
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert!(!needs_admission(&deleting));
    }
}
