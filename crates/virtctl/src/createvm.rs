//! `virtctl create vm`: a VirtualMachine manifest from flags (pure), printed as YAML for
//! `kubectl apply -f -`.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::Error;

/// The flags of `create vm` (upstream's names).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub name: String,
    /// Set only when `-n` was given, as upstream does (the manifest then lands where applied).
    pub namespace: Option<String>,
    pub run_strategy: String,
    pub termination_grace_period: i64,
    /// `--memory` when given (else 512Mi unless an instancetype supplies it).
    pub memory: Option<String>,
    pub instancetype: Option<String>,
    pub preference: Option<String>,
    /// `--infer-instancetype` / `--infer-preference` when given explicitly.
    pub infer_instancetype: Option<bool>,
    pub infer_preference: Option<bool>,
    pub containerdisks: Vec<String>,
    pub pvcs: Vec<String>,
    /// `--cloud-init`: nocloud (default), configdrive or none.
    pub cloud_init: Option<String>,
    pub cloud_init_user_data: Option<String>,
    pub cloud_init_network_data: Option<String>,
    pub user: Option<String>,
    pub ssh_keys: Vec<String>,
    /// `--access-cred` (repeatable): type:ssh|password,src:SECRET[,method:ga|nocloud|configdrive][,user:USER].
    pub access_creds: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: String::new(),
            namespace: None,
            run_strategy: "Always".into(),
            termination_grace_period: 180,
            memory: None,
            instancetype: None,
            preference: None,
            infer_instancetype: None,
            infer_preference: None,
            containerdisks: Vec::new(),
            pvcs: Vec::new(),
            cloud_init: None,
            cloud_init_user_data: None,
            cloud_init_network_data: None,
            user: None,
            ssh_keys: Vec::new(),
            access_creds: Vec::new(),
        }
    }
}

const CLOUD_INIT_DISK: &str = "cloudinitdisk";

pub(crate) fn flag_err(flag: &str, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("failed to parse \"--{flag}\" flag: {msg}"))
}

/// `key1:value1,key2:value2` parameters of volume flags.
pub(crate) fn params(flag: &str, arg: &str, allowed: &[&str]) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    for pair in arg.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once(':') else {
            return Err(flag_err(
                flag,
                format!("params need to have at least one colon: {pair}"),
            ));
        };
        if !allowed.contains(&k) {
            return Err(flag_err(
                flag,
                format!(
                    "unknown param(s): {k}; supported: {}",
                    allowed
                        .iter()
                        .map(|a| format!("{a}:"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        }
        out.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(out)
}

/// DNS-1123 label: what upstream requires of volume names.
fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `[kind/]name` of instancetype and preference flags.
fn matcher(flag: &str, arg: &str, kinds: [&str; 2]) -> Result<Value, Error> {
    let (kind, name) = match arg.split_once('/') {
        Some((k, n)) => (k.to_ascii_lowercase(), n),
        None => (String::new(), arg),
    };
    if name.is_empty() || name.contains('/') {
        return Err(flag_err(flag, format!("invalid name \"{arg}\"")));
    }
    if !kind.is_empty() && !kinds.contains(&kind.as_str()) {
        return Err(flag_err(
            flag,
            format!(
                "invalid {flag} kind \"{kind}\", supported values are: {}, {}",
                kinds[0], kinds[1]
            ),
        ));
    }
    let mut m = json!({"name": name});
    if !kind.is_empty() {
        // Without a kind, virt-api's defaulting fills in the cluster-wide kind.
        m["kind"] = json!(kind);
    }
    Ok(m)
}

struct Volume {
    name: String,
    pvc: bool,
    boot_order: Option<u64>,
}

/// The manifest, as JSON.
pub fn manifest(o: &Options) -> Result<Value, Error> {
    if o.memory.is_some() && o.instancetype.is_some() {
        return Err(Error::Usage(
            "if any flags in the group [memory instancetype] are set none of the others can be; [instancetype memory] were all set".into(),
        ));
    }
    if o.cloud_init_user_data.is_some() && (o.user.is_some() || !o.ssh_keys.is_empty()) {
        return Err(Error::Usage(
            "--cloud-init-user-data cannot be combined with --user or --ssh-key".into(),
        ));
    }
    let mut volumes: Vec<Value> = Vec::new();
    let mut disks: Vec<Value> = Vec::new();
    let mut order: Vec<Volume> = Vec::new();
    let mut boot_orders: Vec<u64> = Vec::new();
    let mut add = |flag: &str,
                   name: String,
                   source: Value,
                   pvc: bool,
                   boot: Option<&Value>|
     -> Result<(), Error> {
        if !dns1123_label(&name) {
            return Err(flag_err(flag, format!("invalid name \"{name}\"")));
        }
        if order.iter().any(|v| v.name == name) {
            return Err(flag_err(
                flag,
                format!("there is already a volume with name '{name}'"),
            ));
        }
        let boot_order = match boot.and_then(Value::as_str) {
            Some(b) => {
                let n: u64 = b
                    .parse()
                    .map_err(|_| flag_err(flag, format!("invalid bootorder \"{b}\"")))?;
                if n == 0 {
                    return Err(flag_err(flag, "bootorder must be greater than 0"));
                }
                if boot_orders.contains(&n) {
                    return Err(flag_err(
                        flag,
                        format!("bootorder {n} was specified multiple times"),
                    ));
                }
                boot_orders.push(n);
                disks.push(json!({"name": name, "bootOrder": n}));
                Some(n)
            }
            None => None,
        };
        let mut v = json!({"name": name});
        if let (Some(obj), Some(src)) = (v.as_object_mut(), source.as_object()) {
            obj.extend(src.clone());
        }
        volumes.push(v);
        order.push(Volume {
            name,
            pvc,
            boot_order,
        });
        Ok(())
    };
    for (i, arg) in o.containerdisks.iter().enumerate() {
        let flag = "volume-containerdisk";
        let p = params(flag, arg, &["name", "src", "bootorder"])?;
        let Some(src) = p
            .get("src")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Err(flag_err(flag, "src must be specified"));
        };
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}-containerdisk-{i}", o.name));
        add(
            flag,
            name,
            json!({"containerDisk": {"image": src}}),
            false,
            p.get("bootorder"),
        )?;
    }
    for arg in &o.pvcs {
        let flag = "volume-pvc";
        let p = params(flag, arg, &["name", "src", "bootorder"])?;
        let Some(src) = p
            .get("src")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Err(flag_err(flag, "src must be specified"));
        };
        if src.contains('/') {
            return Err(flag_err(
                flag,
                "not allowed to specify namespace of PVC, use name only",
            ));
        }
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(src)
            .to_string();
        add(
            flag,
            name,
            json!({"persistentVolumeClaim": {"claimName": src}}),
            true,
            p.get("bootorder"),
        )?;
    }

    let creds = o
        .access_creds
        .iter()
        .map(|a| access_credential(a, o.user.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    // A key propagated through a datasource needs that datasource: it picks the default, and
    // an explicit `--cloud-init` naming another one is refused.
    let seed_needed = creds.iter().find_map(|c| c.seed);
    let kind = match (o.cloud_init.as_deref(), seed_needed) {
        (Some(k), Some(need)) if !k.eq_ignore_ascii_case(need) => {
            return Err(flag_err(
                "access-cred",
                format!("method {need} needs the {need} cloud-init data source, not \"{k}\""),
            ));
        }
        (Some(k), _) => k.to_ascii_lowercase(),
        (None, Some(need)) => need.to_string(),
        (None, None) => "nocloud".to_string(),
    };
    if creds.iter().any(|c| c.seed.is_some_and(|n| n != kind)) {
        return Err(flag_err(
            "access-cred",
            "nocloud and configdrive methods cannot be combined",
        ));
    }
    // cloud-init: only when asked for, as upstream (an empty header alone adds nothing).
    let cloud_init_asked = o.cloud_init.is_some()
        || o.cloud_init_user_data.is_some()
        || o.cloud_init_network_data.is_some()
        || o.user.is_some()
        || !o.ssh_keys.is_empty()
        || seed_needed.is_some();
    if cloud_init_asked && kind != "none" {
        let key = match kind.as_str() {
            "nocloud" => "cloudInitNoCloud",
            "configdrive" => "cloudInitConfigDrive",
            other => {
                return Err(flag_err(
                    "cloud-init",
                    format!(
                        "invalid cloud-init data source type \"{other}\", supported values are: nocloud, configdrive, none"
                    ),
                ));
            }
        };
        let mut src = Map::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        for (flag, data) in [
            ("cloud-init-user-data", &o.cloud_init_user_data),
            ("cloud-init-network-data", &o.cloud_init_network_data),
        ] {
            if let Some(d) = data
                && b64.decode(d).is_err()
            {
                return Err(flag_err(flag, "is not valid base64"));
            }
        }
        if let Some(n) = &o.cloud_init_network_data {
            src.insert("networkDataBase64".into(), json!(n));
        }
        if let Some(u) = &o.cloud_init_user_data {
            src.insert("userDataBase64".into(), json!(u));
        } else {
            let mut config = String::from("#cloud-config\n");
            if let Some(u) = &o.user {
                config.push_str(&format!("user: {u}\n"));
            }
            if !o.ssh_keys.is_empty() {
                config.push_str("ssh_authorized_keys:\n");
                for k in &o.ssh_keys {
                    config.push_str(&format!("  - {k}\n"));
                }
            }
            src.insert("userData".into(), json!(config));
        }
        if order.iter().any(|v| v.name == CLOUD_INIT_DISK) {
            return Err(Error::Usage(format!(
                "there is already a volume with name '{CLOUD_INIT_DISK}'"
            )));
        }
        volumes.push(json!({"name": CLOUD_INIT_DISK, key: src}));
    }

    let mut spec = json!({
        "runStrategy": o.run_strategy,
        "template": {"spec": {
            "domain": {"devices": {}},
            "terminationGracePeriodSeconds": o.termination_grace_period,
        }},
    });
    let memory = o.memory.clone().unwrap_or_else(|| "512Mi".into());
    let mut guest_memory = o.instancetype.is_none().then_some(memory);
    if let Some(it) = &o.instancetype {
        spec["instancetype"] = matcher(
            "instancetype",
            it,
            [
                "virtualmachineinstancetype",
                "virtualmachineclusterinstancetype",
            ],
        )?;
    }
    if let Some(p) = &o.preference {
        spec["preference"] = matcher(
            "preference",
            p,
            [
                "virtualmachinepreference",
                "virtualmachineclusterpreference",
            ],
        )?;
    }

    // Inference from the boot volume: implicit unless told otherwise, and then only quietly
    // when the volume can carry the hints (a PVC).
    let boot = order
        .iter()
        .filter(|v| v.boot_order.is_some())
        .min_by_key(|v| v.boot_order)
        .or(order.first());
    let infer = |explicit: Option<bool>| -> Result<Option<Value>, Error> {
        if explicit == Some(false) {
            return Ok(None);
        }
        match boot {
            Some(v) if v.pvc => {
                let mut m = json!({"inferFromVolume": v.name});
                if explicit.is_none() {
                    m["inferFromVolumeFailurePolicy"] = json!("Ignore");
                }
                Ok(Some(m))
            }
            _ if explicit == Some(true) => Err(Error::Usage(
                "inference of instancetype or preference works only with datasources, datavolumes or pvcs".into(),
            )),
            _ => Ok(None),
        }
    };
    if o.instancetype.is_none()
        && o.memory.is_none()
        && let Some(m) = infer(o.infer_instancetype)?
    {
        spec["instancetype"] = m;
        guest_memory = None;
    }
    if o.preference.is_none()
        && let Some(m) = infer(o.infer_preference)?
    {
        spec["preference"] = m;
    }
    if let Some(mem) = guest_memory {
        spec["template"]["spec"]["domain"]["memory"] = json!({"guest": mem});
    }
    if !disks.is_empty() {
        spec["template"]["spec"]["domain"]["devices"]["disks"] = Value::Array(disks);
    }
    if !volumes.is_empty() {
        spec["template"]["spec"]["volumes"] = Value::Array(volumes);
    }
    if !creds.is_empty() {
        spec["template"]["spec"]["accessCredentials"] =
            Value::Array(creds.into_iter().map(|c| c.credential).collect());
    }
    let mut metadata = json!({"name": o.name});
    if let Some(ns) = &o.namespace {
        metadata["namespace"] = json!(ns);
    }
    Ok(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// One `--access-cred`: the `accessCredentials` entry and the cloud-init datasource it needs.
struct AccessCred {
    credential: Value,
    /// "nocloud" or "configdrive" when the keys travel in that datasource's metadata.
    seed: Option<&'static str>,
}

/// Parses `type:ssh|password,src:SECRET[,method:ga|nocloud|configdrive][,user:USER]`. ssh keys
/// default to the guest agent (method ga), which needs the guest user: `user:` or `--user`.
fn access_credential(arg: &str, flag_user: Option<&str>) -> Result<AccessCred, Error> {
    let flag = "access-cred";
    let p = params(flag, arg, &["type", "src", "method", "user"])?;
    let get = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(src) = get("src") else {
        return Err(flag_err(flag, "src must be specified"));
    };
    let source = json!({"secret": {"secretName": src}});
    let method = get("method").unwrap_or("ga").to_ascii_lowercase();
    match get("type").unwrap_or("ssh").to_ascii_lowercase().as_str() {
        "ssh" => {
            let (propagation, seed) = match method.as_str() {
                "ga" => {
                    let Some(user) = get("user").or(flag_user) else {
                        return Err(flag_err(
                            flag,
                            "user must be specified with method ga (user:NAME or --user)",
                        ));
                    };
                    (json!({"qemuGuestAgent": {"users": [user]}}), None)
                }
                "nocloud" => (json!({"noCloud": {}}), Some("nocloud")),
                "configdrive" => (json!({"configDrive": {}}), Some("configdrive")),
                other => {
                    return Err(flag_err(
                        flag,
                        format!(
                            "invalid access credential propagation method \"{other}\", supported values are: ga, nocloud, configdrive"
                        ),
                    ));
                }
            };
            if seed.is_some() && get("user").is_some() {
                return Err(flag_err(
                    flag,
                    format!("user cannot be specified with method {method}"),
                ));
            }
            Ok(AccessCred {
                credential: json!({"sshPublicKey": {"source": source, "propagationMethod": propagation}}),
                seed,
            })
        }
        "password" => {
            if method != "ga" {
                return Err(flag_err(
                    flag,
                    format!(
                        "invalid access credential propagation method \"{method}\" for type password, supported values are: ga"
                    ),
                ));
            }
            if get("user").is_some() {
                return Err(flag_err(
                    flag,
                    "user cannot be specified with type password",
                ));
            }
            Ok(AccessCred {
                credential: json!({"userPassword": {"source": source, "propagationMethod": {"qemuGuestAgent": {}}}}),
                seed: None,
            })
        }
        other => Err(flag_err(
            flag,
            format!(
                "invalid access credential type \"{other}\", supported values are: ssh, password"
            ),
        )),
    }
}

/// The manifest as YAML.
pub fn yaml(o: &Options) -> Result<String, Error> {
    to_yaml(&manifest(o)?)
}

/// Any manifest the `create` verbs build, as YAML.
pub fn to_yaml(v: &Value) -> Result<String, Error> {
    serde_saphyr::to_string(v).map_err(|e| Error::Other(format!("YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Options {
        Options {
            name: "my-vm".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let v = manifest(&base()).expect("ok");
        assert_eq!(v["spec"]["runStrategy"], "Always");
        assert_eq!(
            v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            180
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["domain"]["memory"]["guest"],
            "512Mi"
        );
        assert!(v["spec"]["template"]["spec"].get("volumes").is_none());
        assert!(v["metadata"].get("namespace").is_none());
    }

    #[test]
    fn instancetype_preference_containerdisk_cloudinit() {
        let o = Options {
            instancetype: Some("u1.small".into()),
            preference: Some("virtualmachinepreference/fedora".into()),
            containerdisks: vec!["src:quay.io/x/y:1,bootorder:1".into()],
            cloud_init_user_data: Some("I2Nsb3VkLWNvbmZpZwo=".into()),
            namespace: Some("ns".into()),
            ..base()
        };
        let v = manifest(&o).expect("ok");
        assert_eq!(v["spec"]["instancetype"], json!({"name": "u1.small"}));
        assert_eq!(
            v["spec"]["preference"],
            json!({"name": "fedora", "kind": "virtualmachinepreference"})
        );
        let t = &v["spec"]["template"]["spec"];
        assert!(t["domain"].get("memory").is_none());
        assert_eq!(
            t["domain"]["devices"]["disks"],
            json!([{"name": "my-vm-containerdisk-0", "bootOrder": 1}])
        );
        assert_eq!(
            t["volumes"],
            json!([
                {"name": "my-vm-containerdisk-0", "containerDisk": {"image": "quay.io/x/y:1"}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {"userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}},
            ])
        );
        assert_eq!(v["metadata"]["namespace"], "ns");
    }

    #[test]
    fn inference_and_errors() {
        let o = Options {
            pvcs: vec!["src:disk0".into()],
            user: Some("fedora".into()),
            ssh_keys: vec!["ssh-ed25519 AAAA k".into()],
            ..base()
        };
        let v = manifest(&o).expect("ok");
        assert_eq!(
            v["spec"]["instancetype"],
            json!({"inferFromVolume": "disk0", "inferFromVolumeFailurePolicy": "Ignore"})
        );
        assert!(
            v["spec"]["template"]["spec"]["domain"]
                .get("memory")
                .is_none()
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["volumes"][1]["cloudInitNoCloud"]["userData"],
            "#cloud-config\nuser: fedora\nssh_authorized_keys:\n  - ssh-ed25519 AAAA k\n"
        );
        let bad = |o: Options| manifest(&o).is_err();
        assert!(bad(Options {
            containerdisks: vec!["name:x".into()],
            ..base()
        }));
        assert!(bad(Options {
            containerdisks: vec!["src:a,bootorder:1".into(), "src:b,bootorder:1".into()],
            ..base()
        }));
        assert!(bad(Options {
            containerdisks: vec!["src:a,size:1".into()],
            ..base()
        }));
        assert!(bad(Options {
            memory: Some("1Gi".into()),
            instancetype: Some("x".into()),
            ..base()
        }));
        assert!(bad(Options {
            instancetype: Some("pod/x".into()),
            ..base()
        }));
        assert!(bad(Options {
            containerdisks: vec!["src:a".into()],
            infer_instancetype: Some(true),
            ..base()
        }));
        assert!(bad(Options {
            cloud_init_user_data: Some("!!".into()),
            ..base()
        }));
        assert!(
            yaml(&base())
                .expect("yaml")
                .contains("kind: VirtualMachine")
        );
    }

    #[test]
    fn access_credentials() {
        let creds = |args: &[&str], user: Option<&str>, cloud_init: Option<&str>| {
            manifest(&Options {
                access_creds: args.iter().map(|a| a.to_string()).collect(),
                user: user.map(str::to_string),
                cloud_init: cloud_init.map(str::to_string),
                ..base()
            })
        };
        // ssh through the guest agent by default, for the user the param or --user names.
        let v = creds(&["src:my-keys,user:fedora"], None, None).expect("ok");
        let spec = &v["spec"]["template"]["spec"];
        assert_eq!(
            spec["accessCredentials"],
            json!([{"sshPublicKey": {
                "source": {"secret": {"secretName": "my-keys"}},
                "propagationMethod": {"qemuGuestAgent": {"users": ["fedora"]}},
            }}])
        );
        assert!(spec.get("volumes").is_none());
        let v = creds(&["type:ssh,src:k,method:ga"], Some("u1"), None).expect("ok");
        assert_eq!(
            v["spec"]["template"]["spec"]["accessCredentials"][0]["sshPublicKey"]["propagationMethod"],
            json!({"qemuGuestAgent": {"users": ["u1"]}})
        );
        // nocloud and configdrive bring their datasource with an empty cloud-config.
        for (method, key, volume) in [
            ("nocloud", "noCloud", "cloudInitNoCloud"),
            ("configdrive", "configDrive", "cloudInitConfigDrive"),
        ] {
            let v = creds(&[&format!("src:k,method:{method}")], None, None).expect("ok");
            let spec = &v["spec"]["template"]["spec"];
            assert_eq!(
                spec["accessCredentials"][0]["sshPublicKey"]["propagationMethod"],
                json!({key: {}})
            );
            assert_eq!(spec["volumes"][0][volume]["userData"], "#cloud-config\n");
        }
        let v = creds(&["type:password,src:pws"], None, None).expect("ok");
        assert_eq!(
            v["spec"]["template"]["spec"]["accessCredentials"],
            json!([{"userPassword": {
                "source": {"secret": {"secretName": "pws"}},
                "propagationMethod": {"qemuGuestAgent": {}},
            }}])
        );
        // Refusals name the flag.
        for (args, cloud_init) in [
            (&["method:nocloud"][..], None),
            (&["src:k"][..], None),
            (&["src:k,method:nocloud,user:u"][..], None),
            (&["src:k,method:nocloud"][..], Some("configdrive")),
            (&["src:k,method:configdrive"][..], Some("none")),
            (
                &["src:k,method:nocloud", "src:j,method:configdrive"][..],
                None,
            ),
            (&["type:password,src:k,method:nocloud"][..], None),
            (&["type:token,src:k"][..], None),
            (&["src:k,method:email"][..], None),
        ] {
            let e = creds(args, None, cloud_init).expect_err("refused");
            assert!(
                e.to_string().contains("\"--access-cred\" flag:"),
                "{args:?}: {e}"
            );
        }
    }
}
