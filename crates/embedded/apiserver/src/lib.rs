//! An embedded, single-machine Kubernetes-compatible API server.
//!
//! It serves the Kubernetes REST API over HTTPS from durable local storage: built-in resources,
//! resources defined by CustomResourceDefinitions, watches, discovery and OpenAPI, so that the
//! real `kubectl` and kube-rs clients work against it as against a real API server. See the
//! README next to this crate for what is simplified.

pub mod builtin_schema;
pub mod error;
pub mod jsonpath;
pub mod meta;
pub mod patch;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod store;
pub mod table;

pub use error::{ApiError, Error};
