//! Protobuf request bodies (pure): kubectl's typed clients send built-in objects as
//! `application/vnd.kubernetes.protobuf`. We transcode them to JSON: the envelope (`k8s\0` +
//! `runtime.Unknown`) names the kind, `fields.tsv` gives each message's field numbers and wire
//! kinds (extracted by `tools/protofields.py`), and the kind's JSON schema gives the JSON names.
//! Responses are always JSON, which every client accepts.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value, json};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\x00";

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: String,
    repeated: bool,
    reference: String,
}

type Table = HashMap<String, HashMap<u32, Field>>;

fn table() -> &'static Table {
    static CELL: OnceLock<Table> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut t: Table = HashMap::new();
        for line in include_str!("fields.tsv").lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 5 {
                continue;
            }
            let Ok(tag) = cols[1].parse::<u32>() else {
                continue;
            };
            t.entry(cols[0].to_string()).or_default().insert(
                tag,
                Field {
                    name: cols[2].to_string(),
                    kind: cols[3].to_string(),
                    repeated: cols[4] == "repeated",
                    reference: cols.get(5).copied().unwrap_or("").to_string(),
                },
            );
        }
        t
    })
}

/// One decoded protobuf field: number and raw value.
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            out |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.b.get(self.pos..end).ok_or("truncated field")?;
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u32, Raw<'a>)>, String> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint()?),
            1 => {
                let s = self.take(8)?;
                Raw::Fixed64(u64::from_le_bytes(s.try_into().map_err(|_| "fixed64")?))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Raw::Bytes(self.take(n)?)
            }
            5 => {
                let s = self.take(4)?;
                Raw::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| "fixed32")?))
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((tag, raw)))
    }
}

fn fields(b: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, String> {
    let mut r = Reader { b, pos: 0 };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The JSON name of a protobuf field: the schema's property with the same letters, else the
/// camel-cased field name (`pod_i_ps` and `host_ip` map to `podIPs` and `hostIP`).
fn json_name<'s>(
    schema: Option<&'s JSONSchemaProps>,
    field: &str,
) -> (String, Option<&'s JSONSchemaProps>) {
    let want: String = field
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_lowercase();
    if let Some(props) = schema.and_then(|s| s.properties.as_ref()) {
        for (k, v) in props {
            if k.to_lowercase() == want {
                return (k.clone(), Some(v));
            }
        }
    }
    (camel(field), None)
}

fn item_schema(s: Option<&JSONSchemaProps>) -> Option<&JSONSchemaProps> {
    match s?.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(x) => Some(x),
        JSONSchemaPropsOrArray::Schemas(v) => v.first(),
    }
}

fn map_value_schema(s: Option<&JSONSchemaProps>) -> Option<&JSONSchemaProps> {
    match s?.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(x) => Some(x),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

fn time_text(b: &[u8], micro: bool) -> Result<Value, String> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    for (tag, raw) in fields(b)? {
        match (tag, raw) {
            (1, Raw::Varint(v)) => secs = v as i64,
            (2, Raw::Varint(v)) => nanos = v as i64,
            _ => {}
        }
    }
    if secs == 0 && nanos == 0 {
        // Go writes a zero Time; its JSON form is null (omitted).
        return Ok(Value::Null);
    }
    let t = jiff::Timestamp::new(secs, nanos as i32).map_err(|e| e.to_string())?;
    let fmt = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(json!(t.strftime(fmt).to_string()))
}

fn raw_json(b: &[u8]) -> Result<Value, String> {
    for (tag, raw) in fields(b)? {
        if let (1, Raw::Bytes(x)) = (tag, raw) {
            return Ok(serde_json::from_slice(x)
                .unwrap_or_else(|_| json!(base64::engine::general_purpose::STANDARD.encode(x))));
        }
    }
    Ok(Value::Null)
}

/// Messages with a JSON form of their own.
fn special(reference: &str, b: &[u8]) -> Result<Option<Value>, String> {
    let short = reference.rsplit('.').next().unwrap_or("");
    Ok(Some(match (reference, short) {
        (r, "Time") if r.contains("meta.v1") => time_text(b, false)?,
        (r, "MicroTime") if r.contains("meta.v1") => time_text(b, true)?,
        (r, "Quantity") if r.contains("resource") => {
            let mut s = String::new();
            for (tag, raw) in fields(b)? {
                if let (1, Raw::Bytes(x)) = (tag, raw) {
                    s = text(x)?;
                }
            }
            json!(s)
        }
        (r, "IntOrString") if r.contains("intstr") => {
            let (mut ty, mut i, mut s) = (0u64, 0i64, String::new());
            for (tag, raw) in fields(b)? {
                match (tag, raw) {
                    (1, Raw::Varint(v)) => ty = v,
                    (2, Raw::Varint(v)) => i = v as i64,
                    (3, Raw::Bytes(x)) => s = text(x)?,
                    _ => {}
                }
            }
            if ty == 1 { json!(s) } else { json!(i) }
        }
        (r, "RawExtension" | "FieldsV1" | "JSON") if !r.starts_with("api.core") => raw_json(b)?,
        (r, "Duration") if r.contains("meta.v1") => {
            let mut n = 0i64;
            for (tag, raw) in fields(b)? {
                if let (1, Raw::Varint(v)) = (tag, raw) {
                    n = v as i64;
                }
            }
            json!(format!("{}s", n as f64 / 1e9))
        }
        _ => return Ok(None),
    }))
}

fn scalar(kind: &str, raw: &Raw<'_>) -> Result<Value, String> {
    Ok(match (kind, raw) {
        ("string", Raw::Bytes(b)) => json!(text(b)?),
        ("bytes", Raw::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ("bool", Raw::Varint(v)) => json!(*v != 0),
        ("int32", Raw::Varint(v)) => json!(*v as i64 as i32),
        ("int64", Raw::Varint(v)) => json!(*v as i64),
        ("double", Raw::Fixed64(v)) => json!(f64::from_bits(*v)),
        ("float", Raw::Fixed32(v)) => json!(f32::from_bits(*v)),
        _ => return Err(format!("field of kind {kind} has an unexpected wire type")),
    })
}

/// Nesting deeper than this is refused (JSON bodies have the same limit through serde_json).
const MAX_DEPTH: usize = 100;

/// Decodes one message of type `ty` into JSON, naming fields after `schema`.
fn message(
    ty: &str,
    b: &[u8],
    schema: Option<&JSONSchemaProps>,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("protobuf message nested too deeply".into());
    }
    if let Some(v) = special(ty, b)? {
        return Ok(v);
    }
    let Some(defs) = table().get(ty) else {
        return Err(format!("unknown protobuf message {ty}"));
    };
    let mut out = Map::new();
    for (tag, raw) in fields(b)? {
        let Some(f) = defs.get(&tag) else { continue };
        let (name, sub) = json_name(schema, &f.name);
        let value = if let Some(map_kind) = f.kind.strip_prefix("map:") {
            let value_kind = map_kind.split(',').nth(1).unwrap_or("string");
            let Raw::Bytes(entry) = raw else {
                return Err(format!("map field {} is not length-delimited", f.name));
            };
            let (mut key, mut val) = (String::new(), Value::Null);
            let vschema = map_value_schema(sub);
            for (etag, eraw) in fields(entry)? {
                match (etag, &eraw) {
                    (1, Raw::Bytes(k)) => key = text(k)?,
                    (2, Raw::Bytes(x)) if value_kind == "message" => {
                        val = message(&f.reference, x, vschema, depth + 1)?;
                    }
                    (2, _) => val = scalar(value_kind, &eraw)?,
                    _ => {}
                }
            }
            if val.is_null() {
                val = match value_kind {
                    "string" | "bytes" => json!(""),
                    _ => json!({}),
                };
            }
            let m = out.entry(name).or_insert_with(|| json!({}));
            if let Some(m) = m.as_object_mut() {
                m.insert(key, val);
            }
            continue;
        } else if f.kind == "message" {
            let Raw::Bytes(x) = raw else {
                return Err(format!("message field {} is not length-delimited", f.name));
            };
            let s = if f.repeated { item_schema(sub) } else { sub };
            message(&f.reference, x, s, depth + 1)?
        } else if let (true, Raw::Bytes(x), false) = (
            f.repeated,
            &raw,
            matches!(f.kind.as_str(), "string" | "bytes"),
        ) {
            // A packed run of scalars.
            let mut r = Reader { b: x, pos: 0 };
            let arr = out.entry(name).or_insert_with(|| json!([]));
            while r.pos < x.len() {
                let v = r.varint()?;
                if let Some(a) = arr.as_array_mut() {
                    a.push(scalar(&f.kind, &Raw::Varint(v))?);
                }
            }
            continue;
        } else {
            scalar(&f.kind, &raw)?
        };
        if f.repeated {
            let arr = out.entry(name).or_insert_with(|| json!([]));
            if let Some(a) = arr.as_array_mut() {
                a.push(value);
            }
        } else if !zero_value(&f.name, &value) {
            out.insert(name, value);
        }
    }
    Ok(Value::Object(out))
}

/// Go's protobuf encoding writes value-typed fields even when unset; its JSON encoding omits
/// them (`omitempty`). Empty strings, zero times and the zero ports of value-typed port fields
/// are therefore treated as absent. (Pointer fields such as `replicas` keep an explicit 0.)
fn zero_value(field: &str, v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0) && matches!(field, "node_port" | "host_port"),
        _ => false,
    }
}

/// The protobuf package of an API group's version.
fn package(api_version: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    match group {
        "" => format!("api.core.{version}"),
        "apiextensions.k8s.io" => {
            format!("apiextensions_apiserver.pkg.apis.apiextensions.{version}")
        }
        "apiregistration.k8s.io" => format!("kube_aggregator.pkg.apis.apiregistration.{version}"),
        "meta.k8s.io" => format!("apimachinery.pkg.apis.meta.{version}"),
        g => format!("api.{}.{version}", g.split('.').next().unwrap_or(g)),
    }
}

/// Transcodes a protobuf request body to a JSON object (with apiVersion and kind set).
/// `schema_for(apiVersion, kind)` supplies the JSON schema that names the fields.
pub fn to_json(
    body: &[u8],
    schema_for: impl Fn(&str, &str) -> Option<std::sync::Arc<JSONSchemaProps>>,
) -> Result<Value, String> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return Err("protobuf body without the k8s envelope".into());
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (tag, f) in fields(rest)? {
        match (tag, f) {
            (1, Raw::Bytes(tm)) => {
                for (t, x) in fields(tm)? {
                    match (t, x) {
                        (1, Raw::Bytes(s)) => api_version = text(s)?,
                        (2, Raw::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Raw::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err("protobuf envelope without a kind".into());
    }
    let ty = format!("{}.{kind}", package(&api_version));
    let schema = schema_for(&api_version, &kind);
    let mut v = message(&ty, raw, schema.as_deref(), 0)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(tag: u32, b: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    #[test]
    fn namespace_with_labels() {
        let mut labels_entry = Vec::new();
        bytes_field(1, b"team", &mut labels_entry);
        bytes_field(2, b"a", &mut labels_entry);
        let mut meta = Vec::new();
        bytes_field(1, b"ns1", &mut meta);
        bytes_field(11, &labels_entry, &mut meta);
        let mut ns = Vec::new();
        bytes_field(1, &meta, &mut ns);
        let mut tm = Vec::new();
        bytes_field(1, b"v1", &mut tm);
        bytes_field(2, b"Namespace", &mut tm);
        let mut body = MAGIC.to_vec();
        bytes_field(1, &tm, &mut body);
        bytes_field(2, &ns, &mut body);
        let v = to_json(&body, |_, k| crate::builtin_schema::schema_for("", k)).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1", "labels": {"team": "a"}}})
        );
        assert!(to_json(b"k8s\x00\xff", |_, _| None).is_err());
        assert!(to_json(b"{}", |_, _| None).is_err());
    }

    proptest::proptest! {
        // Arbitrary bytes after the envelope magic never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&tail);
            let _ = to_json(&body, |_, k| crate::builtin_schema::schema_for("", k));
        }

        // A well-formed envelope around arbitrary message bytes never panics either.
        #[test]
        fn arbitrary_messages_never_panic(
            kind in proptest::sample::select(vec!["Namespace", "Pod", "ConfigMap", "Secret", "Node"]),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut tm = Vec::new();
            bytes_field(1, b"v1", &mut tm);
            bytes_field(2, kind.as_bytes(), &mut tm);
            let mut body = MAGIC.to_vec();
            bytes_field(1, &tm, &mut body);
            bytes_field(2, &raw, &mut body);
            let _ = to_json(&body, |_, k| crate::builtin_schema::schema_for("", k));
        }
    }

    #[test]
    fn names_follow_the_schema() {
        let s = crate::builtin_schema::schema_for("", "Pod").expect("pod");
        let status = s.properties.as_ref().and_then(|p| p.get("status"));
        assert_eq!(json_name(status, "host_ip").0, "hostIP");
        assert_eq!(json_name(status, "pod_i_ps").0, "podIPs");
        assert_eq!(camel("generate_name"), "generateName");
    }
}
