//! Volumes in the guest: a ConfigDrive seed (datasource ConfigDrive) carrying an access
//! credential's SSH key, configMap and secret
//! volumes as labelled ISO disks the guest mounts and reads, a serviceAccount ISO, an
//! emptyDisk and a created hostDisk of the asked sizes, and two PVCs the guest writes to (a
//! filesystem claim's disk.img and a block claim on a loop device) whose data is in their
//! backing files after the stop; all of the scratch files gone after the stop.

mod common;

use std::time::Duration;

use common::{Launcher, Options};
use launcher_proto::v1::{DomainState, SyncRequest};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_drive_maps_secrets_disks_and_claims_reach_the_guest() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let image = kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
    let name = common::unique("vol");
    let uid = "6f1c2d3e-0000-4000-8000-00000000c001";
    let sa = tempfile::tempdir().expect("sa dir");
    std::fs::write(sa.path().join("namespace"), "volumes").expect("write");
    std::fs::write(sa.path().join("token"), "not-a-real-token").expect("write");
    // The block PVC's device (a loop device over a file), as the kubelet would hand it over.
    let block_dir = tempfile::tempdir().expect("block dir");
    let block_file = block_dir.path().join("block.img");
    std::fs::write(&block_file, vec![0u8; 8 << 20]).expect("write");
    let block = LoopDevice::attach(&block_file);
    let mut l = Launcher::start(Options {
        namespace: "volumes",
        name: &name,
        uid,
        netns: None,
        extra_args: vec![
            "--container-disk".into(),
            format!("containerdisk={}", image.qcow2.display()),
            "--service-account-dir".into(),
            sa.path().display().to_string(),
            "--pvc".into(),
            format!("blockclaim={}", block.0),
        ],
    });
    // What the kubelet would have mounted in the pod (upstream's in-pod layout).
    let private = l.dir.path().join("private");
    std::fs::create_dir_all(private.join("config-map/config")).expect("mkdir");
    std::fs::write(
        private.join("config-map/config/greeting"),
        "hello-from-configmap\n",
    )
    .expect("write");
    std::fs::create_dir_all(private.join("secret/secret")).expect("mkdir");
    std::fs::write(
        private.join("secret/secret/password"),
        "s3cret-from-secret\n",
    )
    .expect("write");

    // An access credential's Secret (virt-controller mounts it as `<secret>-access-cred`).
    std::fs::create_dir_all(private.join("secret/guest-keys-access-cred")).expect("mkdir");
    std::fs::write(
        private.join("secret/guest-keys-access-cred/key"),
        "ssh-ed25519 AAAA-kvrs-access-cred test@kvrs\n",
    )
    .expect("write");

    // A filesystem PVC (its disk.img where the kubelet mounts the claim) and a block PVC (a
    // loop device the test made, handed over as `--pvc`), both written by the guest.
    let claim = private.join("vmi-disks/claim");
    std::fs::create_dir_all(&claim).expect("mkdir");
    std::fs::write(claim.join("disk.img"), vec![0u8; 16 << 20]).expect("write");
    let host_disk = l.dir.path().join("host/disk.img");

    let mount = |label: &str, file: &str| {
        format!(
            "mkdir -p /mnt/{label} && mount -t iso9660 -o ro $(findfs LABEL={label}) /mnt/{label} && cat /mnt/{label}/{file}"
        )
    };
    let user_data = format!(
        "#cloud-config\nhostname: volumes-vm\nruncmd:\n  - {}\n  - {}\n  - echo empty-disk-sectors $(cat /sys/block/vdf/size)\n  - echo host-disk-sectors $(cat /sys/block/vdg/size)\n  - printf kvrs-pvc-data | dd of=/dev/vdh conv=fsync 2>/dev/null && echo pvc-written\n  - printf kvrs-block-data | dd of=/dev/vdi conv=fsync 2>/dev/null && echo block-written\n  - echo access-cred-keys-$(grep -c AAAA-kvrs-access-cred /root/.ssh/authorized_keys)\n",
        mount("cfgdata", "greeting"),
        mount("secdata", "password"),
    );
    let vmi = common::vmi(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "volumes", "uid": uid},
        "spec": {
            "domain": {
                "devices": {
                    "autoattachPodInterface": false,
                    "disks": [
                        {"name": "containerdisk", "disk": {"bus": "virtio"}},
                        {"name": "configdrive", "disk": {"bus": "virtio"}},
                        {"name": "config", "disk": {"bus": "virtio"}},
                        {"name": "secret", "disk": {"bus": "virtio"}},
                        {"name": "sa", "disk": {"bus": "virtio"}},
                        {"name": "scratch", "disk": {"bus": "virtio"}},
                        {"name": "host", "disk": {"bus": "virtio"}},
                        {"name": "claim", "disk": {"bus": "virtio"}},
                        {"name": "blockclaim", "disk": {"bus": "virtio"}},
                    ],
                },
                "resources": {"requests": {"memory": "128Mi"}},
            },
            "accessCredentials": [{"sshPublicKey": {
                "source": {"secret": {"secretName": "guest-keys"}},
                "propagationMethod": {"configDrive": {}},
            }}],
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": "guest:latest"}},
                {"name": "configdrive", "cloudInitConfigDrive": {
                    "userDataBase64": base64(&user_data),
                }},
                {"name": "config", "configMap": {"name": "app-config", "volumeLabel": "cfgdata"}},
                {"name": "secret", "secret": {"secretName": "app-secret", "volumeLabel": "secdata"}},
                {"name": "sa", "serviceAccount": {"serviceAccountName": "default"}},
                {"name": "scratch", "emptyDisk": {"capacity": "64Mi"}},
                {"name": "host", "hostDisk": {
                    "path": host_disk, "type": "DiskOrCreate", "capacity": "32Mi",
                }},
                {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "blockclaim", "persistentVolumeClaim": {"claimName": "raw"}},
            ],
        },
    }));
    let mut client = l.client(Duration::from_secs(60)).await;
    let st = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(&vmi).expect("json"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sync: {e}\n{}", l.log()))
        .into_inner();
    assert_eq!(st.state(), DomainState::Running);
    for iso in [
        "cloud-init/configdrive.iso",
        "config/config.iso",
        "config/secret.iso",
        "config/sa.iso",
    ] {
        assert!(l.scratch.join(iso).is_file(), "no {iso}");
    }

    l.wait_serial("datasource ConfigDrive", Duration::from_secs(180))
        .await;
    l.wait_serial("hello-from-configmap", Duration::from_secs(120))
        .await;
    l.wait_serial("s3cret-from-secret", Duration::from_secs(30))
        .await;
    // 64 MiB in 512-byte sectors.
    l.wait_serial("empty-disk-sectors 131072", Duration::from_secs(30))
        .await;
    // 32 MiB, made by the launcher (DiskOrCreate).
    l.wait_serial("host-disk-sectors 65536", Duration::from_secs(30))
        .await;
    l.wait_serial("pvc-written", Duration::from_secs(30)).await;
    l.wait_serial("block-written", Duration::from_secs(30))
        .await;
    // The access credential's key was authorized through the config drive's public_keys.
    l.wait_serial("access-cred-keys-1", Duration::from_secs(30))
        .await;

    l.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = l
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("launcher exits");
    assert_eq!(exit.code(), Some(0), "{}", l.log());
    for dir in ["disks", "cloud-init", "config"] {
        assert!(!l.scratch.join(dir).exists(), "{dir} left behind");
    }
    // The claims hold what the guest wrote (no overlay in between); the host disk stays.
    let starts = |path: &std::path::Path, want: &[u8]| {
        let data = std::fs::read(path).expect("read the backing file");
        assert!(
            data.starts_with(want),
            "{} starts with {:?}",
            path.display(),
            String::from_utf8_lossy(&data[..want.len().min(data.len())])
        );
    };
    starts(&claim.join("disk.img"), b"kvrs-pvc-data");
    drop(block);
    starts(&block_file, b"kvrs-block-data");
    assert_eq!(
        std::fs::metadata(&host_disk).expect("host disk").len(),
        32 << 20
    );
}

/// A loop device over a file, detached when dropped (also when the test fails).
struct LoopDevice(String);

impl LoopDevice {
    fn attach(file: &std::path::Path) -> LoopDevice {
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDevice(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["--detach", &self.0])
            .status();
    }
}

/// Standard base64 (test-side encoder, to exercise `userDataBase64`).
fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
