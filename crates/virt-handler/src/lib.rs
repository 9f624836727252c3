//! virt-handler: KubeVirt's per-node agent.
//!
//! | module | what | kind |
//! | --- | --- | --- |
//! | `status` | VMI phase, conditions, interfaces and guest OS info from what the launcher reports | pure |
//! | `heartbeat` | the node's `kubevirt.io/schedulable` label and `kubevirt.io/heartbeat` stamp | I/O (patch pure) |

pub mod heartbeat;
pub mod status;
