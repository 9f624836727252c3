//! Resources that are views of another resource's storage (pure). `events.k8s.io/v1` Events are
//! stored as `core/v1` Events, as upstream does, so events written by kube-rs recorders show up
//! in `kubectl describe` (which reads core/v1) and the other way round.

use serde_json::{Map, Value, json};

/// How a resource's objects relate to its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// Stored as served.
    #[default]
    Native,
    /// `events.k8s.io/v1` Event over `core/v1` Event storage.
    EventsV1,
}

/// Field renames between core/v1 (left) and events.k8s.io/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(v: Value, from_core: bool, api_version: &str) -> Value {
    let Value::Object(m) = v else { return v };
    let mut out = Map::new();
    for (k, x) in m {
        let renamed = EVENT_FIELDS
            .iter()
            .find(|(core, view)| if from_core { k == *core } else { k == *view })
            .map(|(core, view)| if from_core { *view } else { *core });
        out.insert(renamed.map(str::to_string).unwrap_or(k), x);
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// The stored (core) form of an object written through `view`.
pub fn from_view(view: View, v: Value) -> Value {
    match view {
        View::Native => v,
        View::EventsV1 => rename(v, false, "v1"),
    }
}

/// An object read through `view` from its stored (core) form.
pub fn to_view(view: View, v: Value) -> Value {
    match view {
        View::Native => v,
        View::EventsV1 if v.get("kind").and_then(Value::as_str) == Some("Event") => {
            rename(v, true, "events.k8s.io/v1")
        }
        View::EventsV1 => v,
    }
}

/// A field-selector field name of the view, in stored terms.
pub fn field_from_view(view: View, field: &str) -> String {
    match view {
        View::Native => field.to_string(),
        View::EventsV1 => {
            let (head, rest) = field.split_once('.').unwrap_or((field, ""));
            let core = EVENT_FIELDS
                .iter()
                .find(|(_, v)| *v == head)
                .map(|(c, _)| *c)
                .unwrap_or(head);
            if rest.is_empty() {
                core.to_string()
            } else {
                format!("{core}.{rest}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "VirtualMachine", "name": "vm"}, "message": "hi",
            "reason": "Started", "count": 2, "reportingComponent": "virt-controller"});
        let view = to_view(View::EventsV1, core.clone());
        assert_eq!(view["apiVersion"], "events.k8s.io/v1");
        assert_eq!(view["regarding"]["name"], "vm");
        assert_eq!(view["note"], "hi");
        assert_eq!(view["deprecatedCount"], 2);
        assert_eq!(view["reportingController"], "virt-controller");
        assert_eq!(from_view(View::EventsV1, view), core);
        assert_eq!(
            field_from_view(View::EventsV1, "regarding.name"),
            "involvedObject.name"
        );
        assert_eq!(field_from_view(View::EventsV1, "reason"), "reason");
    }
}
