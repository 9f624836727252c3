//! `virtctl create instancetype` and `virtctl create preference`: manifests for
//! `instancetype.kubevirt.io/v1beta1` from flags (pure), printed as YAML for `kubectl create -f -`.
//!
//! Both are cluster-wide kinds unless `--namespaced` or `-n` is given; upstream's virtctl
//! behaves the same way, and `-n` also sets the manifest's namespace.

use kubevirt_api::quantity::Amount;
use serde_json::{Value, json};

use crate::Error;
use crate::createvm::{flag_err, params};

const API_VERSION: &str = "instancetype.kubevirt.io/v1beta1";

/// The flags of `create instancetype` (upstream's names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstancetypeOptions {
    /// Resolved by the caller: `--name`, else a generated one.
    pub name: String,
    pub namespace: Option<String>,
    pub namespaced: bool,
    pub cpu: u32,
    pub memory: String,
    /// `--gpu name:N,devicename:D` (repeatable).
    pub gpus: Vec<String>,
    /// `--hostdevice name:N,devicename:D` (repeatable).
    pub host_devices: Vec<String>,
    pub io_threads_policy: Option<String>,
}

/// The flags of `create preference` (upstream's names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreferenceOptions {
    pub name: String,
    pub namespace: Option<String>,
    pub namespaced: bool,
    pub cpu_topology: Option<String>,
    pub machine_type: Option<String>,
    pub volume_storage_class: Option<String>,
}

/// The name prefix upstream gives a generated name for each kind.
pub fn default_name_prefix(instancetype: bool, namespaced: bool) -> &'static str {
    match (instancetype, namespaced) {
        (true, true) => "instancetype",
        (true, false) => "clusterinstancetype",
        (false, true) => "preference",
        (false, false) => "clusterpreference",
    }
}

/// `metadata` and the kind, namespaced or cluster-wide.
fn object(kind: &str, cluster_kind: &str, name: &str, ns: Option<&str>, namespaced: bool) -> Value {
    let namespaced = namespaced || ns.is_some();
    let mut metadata = json!({"name": name});
    if let (true, Some(ns)) = (namespaced, ns) {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": if namespaced { kind } else { cluster_kind },
        "metadata": metadata,
    })
}

/// `name:N,devicename:D` device flags (gpu, hostdevice), both keys required.
fn devices(flag: &str, args: &[String]) -> Result<Vec<Value>, Error> {
    args.iter()
        .map(|arg| {
            let p = params(flag, arg, &["name", "devicename"])?;
            let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
            if get("name").is_empty() {
                return Err(flag_err(flag, "name must be specified"));
            }
            if get("devicename").is_empty() {
                return Err(flag_err(flag, "deviceName must be specified"));
            }
            Ok(json!({"name": get("name"), "deviceName": get("devicename")}))
        })
        .collect()
}

/// The VirtualMachine(Cluster)Instancetype manifest, as JSON.
pub fn instancetype(o: &InstancetypeOptions) -> Result<Value, Error> {
    if o.cpu == 0 {
        return Err(Error::Usage("cpu value must be greater than zero".into()));
    }
    let memory = Amount::parse(&o.memory)
        .map_err(|e| flag_err("memory", format!("\"{}\": {e}", o.memory)))?;
    if memory.is_zero() || memory.is_negative() {
        return Err(flag_err("memory", "memory value must be greater than zero"));
    }
    let mut spec = json!({"cpu": {"guest": o.cpu}, "memory": {"guest": o.memory}});
    let gpus = devices("gpu", &o.gpus)?;
    if !gpus.is_empty() {
        spec["gpus"] = Value::Array(gpus);
    }
    let host_devices = devices("hostdevice", &o.host_devices)?;
    if !host_devices.is_empty() {
        spec["hostDevices"] = Value::Array(host_devices);
    }
    if let Some(policy) = &o.io_threads_policy {
        if policy != "auto" && policy != "shared" {
            return Err(flag_err(
                "iothreadspolicy",
                "IOThread must be of value auto or shared",
            ));
        }
        spec["ioThreadsPolicy"] = json!(policy);
    }
    let mut m = object(
        "VirtualMachineInstancetype",
        "VirtualMachineClusterInstancetype",
        &o.name,
        o.namespace.as_deref(),
        o.namespaced,
    );
    m["spec"] = spec;
    Ok(m)
}

/// The preferred topologies the preference API accepts.
const TOPOLOGIES: [&str; 4] = ["sockets", "cores", "threads", "spread"];

/// The VirtualMachine(Cluster)Preference manifest, as JSON.
pub fn preference(o: &PreferenceOptions) -> Result<Value, Error> {
    let mut spec = serde_json::Map::new();
    if let Some(topology) = &o.cpu_topology {
        if !TOPOLOGIES.contains(&topology.as_str()) {
            return Err(flag_err(
                "cpu-topology",
                "CPU topology must have a value of sockets, cores, threads or spread",
            ));
        }
        spec.insert("cpu".into(), json!({"preferredCPUTopology": topology}));
    }
    if let Some(machine) = &o.machine_type {
        spec.insert("machine".into(), json!({"preferredMachineType": machine}));
    }
    if let Some(class) = &o.volume_storage_class {
        spec.insert(
            "volumes".into(),
            json!({"preferredStorageClassName": class}),
        );
    }
    let mut m = object(
        "VirtualMachinePreference",
        "VirtualMachineClusterPreference",
        &o.name,
        o.namespace.as_deref(),
        o.namespaced,
    );
    m["spec"] = Value::Object(spec);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it() -> InstancetypeOptions {
        InstancetypeOptions {
            name: "small".into(),
            cpu: 2,
            memory: "256Mi".into(),
            ..Default::default()
        }
    }

    #[test]
    fn instancetype_is_cluster_wide_by_default() {
        let m = instancetype(&it()).expect("manifest");
        assert_eq!(m["apiVersion"], API_VERSION);
        assert_eq!(m["kind"], "VirtualMachineClusterInstancetype");
        assert_eq!(m["metadata"], json!({"name": "small"}));
        assert_eq!(
            m["spec"],
            json!({"cpu": {"guest": 2}, "memory": {"guest": "256Mi"}})
        );
    }

    #[test]
    fn namespaced_flag_or_namespace_makes_the_namespaced_kind() {
        let m = instancetype(&InstancetypeOptions {
            namespaced: true,
            ..it()
        })
        .expect("manifest");
        assert_eq!(m["kind"], "VirtualMachineInstancetype");
        assert!(m["metadata"].get("namespace").is_none());
        let m = instancetype(&InstancetypeOptions {
            namespace: Some("team".into()),
            ..it()
        })
        .expect("manifest");
        assert_eq!(m["kind"], "VirtualMachineInstancetype");
        assert_eq!(m["metadata"]["namespace"], "team");
    }

    #[test]
    fn instancetype_devices_and_iothreads() {
        let m = instancetype(&InstancetypeOptions {
            gpus: vec!["name:gpu1,devicename:nvidia.com/TU104GL".into()],
            host_devices: vec!["name:hd1,devicename:intel.com/qat".into()],
            io_threads_policy: Some("shared".into()),
            ..it()
        })
        .expect("manifest");
        assert_eq!(
            m["spec"]["gpus"],
            json!([{"name": "gpu1", "deviceName": "nvidia.com/TU104GL"}])
        );
        assert_eq!(
            m["spec"]["hostDevices"],
            json!([{"name": "hd1", "deviceName": "intel.com/qat"}])
        );
        assert_eq!(m["spec"]["ioThreadsPolicy"], "shared");
    }

    #[test]
    fn instancetype_bad_flags_name_the_flag() {
        let err = |o: InstancetypeOptions| instancetype(&o).expect_err("refused").to_string();
        assert!(
            err(InstancetypeOptions { cpu: 0, ..it() })
                .contains("cpu value must be greater than zero")
        );
        assert!(
            err(InstancetypeOptions {
                memory: "lots".into(),
                ..it()
            })
            .contains("\"--memory\"")
        );
        assert!(
            err(InstancetypeOptions {
                memory: "0".into(),
                ..it()
            })
            .contains("\"--memory\"")
        );
        assert!(
            err(InstancetypeOptions {
                gpus: vec!["name:gpu1".into()],
                ..it()
            })
            .contains("\"--gpu\" flag: deviceName must be specified")
        );
        assert!(
            err(InstancetypeOptions {
                host_devices: vec!["devicename:x".into()],
                ..it()
            })
            .contains("\"--hostdevice\" flag: name must be specified")
        );
        assert!(
            err(InstancetypeOptions {
                gpus: vec!["name:a,devicename:b,vendor:c".into()],
                ..it()
            })
            .contains("unknown param(s): vendor")
        );
        assert!(
            err(InstancetypeOptions {
                io_threads_policy: Some("dedicated".into()),
                ..it()
            })
            .contains("IOThread must be of value auto or shared")
        );
    }

    #[test]
    fn preference_flags() {
        let m = preference(&PreferenceOptions {
            name: "p".into(),
            cpu_topology: Some("spread".into()),
            machine_type: Some("q35".into()),
            volume_storage_class: Some("local-path".into()),
            ..Default::default()
        })
        .expect("manifest");
        assert_eq!(m["kind"], "VirtualMachineClusterPreference");
        assert_eq!(
            m["spec"],
            json!({"cpu": {"preferredCPUTopology": "spread"},
                "machine": {"preferredMachineType": "q35"},
                "volumes": {"preferredStorageClassName": "local-path"}})
        );
        let m = preference(&PreferenceOptions {
            name: "p".into(),
            namespace: Some("team".into()),
            ..Default::default()
        })
        .expect("manifest");
        assert_eq!(m["kind"], "VirtualMachinePreference");
        assert_eq!(m["metadata"]["namespace"], "team");
        assert_eq!(m["spec"], json!({}));
        let e = preference(&PreferenceOptions {
            name: "p".into(),
            cpu_topology: Some("numa".into()),
            ..Default::default()
        })
        .expect_err("refused");
        assert!(e.to_string().contains("\"--cpu-topology\""), "{e}");
    }

    #[test]
    fn manifests_parse_as_the_api_types() {
        // What we print must be what the API crate (and so the API server's schema) accepts.
        // A round trip through the typed object loses nothing, so every field name is known.
        let m = instancetype(&InstancetypeOptions {
            gpus: vec!["name:g,devicename:d".into()],
            io_threads_policy: Some("auto".into()),
            ..it()
        })
        .expect("manifest");
        let typed: kubevirt_api::instancetype::VirtualMachineClusterInstancetype =
            serde_json::from_value(m.clone()).expect("VirtualMachineClusterInstancetype");
        assert_eq!(serde_json::to_value(&typed).expect("json"), m);
        let m = preference(&PreferenceOptions {
            name: "p".into(),
            namespaced: true,
            cpu_topology: Some("cores".into()),
            machine_type: Some("q35".into()),
            volume_storage_class: Some("local".into()),
            ..Default::default()
        })
        .expect("manifest");
        let typed: kubevirt_api::instancetype::VirtualMachinePreference =
            serde_json::from_value(m.clone()).expect("VirtualMachinePreference");
        assert_eq!(serde_json::to_value(&typed).expect("json"), m);
    }
}
