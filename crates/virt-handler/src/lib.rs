//! virt-handler: KubeVirt's per-node agent.
//!
//! | module | what | kind |
//! | --- | --- | --- |
//! | `status` | VMI phase, conditions, interfaces and guest OS info from what the launcher reports | pure |

pub mod status;
