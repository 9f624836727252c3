//! Server defaults of built-in kinds that our components rely on (pure): the fields a scheduler
//! and kubelet read without checking for absence on pods, and the phase and modes of claims and
//! volumes.

use serde_json::{Value, json};

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key.to_string()).or_insert(v);
    }
}

/// PersistentVolumeClaim and PersistentVolume defaults, as upstream's defaulting: a new claim or
/// volume is `Pending` until something binds it, in `Filesystem` mode; a volume is retained.
pub fn persistent_volume(obj: &mut Value, claim: bool) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    set_default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
    if !claim {
        set_default(
            &mut obj["spec"],
            "persistentVolumeReclaimPolicy",
            json!("Retain"),
        );
    }
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    set_default(&mut obj["status"], "phase", json!("Pending"));
}

fn image_pull_policy(image: &str) -> &'static str {
    // `:latest` or no tag pulls always; a tag or digest pulls when missing.
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// Pod defaults and the initial status.
pub fn pod(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        return;
    }
    let spec = &mut obj["spec"];
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    if spec.get("serviceAccountName").is_none() {
        let sa = spec
            .get("serviceAccount")
            .cloned()
            .unwrap_or(json!("default"));
        set_default(spec, "serviceAccountName", sa);
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
    let qos = qos_class(spec);
    obj["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// What the services already hold, for allocating a new one.
#[derive(Debug, Default, Clone)]
pub struct Allocated {
    pub cluster_ips: std::collections::HashSet<String>,
    pub node_ports: std::collections::HashSet<i64>,
}

/// The node port range, as kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Service defaults, a ClusterIP from 10.96.0.0/16 (the design's service range; .0.1 is the
/// `kubernetes` Service), and node ports for NodePort and LoadBalancer services. `used` tells
/// what is taken; it is asked only when needed.
pub fn service(
    obj: &mut Value,
    used: impl FnOnce() -> Allocated,
) -> Result<(), crate::error::Cause> {
    // Reading what is allocated walks every Service: at most once, and only when needed.
    let mut used = Some(used);
    let mut cache: Option<Allocated> = None;
    let mut taken = || {
        cache
            .get_or_insert_with(|| used.take().map(|f| f()).unwrap_or_default())
            .clone()
    };
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(());
    }
    let exposed = matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    );
    if exposed {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
        let mut node_ports = taken().node_ports;
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            // Ports asked for by number first, so a free pick never takes one of them.
            for (i, p) in ports.iter().enumerate() {
                if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                    let field = format!("spec.ports[{i}].nodePort");
                    if !NODE_PORTS.contains(&n) {
                        return Err(crate::error::Cause::invalid(
                            &field,
                            format!(
                                "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                                NODE_PORTS.start(),
                                NODE_PORTS.end()
                            ),
                        ));
                    }
                    if !node_ports.insert(n) {
                        return Err(crate::error::Cause::invalid(
                            &field,
                            format!("Invalid value: {n}: provided port is already allocated"),
                        ));
                    }
                }
            }
            for p in ports.iter_mut() {
                if p.get("nodePort").and_then(Value::as_i64).is_none() {
                    let free = NODE_PORTS
                        .clone()
                        .find(|n| !node_ports.contains(n))
                        .ok_or_else(|| {
                            crate::error::Cause::invalid(
                                "spec.ports",
                                "the node port range is full",
                            )
                        })?;
                    node_ports.insert(free);
                    p["nodePort"] = json!(free);
                }
            }
        }
    }
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
    let ip = match requested {
        "None" => "None".to_string(),
        "" => {
            let taken = taken().cluster_ips;
            let free = (0u32..=255)
                .flat_map(|a| (0u32..=255).map(move |b| format!("10.96.{a}.{b}")))
                .skip(10)
                .find(|ip| !taken.contains(ip) && !ip.ends_with(".255") && !ip.ends_with(".0"));
            free.ok_or_else(|| {
                crate::error::Cause::invalid(
                    "spec.clusterIP",
                    "the service range 10.96.0.0/16 is full",
                )
            })?
        }
        given => {
            if taken().cluster_ips.contains(given) {
                return Err(crate::error::Cause::invalid(
                    "spec.clusterIP",
                    format!("Invalid value: \"{given}\": provided IP is already allocated"),
                ));
            }
            given.to_string()
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    if ip != "None" {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    Ok(())
}

fn qos_class(spec: &Value) -> &'static str {
    let cs: Vec<&Value> = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !cs.is_empty();
    for c in &cs {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        let full = lim.is_some_and(|l| l.contains_key("cpu") && l.contains_key("memory"))
            && req.is_none_or(|r| r.iter().all(|(k, v)| lim.and_then(|l| l.get(k)) == Some(v)));
        guaranteed &= full;
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_get_a_free_cluster_ip() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        let used = Allocated {
            cluster_ips: ["10.96.0.10".to_string()].into(),
            ..Default::default()
        };
        service(&mut s, || used.clone()).expect("allocates");
        assert!(s["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.11");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let mut taken = json!({"spec": {"clusterIP": "10.96.0.10"}});
        assert!(service(&mut taken, || used.clone()).is_err());
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        service(&mut headless, Default::default).expect("headless");
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn node_port_services_get_free_node_ports() {
        let used = Allocated {
            node_ports: [30000, 30002].into(),
            ..Default::default()
        };
        let mut s = json!({"spec": {"type": "NodePort",
            "ports": [{"port": 22}, {"port": 80, "nodePort": 30001}, {"port": 443}]}});
        service(&mut s, || used.clone()).expect("allocates");
        let ports: Vec<_> = s["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["nodePort"].as_i64())
            .collect();
        // 30001 is this service's own; the others skip what other services hold.
        assert_eq!(ports, vec![Some(30003), Some(30001), Some(30004)]);
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");

        let mut lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 22}]}});
        service(&mut lb, || used.clone()).expect("allocates");
        assert_eq!(lb["spec"]["ports"][0]["nodePort"], 30001);

        let mut taken =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 1, "nodePort": 30002}]}});
        let e = service(&mut taken, || used.clone()).expect_err("taken");
        assert!(format!("{e:?}").contains("spec.ports[0].nodePort"), "{e:?}");
        let mut out = json!({"spec": {"type": "NodePort", "ports": [{"port": 1, "nodePort": 80}]}});
        let e = service(&mut out, || used.clone()).expect_err("out of range");
        assert!(format!("{e:?}").contains("not in the valid range"), "{e:?}");
    }

    #[test]
    fn pod_defaults_match_the_server() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "d", "image": "r/y:1.0"}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            p["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        let mut g = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        pod(&mut g);
        assert_eq!(g["status"]["qosClass"], "Guaranteed");
    }
}
