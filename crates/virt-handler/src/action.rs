//! What to ask the launcher, given the VMI and its domain. Pure.
//!
//! - A VMI being deleted, or in a final phase, is stopped: an active domain gets a Shutdown
//!   (ACPI) once; a domain that stopped is Deleted, after which the launcher exits and its pod
//!   completes. A domain still running `grace_period` after the Shutdown is Killed; until
//!   then the power button is pressed again every `RESIGNAL` (a press that comes before the
//!   guest's ACPI daemon runs, early in its boot, is lost, and the guest would only go when
//!   killed).
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
    Kill,
    Delete,
}

/// Upstream's default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// How long a guest gets to shut down: `spec.terminationGracePeriodSeconds`, else 30 s.
pub fn grace_period(vmi: &VirtualMachineInstance) -> std::time::Duration {
    let secs = vmi
        .spec
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0);
    std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// How often the power button is pressed again while a guest has not shut down.
pub const RESIGNAL: std::time::Duration = std::time::Duration::from_secs(5);

/// When this handler pressed the guest's power button: how long ago the first and the latest
/// press were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownTimes {
    pub since_first: std::time::Duration,
    pub since_last: std::time::Duration,
}

/// Whether the VMI should no longer run.
pub fn stopping(vmi: &VirtualMachineInstance) -> bool {
    vmi.metadata.deletion_timestamp.is_some() || vmi.status.as_ref().is_some_and(|s| s.is_final())
}

/// `shutdown`: when this handler asked for the shutdown, if it did.
pub fn decide(
    vmi: &VirtualMachineInstance,
    domain: Option<&DomainStatus>,
    shutdown: Option<ShutdownTimes>,
) -> LauncherAction {
    let domain = domain.filter(|d| d.state() != DomainState::None);
    let phase = vmi.status.as_ref().map(|s| s.phase()).unwrap_or("");
    if stopping(vmi) {
        return match domain {
            None => LauncherAction::Nothing,
            Some(d) if d.is_active() && d.shutdown_requested => match shutdown {
                Some(t) if t.since_first >= grace_period(vmi) => LauncherAction::Kill,
                Some(t) if t.since_last >= RESIGNAL => LauncherAction::Shutdown,
                _ => LauncherAction::Nothing,
            },
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
            assert_eq!(decide(&v, d.as_ref(), None), want, "{:?} {d:?}", v.status);
        }
    }

    #[test]
    fn kill_after_the_grace_period() {
        use std::time::Duration;
        let mut v = vmi("Running", true);
        let d = dom(DomainState::Running, true);
        assert_eq!(grace_period(&v), Duration::from_secs(30));
        let times = |first, last| {
            Some(ShutdownTimes {
                since_first: Duration::from_secs(first),
                since_last: Duration::from_secs(last),
            })
        };
        let at = |first, last| decide(&v, Some(&d), times(first, last));
        assert_eq!(at(29, 4), LauncherAction::Nothing);
        // Pressed again every RESIGNAL while the grace period lasts.
        assert_eq!(at(29, 5), LauncherAction::Shutdown);
        assert_eq!(at(30, 0), LauncherAction::Kill);
        v.spec.termination_grace_period_seconds = Some(0);
        assert_eq!(decide(&v, Some(&d), times(0, 0)), LauncherAction::Kill);
        // A stopped domain is deleted whatever the time.
        let off = dom(DomainState::Shutoff, true);
        assert_eq!(
            decide(&v, Some(&off), times(99, 99)),
            LauncherAction::Delete
        );
    }
}
