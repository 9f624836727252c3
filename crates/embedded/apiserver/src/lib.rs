//! An embedded, single-machine Kubernetes-compatible API server.
//!
//! It serves the Kubernetes REST API over HTTPS from durable local storage: built-in resources,
//! resources defined by CustomResourceDefinitions, watches, discovery and OpenAPI, so that the
//! real `kubectl` and kube-rs clients work against it as against a real API server. See the
//! README next to this crate for the layout and what is simplified.
//!
//! Pure logic (selectors, patches, tables, schemas, field ownership, discovery and OpenAPI
//! documents) lives in modules that take and return values; [`store`] and [`server`] are the I/O
//! edges.

pub mod admission;
pub mod admit;
pub mod aggregator;
pub mod apply;
pub mod auth;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod builtin_schema;
pub mod controllers;
pub mod convert;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod jsonpath;
pub mod kubelet;
pub mod meta;
pub mod openapi;
pub mod ops;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod tokens;
pub mod upstream;
pub mod version;
pub mod watch;

pub use error::{ApiError, Error};
pub use server::{Config, Running, start};
