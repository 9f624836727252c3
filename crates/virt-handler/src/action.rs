//! What to ask the launcher, given the VMI and its domain. Pure.
//!
//! - A VMI being deleted, or in a final phase, is stopped: an active domain gets a Shutdown
//!   (ACPI) once; a domain that stopped is Deleted, after which the launcher exits and its pod
//!   completes. (Kill after the grace period is not done yet.)
//! - A Scheduled VMI without a domain is Synced (the launcher defines and starts it).
//! - Otherwise nothing: Sync is idempotent, but a running domain needs no call, and a Running VMI
//!   whose domain vanished goes Failed (see `status::phase`) rather than being started again.

use kubevirt_api::v1::{VirtualMachineInstance, vmi_phases};
use launcher_proto::v1::{DomainState, DomainStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LauncherAction {
    Nothing,
    Sync,
    Shutdown,
    Delete,
}

/// Whether the VMI should no longer run.
pub fn stopping(vmi: &VirtualMachineInstance) -> bool {
    vmi.metadata.deletion_timestamp.is_some() || vmi.status.as_ref().is_some_and(|s| s.is_final())
}

pub fn decide(vmi: &VirtualMachineInstance, domain: Option<&DomainStatus>) -> LauncherAction {
    let domain = domain.filter(|d| d.state() != DomainState::None);
    let phase = vmi.status.as_ref().map(|s| s.phase()).unwrap_or("");
    if stopping(vmi) {
        return match domain {
            None => LauncherAction::Nothing,
            Some(d) if d.is_active() && d.shutdown_requested => LauncherAction::Nothing,
            Some(d) if d.is_active() => LauncherAction::Shutdown,
            Some(_) => LauncherAction::Delete,
        };
    }
    match (phase, domain) {
        (vmi_phases::SCHEDULED, None) => LauncherAction::Sync,
        _ => LauncherAction::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kubevirt_api::v1::VirtualMachineInstanceStatus;
    use launcher_proto::v1::StateReason;

    fn vmi(phase: &str, deleting: bool) -> VirtualMachineInstance {
        let mut v: VirtualMachineInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "namespace": "default", "uid": "u1"},
            "spec": {"domain": {"devices": {}}}
        }))
        .unwrap();
        v.status = Some(VirtualMachineInstanceStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        if deleting {
            v.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        v
    }

    fn dom(state: DomainState, shutdown_requested: bool) -> DomainStatus {
        let mut d = DomainStatus {
            shutdown_requested,
            ..Default::default()
        };
        d.set_state(state);
        d.set_reason(StateReason::Unknown);
        d
    }

    #[test]
    fn decisions() {
        use DomainState as S;
        use LauncherAction as A;
        let cases = [
            (vmi("Scheduled", false), None, A::Sync),
            (vmi("Scheduled", false), Some(dom(S::None, false)), A::Sync),
            (
                vmi("Scheduled", false),
                Some(dom(S::Running, false)),
                A::Nothing,
            ),
            (
                vmi("Running", false),
                Some(dom(S::Running, false)),
                A::Nothing,
            ),
            (vmi("Running", false), None, A::Nothing),
            (vmi("Pending", false), None, A::Nothing),
            (
                vmi("Running", true),
                Some(dom(S::Running, false)),
                A::Shutdown,
            ),
            (
                vmi("Running", true),
                Some(dom(S::Paused, false)),
                A::Shutdown,
            ),
            (
                vmi("Running", true),
                Some(dom(S::Running, true)),
                A::Nothing,
            ),
            (
                vmi("Running", true),
                Some(dom(S::Shutoff, false)),
                A::Delete,
            ),
            (
                vmi("Succeeded", false),
                Some(dom(S::Shutoff, false)),
                A::Delete,
            ),
            (
                vmi("Failed", false),
                Some(dom(S::Crashed, false)),
                A::Delete,
            ),
            (vmi("Succeeded", true), None, A::Nothing),
            (vmi("Scheduled", true), None, A::Nothing),
        ];
        for (v, d, want) in cases {
            assert_eq!(decide(&v, d.as_ref()), want, "{:?} {d:?}", v.status);
        }
    }
}
