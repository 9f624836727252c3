//! virt-api: KubeVirt's API component. Admission webhooks that default and validate VMs and
//! VMIs with the api crate's upstream-compatible logic, served over HTTPS and registered with
//! upstream's webhook configurations; the subresource API (start, stop, console, ...) comes with
//! the aggregation support of the embedded API server.

pub mod admission;
pub mod authz;
pub mod certs;
pub mod handler;
pub mod lifecycle;
pub mod server;
pub mod subresources;
pub mod vmi;
pub mod webhooks;
