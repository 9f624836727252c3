//! Condition-list helpers shared by the VM and VMI status logic (upstream's condition managers):
//! an update replaces a condition only when its status or reason changes, so transition times
//! stay put while nothing changes.

use k8s_openapi::api::core::v1::PodCondition;
use kubevirt_api::v1::{VirtualMachineCondition, VirtualMachineInstanceCondition};

/// What both condition shapes have in common.
pub trait Condition: Clone {
    fn type_(&self) -> &str;
    fn status(&self) -> &str;
    fn reason(&self) -> Option<&str>;
}

impl Condition for VirtualMachineCondition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

impl Condition for VirtualMachineInstanceCondition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// Adds `cond`, or replaces the condition of its type when status or reason differ.
pub fn update<C: Condition>(list: &mut Vec<C>, cond: C) {
    if let Some(existing) = list.iter_mut().find(|c| c.type_() == cond.type_()) {
        if existing.status() != cond.status() || existing.reason() != cond.reason() {
            *existing = cond;
        }
    } else {
        list.push(cond);
    }
}

/// Removes the condition of the given type.
pub fn remove<C: Condition>(list: &mut Vec<C>, type_: &str) {
    list.retain(|c| c.type_() != type_);
}

pub fn get<'a, C: Condition>(list: &'a [C], type_: &str) -> Option<&'a C> {
    list.iter().find(|c| c.type_() == type_)
}

/// Whether the condition of `type_` has `status` (and `reason`, when given).
pub fn has<C: Condition>(list: &[C], type_: &str, status: &str, reason: Option<&str>) -> bool {
    get(list, type_)
        .is_some_and(|c| c.status() == status && reason.is_none_or(|r| c.reason() == Some(r)))
}

/// A pod condition as an instance condition (same fields).
pub fn from_pod(c: &PodCondition) -> VirtualMachineInstanceCondition {
    VirtualMachineInstanceCondition {
        last_probe_time: c.last_probe_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
        message: c.message.clone(),
        reason: c.reason.clone(),
        status: c.status.clone(),
        type_: c.type_.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &str, s: &str, r: Option<&str>, m: &str) -> VirtualMachineCondition {
        VirtualMachineCondition {
            type_: t.into(),
            status: s.into(),
            reason: r.map(Into::into),
            message: Some(m.into()),
            ..Default::default()
        }
    }

    #[test]
    fn update_keeps_unchanged_conditions() {
        let mut list = vec![c("Ready", "False", Some("A"), "old")];
        update(&mut list, c("Ready", "False", Some("A"), "new"));
        assert_eq!(list[0].message.as_deref(), Some("old"));
        update(&mut list, c("Ready", "True", None, "new"));
        assert_eq!(list[0].status, "True");
        update(&mut list, c("Paused", "True", None, ""));
        assert_eq!(list.len(), 2);
        assert!(has(&list, "Paused", "True", None));
        assert!(!has(&list, "Ready", "True", Some("A")));
        remove(&mut list, "Ready");
        assert_eq!(list.len(), 1);
    }
}
