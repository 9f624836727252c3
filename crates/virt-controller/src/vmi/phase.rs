//! An instance's phase and conditions from its launcher pod, as upstream's VMI controller
//! derives them: Pending -> Scheduling (pod exists) -> Scheduled (pod running; virt-handler
//! takes over and moves it to Running) and Failed when the pod fails or vanishes early; the
//! Ready condition mirrors the pod's; unschedulable pods and image pull errors show as
//! conditions; the finalizer goes once the instance is final and its pods are gone.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kubevirt_api::v1::{
    VirtualMachineInstance, VirtualMachineInstanceCondition,
    VirtualMachineInstancePhaseTransitionTimestamp, migration_transports, vmi_condition_reasons,
    vmi_condition_types, vmi_phases,
};

use super::pod::COMPUTE_CONTAINER;
use crate::conditions;
use crate::names::{self, reasons};
use crate::vm::SyncError;

/// Whether `pod` is controlled by `vmi` (by UID).
pub fn is_owned_by(pod: &Pod, vmi: &VirtualMachineInstance) -> bool {
    let uid = vmi.metadata.uid.as_deref();
    pod.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The instance's current pod: the newest it controls, on its node once it has one.
pub fn current_pod<'a>(vmi: &VirtualMachineInstance, pods: &[&'a Pod]) -> Option<&'a Pod> {
    let node = vmi
        .status
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty());
    pods.iter()
        .copied()
        .filter(|p| is_owned_by(p, vmi))
        .filter(|p| {
            node.is_none_or(|n| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n))
        })
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn compute_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == COMPUTE_CONTAINER)
}

/// Succeeded or Failed.
pub fn pod_is_down(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// Down, its compute container terminated, or being deleted.
pub fn pod_down_or_going_down(pod: &Pod) -> bool {
    pod_is_down(pod)
        || compute_status(pod)
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.terminated.is_some())
        || pod.metadata.deletion_timestamp.is_some()
}

/// Ready to hand over to virt-handler: Running, compute started, every other container ready.
pub fn pod_ready(pod: &Pod) -> bool {
    if pod_down_or_going_down(pod) {
        return false;
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[]);
    for c in statuses {
        let running = c.state.as_ref().is_some_and(|s| s.running.is_some());
        if c.name == COMPUTE_CONTAINER || c.name == "istio-proxy" {
            if !running {
                return false;
            }
        } else if !c.ready {
            return false;
        }
    }
    pod_phase(pod) == "Running"
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// An image pull error of any container, as a sync error (ErrImagePull / ImagePullBackOff).
pub fn image_error(pod: &Pod) -> Option<SyncError> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in all {
        let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.as_deref().unwrap_or("");
        if reason == reasons::ERR_IMAGE_PULL || reason == reasons::IMAGE_PULL_BACK_OFF {
            return Some(SyncError::new(
                reason,
                w.message.clone().unwrap_or_default(),
            ));
        }
    }
    None
}

/// What to do about the pods of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAction {
    Nothing,
    /// Render and create the launcher pod.
    Create,
    /// Delete these pods (the instance is being deleted).
    Delete(Vec<String>),
}

/// Upstream's sync step: delete the pods of a deleted instance, create the pod of an
/// unprocessed one, otherwise leave them be.
pub fn pod_action(vmi: &VirtualMachineInstance, owned: &[&Pod]) -> PodAction {
    if vmi.metadata.deletion_timestamp.is_some() {
        let names: Vec<String> = owned
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() || pod_is_down(p))
            .map(|p| p.name_any())
            .collect();
        return if names.is_empty() {
            PodAction::Nothing
        } else {
            PodAction::Delete(names)
        };
    }
    let phase = vmi.status.as_ref().map(|s| s.phase()).unwrap_or("");
    if vmi_phases::is_final(phase) || current_pod(vmi, owned).is_some() {
        return PodAction::Nothing;
    }
    if phase.is_empty() || phase == vmi_phases::PENDING {
        PodAction::Create
    } else {
        PodAction::Nothing
    }
}

/// The `kubevirt.io/virtual-machine-unpaused` pod condition (the pod's readiness gate) when it
/// must change: False while the instance is paused, True otherwise.
pub fn unpaused_condition(
    vmi: &VirtualMachineInstance,
    pod: &Pod,
    now: Timestamp,
) -> Option<PodCondition> {
    let paused = vmi
        .status
        .as_ref()
        .is_some_and(|s| s.condition_is_true(vmi_condition_types::PAUSED));
    let current = pod_condition(pod, names::UNPAUSED_POD_CONDITION).map(|c| c.status.as_str());
    let (status, reason, message) = if paused {
        if current != Some("True") {
            return None;
        }
        ("False", "Paused", "the virtual machine is paused")
    } else {
        if current == Some("True") {
            return None;
        }
        ("True", "NotPaused", "the virtual machine is not paused")
    };
    Some(PodCondition {
        type_: names::UNPAUSED_POD_CONDITION.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    })
}

fn ready_condition(
    vmi: &VirtualMachineInstance,
    pod: Option<&Pod>,
    now: &Time,
) -> VirtualMachineInstanceCondition {
    let not_ready = |reason: &str, message: &str| VirtualMachineInstanceCondition {
        type_: vmi_condition_types::READY.into(),
        status: "False".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let phase = vmi.status.as_ref().map(|s| s.phase()).unwrap_or("");
    match pod {
        None => not_ready(
            vmi_condition_reasons::POD_NOT_EXISTS,
            "virt-launcher pod has not yet been scheduled",
        ),
        Some(p) if pod_down_or_going_down(p) => not_ready(
            vmi_condition_reasons::POD_TERMINATING,
            "virt-launcher pod is terminating",
        ),
        Some(_) if phase != vmi_phases::RUNNING => not_ready(
            vmi_condition_reasons::GUEST_NOT_RUNNING,
            "Guest VM is not reported as running",
        ),
        Some(p) => match pod_condition(p, "Ready") {
            Some(c) => conditions::from_pod(c),
            None => not_ready(
                vmi_condition_reasons::POD_CONDITION_MISSING,
                "virt-launcher pod is missing the Ready condition",
            ),
        },
    }
}

/// Facts about the world the status depends on, besides the instance and its pods.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// The error of this reconcile's own step (pod creation, rendering), if any.
    pub sync_error: Option<&'a SyncError>,
    /// The configured launcher image (instances on another are labelled outdated).
    pub launcher_image: &'a str,
    /// Whether the VM that controls the instance still exists.
    pub owner_vm_exists: bool,
}

/// The instance as it should be written back: status, finalizers and labels updated.
pub fn next(
    vmi: &VirtualMachineInstance,
    owned: &[&Pod],
    ctx: &Context<'_>,
    now: Timestamp,
) -> VirtualMachineInstance {
    let mut out = vmi.clone();
    let t = Time(now);
    let pod = current_pod(vmi, owned);
    let phase = vmi
        .status
        .as_ref()
        .map(|s| s.phase())
        .unwrap_or("")
        .to_string();
    let mut sync_error = ctx.sync_error.cloned();
    {
        let finalizers = out.metadata.finalizers.get_or_insert_with(Vec::new);
        if let Some(i) = finalizers
            .iter()
            .position(|f| f == names::DEPRECATED_VMI_FINALIZER)
        {
            finalizers.remove(i);
            if !finalizers.iter().any(|f| f == names::VMI_FINALIZER) {
                finalizers.push(names::VMI_FINALIZER.into());
            }
        }
    }
    let status = out.status.get_or_insert_with(Default::default);
    if !owned.is_empty() || !status.active_pods.is_empty() {
        status.active_pods = owned
            .iter()
            .map(|p| {
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                (p.metadata.uid.clone().unwrap_or_default(), node)
            })
            .collect();
    }
    conditions::update(&mut status.conditions, ready_condition(vmi, pod, &t));
    let mut labels = out.metadata.labels.take().unwrap_or_default();
    if let Some(p) = pod {
        let image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == COMPUTE_CONTAINER))
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        if !image.is_empty() && image != ctx.launcher_image {
            labels.insert(names::OUTDATED_LAUNCHER_IMAGE_LABEL.into(), String::new());
        } else {
            labels.remove(names::OUTDATED_LAUNCHER_IMAGE_LABEL);
        }
        status.launcher_container_image_version = (!image.is_empty()).then_some(image);
    }
    let deleting = vmi.metadata.deletion_timestamp.is_some();
    let pod_scheduled = "PodScheduled";
    match phase.as_str() {
        "" | vmi_phases::PENDING => {
            if pod.is_some() {
                status.phase = Some(vmi_phases::SCHEDULING.into());
            } else if deleting {
                status.phase = Some(vmi_phases::FAILED.into());
            } else {
                status.phase = Some(vmi_phases::PENDING.into());
                if let Some(e) = sync_error
                    .as_ref()
                    .filter(|e| e.reason == reasons::FAILED_PVC_NOT_FOUND)
                {
                    conditions::remove(&mut status.conditions, pod_scheduled);
                    status.conditions.push(VirtualMachineInstanceCondition {
                        type_: pod_scheduled.into(),
                        status: "False".into(),
                        reason: Some(reasons::UNSCHEDULABLE.into()),
                        message: Some(e.message.clone()),
                        ..Default::default()
                    });
                }
            }
        }
        vmi_phases::SCHEDULING => {
            conditions::remove(&mut status.conditions, vmi_condition_types::PROVISIONING);
            match pod {
                Some(p) => {
                    status.qos_class = p.status.as_ref().and_then(|s| s.qos_class.clone());
                    match pod_condition(p, pod_scheduled).filter(|c| c.status == "False") {
                        Some(c) => {
                            if conditions::get(&status.conditions, pod_scheduled).is_none() {
                                status.conditions.push(conditions::from_pod(c));
                            }
                        }
                        None => conditions::remove(&mut status.conditions, pod_scheduled),
                    }
                    if let Some(e) = image_error(p) {
                        sync_error = Some(e);
                    }
                    if pod_ready(p) && !deleting {
                        let node = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default();
                        status.phase = Some(vmi_phases::SCHEDULED.into());
                        labels.insert(names::NODE_NAME_LABEL.into(), node.clone());
                        status.node_name = Some(node);
                        status.migration_transport = Some(migration_transports::UNIX.into());
                    } else if pod_down_or_going_down(p) {
                        status.phase = Some(vmi_phases::FAILED.into());
                    }
                }
                None => status.phase = Some(vmi_phases::FAILED.into()),
            }
        }
        vmi_phases::SCHEDULED | vmi_phases::RUNNING if pod.is_none() => {
            status.phase = Some(vmi_phases::FAILED.into());
        }
        vmi_phases::SUCCEEDED | vmi_phases::FAILED => {
            let finalizers = out.metadata.finalizers.get_or_insert_with(Vec::new);
            if owned.is_empty() {
                finalizers
                    .retain(|f| f != names::VMI_FINALIZER && f != names::DEPRECATED_VMI_FINALIZER);
                labels.remove(names::OUTDATED_LAUNCHER_IMAGE_LABEL);
                status.launcher_container_image_version = None;
            }
            if !ctx.owner_vm_exists {
                finalizers.retain(|f| f != names::VM_CONTROLLER_FINALIZER);
            }
        }
        _ => {}
    }
    let handed_over = matches!(phase.as_str(), vmi_phases::SCHEDULED | vmi_phases::RUNNING);
    if !handed_over {
        match &sync_error {
            Some(e) => {
                if !conditions::has(
                    &status.conditions,
                    vmi_condition_types::SYNCHRONIZED,
                    "False",
                    Some(&e.reason),
                ) {
                    conditions::remove(&mut status.conditions, vmi_condition_types::SYNCHRONIZED);
                    status.conditions.push(VirtualMachineInstanceCondition {
                        type_: vmi_condition_types::SYNCHRONIZED.into(),
                        status: "False".into(),
                        reason: Some(e.reason.clone()),
                        message: Some(e.message.clone()),
                        last_transition_time: Some(t.clone()),
                        last_probe_time: None,
                    });
                }
            }
            None => conditions::remove(&mut status.conditions, vmi_condition_types::SYNCHRONIZED),
        }
    }
    let new_phase = status.phase().to_string();
    if new_phase != phase
        && !status
            .phase_transition_timestamps
            .iter()
            .any(|p| p.phase.as_deref() == Some(new_phase.as_str()))
    {
        status
            .phase_transition_timestamps
            .push(VirtualMachineInstancePhaseTransitionTimestamp {
                phase: Some(new_phase),
                phase_transition_timestamp: Some(t),
            });
    }
    out.metadata.labels = (!labels.is_empty()).then_some(labels);
    if out.metadata.finalizers.as_ref().is_some_and(Vec::is_empty)
        && vmi.metadata.finalizers.is_none()
    {
        out.metadata.finalizers = None;
    }
    out
}

#[cfg(test)]
mod tests;
