//! Rust types for the KubeVirt API (`kubevirt.io/v1` and the satellite groups), wire-compatible
//! with upstream KubeVirt, plus the pure logic that belongs with them: defaulting, validation and
//! CustomResourceDefinition generation. Nothing in this crate does I/O.
//!
//! # Conventions for the types (every module follows them)
//! - Field names are upstream's JSON names (`#[serde(rename_all = "camelCase")]` plus explicit
//!   renames where upstream's spelling is irregular, e.g. `cpu`, `ipAddress`, `macAddress`).
//! - Optional scalars and objects are `Option<T>` with
//!   `#[serde(default, skip_serializing_if = "Option::is_none")]`: absent stays absent.
//! - Optional lists are `Vec<T>` with `#[serde(default, skip_serializing_if = "Vec::is_empty")]`
//!   and optional maps `BTreeMap<String, T>` likewise: upstream omits empty ones too.
//! - Fields upstream lists as `required` are plain `T` (with `#[serde(default)]` only when a
//!   default is harmless for decoding).
//! - Strings whose upstream schema has no `enum` stay `String`, with the known values as
//!   constants: the API accepts any string there and validation words the error, so decoding a
//!   stored object never fails on a value we do not know. Fields whose upstream schema has an
//!   `enum` are Rust enums with serde renames.
//! - Integers follow the schema's format: `int32` -> `i32`, `int64` -> `i64`.
//! - Marker objects (`masquerade: {}`, `pod: {}`) are empty structs, so `{}` round-trips.
//! - Kubernetes core types (affinity, tolerations, resources, PVC specs, ...) come from
//!   `k8s_openapi`.
//! - Every type and field has a doc comment in our own words: it is the description
//!   `kubectl explain` prints.

// kube-derive's `printcolumn(name = .., type_ = ..)` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod cdi;
pub mod config;
pub mod crd;
pub mod defaults;
pub mod field;
pub mod instancetype;
pub mod manifest;
pub mod migrations;
pub mod pool;
pub mod quantity;
pub mod schema;
pub mod structural;
pub mod v1;
pub mod validation;

/// The API group of the core KubeVirt kinds.
pub const GROUP: &str = "kubevirt.io";
