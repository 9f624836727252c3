//! virt-handler: KubeVirt's per-node agent.
//!
//! | module | what | kind |
//! | --- | --- | --- |
//! | `status` | VMI phase, conditions, interfaces and guest OS info from what the launcher reports | pure |
//! | `action` | what to ask the launcher (Sync, Shutdown, Delete) for a VMI and its domain | pure |
//! | `controller` | the kube-rs VMI controller carrying it out against the launchers on this node | I/O |
//! | `heartbeat` | the node's `kubevirt.io/schedulable` label and `kubevirt.io/heartbeat` stamp | I/O (patch pure) |

pub mod action;
pub mod controller;
pub mod heartbeat;
pub mod status;
