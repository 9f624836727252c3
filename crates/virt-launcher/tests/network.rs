//! The pod network end to end, inside two network namespaces the test makes (a "node" side and
//! the "pod" the launcher runs in, joined by a veth): the masquerade binding's DHCP gives the
//! guest 10.0.2.2 with the pod's DNS; from the node side the guest answers on the pod address
//! through the NAT (ping, and SSH's banner on a TCP port); the guest reaches the node side; the
//! bridge and tap are gone after the launcher exits.

mod common;

use std::time::{Duration, Instant};

use common::{Launcher, NODE_IP, Options, POD_IP, PodNet};
use launcher_proto::v1::{DomainRequest, DomainState, SyncRequest};
use serde_json::json;

fn vmi(
    name: &str,
    uid: &str,
    binding: serde_json::Value,
    extra_runcmd: &str,
) -> kubevirt_api::v1::VirtualMachineInstance {
    let mut iface = json!({"name": "default"});
    for (k, v) in binding.as_object().expect("binding object") {
        iface[k] = v.clone();
    }
    common::vmi(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "net", "uid": uid},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "domain": {
                "devices": {
                    "disks": [
                        {"name": "containerdisk", "disk": {"bus": "virtio"}},
                        {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
                    ],
                    "interfaces": [iface],
                },
                "resources": {"requests": {"memory": "128Mi"}},
            },
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": "guest:latest"}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {
                    "userData": format!("#cloud-config\nruncmd:\n  - {extra_runcmd}\n"),
                }},
            ],
        },
    }))
}

fn start(net: &PodNet, name: &str, uid: &str, dir_resolv: &std::path::Path) -> Launcher {
    let image = kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
    Launcher::start(Options {
        namespace: "net",
        name,
        uid,
        netns: Some(&net.pod),
        extra_args: vec![
            "--container-disk".into(),
            format!("containerdisk={}", image.qcow2.display()),
            "--resolv-conf".into(),
            dir_resolv.display().to_string(),
        ],
    })
}

async fn wait_banner(net: &PodNet, addr: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        match net.tcp_banner(addr, Duration::from_secs(2)) {
            Ok(b) if !b.is_empty() => return b,
            other => {
                assert!(
                    start.elapsed() < timeout,
                    "no banner from {addr} within {timeout:?}: {other:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masquerade_gives_dhcp_and_forwards_through_the_nat() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let net = PodNet::new(1400);
    let resolv = tempfile::NamedTempFile::new().expect("resolv.conf");
    std::fs::write(
        resolv.path(),
        format!("nameserver {NODE_IP}\nsearch net.svc.cluster.local svc.cluster.local\n"),
    )
    .expect("write");
    let name = common::unique("vm");
    let uid = "6f1c2d3e-0000-4000-8000-00000000b001";
    let mut l = start(&net, &name, uid, resolv.path());
    let mut client = l.client(Duration::from_secs(60)).await;
    let vmi = vmi(
        &name,
        uid,
        json!({"masquerade": {}}),
        &format!("ping -c 1 -W 5 {NODE_IP} && echo outbound-nat-ok"),
    );
    let status = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(&vmi).expect("json"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sync: {e}\n{}", l.log()))
        .into_inner();
    assert_eq!(status.state(), DomainState::Running);
    let iface = status.interfaces.first().expect("an interface status");
    assert_eq!(
        (iface.binding.as_str(), iface.guest_ip.as_str()),
        ("masquerade", "10.0.2.2")
    );
    assert_eq!(iface.ips, vec![POD_IP.to_string()]);

    // DHCP: address, router, DNS from the pod's resolv.conf, MTU from the pod interface.
    l.wait_serial(
        "ci-info: eth0: dhcp 10.0.2.2/24 router 10.0.2.1",
        Duration::from_secs(180),
    )
    .await;
    let console = l.serial_log();
    let dhcp_line = console
        .lines()
        .find(|l| l.contains("ci-info: eth0: dhcp"))
        .unwrap_or_default()
        .to_string();
    assert!(
        dhcp_line.contains(NODE_IP),
        "DNS not handed out: {dhcp_line}"
    );
    l.wait_serial("login:", Duration::from_secs(120)).await;

    // Inbound: SSH's banner on the pod address, from the node side.
    let banner = wait_banner(&net, &format!("{POD_IP}:22"), Duration::from_secs(60)).await;
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
    // Ping the pod address: the guest answers (one routed hop: TTL 63, where the pod's own
    // reply would carry 64).
    let (ok, out) = net.in_node(&["busybox", "ping", "-c", "1", "-W", "5", POD_IP]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ttl=63"),
        "the reply did not come from the guest: {out}"
    );
    // Outbound: the guest reaches the node side through the masquerade.
    l.wait_serial("outbound-nat-ok", Duration::from_secs(60))
        .await;

    // Pause freezes the guest (the NAT leads nowhere), Unpause brings it back.
    let paused = client
        .pause(DomainRequest::default())
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.state(), DomainState::Paused);
    assert!(
        net.tcp_banner(&format!("{POD_IP}:22"), Duration::from_secs(2))
            .is_err(),
        "a paused guest answered"
    );
    let resumed = client
        .unpause(DomainRequest::default())
        .await
        .expect("unpause")
        .into_inner();
    assert_eq!(resumed.state(), DomainState::Running);
    let banner = wait_banner(&net, &format!("{POD_IP}:22"), Duration::from_secs(30)).await;
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");

    let stats = client
        .get_domain_stats(DomainRequest::default())
        .await
        .expect("stats")
        .into_inner();
    assert!(
        stats
            .nets
            .iter()
            .any(|n| n.tap == "tap0" && n.rx_packets > 0),
        "{stats:?}"
    );

    l.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = l
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("launcher exits");
    assert_eq!(exit.code(), Some(0), "{}", l.log());
    let (still, _) = net.in_node(&["true"]);
    assert!(still);
    let gone = std::process::Command::new("ip")
        .args(["-n", &net.pod, "link", "show", "k6t-eth0"])
        .output()
        .expect("ip");
    assert!(!gone.status.success(), "the bridge outlived the launcher");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_hands_the_pod_address_to_the_guest_and_restores_it() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let net = PodNet::new(1500);
    let resolv = tempfile::NamedTempFile::new().expect("resolv.conf");
    std::fs::write(resolv.path(), format!("nameserver {NODE_IP}\n")).expect("write");
    let pod_mac = common::sh(&["ip", "-n", &net.pod, "-json", "link", "show", "eth0"]);
    let pod_mac: serde_json::Value = serde_json::from_str(&pod_mac).expect("json");
    let pod_mac = pod_mac[0]["address"].as_str().expect("mac").to_string();
    let name = common::unique("br");
    let uid = "6f1c2d3e-0000-4000-8000-00000000b002";
    let mut l = start(&net, &name, uid, resolv.path());
    let mut client = l.client(Duration::from_secs(60)).await;
    let vmi = vmi(
        &name,
        uid,
        json!({"bridge": {}}),
        &format!("ping -c 1 -W 5 {NODE_IP} && echo bridged-out-ok"),
    );
    let status = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(&vmi).expect("json"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sync: {e}\n{}", l.log()))
        .into_inner();
    let iface = status.interfaces.first().expect("an interface status");
    assert_eq!(
        (iface.binding.as_str(), iface.guest_ip.as_str()),
        ("bridge", POD_IP)
    );
    assert_eq!(iface.mac, pod_mac, "the guest takes over the pod's MAC");

    l.wait_serial(
        &format!("ci-info: eth0: dhcp {POD_IP}/24 router {NODE_IP}"),
        Duration::from_secs(180),
    )
    .await;
    l.wait_serial("login:", Duration::from_secs(120)).await;
    let banner = wait_banner(&net, &format!("{POD_IP}:22"), Duration::from_secs(60)).await;
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
    l.wait_serial("bridged-out-ok", Duration::from_secs(60))
        .await;

    l.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = l
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("launcher exits");
    assert_eq!(exit.code(), Some(0), "{}", l.log());
    // eth0 has its address, MAC and default route back.
    let addr = common::sh(&["ip", "-n", &net.pod, "-json", "addr", "show", "eth0"]);
    assert!(addr.contains(POD_IP) && addr.contains(&pod_mac), "{addr}");
    let route = common::sh(&["ip", "-n", &net.pod, "route", "show", "default"]);
    assert!(route.contains(NODE_IP), "{route}");
}
