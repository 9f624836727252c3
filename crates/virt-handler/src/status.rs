//! What the VMI's status should say, given what its launcher reports: the domain's state and
//! reason (`GetDomain` or the event stream), the launcher's `Info` (software emulation) and, when
//! an agent answers, the guest's info. Pure: no I/O, the clock is an argument.
//!
//! Decisions:
//! - Phases after Scheduled are ours. An active domain (running, blocked, paused, shutting down,
//!   suspended) means Running. A domain shut off because the guest powered off or because it was
//!   destroyed (Kill, or deletion) means Succeeded; a crash, a failure to start, a watchdog or a
//!   panic means Failed. A domain that vanished while the VMI was Running means Failed. No
//!   domain yet while Scheduled keeps Scheduled (the next Sync creates it). Final phases stay.
//! - Paused: True with reason `PausedByUser` when paused by a Pause call, `PausedIOError` on an
//!   IO error; removed otherwise (a pause while starting or migrating is not the user's).
//! - Ready: virt-controller derives it from the launcher pod's readiness (which follows the
//!   unpaused readiness gate) while the VMI is Running; we set it False (`GuestNotRunning`) when
//!   the domain is not running, and leave it to the controller otherwise, so the two never fight.
//! - SoftwareEmulation: True when the launcher runs the guest under TCG, with its reason as the
//!   message; absent otherwise.
//! - AgentConnected: True while the agent answers; absent otherwise. guestOSInfo from the agent.
//! - Interfaces: one per interface the domain reports (name, MAC, IPs, pod interface; source
//!   `domain`), with the guest's interface name and IPs merged in by MAC when the agent reports
//!   them (source `domain, guest-agent`).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::v1::{
    GuestAgentCommandInfo, VirtualMachineInstanceCondition, VirtualMachineInstanceFileSystem,
    VirtualMachineInstanceFileSystemDisk, VirtualMachineInstanceFileSystemList,
    VirtualMachineInstanceGuestAgentInfo, VirtualMachineInstanceGuestOSInfo,
    VirtualMachineInstanceGuestOSUser, VirtualMachineInstanceGuestOSUserList,
    VirtualMachineInstanceNetworkInterface, VirtualMachineInstanceStatus, interface_info_sources,
    vmi_condition_reasons, vmi_condition_types, vmi_phases,
};
use launcher_proto::v1::{
    DomainState, DomainStatus, GuestFilesystems, GuestInfo, GuestUsers, InfoResponse, StateReason,
};

/// Condition reason: paused by a Pause call.
pub const PAUSED_BY_USER: &str = "PausedByUser";
/// Condition reason: paused by the hypervisor after an IO error.
pub const PAUSED_IO_ERROR: &str = "PausedIOError";
/// Condition reason of SoftwareEmulation.
pub const SOFTWARE_EMULATION_REASON: &str = "SoftwareEmulation";
/// Condition reason of AgentConnected.
pub const AGENT_CONNECTED_REASON: &str = "GuestAgentConnected";

/// What the launcher reported, as far as it is known.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    /// The domain's status; `None` when the launcher has no domain (nothing synced, or deleted).
    pub domain: Option<&'a DomainStatus>,
    /// The launcher's Info, if it was read.
    pub info: Option<&'a InfoResponse>,
    /// The guest agent's report; `None` when no agent answers.
    pub guest: Option<&'a GuestInfo>,
}

/// The phase the VMI moves to, given its current phase and the domain.
pub fn phase(current: &str, domain: Option<&DomainStatus>) -> String {
    if vmi_phases::is_final(current) {
        return current.to_string();
    }
    let Some(d) = domain.filter(|d| d.state() != DomainState::None) else {
        return match current {
            vmi_phases::RUNNING => vmi_phases::FAILED.to_string(),
            other => other.to_string(),
        };
    };
    if d.is_active() {
        return vmi_phases::RUNNING.to_string();
    }
    match d.state() {
        DomainState::Shutoff => match d.reason() {
            StateReason::Shutdown | StateReason::Destroyed => vmi_phases::SUCCEEDED.to_string(),
            _ => vmi_phases::FAILED.to_string(),
        },
        DomainState::Crashed => vmi_phases::FAILED.to_string(),
        // NoState: libvirt does not know yet; keep what we have.
        _ => current.to_string(),
    }
}

/// The domain's last state as the launcher's exit told it, for a launcher that is gone (it
/// exits by itself once its guest stopped). `code` is the compute container's exit code, when
/// known; without one the guest is taken to have failed.
pub fn domain_after_exit(code: Option<i32>) -> DomainStatus {
    use launcher_proto::exit_code;
    let reason = match code {
        Some(exit_code::GUEST_SHUTDOWN) => StateReason::Shutdown,
        Some(exit_code::DESTROYED) => StateReason::Destroyed,
        Some(exit_code::CRASHED) => StateReason::Crashed,
        _ => StateReason::Failed,
    };
    let mut d = DomainStatus::default();
    d.set_state(DomainState::Shutoff);
    d.set_reason(reason);
    d
}

/// The status the VMI should have. `node` is the node this handler runs on.
pub fn next(
    current: &VirtualMachineInstanceStatus,
    observed: &Observed<'_>,
    node: &str,
    now: Timestamp,
) -> VirtualMachineInstanceStatus {
    let mut out = current.clone();
    let t = Time(now);
    let new_phase = phase(current.phase(), observed.domain);
    if new_phase != current.phase() {
        out.phase = Some(new_phase.clone());
        // Upstream records when each phase was first reached (density measurements read it).
        if !out
            .phase_transition_timestamps
            .iter()
            .any(|p| p.phase.as_deref() == Some(new_phase.as_str()))
        {
            out.phase_transition_timestamps.push(
                kubevirt_api::v1::VirtualMachineInstancePhaseTransitionTimestamp {
                    phase: Some(new_phase.clone()),
                    phase_transition_timestamp: Some(t.clone()),
                },
            );
        }
    }
    if out.node_name.is_none() {
        out.node_name = Some(node.to_string());
    }
    let running = observed.domain.is_some_and(DomainStatus::is_active);

    // Paused.
    let paused_reason = observed
        .domain
        .filter(|d| d.state() == DomainState::Paused)
        .and_then(|d| match d.reason() {
            StateReason::User => Some(PAUSED_BY_USER),
            StateReason::IoError => Some(PAUSED_IO_ERROR),
            _ => None,
        });
    match paused_reason {
        Some(reason) => set(
            &mut out.conditions,
            condition(vmi_condition_types::PAUSED, "True", reason, "", &t),
        ),
        None => remove(&mut out.conditions, vmi_condition_types::PAUSED),
    }

    // Ready: only the not-running side is ours.
    if !running {
        set(
            &mut out.conditions,
            condition(
                vmi_condition_types::READY,
                "False",
                vmi_condition_reasons::GUEST_NOT_RUNNING,
                "Guest VM is not reported as running",
                &t,
            ),
        );
    }

    // SoftwareEmulation.
    if let Some(info) = observed.info {
        if info.emulation {
            set(
                &mut out.conditions,
                condition(
                    vmi_condition_types::SOFTWARE_EMULATION,
                    "True",
                    SOFTWARE_EMULATION_REASON,
                    &info.emulation_reason,
                    &t,
                ),
            );
        } else {
            remove(&mut out.conditions, vmi_condition_types::SOFTWARE_EMULATION);
        }
    }

    // AgentConnected and guestOSInfo.
    match observed.guest.filter(|_| running) {
        Some(g) => {
            set(
                &mut out.conditions,
                condition(
                    vmi_condition_types::AGENT_CONNECTED,
                    "True",
                    AGENT_CONNECTED_REASON,
                    "",
                    &t,
                ),
            );
            out.guest_os_info = Some(guest_os_info(g));
        }
        None => {
            remove(&mut out.conditions, vmi_condition_types::AGENT_CONNECTED);
        }
    }

    // AccessCredentialsSynchronized: as the launcher last reported its guest-agent credentials
    // (kept while the domain is gone, like upstream's last word on them).
    if let Some(a) = observed
        .domain
        .filter(|d| d.is_active())
        .and_then(|d| d.access_credentials.as_ref())
    {
        set(
            &mut out.conditions,
            condition(
                vmi_condition_types::ACCESS_CREDENTIALS_SYNCHRONIZED,
                if a.synchronized { "True" } else { "False" },
                "",
                &a.message,
                &t,
            ),
        );
    }

    // Interfaces: while the domain exists; kept as they were once it is gone.
    if let Some(d) = observed.domain.filter(|d| d.is_active()) {
        out.interfaces = interfaces(d, observed.guest);
    }
    out
}

/// The guest OS info from the agent's report. Older agents give no `pretty-name` or
/// `version-id`: those are then made from the name and version.
pub fn guest_os_info(g: &GuestInfo) -> VirtualMachineInstanceGuestOSInfo {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    VirtualMachineInstanceGuestOSInfo {
        id: opt(&g.os_id),
        name: opt(&g.os_name),
        version: opt(&g.os_version),
        version_id: opt(&g.os_version_id).or_else(|| opt(&g.os_version)),
        kernel_release: opt(&g.kernel_release),
        kernel_version: opt(&g.kernel_version),
        machine: opt(&g.machine),
        pretty_name: opt(&g.os_pretty_name).or_else(|| {
            match (g.os_name.is_empty(), g.os_version.is_empty()) {
                (false, false) => Some(format!("{} {}", g.os_name, g.os_version)),
                (false, true) => Some(g.os_name.clone()),
                _ => None,
            }
        }),
    }
}

/// The body of the `guestosinfo` subresource.
pub fn guest_agent_info(g: &GuestInfo) -> VirtualMachineInstanceGuestAgentInfo {
    VirtualMachineInstanceGuestAgentInfo {
        ga_version: g.agent_version.clone(),
        supported_commands: g
            .supported_commands
            .iter()
            .map(|c| GuestAgentCommandInfo {
                name: c.name.clone(),
                enabled: c.enabled,
            })
            .collect(),
        hostname: g.hostname.clone(),
        os: guest_os_info(g),
        timezone: g.timezone.clone(),
        ..Default::default()
    }
}

/// The body of the `userlist` subresource.
pub fn guest_user_list(u: &GuestUsers) -> VirtualMachineInstanceGuestOSUserList {
    VirtualMachineInstanceGuestOSUserList {
        items: u
            .users
            .iter()
            .map(|u| VirtualMachineInstanceGuestOSUser {
                user_name: u.name.clone(),
                domain: u.domain.clone(),
                login_time: u.login_time,
            })
            .collect(),
        ..Default::default()
    }
}

/// The body of the `filesystemlist` subresource.
pub fn guest_filesystem_list(f: &GuestFilesystems) -> VirtualMachineInstanceFileSystemList {
    // Sizes are int64 on the wire; no guest file system comes near i64::MAX.
    let size = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    VirtualMachineInstanceFileSystemList {
        items: f
            .filesystems
            .iter()
            .map(|f| VirtualMachineInstanceFileSystem {
                disk_name: f.disk_name.clone(),
                mount_point: f.mount_point.clone(),
                file_system_type: f.r#type.clone(),
                used_bytes: size(f.used_bytes),
                total_bytes: size(f.total_bytes),
                disk: f
                    .disks
                    .iter()
                    .map(|d| VirtualMachineInstanceFileSystemDisk {
                        serial: d.serial.clone(),
                        bus_type: d.bus_type.clone(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

/// The interface statuses from the domain, merged with the agent's by MAC.
pub fn interfaces(
    domain: &DomainStatus,
    guest: Option<&GuestInfo>,
) -> Vec<VirtualMachineInstanceNetworkInterface> {
    domain
        .interfaces
        .iter()
        .map(|i| {
            let from_agent = guest.and_then(|g| {
                g.interfaces
                    .iter()
                    .find(|gi| !i.mac.is_empty() && gi.mac.eq_ignore_ascii_case(&i.mac))
            });
            let mut ips = i.ips.clone();
            let mut source = interface_info_sources::DOMAIN.to_string();
            let mut interface_name = None;
            if let Some(gi) = from_agent {
                source = format!(
                    "{}, {}",
                    interface_info_sources::DOMAIN,
                    interface_info_sources::GUEST_AGENT
                );
                interface_name = (!gi.name.is_empty()).then(|| gi.name.clone());
                for ip in &gi.ips {
                    if !ips.contains(ip) {
                        ips.push(ip.clone());
                    }
                }
            }
            VirtualMachineInstanceNetworkInterface {
                name: (!i.name.is_empty()).then(|| i.name.clone()),
                mac: (!i.mac.is_empty()).then(|| i.mac.clone()),
                ip_address: ips.first().cloned(),
                ip_addresses: ips,
                interface_name,
                pod_interface_name: (!i.pod_interface.is_empty()).then(|| i.pod_interface.clone()),
                info_source: Some(source),
                ..Default::default()
            }
        })
        .collect()
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> VirtualMachineInstanceCondition {
    VirtualMachineInstanceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: None,
        last_transition_time: Some(now.clone()),
    }
}

/// Adds `cond`, or replaces the one of its type when status, reason or message differ (so
/// transition times stay put while nothing changes).
fn set(list: &mut Vec<VirtualMachineInstanceCondition>, cond: VirtualMachineInstanceCondition) {
    match list.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            if existing.status != cond.status
                || existing.reason != cond.reason
                || existing.message != cond.message
            {
                *existing = cond;
            }
        }
        None => list.push(cond),
    }
}

fn remove(list: &mut Vec<VirtualMachineInstanceCondition>, type_: &str) {
    list.retain(|c| c.type_ != type_);
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_proto::v1::{GuestInterface, InterfaceStatus};

    fn dom(state: DomainState, reason: StateReason) -> DomainStatus {
        let mut d = DomainStatus {
            name: "default_vm".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        d.set_state(state);
        d.set_reason(reason);
        d
    }

    fn status(phase: &str) -> VirtualMachineInstanceStatus {
        VirtualMachineInstanceStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn phases() {
        use DomainState as S;
        use StateReason as R;
        let cases = [
            ("Scheduled", None, "Scheduled"),
            ("Scheduled", Some(dom(S::None, R::Unknown)), "Scheduled"),
            ("Running", None, "Failed"),
            ("Scheduled", Some(dom(S::Running, R::Booted)), "Running"),
            ("Scheduled", Some(dom(S::Paused, R::StartingUp)), "Running"),
            ("Running", Some(dom(S::Paused, R::User)), "Running"),
            ("Running", Some(dom(S::ShuttingDown, R::Unknown)), "Running"),
            ("Running", Some(dom(S::Shutoff, R::Shutdown)), "Succeeded"),
            ("Running", Some(dom(S::Shutoff, R::Destroyed)), "Succeeded"),
            ("Running", Some(dom(S::Shutoff, R::Crashed)), "Failed"),
            ("Running", Some(dom(S::Shutoff, R::Failed)), "Failed"),
            ("Running", Some(dom(S::Shutoff, R::Panicked)), "Failed"),
            ("Running", Some(dom(S::Crashed, R::Unknown)), "Failed"),
            ("Running", Some(dom(S::NoState, R::Unknown)), "Running"),
            ("Succeeded", Some(dom(S::Running, R::Booted)), "Succeeded"),
            ("Failed", None, "Failed"),
        ];
        for (current, d, want) in cases {
            assert_eq!(phase(current, d.as_ref()), want, "{current} with {d:?}");
        }
    }

    #[test]
    fn running_sets_phase_node_and_no_ready() {
        let d = dom(DomainState::Running, StateReason::Booted);
        let out = next(
            &status("Scheduled"),
            &Observed {
                domain: Some(&d),
                ..Default::default()
            },
            "node-a",
            now(),
        );
        assert_eq!(out.phase(), "Running");
        assert_eq!(out.node_name.as_deref(), Some("node-a"));
        assert!(out.condition(vmi_condition_types::READY).is_none());
        assert!(out.condition(vmi_condition_types::PAUSED).is_none());
    }

    #[test]
    fn running_records_its_transition_time_once() {
        let d = dom(DomainState::Running, StateReason::Booted);
        let obs = Observed {
            domain: Some(&d),
            ..Default::default()
        };
        let s = next(&status("Scheduled"), &obs, "n1", now());
        let running: Vec<_> = s
            .phase_transition_timestamps
            .iter()
            .filter(|p| p.phase.as_deref() == Some("Running"))
            .collect();
        assert_eq!(running.len(), 1);
        let again = next(&s, &obs, "n1", now());
        assert_eq!(
            again.phase_transition_timestamps.len(),
            s.phase_transition_timestamps.len()
        );
    }

    #[test]
    fn node_name_is_kept() {
        let mut s = status("Scheduled");
        s.node_name = Some("node-b".into());
        let out = next(&s, &Observed::default(), "node-a", now());
        assert_eq!(out.node_name.as_deref(), Some("node-b"));
    }

    #[test]
    fn paused_by_user_and_back() {
        let d = dom(DomainState::Paused, StateReason::User);
        let out = next(
            &status("Running"),
            &Observed {
                domain: Some(&d),
                ..Default::default()
            },
            "n",
            now(),
        );
        let c = out.condition(vmi_condition_types::PAUSED).unwrap();
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some(PAUSED_BY_USER));
        let d = dom(DomainState::Running, StateReason::Unpaused);
        let out = next(
            &out,
            &Observed {
                domain: Some(&d),
                ..Default::default()
            },
            "n",
            now(),
        );
        assert!(out.condition(vmi_condition_types::PAUSED).is_none());
    }

    #[test]
    fn io_error_pause_and_starting_up() {
        let d = dom(DomainState::Paused, StateReason::IoError);
        let obs = Observed {
            domain: Some(&d),
            ..Default::default()
        };
        let out = next(&status("Running"), &obs, "n", now());
        assert_eq!(
            out.condition(vmi_condition_types::PAUSED)
                .and_then(|c| c.reason.as_deref()),
            Some(PAUSED_IO_ERROR)
        );
        let d = dom(DomainState::Paused, StateReason::StartingUp);
        let obs = Observed {
            domain: Some(&d),
            ..Default::default()
        };
        let out = next(&status("Scheduled"), &obs, "n", now());
        assert!(out.condition(vmi_condition_types::PAUSED).is_none());
    }

    #[test]
    fn stopped_domain_is_not_ready_and_transition_time_is_stable() {
        let d = dom(DomainState::Shutoff, StateReason::Shutdown);
        let obs = Observed {
            domain: Some(&d),
            ..Default::default()
        };
        let out = next(&status("Running"), &obs, "n", now());
        assert_eq!(out.phase(), "Succeeded");
        let c = out.condition(vmi_condition_types::READY).unwrap().clone();
        assert_eq!(c.status, "False");
        assert_eq!(
            c.reason.as_deref(),
            Some(vmi_condition_reasons::GUEST_NOT_RUNNING)
        );
        let later = Timestamp::from_second(1_700_000_100).unwrap();
        let again = next(&out, &obs, "n", later);
        assert_eq!(again.condition(vmi_condition_types::READY), Some(&c));
    }

    #[test]
    fn software_emulation_from_info() {
        let info = InfoResponse {
            emulation: true,
            emulation_reason: "/dev/kvm does not exist".into(),
            ..Default::default()
        };
        let obs = Observed {
            info: Some(&info),
            ..Default::default()
        };
        let out = next(&status("Scheduled"), &obs, "n", now());
        let c = out
            .condition(vmi_condition_types::SOFTWARE_EMULATION)
            .unwrap();
        assert_eq!(c.status, "True");
        assert_eq!(c.message.as_deref(), Some("/dev/kvm does not exist"));
        let kvm = InfoResponse::default();
        let obs = Observed {
            info: Some(&kvm),
            ..Default::default()
        };
        let out = next(&out, &obs, "n", now());
        assert!(
            out.condition(vmi_condition_types::SOFTWARE_EMULATION)
                .is_none()
        );
        // Unknown info leaves it as it was.
        let mut s = status("Running");
        s.conditions.push(condition(
            vmi_condition_types::SOFTWARE_EMULATION,
            "True",
            SOFTWARE_EMULATION_REASON,
            "",
            &Time(now()),
        ));
        let out = next(&s, &Observed::default(), "n", now());
        assert!(
            out.condition(vmi_condition_types::SOFTWARE_EMULATION)
                .is_some()
        );
    }

    fn running_with_interface() -> DomainStatus {
        let mut d = dom(DomainState::Running, StateReason::Booted);
        d.interfaces.push(InterfaceStatus {
            name: "default".into(),
            mac: "52:54:00:aa:bb:cc".into(),
            ips: vec!["10.244.0.7".into()],
            binding: "masquerade".into(),
            pod_interface: "eth0".into(),
            tap: "tap0".into(),
            guest_ip: "10.0.2.2".into(),
        });
        d
    }

    #[test]
    fn access_credentials_condition_follows_the_launcher() {
        use launcher_proto::v1::AccessCredentialStatus;
        let mut d = dom(DomainState::Running, StateReason::Booted);
        let obs = |d: &DomainStatus| {
            next(
                &status("Running"),
                &Observed {
                    domain: Some(d),
                    ..Default::default()
                },
                "n",
                now(),
            )
        };
        // No guest-agent credentials: no condition.
        let none = obs(&d);
        assert!(
            none.condition(vmi_condition_types::ACCESS_CREDENTIALS_SYNCHRONIZED)
                .is_none()
        );
        d.access_credentials = Some(AccessCredentialStatus {
            synchronized: false,
            message: "guest agent: no such user".into(),
        });
        let failed = obs(&d);
        let c = failed
            .condition(vmi_condition_types::ACCESS_CREDENTIALS_SYNCHRONIZED)
            .expect("condition");
        assert_eq!(
            (c.status.as_str(), c.message.as_deref()),
            ("False", Some("guest agent: no such user"))
        );
        d.access_credentials = Some(AccessCredentialStatus {
            synchronized: true,
            message: String::new(),
        });
        let ok = obs(&d);
        let c = ok
            .condition(vmi_condition_types::ACCESS_CREDENTIALS_SYNCHRONIZED)
            .expect("condition");
        assert_eq!((c.status.as_str(), c.message.as_deref()), ("True", None));
    }

    #[test]
    fn interfaces_from_domain() {
        let d = running_with_interface();
        let obs = Observed {
            domain: Some(&d),
            ..Default::default()
        };
        let out = next(&status("Scheduled"), &obs, "n", now());
        assert_eq!(out.interfaces.len(), 1);
        let i = &out.interfaces[0];
        assert_eq!(i.name.as_deref(), Some("default"));
        assert_eq!(i.mac.as_deref(), Some("52:54:00:aa:bb:cc"));
        assert_eq!(i.ip_address.as_deref(), Some("10.244.0.7"));
        assert_eq!(i.ip_addresses, vec!["10.244.0.7".to_string()]);
        assert_eq!(i.pod_interface_name.as_deref(), Some("eth0"));
        assert_eq!(i.info_source.as_deref(), Some("domain"));
        assert!(i.interface_name.is_none());
        // Once the domain stops, the last interfaces stay.
        let stopped = dom(DomainState::Shutoff, StateReason::Shutdown);
        let obs = Observed {
            domain: Some(&stopped),
            ..Default::default()
        };
        let after = next(&out, &obs, "n", now());
        assert_eq!(after.interfaces, out.interfaces);
    }

    #[test]
    fn subresource_bodies_from_the_agent() {
        use launcher_proto::v1::{
            GuestAgentCommand, GuestFilesystem, GuestFilesystemDisk, GuestUser,
        };
        let g = GuestInfo {
            agent_version: "7.2.22".into(),
            hostname: "testvm".into(),
            os_id: "kubevirt-rs-guest".into(),
            os_name: "kubevirt-rs test guest".into(),
            os_pretty_name: "kubevirt-rs test guest (abc)".into(),
            os_version_id: "abc".into(),
            machine: "x86_64".into(),
            supported_commands: vec![GuestAgentCommand {
                name: "guest-ping".into(),
                enabled: true,
            }],
            ..Default::default()
        };
        let body = serde_json::to_value(guest_agent_info(&g)).expect("json");
        assert_eq!(body["guestAgentVersion"], "7.2.22");
        assert_eq!(body["os"]["prettyName"], "kubevirt-rs test guest (abc)");
        assert_eq!(body["os"]["versionId"], "abc");
        assert_eq!(body["os"]["machine"], "x86_64");
        assert_eq!(body["supportedCommands"][0]["name"], "guest-ping");
        let users = guest_user_list(&GuestUsers {
            users: vec![GuestUser {
                name: "root".into(),
                login_time: 12.5,
                ..Default::default()
            }],
        });
        assert_eq!(
            serde_json::to_value(users).expect("json"),
            serde_json::json!({"metadata": {}, "items": [{"userName": "root", "loginTime": 12.5}]})
        );
        let fs = guest_filesystem_list(&GuestFilesystems {
            filesystems: vec![GuestFilesystem {
                disk_name: "vda1".into(),
                mount_point: "/".into(),
                r#type: "ext4".into(),
                used_bytes: 10,
                total_bytes: 20,
                disks: vec![GuestFilesystemDisk {
                    serial: String::new(),
                    bus_type: "virtio".into(),
                }],
            }],
        });
        let fs = serde_json::to_value(fs).expect("json");
        assert_eq!(fs["items"][0]["fileSystemType"], "ext4");
        assert_eq!(fs["items"][0]["disk"][0]["busType"], "virtio");
    }

    #[test]
    fn agent_connected_guest_os_and_interface_merge() {
        let d = running_with_interface();
        let g = GuestInfo {
            agent_version: "8.1".into(),
            os_id: "alpine".into(),
            os_name: "Alpine Linux".into(),
            os_version: "3.20".into(),
            kernel_release: "6.6.1".into(),
            interfaces: vec![GuestInterface {
                name: "eth0".into(),
                mac: "52:54:00:AA:BB:CC".into(),
                ips: vec!["10.0.2.2".into(), "10.244.0.7".into()],
            }],
            ..Default::default()
        };
        let obs = Observed {
            domain: Some(&d),
            guest: Some(&g),
            ..Default::default()
        };
        let out = next(&status("Running"), &obs, "n", now());
        assert!(out.condition_is_true(vmi_condition_types::AGENT_CONNECTED));
        let os = out.guest_os_info.as_ref().unwrap();
        assert_eq!(os.id.as_deref(), Some("alpine"));
        assert_eq!(os.pretty_name.as_deref(), Some("Alpine Linux 3.20"));
        assert_eq!(os.kernel_release.as_deref(), Some("6.6.1"));
        let i = &out.interfaces[0];
        assert_eq!(i.interface_name.as_deref(), Some("eth0"));
        assert_eq!(i.info_source.as_deref(), Some("domain, guest-agent"));
        assert_eq!(
            i.ip_addresses,
            vec!["10.244.0.7".to_string(), "10.0.2.2".to_string()]
        );
        // The agent goes away: the condition goes too.
        let obs = Observed {
            domain: Some(&d),
            ..Default::default()
        };
        let out = next(&out, &obs, "n", now());
        assert!(
            out.condition(vmi_condition_types::AGENT_CONNECTED)
                .is_none()
        );
        assert_eq!(out.interfaces[0].info_source.as_deref(), Some("domain"));
    }

    #[test]
    fn a_gone_launchers_exit_code_gives_the_outcome() {
        let outcome = |code| phase("Running", Some(&domain_after_exit(code)));
        assert_eq!(outcome(Some(0)), "Succeeded");
        assert_eq!(outcome(Some(3)), "Succeeded");
        assert_eq!(outcome(Some(2)), "Failed");
        assert_eq!(outcome(Some(1)), "Failed");
        assert_eq!(outcome(Some(137)), "Failed");
        assert_eq!(outcome(None), "Failed");
    }
}
