//! virt-handler: KubeVirt's per-node agent.
//!
//! | module | what | kind |
//! | --- | --- | --- |
//! | `status` | VMI phase, conditions, interfaces and guest OS info from what the launcher reports | pure |
//! | `action` | what to ask the launcher (Sync, Shutdown, Delete) for a VMI and its domain | pure |
//! | `events` | the events recorded on a VMI (upstream's reasons and messages) for a launcher call or a phase change | pure |
//! | `controller` | the kube-rs VMI controller carrying it out against the launchers on this node | I/O |
//! | `containerdisk` | which data container holds each containerDisk, and its root on this node | pure (+ /proc) |
//! | `screenshot` | one VNC frame over RFB (the `vnc/screenshot` subresource) and its PNG encoding | pure + I/O |
//! | `server` | the console server (mutual TLS): console/VNC websockets, pause, guest info, for virt-api | I/O |
//! | `portforward` | VMI port-forward: a TCP connection to the pod address made inside the pod's network namespace | pure plan + I/O |
//! | `migration` | live migration: each side's next step (pure) and the TCP/unix proxies between the pods | pure + I/O |
//! | `watch` | one launcher event stream per active VMI, waking its reconcile when the domain changes | I/O |
//! | `heartbeat` | the node's `kubevirt.io/schedulable` label and `kubevirt.io/heartbeat` stamp | I/O (patch pure) |

pub mod action;
pub mod containerdisk;
pub mod controller;
pub mod events;
pub mod heartbeat;
pub mod migration;
pub mod portforward;
pub mod screenshot;
pub mod server;
pub mod status;
pub mod watch;
