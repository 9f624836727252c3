//! Pod volumes: where each lives on the node (pure planning) and materialising them (I/O).
//!
//! Layout under the pod directory `<kubelet root>/pods/<uid>/volumes/`:
//! `kubernetes.io~empty-dir/<vol>` (a tmpfs for `medium: Memory`), `kubernetes.io~configmap/<vol>`,
//! `kubernetes.io~secret/<vol>`, `kubernetes.io~downward-api/<vol>`, `kubernetes.io~projected/<vol>`.
//! hostPath volumes are the host path; PVCs are their local-path PV's directory (or file, for
//! `volumeMode: Block`) under `DATA/storage/<pv>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::Client;
use kube::api::Api;

use crate::downward;
use crate::shim::BindMount;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("persistentvolumeclaim \"{0}\" is not bound")]
    Unbound(String),
    #[error("hostPath type check failed: {path} is not a {kind}")]
    HostPathType { path: String, kind: String },
    #[error("volume {0}: unsupported volume type")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
    #[error("volume \"{0}\" named by a volumeMount is not in the pod")]
    NoSuchVolume(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The plugin directory name of a volume (`kubernetes.io~<plugin>`), for the kinds the kubelet
/// materialises under the pod directory.
pub fn plugin_dir(v: &Volume) -> Option<&'static str> {
    if v.empty_dir.is_some() {
        Some("kubernetes.io~empty-dir")
    } else if v.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if v.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if v.downward_api.is_some() {
        Some("kubernetes.io~downward-api")
    } else if v.projected.is_some() {
        Some("kubernetes.io~projected")
    } else {
        None
    }
}

/// `<pod dir>/volumes/<plugin>/<name>`.
pub fn volume_path(pod_dir: &Path, v: &Volume) -> Option<PathBuf> {
    Some(pod_dir.join("volumes").join(plugin_dir(v)?).join(&v.name))
}

/// A volume ready on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub path: PathBuf,
    /// configMap, secret, downwardAPI and projected volumes are read-only.
    pub read_only: bool,
}

/// The container's bind mounts from its `volumeMounts` (with `subPath`) and `volumeDevices`.
pub fn container_mounts(
    c: &Container,
    ready: &BTreeMap<String, Ready>,
) -> Result<Vec<BindMount>, VolumeError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = ready
            .get(&m.name)
            .ok_or_else(|| VolumeError::NoSuchVolume(m.name.clone()))?;
        let mut source = v.path.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let sub = sub.trim_start_matches('/');
            if sub.split('/').any(|p| p == "..") {
                return Err(VolumeError::NoSuchVolume(format!(
                    "{} (subPath {sub})",
                    m.name
                )));
            }
            source = source.join(sub);
        }
        out.push(BindMount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: v.read_only || m.read_only.unwrap_or(false),
        });
    }
    for d in c.volume_devices.iter().flatten() {
        let v = ready
            .get(&d.name)
            .ok_or_else(|| VolumeError::NoSuchVolume(d.name.clone()))?;
        out.push(BindMount {
            source: v.path.clone(),
            target: PathBuf::from(&d.device_path),
            read_only: false,
        });
    }
    Ok(out)
}

/// File name → content (and mode) of a configMap/secret volume, honouring `items`.
pub fn project_keys(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), mode))
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push((
                        it.path.clone(),
                        v.clone(),
                        it.mode.map(|m| m as u32).unwrap_or(mode),
                    )),
                    None if optional => {}
                    None => {
                        return Err(VolumeError::MissingKey {
                            kind,
                            namespace: namespace.into(),
                            name: name.into(),
                            key: it.key.clone(),
                        });
                    }
                }
            }
            Ok(out)
        }
    }
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (rel, content, mode) in files {
        let rel = rel.trim_start_matches('/');
        if rel.split('/').any(|p| p == "..") {
            continue;
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let tmp = path.with_extension("kvrs-tmp");
        std::fs::write(&tmp, content).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

fn configmap_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        m.insert(k.clone(), v.0.clone());
    }
    m
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        m.insert(k.clone(), v.clone().into_bytes());
    }
    m
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    rt: &downward::Runtime<'_>,
) -> Vec<(String, Vec<u8>, u32)> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let first = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|it| {
            let v = if let Some(f) = &it.field_ref {
                downward::field(pod, &f.field_path, rt)
            } else if let Some(r) = &it.resource_field_ref {
                downward::resource(pod, &first, r)
            } else {
                None
            }?;
            Some((
                it.path.clone(),
                v.into_bytes(),
                it.mode.map(|m| m as u32).unwrap_or(mode),
            ))
        })
        .collect()
}

/// A service account token for the pod: from the API's TokenRequest when the server serves it,
/// else an unsigned JWT (`alg: none`) with the standard claims (the embedded API server does not
/// authenticate tokens yet).
async fn service_account_token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: i64,
) -> String {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": audience.map(|a| vec![a]).unwrap_or_default(),
                 "expirationSeconds": expiration,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                    "name": pod.metadata.name, "uid": pod.metadata.uid}}
    });
    let url = format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token");
    if let Ok(req) = http_post_json(&url, &body)
        && let Ok(resp) = client.request::<serde_json::Value>(req).await
        && let Some(t) = resp.pointer("/status/token").and_then(|t| t.as_str())
    {
        return t.to_string();
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "aud": audience.map(|a| vec![a.to_string()]).unwrap_or_else(|| vec!["https://kubernetes.default.svc.cluster.local".into()]),
        "iat": now, "nbf": now, "exp": now + expiration,
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa},
            "pod": {"name": pod.metadata.name, "uid": pod.metadata.uid}},
    });
    format!("{header}.{}.", b64.encode(claims.to_string()))
}

fn http_post_json(
    url: &str,
    body: &serde_json::Value,
) -> Result<http::Request<Vec<u8>>, http::Error> {
    http::Request::post(url)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
}

/// Everything needed to materialise a pod's volumes.
pub struct VolumeCtx<'a> {
    pub client: &'a Client,
    pub pod_dir: &'a Path,
    pub rt: downward::Runtime<'a>,
}

/// Materialises every volume of the pod; returns them by name.
pub async fn prepare(
    ctx: &VolumeCtx<'_>,
    pod: &Pod,
) -> Result<BTreeMap<String, Ready>, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        let dir = volume_path(ctx.pod_dir, v);
        let ready = if let Some(ed) = &v.empty_dir {
            let dir = dir.unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            if ed.medium.as_deref() == Some("Memory") && !is_mountpoint(&dir) {
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| kubevirt_embedded_scheduler::quantity::parse_units(&q.0))
                    .map(|b| format!("size={b}"))
                    .unwrap_or_default();
                nix::mount::mount(
                    Some("tmpfs"),
                    &dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::empty(),
                    Some(size.as_str()),
                )
                .map_err(|e| VolumeError::Io {
                    path: dir.display().to_string(),
                    source: e.into(),
                })?;
            }
            Ready {
                path: dir,
                read_only: false,
            }
        } else if let Some(cm) = &v.config_map {
            let dir = dir.unwrap_or_default();
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
            let optional = cm.optional.unwrap_or(false);
            let data = match api.get_opt(&cm.name).await? {
                Some(o) => configmap_data(&o),
                None if optional => BTreeMap::new(),
                None => {
                    return Err(VolumeError::NotFound {
                        kind: "configmap",
                        name: cm.name.clone(),
                    });
                }
            };
            let files = project_keys(
                &data,
                cm.items.as_deref(),
                cm.default_mode,
                "ConfigMap",
                &ns,
                &cm.name,
                optional,
            )?;
            write_files(&dir, &files)?;
            Ready {
                path: dir,
                read_only: true,
            }
        } else if let Some(sec) = &v.secret {
            let dir = dir.unwrap_or_default();
            let name = sec.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            let optional = sec.optional.unwrap_or(false);
            let data = match api.get_opt(&name).await? {
                Some(o) => secret_data(&o),
                None if optional => BTreeMap::new(),
                None => {
                    return Err(VolumeError::NotFound {
                        kind: "secret",
                        name,
                    });
                }
            };
            let files = project_keys(
                &data,
                sec.items.as_deref(),
                sec.default_mode,
                "Secret",
                &ns,
                &name,
                optional,
            )?;
            write_files(&dir, &files)?;
            Ready {
                path: dir,
                read_only: true,
            }
        } else if let Some(da) = &v.downward_api {
            let dir = dir.unwrap_or_default();
            let files = downward_files(
                pod,
                da.items.as_deref().unwrap_or(&[]),
                da.default_mode,
                &ctx.rt,
            );
            write_files(&dir, &files)?;
            Ready {
                path: dir,
                read_only: true,
            }
        } else if let Some(pr) = &v.projected {
            let dir = dir.unwrap_or_default();
            let mut files = Vec::new();
            for src in pr.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                    let optional = cm.optional.unwrap_or(false);
                    let data = match api.get_opt(&cm.name).await? {
                        Some(o) => configmap_data(&o),
                        None if optional => BTreeMap::new(),
                        None => {
                            return Err(VolumeError::NotFound {
                                kind: "configmap",
                                name: cm.name.clone(),
                            });
                        }
                    };
                    files.extend(project_keys(
                        &data,
                        cm.items.as_deref(),
                        pr.default_mode,
                        "ConfigMap",
                        &ns,
                        &cm.name,
                        optional,
                    )?);
                }
                if let Some(sec) = &src.secret {
                    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                    let optional = sec.optional.unwrap_or(false);
                    let data = match api.get_opt(&sec.name).await? {
                        Some(o) => secret_data(&o),
                        None if optional => BTreeMap::new(),
                        None => {
                            return Err(VolumeError::NotFound {
                                kind: "secret",
                                name: sec.name.clone(),
                            });
                        }
                    };
                    files.extend(project_keys(
                        &data,
                        sec.items.as_deref(),
                        pr.default_mode,
                        "Secret",
                        &ns,
                        &sec.name,
                        optional,
                    )?);
                }
                if let Some(da) = &src.downward_api {
                    files.extend(downward_files(
                        pod,
                        da.items.as_deref().unwrap_or(&[]),
                        pr.default_mode,
                        &ctx.rt,
                    ));
                }
                if let Some(tok) = &src.service_account_token {
                    let t = service_account_token(
                        ctx.client,
                        pod,
                        tok.audience.as_deref(),
                        tok.expiration_seconds.unwrap_or(3607),
                    )
                    .await;
                    files.push((
                        tok.path.clone(),
                        t.into_bytes(),
                        pr.default_mode.unwrap_or(0o644) as u32,
                    ));
                }
            }
            write_files(&dir, &files)?;
            Ready {
                path: dir,
                read_only: true,
            }
        } else if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            match hp.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(io(&path))?,
                "FileOrCreate" if !path.exists() => {
                    if let Some(p) = path.parent() {
                        std::fs::create_dir_all(p).map_err(io(p))?;
                    }
                    std::fs::File::create(&path).map_err(io(&path))?;
                }
                "Directory" if !path.is_dir() => {
                    return Err(VolumeError::HostPathType {
                        path: hp.path.clone(),
                        kind: "directory".into(),
                    });
                }
                "File" if !path.is_file() => {
                    return Err(VolumeError::HostPathType {
                        path: hp.path.clone(),
                        kind: "file".into(),
                    });
                }
                _ => {}
            }
            Ready {
                path,
                read_only: false,
            }
        } else if let Some(claim) = &v.persistent_volume_claim {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            let pvc =
                pvcs.get_opt(&claim.claim_name)
                    .await?
                    .ok_or_else(|| VolumeError::NotFound {
                        kind: "persistentvolumeclaim",
                        name: claim.claim_name.clone(),
                    })?;
            let pv_name = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| VolumeError::Unbound(claim.claim_name.clone()))?;
            let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
            let pv = pvs
                .get_opt(&pv_name)
                .await?
                .ok_or_else(|| VolumeError::NotFound {
                    kind: "persistentvolume",
                    name: pv_name.clone(),
                })?;
            let spec = pv.spec.unwrap_or_default();
            let path = spec
                .local
                .map(|l| l.path)
                .or(spec.host_path.map(|h| h.path))
                .ok_or_else(|| VolumeError::Unsupported(v.name.clone()))?;
            Ready {
                path: PathBuf::from(path),
                read_only: claim.read_only.unwrap_or(false),
            }
        } else {
            // containerDisk and others are not pod volumes here; an unknown kind is an error
            // only if a container mounts it.
            continue;
        };
        out.insert(v.name.clone(), ready);
    }
    Ok(out)
}

/// Unmounts memory-backed emptyDirs of a pod (its other volumes are plain directories).
pub fn unmount_all(pod_dir: &Path) {
    let ed = pod_dir.join("volumes").join("kubernetes.io~empty-dir");
    if let Ok(rd) = std::fs::read_dir(&ed) {
        for e in rd.flatten() {
            if is_mountpoint(&e.path()) {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Is `p` a mount point (listed in this process's mountinfo)?
pub fn is_mountpoint(p: &Path) -> bool {
    let Ok(p) = std::fs::canonicalize(p) else {
        return false;
    };
    let Some(p) = p.to_str() else { return false };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points(&info).iter().any(|m| m == p)
}

/// Mount points in mountinfo text (octal escapes such as `\040` decoded).
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|t| {
            let mut out = String::new();
            let mut rest = t;
            while let Some(i) = rest.find('\\') {
                out.push_str(&rest[..i]);
                let code = rest
                    .get(i + 1..i + 4)
                    .and_then(|o| u8::from_str_radix(o, 8).ok());
                match code {
                    Some(c) => {
                        out.push(c as char);
                        rest = &rest[i + 4..];
                    }
                    None => {
                        out.push('\\');
                        rest = &rest[i + 1..];
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_mounts() {
        let v: Volume = serde_json::from_value(json!({"name": "sockets", "emptyDir": {}})).unwrap();
        assert_eq!(
            volume_path(Path::new("/k/pods/u"), &v).unwrap(),
            PathBuf::from("/k/pods/u/volumes/kubernetes.io~empty-dir/sockets")
        );
        let c: Container = serde_json::from_value(json!({"name": "c",
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                             {"name": "cfg", "mountPath": "/etc/one", "subPath": "a.conf"},
                             {"name": "data", "mountPath": "/data", "readOnly": true}],
            "volumeDevices": [{"name": "blk", "devicePath": "/dev/xvda"}]}))
        .unwrap();
        let mut ready = BTreeMap::new();
        ready.insert(
            "cfg".to_string(),
            Ready {
                path: "/v/cfg".into(),
                read_only: true,
            },
        );
        ready.insert(
            "data".to_string(),
            Ready {
                path: "/v/data".into(),
                read_only: false,
            },
        );
        ready.insert(
            "blk".to_string(),
            Ready {
                path: "/s/pv/disk.img".into(),
                read_only: false,
            },
        );
        let m = container_mounts(&c, &ready).unwrap();
        assert_eq!(m[1].source, PathBuf::from("/v/cfg/a.conf"));
        assert!(m[0].read_only && m[2].read_only);
        assert_eq!(m[3].target, PathBuf::from("/dev/xvda"));
        ready.remove("data");
        assert!(matches!(
            container_mounts(&c, &ready),
            Err(VolumeError::NoSuchVolume(_))
        ));
    }

    #[test]
    fn mountinfo_points() {
        let info = "42 27 254:0 / /run/a\\040b rw shared:1 - ext4 /dev/vda rw\n";
        assert_eq!(mount_points(info), vec!["/run/a b".to_string()]);
    }

    #[test]
    fn keys_and_items() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]);
        let all = project_keys(&data, None, None, "ConfigMap", "ns", "cm", false).unwrap();
        assert_eq!(all.len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: Some(0o600),
        }];
        let one = project_keys(&data, Some(&items), None, "ConfigMap", "ns", "cm", false).unwrap();
        assert_eq!(one, vec![("sub/b.txt".to_string(), b"2".to_vec(), 0o600)]);
        let missing = vec![KeyToPath {
            key: "z".into(),
            path: "z".into(),
            mode: None,
        }];
        let e =
            project_keys(&data, Some(&missing), None, "ConfigMap", "ns", "cm", false).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find key z in ConfigMap ns/cm");
        assert!(
            project_keys(&data, Some(&missing), None, "ConfigMap", "ns", "cm", true)
                .unwrap()
                .is_empty()
        );
    }
}
