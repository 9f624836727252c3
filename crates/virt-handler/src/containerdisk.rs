//! Handing containerDisks to the launcher.
//!
//! virt-controller gives each containerDisk volume a container `volume<name>` in the launcher
//! pod whose image holds the disk under `disk/`. The launcher cannot know where that
//! container's filesystem is; the node agent can, through the container's process (as
//! upstream's virt-handler does), and passes the path in each Sync.
//!
//! The embedded kubelet reports a data container as `containerID: kvrs://<pid>`, the pid of a
//! process whose root directory is the extracted image; `/proc/<pid>/root` resolves to that
//! directory on this node. Other runtimes' ids are not resolved here (the launcher then says
//! which volume it has no image for).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kubevirt_api::v1::VirtualMachineInstance;

/// The container virt-controller renders for a containerDisk volume.
pub fn container_name(volume: &str) -> String {
    format!("volume{volume}")
}

/// The pid behind an embedded-kubelet container id (`kvrs://<pid>`).
pub fn kvrs_pid(container_id: &str) -> Option<i32> {
    container_id
        .strip_prefix("kvrs://")?
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// containerDisk volume -> the running data container's pid, for the VMI's containerDisk
/// volumes whose container runs in `pod`.
pub fn data_container_pids(vmi: &VirtualMachineInstance, pod: &Pod) -> HashMap<String, i32> {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    vmi.spec
        .volumes
        .iter()
        .filter(|v| v.volume_source.container_disk.is_some())
        .filter_map(|v| {
            let want = container_name(&v.name);
            let pid = statuses
                .iter()
                .find(|s| s.name == want)
                .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()))
                .and_then(|s| s.container_id.as_deref())
                .and_then(kvrs_pid)?;
            Some((v.name.clone(), pid))
        })
        .collect()
}

/// The paths to send the launcher: each data container's image as every mount namespace on the
/// node sees it. A container's root is usually a mount private to it (the embedded kubelet's
/// overlay of the extracted image, as containerd's is), so neither its mount point nor
/// `/proc/<pid>/root` (which QEMU's unprivileged user could not follow anyway) reaches the
/// launcher; the overlay's image layer does, and holds the same unmodified files.
pub fn resolve(pids: &HashMap<String, i32>) -> HashMap<String, String> {
    pids.iter()
        .filter_map(|(volume, pid)| {
            let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok();
            let root = match mountinfo.as_deref().and_then(image_layer_of_root) {
                Some(layer) => layer,
                None => std::fs::read_link(format!("/proc/{pid}/root"))
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            };
            Some((volume.clone(), root))
        })
        .collect()
}

/// The lowest image layer of an overlay mounted at `/` in a process's `mountinfo`: the
/// directory holding the image's files on the node (a single-layer containerDisk has just one).
pub fn image_layer_of_root(mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/"))
        .filter_map(|l| {
            let (_, fs) = l.split_once(" - ")?;
            let mut f = fs.split(' ');
            if f.next()? != "overlay" {
                return None;
            }
            let options = f.nth(1)?;
            let lower = options
                .split(',')
                .find_map(|o| o.strip_prefix("lowerdir="))?;
            // Layers are listed top first; the image's own files are in the last one.
            lower.rsplit(':').next().map(unescape)
        })
        .next_back()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(char::from(b));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi() -> VirtualMachineInstance {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "v", "namespace": "default"},
            "spec": {"domain": {"devices": {}}, "volumes": [
                {"name": "root", "containerDisk": {"image": "r/guest:latest"}},
                {"name": "other", "containerDisk": {"image": "r/other:latest"}},
                {"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config"}}
            ]}
        }))
        .expect("vmi")
    }

    fn pod(statuses: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "virt-launcher-v-abcde"},
            "status": {"containerStatuses": statuses}
        }))
        .expect("pod")
    }

    #[test]
    fn pids_of_running_data_containers_only() {
        let p = pod(serde_json::json!([
            {"name": "compute", "ready": true, "restartCount": 0, "image": "l", "imageID": "",
             "containerID": "kvrs://10", "state": {"running": {}}},
            {"name": "volumeroot", "ready": true, "restartCount": 0, "image": "g", "imageID": "",
             "containerID": "kvrs://42", "state": {"running": {}}},
            {"name": "volumeother", "ready": false, "restartCount": 0, "image": "o", "imageID": "",
             "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]));
        let pids = data_container_pids(&vmi(), &p);
        assert_eq!(pids, HashMap::from([("root".to_string(), 42)]));
    }

    #[test]
    fn container_ids() {
        assert_eq!(kvrs_pid("kvrs://123"), Some(123));
        assert_eq!(kvrs_pid("kvrs://0"), None);
        assert_eq!(kvrs_pid("containerd://abc"), None);
        assert_eq!(kvrs_pid("kvrs://x"), None);
    }

    #[test]
    fn image_layer_of_an_overlay_root() {
        let mi = "101 90 0:38 / /proc rw - proc proc rw\n\
            102 103 0:39 / / rw,relatime - overlay overlay rw,lowerdir=/d/images/rootfs/ab\\040c,upperdir=/d/u,workdir=/d/w,uuid=on\n";
        assert_eq!(
            image_layer_of_root(mi).as_deref(),
            Some("/d/images/rootfs/ab c")
        );
        let layered =
            "1 0 0:1 / / rw - overlay overlay rw,lowerdir=/top:/base,upperdir=/u,workdir=/w\n";
        assert_eq!(image_layer_of_root(layered).as_deref(), Some("/base"));
        let plain = "1 0 8:1 / / rw - ext4 /dev/vda rw\n";
        assert_eq!(image_layer_of_root(plain), None);
    }

    #[test]
    fn resolves_through_proc() {
        let me = std::process::id() as i32;
        let got = resolve(&HashMap::from([("root".to_string(), me)]));
        assert_eq!(got.get("root").map(String::as_str), Some("/"));
    }
}
