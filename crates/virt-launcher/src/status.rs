//! libvirt's domain states and reasons as the launcher contract reports them, and the exit code
//! a stopped domain gives the launcher (pure).

use launcher_proto::v1::{DomainState, StateReason};

/// The launcher's exit codes: a contract with virt-handler, so they live in launcher-proto.
pub use launcher_proto::exit_code;

// libvirt's virDomainState values.
const NOSTATE: u32 = 0;
const RUNNING: u32 = 1;
const BLOCKED: u32 = 2;
const PAUSED: u32 = 3;
const SHUTDOWN: u32 = 4;
const SHUTOFF: u32 = 5;
const CRASHED: u32 = 6;
const PMSUSPENDED: u32 = 7;

/// Maps libvirt's (state, reason) pair.
pub fn from_libvirt(state: u32, reason: i32) -> (DomainState, StateReason) {
    use StateReason as R;
    match state {
        NOSTATE => (DomainState::NoState, R::Unknown),
        RUNNING => (
            DomainState::Running,
            match reason {
                // booted, restored, from snapshot, wakeup
                1 | 3 | 4 | 8 => R::Booted,
                2 | 10 => R::Migration,
                5..=7 => R::Unpaused,
                _ => R::Unknown,
            },
        ),
        BLOCKED => (DomainState::Blocked, R::Unknown),
        PAUSED => (
            DomainState::Paused,
            match reason {
                1 => R::User,
                2 | 12 | 13 => R::Migration,
                5 => R::IoError,
                6 => R::Watchdog,
                10 => R::Panicked,
                11 => R::StartingUp,
                _ => R::Unknown,
            },
        ),
        SHUTDOWN => (DomainState::ShuttingDown, R::Unknown),
        SHUTOFF => (
            DomainState::Shutoff,
            match reason {
                1 => R::Shutdown,
                2 => R::Destroyed,
                3 | 8 => R::Crashed,
                // VIR_DOMAIN_SHUTOFF_MIGRATED
                5 => R::Migration,
                6 => R::Failed,
                _ => R::Unknown,
            },
        ),
        CRASHED => (
            DomainState::Crashed,
            if reason == 1 { R::Panicked } else { R::Crashed },
        ),
        PMSUSPENDED => (DomainState::PmSuspended, R::Unknown),
        _ => (DomainState::NoState, R::Unknown),
    }
}

/// Whether QEMU has gone for good (the launcher then cleans up and exits).
pub fn is_final(state: DomainState) -> bool {
    matches!(state, DomainState::Shutoff | DomainState::Crashed)
}

/// The exit code for a domain that stopped in `state` for `reason`.
pub fn exit_code_for(state: DomainState, reason: StateReason) -> i32 {
    match (state, reason) {
        (DomainState::Shutoff, StateReason::Migration) => exit_code::MIGRATED,
        (DomainState::Shutoff, StateReason::Shutdown) => exit_code::GUEST_SHUTDOWN,
        (DomainState::Shutoff, StateReason::Destroyed) => exit_code::DESTROYED,
        _ => exit_code::CRASHED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutoff_reasons_tell_clean_from_forced_from_crashed() {
        let code = |r| {
            let (s, r) = from_libvirt(SHUTOFF, r);
            exit_code_for(s, r)
        };
        assert_eq!(code(1), exit_code::GUEST_SHUTDOWN);
        assert_eq!(code(2), exit_code::DESTROYED);
        assert_eq!(code(3), exit_code::CRASHED);
        assert_eq!(code(6), exit_code::CRASHED);
        assert_eq!(
            from_libvirt(PAUSED, 1),
            (DomainState::Paused, StateReason::User)
        );
        assert_eq!(
            from_libvirt(RUNNING, 5),
            (DomainState::Running, StateReason::Unpaused)
        );
        assert!(is_final(DomainState::Shutoff) && !is_final(DomainState::Paused));
    }
}
