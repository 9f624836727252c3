//! The events virt-handler records on a VMI, with upstream's reasons and messages (users and
//! tools match on them: `kubectl get events --field-selector reason=Started`). Pure: which
//! event, if any, follows from a launcher call or a phase change.

use std::borrow::Cow;

use crate::action::LauncherAction;
use kubevirt_api::v1::{VirtualMachineInstanceCondition, vmi_phases};

/// One event to record on the VMI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmiEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: Cow<'static, str>,
}

impl VmiEvent {
    const fn normal(reason: &'static str, message: &'static str) -> Self {
        VmiEvent {
            warning: false,
            reason,
            message: Cow::Borrowed(message),
        }
    }
}

/// The event for the AccessCredentialsSynchronized condition going from `from` to `to`: one
/// per change of its status or message, as upstream records them.
pub fn for_access_credentials(
    from: Option<&VirtualMachineInstanceCondition>,
    to: Option<&VirtualMachineInstanceCondition>,
) -> Option<VmiEvent> {
    let to = to?;
    if from.is_some_and(|f| f.status == to.status && f.message == to.message) {
        return None;
    }
    let message = to.message.as_deref().unwrap_or_default();
    Some(if to.status == "True" {
        VmiEvent {
            warning: false,
            reason: "AccessCredentialsSyncSuccess",
            message: if message.is_empty() {
                Cow::Borrowed("Access credentials sync successful.")
            } else {
                Cow::Owned(format!("Access credentials sync successful: {message}"))
            },
        }
    } else {
        VmiEvent {
            warning: true,
            reason: "AccessCredentialsSyncFailed",
            message: Cow::Owned(format!("Access credentials sync failed: {message}")),
        }
    })
}

/// The event for a launcher call this handler made: the domain defined (Sync), the guest asked
/// to shut down, or killed once its grace period ran out. Deleting a stopped domain is
/// housekeeping and records nothing.
pub fn for_action(action: LauncherAction) -> Option<VmiEvent> {
    match action {
        LauncherAction::Sync => Some(VmiEvent::normal(
            "Created",
            "VirtualMachineInstance defined.",
        )),
        LauncherAction::Shutdown => Some(VmiEvent::normal(
            "ShuttingDown",
            "Signaled Graceful Shutdown",
        )),
        LauncherAction::Kill => Some(VmiEvent::normal("Deleted", "Signaled Deletion")),
        LauncherAction::Nothing | LauncherAction::Delete => None,
    }
}

/// The event for the VMI's phase moving from `from` to `to` (as written by this handler).
pub fn for_phase_change(from: &str, to: &str) -> Option<VmiEvent> {
    if from == to {
        return None;
    }
    match to {
        vmi_phases::RUNNING => Some(VmiEvent::normal(
            "Started",
            "VirtualMachineInstance started.",
        )),
        vmi_phases::SUCCEEDED => Some(VmiEvent::normal(
            "Stopped",
            "The VirtualMachineInstance was shut down.",
        )),
        vmi_phases::FAILED => Some(VmiEvent {
            warning: true,
            reason: "Stopped",
            message: Cow::Borrowed("The VirtualMachineInstance crashed."),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_calls_map_to_upstreams_reasons() {
        assert_eq!(for_action(LauncherAction::Sync).unwrap().reason, "Created");
        assert_eq!(
            for_action(LauncherAction::Shutdown).unwrap().reason,
            "ShuttingDown"
        );
        assert_eq!(for_action(LauncherAction::Kill).unwrap().reason, "Deleted");
        assert_eq!(for_action(LauncherAction::Delete), None);
        assert_eq!(for_action(LauncherAction::Nothing), None);
    }

    #[test]
    fn phase_changes_map_to_started_and_stopped() {
        let started = for_phase_change("Scheduled", "Running").unwrap();
        assert_eq!((started.reason, started.warning), ("Started", false));
        let done = for_phase_change("Running", "Succeeded").unwrap();
        assert_eq!((done.reason, done.warning), ("Stopped", false));
        let crashed = for_phase_change("Running", "Failed").unwrap();
        assert_eq!((crashed.reason, crashed.warning), ("Stopped", true));
        // No change, or a phase that is not the handler's news: nothing.
        assert_eq!(for_phase_change("Running", "Running"), None);
        assert_eq!(for_phase_change("Scheduling", "Scheduled"), None);
    }

    #[test]
    fn access_credential_changes_are_recorded_once() {
        let cond = |status: &str, message: Option<&str>| VirtualMachineInstanceCondition {
            type_: "AccessCredentialsSynchronized".into(),
            status: status.into(),
            message: message.map(str::to_string),
            ..Default::default()
        };
        let failed = cond("False", Some("guest agent: no such user"));
        let ev = for_access_credentials(None, Some(&failed)).expect("an event");
        assert!(ev.warning);
        assert_eq!(ev.reason, "AccessCredentialsSyncFailed");
        assert_eq!(
            ev.message,
            "Access credentials sync failed: guest agent: no such user"
        );
        assert_eq!(for_access_credentials(Some(&failed), Some(&failed)), None);
        let ok = cond("True", None);
        let ev = for_access_credentials(Some(&failed), Some(&ok)).expect("an event");
        assert_eq!(
            (ev.warning, ev.reason, ev.message.as_ref()),
            (
                false,
                "AccessCredentialsSyncSuccess",
                "Access credentials sync successful."
            )
        );
        assert_eq!(for_access_credentials(Some(&ok), None), None);
    }
}
