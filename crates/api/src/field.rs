//! Field paths and the causes validation reports against them, shaped like Kubernetes'
//! `metav1.StatusCause` so that an admission webhook can hand them to the API server unchanged.

use std::fmt;

/// A path to a field, printed as Kubernetes prints them: `spec.domain.devices.disks[0].name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at `root` (e.g. `spec`, or `spec.template.spec` for a VM's template).
    pub fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    /// The path of a named child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of problem a cause reports (Kubernetes' `CauseType` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CauseType {
    FieldValueRequired,
    FieldValueInvalid,
    FieldValueDuplicate,
    FieldValueNotSupported,
    FieldValueNotFound,
    FieldValueForbidden,
}

impl CauseType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FieldValueRequired => "FieldValueRequired",
            Self::FieldValueInvalid => "FieldValueInvalid",
            Self::FieldValueDuplicate => "FieldValueDuplicate",
            Self::FieldValueNotSupported => "FieldValueNotSupported",
            Self::FieldValueNotFound => "FieldValueNotFound",
            Self::FieldValueForbidden => "FieldValueForbidden",
        }
    }
}

/// One reason an object is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub cause_type: CauseType,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(cause_type: CauseType, field: &FieldPath, message: impl Into<String>) -> Self {
        Self {
            cause_type,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// As a Kubernetes StatusCause (what an AdmissionReview response carries).
    pub fn to_status_cause(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
            field: Some(self.field.clone()),
            message: Some(self.message.clone()),
            reason: Some(self.cause_type.as_str().to_string()),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Joins causes the way a refusal message lists them.
pub fn summarize(causes: &[Cause]) -> String {
    causes
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_kubernetes() {
        let p = FieldPath::new("spec")
            .child("domain")
            .child("devices")
            .child("disks")
            .index(0)
            .child("name");
        assert_eq!(p.to_string(), "spec.domain.devices.disks[0].name");
        assert_eq!(FieldPath::new("").child("spec").to_string(), "spec");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("a")
                .to_string(),
            "metadata.labels[a]"
        );
    }
}
