//! What `virt-cluster up` runs, in which order and with which flags; restart back-off; the
//! cluster's persistent settings. Pure: no process is started here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings of one cluster, stored in `DATA/cluster.json` so that `up` after `down` runs
/// the same cluster (same address, nodes and namespaces) without repeating the flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub data_dir: PathBuf,
    /// The API server's address (a concrete port: `up` resolves port 0 once).
    pub listen: SocketAddr,
    pub nodes: u32,
    /// Node names are `<prefix>01`, `<prefix>02`, ...; network namespaces follow them.
    pub node_prefix: String,
    /// Where virt-api, virt-controller, virt-handler, virt-launcher and virtctl are.
    pub bin_dir: PathBuf,
    /// virt-api's HTTPS port on loopback (the Endpoints of Service `kubevirt/virt-api`).
    pub virt_api_port: u16,
}

/// The programs a cluster needs besides `virt-cluster` itself.
pub const SIBLINGS: &[&str] = &[
    "virt-api",
    "virt-controller",
    "virt-handler",
    "virt-launcher",
];

/// How long `up` waits for the cluster to become ready by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

impl ClusterConfig {
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes)
            .map(|i| format!("{}{i:02}", self.node_prefix))
            .collect()
    }

    /// The network namespace joining the nodes: `kvrs-fabric` for the default prefix, else one
    /// of the cluster's own, so two clusters on one machine do not share it.
    pub fn fabric_netns(&self) -> String {
        if self.node_prefix == "node" {
            "kvrs-fabric".into()
        } else {
            format!("kvrs-fabric-{}", self.node_prefix)
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    pub fn config_path(data_dir: &Path) -> PathBuf {
        data_dir.join("cluster.json")
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    pub fn component_kubeconfig(&self, component: &str) -> PathBuf {
        self.data_dir
            .join("kubeconfigs")
            .join(format!("{component}.kubeconfig"))
    }

    pub fn node_kubeconfig(&self, node: &str) -> PathBuf {
        self.data_dir
            .join("kubeconfigs")
            .join(format!("node-{node}.kubeconfig"))
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("pki").join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.data_dir.join("pki").join("ca.key")
    }

    pub fn kubelet_root(&self, node: &str) -> PathBuf {
        self.data_dir.join("nodes").join(node).join("kubelet")
    }

    /// Where virt-api writes its webhook configurations and CA.
    pub fn virt_api_dir(&self) -> PathBuf {
        self.run_dir().join("virt-api")
    }

    pub fn server_url(&self) -> String {
        format!("https://{}", self.listen)
    }
}

/// Checks a node prefix: it becomes part of node names (DNS labels) and namespace names.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 20
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What the supervisor waits for after starting a component, before the next stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Nothing: the next component starts at once.
    None,
    /// The API server answers `/readyz`; then the cluster objects (namespace, CRDs) are applied.
    ApiServer,
    /// virt-api wrote its webhook configurations; then they, its Service, Endpoints and
    /// APIService are applied (again after every restart: its CA is new each time).
    VirtApi,
}

/// Which program a component runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `virt-cluster <subcommand> ...` (this executable).
    SelfExe,
    /// A sibling binary in the bin dir.
    Sibling(&'static str),
}

/// One process of the cluster, in the role it would have as a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Unique in the cluster: `apiserver`, `scheduler`, `kubelet-<node>`, `virt-api`,
    /// `virt-controller`, `virt-handler-<node>`. Names the pid and log files.
    pub name: String,
    pub program: Program,
    pub args: Vec<String>,
    pub gate: Gate,
    /// Seconds to wait after SIGTERM before SIGKILL.
    pub stop_grace: u64,
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The components in start order (stopped in reverse).
pub fn plan(cfg: &ClusterConfig) -> Vec<Component> {
    let data = path(&cfg.data_dir);
    let mut out = vec![Component {
        name: "apiserver".into(),
        program: Program::SelfExe,
        args: vec![
            "apiserver".into(),
            "--data-dir".into(),
            data.clone(),
            "--listen".into(),
            cfg.listen.to_string(),
        ],
        gate: Gate::ApiServer,
        stop_grace: 10,
    }];
    out.push(Component {
        name: "scheduler".into(),
        program: Program::SelfExe,
        args: vec![
            "scheduler".into(),
            "--kubeconfig".into(),
            path(&cfg.component_kubeconfig("scheduler")),
        ],
        gate: Gate::None,
        stop_grace: 5,
    });
    for (i, node) in cfg.node_names().iter().enumerate() {
        let mut args = vec![
            "kubelet".into(),
            "--data-dir".into(),
            data.clone(),
            "--kubeconfig".into(),
            path(&cfg.node_kubeconfig(node)),
            "--node-name".into(),
            node.clone(),
            "--node-index".into(),
            (i + 1).to_string(),
            "--fabric-netns".into(),
            cfg.fabric_netns(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--bin-dir".into(),
            path(&cfg.bin_dir),
        ];
        if i == 0 {
            args.push("--local-path-provisioner".into());
        }
        out.push(Component {
            name: format!("kubelet-{node}"),
            program: Program::SelfExe,
            args,
            gate: Gate::None,
            stop_grace: 15,
        });
    }
    out.push(Component {
        name: "virt-api".into(),
        program: Program::Sibling("virt-api"),
        args: vec![
            "--listen".into(),
            format!("127.0.0.1:{}", cfg.virt_api_port),
            "--webhooks-out".into(),
            path(&cfg.virt_api_dir()),
            "--service".into(),
            "kubevirt/virt-api:443".into(),
            "--kubeconfig".into(),
            path(&cfg.component_kubeconfig("virt-api")),
            // The cluster CA: virt-api mints its client certificate for the virt-handlers'
            // console servers from it.
            "--ca-file".into(),
            path(&cfg.ca_cert()),
            "--ca-key-file".into(),
            path(&cfg.ca_key()),
        ],
        gate: Gate::VirtApi,
        stop_grace: 5,
    });
    out.push(Component {
        name: "virt-controller".into(),
        program: Program::Sibling("virt-controller"),
        args: vec![
            "--kubeconfig".into(),
            path(&cfg.component_kubeconfig("virt-controller")),
            // One replica: no Lease to wait for after an unclean stop.
            "--no-leader-election".into(),
        ],
        gate: Gate::None,
        stop_grace: 10,
    });
    for node in cfg.node_names() {
        out.push(Component {
            name: format!("virt-handler-{node}"),
            program: Program::Sibling("virt-handler"),
            args: vec![
                "--kubeconfig".into(),
                path(&cfg.component_kubeconfig("virt-handler")),
                "--hostname-override".into(),
                node.clone(),
                "--kubelet-root".into(),
                path(&cfg.kubelet_root(&node)),
                // The console server on loopback, a free port each (published in the Node's
                // annotation for virt-api), with a certificate from the cluster CA.
                "--console-server-port".into(),
                "0".into(),
                "--listen-address".into(),
                "127.0.0.1".into(),
                "--ca-file".into(),
                path(&cfg.ca_cert()),
                "--ca-key-file".into(),
                path(&cfg.ca_key()),
            ],
            gate: Gate::None,
            stop_grace: 10,
        });
    }
    out
}

/// `virt-cluster kubelet --teardown` arguments for a node: kills its pods, removes its network
/// namespaces (and the fabric with the last node), cgroups and mounts.
pub fn teardown_args(cfg: &ClusterConfig, node: &str, index: usize) -> Vec<String> {
    vec![
        "kubelet".into(),
        "--data-dir".into(),
        path(&cfg.data_dir),
        "--node-name".into(),
        node.into(),
        "--node-index".into(),
        (index + 1).to_string(),
        "--fabric-netns".into(),
        cfg.fabric_netns(),
        "--teardown".into(),
    ]
}

/// Restart delay after the `restarts`-th consecutive crash: at once the first time, then 1 s
/// doubling up to 30 s. A component that ran `RESET_AFTER` before crashing starts over.
pub fn backoff(restarts_in_a_row: u32) -> Duration {
    match restarts_in_a_row {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs((1u64 << (n - 2).min(5)).min(30)),
    }
}

/// Whether a VMI in `phase` may still have a guest that a graceful stop should wait for
/// (`Running`: virt-handler shuts it down and reports the final phase). Earlier phases have
/// no guest yet and final ones none any more.
pub fn guest_may_run(phase: &str) -> bool {
    phase == "Running"
}

/// How long a component must run for its crash count to start over.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(nodes: u32) -> ClusterConfig {
        ClusterConfig {
            data_dir: "/d".into(),
            listen: "127.0.0.1:6443".parse().expect("addr"),
            nodes,
            node_prefix: "node".into(),
            bin_dir: "/b".into(),
            virt_api_port: 8443,
        }
    }

    #[test]
    fn order_and_roles() {
        let p = plan(&cfg(2));
        let names: Vec<&str> = p.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "apiserver",
                "scheduler",
                "kubelet-node01",
                "kubelet-node02",
                "virt-api",
                "virt-controller",
                "virt-handler-node01",
                "virt-handler-node02"
            ]
        );
        assert_eq!(p[0].gate, Gate::ApiServer);
        assert_eq!(p[4].gate, Gate::VirtApi);
        // Only the first kubelet runs the provisioner; each has its own index and identity.
        assert!(p[2].args.contains(&"--local-path-provisioner".to_string()));
        assert!(!p[3].args.contains(&"--local-path-provisioner".to_string()));
        let joined = p[3].args.join(" ");
        assert!(joined.contains("--node-index 2"), "{joined}");
        assert!(
            joined.contains("--kubeconfig /d/kubeconfigs/node-node02.kubeconfig"),
            "{joined}"
        );
        let h = p[7].args.join(" ");
        assert!(h.contains("--kubelet-root /d/nodes/node02/kubelet"), "{h}");
        assert_eq!(p[7].program, Program::Sibling("virt-handler"));
        assert!(
            h.contains("--console-server-port 0 --listen-address 127.0.0.1"),
            "{h}"
        );
        assert!(p[4].args.join(" ").contains("--ca-key-file /d/pki/ca.key"));
    }

    #[test]
    fn namespaces_are_per_prefix() {
        let mut c = cfg(1);
        assert_eq!(c.fabric_netns(), "kvrs-fabric");
        c.node_prefix = "t42n".into();
        assert_eq!(c.fabric_netns(), "kvrs-fabric-t42n");
        assert_eq!(c.node_names(), ["t42n01"]);
        assert!(
            teardown_args(&c, "t42n01", 0)
                .join(" ")
                .contains("--fabric-netns kvrs-fabric-t42n")
        );
    }

    #[test]
    fn which_vmis_to_wait_for() {
        assert!(guest_may_run("Running"));
        for p in [
            "",
            "Pending",
            "Scheduling",
            "Scheduled",
            "Succeeded",
            "Failed",
        ] {
            assert!(!guest_may_run(p), "{p}");
        }
    }

    #[test]
    fn prefixes() {
        assert!(valid_prefix("node"));
        assert!(valid_prefix("t1-a"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("Node"));
        assert!(!valid_prefix("1n"));
        assert!(!valid_prefix("a/b"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(6), Duration::from_secs(16));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
