//! Pod status from container states, as the kubelet reports it: phase, conditions (with their
//! reasons and messages) and container statuses. Pure: values in, values out.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// What the kubelet knows about one container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerInfo {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerInfo {
    pub fn to_status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self.container_id.clone(),
            state: Some(self.state.clone()),
            last_state: Some(self.last_state.clone().unwrap_or_default()),
            restart_count: self.restart_count,
            ready: self.ready,
            started: Some(self.started),
            ..ContainerStatus::default()
        }
    }

    fn exited_ok(&self) -> bool {
        self.state
            .terminated
            .as_ref()
            .is_some_and(|t| t.exit_code == 0)
    }
}

/// The pod phase from its containers (Kubernetes' rules).
pub fn phase(
    restart_policy: &str,
    init: &[ContainerInfo],
    containers: &[ContainerInfo],
) -> &'static str {
    if !init.iter().all(ContainerInfo::exited_ok) {
        let failed_for_good = restart_policy == "Never"
            && init.iter().any(|c| {
                c.state
                    .terminated
                    .as_ref()
                    .is_some_and(|t| t.exit_code != 0)
            });
        return if failed_for_good { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded, mut unknown) = (0, 0, 0, 0, 0);
    for c in containers {
        if c.state.running.is_some() {
            running += 1;
        } else if let Some(t) = &c.state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if c.state.waiting.is_some() {
            if c.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

/// Everything the pod status is computed from.
#[derive(Clone)]
pub struct StatusInput<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [ContainerInfo],
    pub containers: &'a [ContainerInfo],
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Timestamp>,
    /// A phase decided elsewhere (e.g. Failed with a reason for a pod that cannot run).
    pub phase_override: Option<(&'a str, String, String)>,
    pub old: Option<&'a PodStatus>,
    pub now: Timestamp,
}

fn cond(
    old: Option<&PodStatus>,
    now: Timestamp,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let prev = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_));
    let since = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: since,
        last_probe_time: None,
        observed_generation: None,
    }
}

fn names(cs: &[&ContainerInfo]) -> String {
    format!(
        "[{}]",
        cs.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The whole pod status.
pub fn pod_status(i: &StatusInput<'_>) -> PodStatus {
    let (phase, reason, message) = match &i.phase_override {
        Some((p, r, m)) => (p.to_string(), Some(r.clone()), Some(m.clone())),
        None => (
            phase(i.restart_policy, i.init, i.containers).to_string(),
            None,
            None,
        ),
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let incomplete: Vec<&ContainerInfo> = i.init.iter().filter(|c| !c.exited_ok()).collect();
    let unready: Vec<&ContainerInfo> = i.containers.iter().filter(|c| !c.ready).collect();
    let mut conditions = vec![cond(
        i.old,
        i.now,
        "PodReadyToStartContainers",
        i.sandbox_ready && !terminal,
        None,
        None,
    )];
    conditions.push(if incomplete.is_empty() {
        cond(i.old, i.now, "Initialized", true, None, None)
    } else {
        cond(
            i.old,
            i.now,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                names(&incomplete)
            )),
        )
    });
    for type_ in ["Ready", "ContainersReady"] {
        conditions.push(if terminal {
            cond(i.old, i.now, type_, false, Some("PodCompleted"), None)
        } else if unready.is_empty() {
            cond(i.old, i.now, type_, true, None, None)
        } else {
            cond(
                i.old,
                i.now,
                type_,
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: {}",
                    names(&unready)
                )),
            )
        });
    }
    // The scheduler's condition stays as it is.
    if let Some(s) = i
        .old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(s.clone());
    }
    PodStatus {
        phase: Some(phase),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: Some(i.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: i.host_ip.clone(),
        }]),
        pod_ip: i.pod_ip.clone(),
        pod_ips: i.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: i.start_time.map(Time),
        init_container_statuses: (!i.init.is_empty())
            .then(|| i.init.iter().map(ContainerInfo::to_status).collect()),
        container_statuses: Some(i.containers.iter().map(ContainerInfo::to_status).collect()),
        qos_class: i.old.and_then(|s| s.qos_class.clone()),
        ..PodStatus::default()
    }
}

/// Status with the volatile parts removed, to tell whether an update is needed.
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    fn waiting(name: &str, reason: &str) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }
    fn running(name: &str, ready: bool) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: ContainerState {
                running: Some(ContainerStateRunning { started_at: None }),
                ..Default::default()
            },
            ready,
            started: true,
            ..Default::default()
        }
    }
    fn exited(name: &str, code: i32) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase("Always", &[], &[waiting("a", "ContainerCreating")]),
            "Pending"
        );
        assert_eq!(phase("Always", &[], &[running("a", false)]), "Running");
        assert_eq!(phase("Never", &[], &[exited("a", 0)]), "Succeeded");
        assert_eq!(
            phase("Never", &[], &[exited("a", 0), exited("b", 3)]),
            "Failed"
        );
        assert_eq!(phase("OnFailure", &[], &[exited("a", 3)]), "Running");
        assert_eq!(phase("OnFailure", &[], &[exited("a", 0)]), "Succeeded");
        assert_eq!(phase("Always", &[], &[exited("a", 0)]), "Running");
        let mut backing_off = waiting("a", "CrashLoopBackOff");
        backing_off.last_state = Some(exited("a", 1).state);
        assert_eq!(phase("Always", &[], &[backing_off]), "Running");
        assert_eq!(
            phase(
                "Always",
                &[running("i", false)],
                &[waiting("a", "PodInitializing")]
            ),
            "Pending"
        );
        assert_eq!(
            phase(
                "Never",
                &[exited("i", 1)],
                &[waiting("a", "PodInitializing")]
            ),
            "Failed"
        );
        assert_eq!(
            phase("Always", &[exited("i", 0)], &[running("a", true)]),
            "Running"
        );
    }

    #[test]
    fn conditions_and_messages() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let containers = [running("a", true), running("b", false)];
        let input = StatusInput {
            restart_policy: "Always",
            init: &[],
            containers: &containers,
            sandbox_ready: true,
            pod_ip: Some("10.244.1.2".into()),
            host_ip: "127.0.0.1".into(),
            start_time: Some(now),
            phase_override: None,
            old: None,
            now,
        };
        let s = pod_status(&input);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.244.1.2");
        // A later status keeps the transition time of unchanged conditions.
        let later = Timestamp::from_second(1_700_000_100).unwrap();
        let s2 = pod_status(&StatusInput {
            old: Some(&s),
            now: later,
            ..input.clone()
        });
        let init = s2
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(init.last_transition_time, Some(Time(now)));
        // Terminal pods are not ready, reason PodCompleted.
        let done = [exited("a", 0)];
        let s3 = pod_status(&StatusInput {
            restart_policy: "Never",
            containers: &done,
            old: Some(&s2),
            now: later,
            ..input
        });
        assert_eq!(s3.phase.as_deref(), Some("Succeeded"));
        let ready = s3
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(ready.last_transition_time, Some(Time(now)));
    }
}
