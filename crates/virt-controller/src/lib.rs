//! virt-controller: KubeVirt's cluster-wide controllers. The decisions are pure functions in
//! their own modules (`vm`, `vmi`, `instancetype`, `replicaset`, `preset`, `node`), unit-tested
//! without a cluster; `controllers` carries them out with kube-rs.

pub mod conditions;
pub mod controllers;
pub mod instancetype;
pub mod leader;
pub mod migration;
pub mod names;
pub mod node;
pub mod preset;
pub mod replicaset;
pub mod selector;
pub mod uuid;
pub mod vm;
pub mod vmi;
