//! The cluster-wide settings defaulting and validation consult, resolved from the KubeVirt CR's
//! `spec.configuration` with upstream's defaults filled in. Pure data: whoever runs the webhooks
//! reads the KubeVirt CR and builds this.

use std::collections::BTreeSet;

use crate::v1::{KubeVirtConfiguration, VMRolloutStrategy};

/// How an interface attaches to the pod network when the user names none.
pub const BINDING_BRIDGE: &str = "bridge";
pub const BINDING_MASQUERADE: &str = "masquerade";
pub const BINDING_SLIRP: &str = "slirp";

/// Settings that change what defaulting and validation do.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// The architecture VMIs get when they name none (`amd64` here).
    pub default_architecture: String,
    /// A cluster-wide machine type overriding the per-architecture default.
    pub machine_type: Option<String>,
    /// Machine types (glob patterns) the cluster can emulate, per architecture default.
    pub emulated_machines: Option<Vec<String>>,
    /// The CPU model VMIs get when they name none (`host-model` unless configured).
    pub cpu_model: Option<String>,
    /// The CPU request given to VMIs without one; upstream's 100m means "do not default".
    pub cpu_request: Option<String>,
    /// The eviction strategy VMIs get when they name none.
    pub eviction_strategy: Option<String>,
    /// The binding of the interface added when a VMI names no network: `bridge`, `masquerade`.
    pub default_network_interface: String,
    /// Whether bridge binding may be used on the pod network.
    pub permit_bridge_interface_on_pod_network: bool,
    /// Feature gates switched on (`developerConfiguration.featureGates`).
    pub feature_gates: BTreeSet<String>,
    /// Feature gates switched off explicitly.
    pub disabled_feature_gates: BTreeSet<String>,
    /// Whether changes to running VMs are applied live (upstream default) or staged.
    pub live_update: bool,
    /// CPU socket / memory hotplug headroom factor (upstream default 4).
    pub max_hotplug_ratio: u32,
    /// A fixed maximum socket count for hotplug, if configured.
    pub max_cpu_sockets: Option<u32>,
    /// A fixed maximum guest memory for hotplug, if configured.
    pub max_guest: Option<String>,
    /// The volume sources (JSON names, e.g. `containerDisk`) this cluster can provide; `None`
    /// means every source. Validation refuses the others by name instead of letting the VM fail
    /// later in its launcher.
    pub supported_volume_sources: Option<BTreeSet<String>>,
}

/// Gates upstream turns on unless disabled (Beta or GA); any other gate must be listed.
const ON_BY_DEFAULT: &[&str] = &[
    "DeclarativeHotplugVolumes",
    "PasstBinding",
    "RebootPolicy",
    "DecentralizedLiveMigration",
    "WorkloadEncryptionSEV",
    "NUMA",
    "GPU",
    "PersistentReservation",
    "VirtIOFSConfigVolumes",
    "PanicDevices",
    "VideoConfig",
    "ExpandDisks",
    "HotplugNICs",
    "VMLiveUpdateFeatures",
    "LiveMigration",
    "SRIOVLiveMigration",
    "HotplugVolumes",
    "Snapshot",
];

impl Default for ClusterConfig {
    /// A cluster as `virt-cluster up` makes it: amd64, q35, masquerade on the pod network
    /// (the binding our issue contract names; upstream's own default is bridge, and a KubeVirt
    /// CR can still choose it), live updates on.
    fn default() -> Self {
        Self {
            default_architecture: "amd64".into(),
            machine_type: None,
            emulated_machines: None,
            cpu_model: None,
            cpu_request: None,
            eviction_strategy: None,
            default_network_interface: BINDING_MASQUERADE.into(),
            permit_bridge_interface_on_pod_network: true,
            feature_gates: BTreeSet::new(),
            disabled_feature_gates: BTreeSet::new(),
            live_update: true,
            max_hotplug_ratio: 4,
            max_cpu_sockets: None,
            max_guest: None,
            supported_volume_sources: None,
        }
    }
}

impl ClusterConfig {
    /// Resolves a KubeVirt CR's configuration over our defaults.
    pub fn from_kubevirt(cfg: &KubeVirtConfiguration) -> Self {
        let mut out = Self::default();
        if let Some(arch) = cfg.architecture_configuration.as_ref() {
            if let Some(a) = arch.default_architecture.clone().filter(|a| !a.is_empty()) {
                out.default_architecture = a;
            }
            if let Some(amd64) = arch.amd64.as_ref() {
                if !amd64.emulated_machines.is_empty() {
                    out.emulated_machines = Some(amd64.emulated_machines.clone());
                }
                out.machine_type = amd64.machine_type.clone().filter(|m| !m.is_empty());
            }
        }
        if !cfg.emulated_machines.is_empty() {
            out.emulated_machines = Some(cfg.emulated_machines.clone());
        }
        if let Some(m) = cfg.machine_type.clone().filter(|m| !m.is_empty()) {
            out.machine_type = Some(m);
        }
        out.cpu_model = cfg.cpu_model.clone().filter(|m| !m.is_empty());
        out.cpu_request = cfg.cpu_request.as_ref().map(|q| q.0.clone());
        out.eviction_strategy = cfg.eviction_strategy.clone();
        if let Some(net) = cfg.network.as_ref() {
            if let Some(b) = net
                .default_network_interface
                .clone()
                .filter(|b| !b.is_empty())
            {
                out.default_network_interface = b;
            }
            if let Some(p) = net.permit_bridge_interface_on_pod_network {
                out.permit_bridge_interface_on_pod_network = p;
            }
        }
        if let Some(dev) = cfg.developer_configuration.as_ref() {
            out.feature_gates = dev.feature_gates.iter().cloned().collect();
            out.disabled_feature_gates = dev.disabled_feature_gates.iter().cloned().collect();
        }
        if let Some(s) = cfg.vm_rollout_strategy.as_ref() {
            out.live_update = *s == VMRolloutStrategy::LiveUpdate;
        }
        if let Some(live) = cfg.live_update_configuration.as_ref() {
            if let Some(r) = live
                .max_hotplug_ratio
                .and_then(|r| u32::try_from(r).ok())
                .filter(|r| *r > 0)
            {
                out.max_hotplug_ratio = r;
            }
            out.max_cpu_sockets = live
                .max_cpu_sockets
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0);
            out.max_guest = live.max_guest.as_ref().map(|q| q.0.clone());
        }
        out
    }

    /// Whether a feature gate is on: listed, or on by default and not disabled.
    pub fn gate(&self, name: &str) -> bool {
        if self.disabled_feature_gates.contains(name) {
            return false;
        }
        self.feature_gates.contains(name) || ON_BY_DEFAULT.contains(&name)
    }

    /// The machine type for an architecture when the VMI names none.
    pub fn default_machine_type(&self, arch: &str) -> String {
        if let Some(m) = &self.machine_type {
            return m.clone();
        }
        match arch {
            "arm64" => "virt",
            "s390x" => "s390-ccw-virtio",
            _ => "q35",
        }
        .to_string()
    }

    /// The machine type patterns the cluster accepts for an architecture.
    pub fn emulated_machines(&self, arch: &str) -> Vec<String> {
        if let Some(m) = &self.emulated_machines {
            return m.clone();
        }
        match arch {
            "arm64" => vec!["virt*".into()],
            "s390x" => vec!["s390-ccw-virtio*".into()],
            _ => vec!["q35*".into(), "pc-q35*".into()],
        }
    }
}
