//! The VM lifecycle verbs as request values (pure): which subresource, which body, and the
//! wording upstream uses when it fails.

use serde_json::{Value, json};

use crate::Error;
use crate::target::{Kind, subresource_path};

/// One PUT to a subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub path: String,
    pub body: Value,
    /// Prefix of the error message when the request fails.
    pub failure: String,
    /// Printed when it succeeds.
    pub success: String,
}

/// upstream's `dryRun` option list.
fn dry_run(on: bool) -> Value {
    if on { json!(["All"]) } else { json!([]) }
}

/// `--force` and `--grace-period` only make sense together.
fn force_pair(force: bool, grace: Option<i64>) -> Result<(), Error> {
    if force != grace.is_some() {
        return Err(Error::Usage(
            "Must both use --force=true and set --grace-period.".into(),
        ));
    }
    Ok(())
}

pub fn start(namespace: &str, name: &str, paused: bool, dry: bool) -> Request {
    Request {
        path: subresource_path(Kind::Vm, namespace, name, "start"),
        body: json!({"paused": paused, "dryRun": dry_run(dry)}),
        failure: "Error starting VirtualMachine".into(),
        success: format!("VM {name} was scheduled to start"),
    }
}

pub fn stop(
    namespace: &str,
    name: &str,
    force: bool,
    grace: Option<i64>,
    dry: bool,
) -> Result<Request, Error> {
    force_pair(force, grace)?;
    let mut body = json!({"dryRun": dry_run(dry)});
    if let Some(g) = grace {
        body["gracePeriod"] = json!(g);
    }
    Ok(Request {
        path: subresource_path(Kind::Vm, namespace, name, "stop"),
        body,
        failure: if force {
            "error force stopping VirtualMachine:".into()
        } else {
            "error stopping VirtualMachine".into()
        },
        success: format!("VM {name} was scheduled to stop"),
    })
}

pub fn restart(
    namespace: &str,
    name: &str,
    force: bool,
    grace: Option<i64>,
    dry: bool,
) -> Result<Request, Error> {
    force_pair(force, grace)?;
    let mut body = json!({"dryRun": dry_run(dry)});
    if let Some(g) = grace {
        body["gracePeriodSeconds"] = json!(g);
    }
    Ok(Request {
        path: subresource_path(Kind::Vm, namespace, name, "restart"),
        body,
        failure: if force {
            "error force restarting VirtualMachine:".into()
        } else {
            "error restarting VirtualMachine".into()
        },
        success: format!("VM {name} was scheduled to restart"),
    })
}

/// `migrate VM`: asks virt-api to create a migration of the VM's instance; `added` are node
/// labels the target must carry on top of the instance's own selector.
pub fn migrate(namespace: &str, name: &str, added: &[String], dry: bool) -> Result<Request, Error> {
    let mut selector = serde_json::Map::new();
    for kv in added {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::Usage(format!(
                "--addedNodeSelector: {kv:?} is not of the form key=value"
            )));
        };
        selector.insert(k.into(), json!(v));
    }
    let mut body = json!({"dryRun": dry_run(dry)});
    if !selector.is_empty() {
        body["addedNodeSelector"] = Value::Object(selector);
    }
    Ok(Request {
        path: subresource_path(Kind::Vm, namespace, name, "migrate"),
        body,
        failure: "Error migrating VirtualMachine".into(),
        success: format!("VM {name} was scheduled to migrate"),
    })
}

/// `pause vm|vmi NAME` / `unpause vm|vmi NAME`: both act on the instance (a VM's instance has
/// the VM's name); `pause` is true for pause.
pub fn pause(namespace: &str, name: &str, pause: bool, dry: bool) -> Request {
    let (verb, gerund) = if pause {
        ("pause", "pausing")
    } else {
        ("unpause", "unpausing")
    };
    let body = if dry {
        json!({"dryRun": ["All"]})
    } else {
        json!({})
    };
    Request {
        path: subresource_path(Kind::Vmi, namespace, name, verb),
        body,
        failure: format!("Error {gerund} VirtualMachineInstance {name}:"),
        success: format!("VMI {name} was scheduled to {verb}"),
    }
}

/// `soft-reboot VMI`: the guest reboots through its agent, or ACPI, in the same QEMU.
pub fn soft_reboot(namespace: &str, name: &str) -> Request {
    Request {
        path: subresource_path(Kind::Vmi, namespace, name, "softreboot"),
        body: json!({}),
        failure: format!("Error soft rebooting VirtualMachineInstance {name}:"),
        success: format!("VMI {name} was scheduled to soft-reboot"),
    }
}

/// The first argument of pause/unpause.
pub fn pause_kind(arg: &str) -> Result<Kind, Error> {
    Kind::parse(arg).map_err(|_| {
        Error::Usage(format!(
            "unsupported resource type '{arg}': use vm or vmi (virtualmachine, virtualmachineinstance)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_reboot_request() {
        let r = soft_reboot("ns", "v");
        assert_eq!(
            r.path,
            "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/v/softreboot"
        );
        assert_eq!(r.success, "VMI v was scheduled to soft-reboot");
    }

    #[test]
    fn migrate_body() {
        let r = migrate("ns", "v", &["zone=b".into()], true).unwrap();
        assert_eq!(
            r.path,
            "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachines/v/migrate"
        );
        assert_eq!(
            r.body,
            json!({"dryRun": ["All"], "addedNodeSelector": {"zone": "b"}})
        );
        assert_eq!(r.success, "VM v was scheduled to migrate");
        assert!(matches!(
            migrate("ns", "v", &["zone".into()], false),
            Err(Error::Usage(m)) if m.contains("--addedNodeSelector")
        ));
    }

    #[test]
    fn bodies() {
        let r = start("ns", "v", true, false);
        assert_eq!(
            r.path,
            "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachines/v/start"
        );
        assert_eq!(r.body, json!({"paused": true, "dryRun": []}));
        let r = stop("ns", "v", true, Some(0), true).expect("valid");
        assert_eq!(r.body, json!({"gracePeriod": 0, "dryRun": ["All"]}));
        assert!(stop("ns", "v", true, None, false).is_err());
        assert!(restart("ns", "v", false, Some(3), false).is_err());
        let r = restart("ns", "v", true, Some(0), false).expect("valid");
        assert_eq!(r.body, json!({"gracePeriodSeconds": 0, "dryRun": []}));
        let r = pause("ns", "v", true, false);
        assert_eq!(
            r.path,
            "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/v/pause"
        );
        assert_eq!(r.body, json!({}));
        assert_eq!(r.success, "VMI v was scheduled to pause");
        let r = pause("ns", "v", false, true);
        assert!(r.path.ends_with("/v/unpause"));
        assert_eq!(r.body, json!({"dryRun": ["All"]}));
        assert!(pause_kind("VMI").is_ok());
        assert!(pause_kind("pod").is_err());
    }
}
