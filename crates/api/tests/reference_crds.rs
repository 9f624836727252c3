//! Our generated CRDs must carry every field of upstream KubeVirt's CRDs with the same schema
//! type, format, int-or-string marker, enum, required list and preserve-unknown-fields marker,
//! and the same names, versions, subresources and printer columns. The expectations come from
//! `data/upstream-fields.txt` (made by `scripts/dev/upstream-fields` from upstream's CRD
//! structure). `x-kubernetes-list-type` is not compared yet.
//!
//! Set `REFERENCE_FILTER=<substring>` to see only the mismatches whose line contains it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

const UPSTREAM: &str = include_str!("data/upstream-fields.txt");

/// One schema node of ours, flattened the same way the reference is.
#[derive(Debug, Default)]
struct Node {
    ty: String,
    format: Option<String>,
    int_or_string: bool,
    enumeration: Option<BTreeSet<String>>,
    required: BTreeSet<String>,
    preserve: bool,
}

fn flatten(schema: &Value, path: &str, out: &mut BTreeMap<String, Node>) {
    let s = schema.as_object();
    let get = |k: &str| s.and_then(|o| o.get(k));
    let node = Node {
        ty: get("type")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string(),
        format: get("format").and_then(Value::as_str).map(str::to_string),
        int_or_string: get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true),
        enumeration: get("enum").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter(|v| !v.is_null())
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect()
        }),
        required: get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        preserve: get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool)
            == Some(true),
    };
    out.insert(
        if path.is_empty() {
            ".".into()
        } else {
            path.to_string()
        },
        node,
    );
    if let Some(props) = get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            flatten(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = get("items").filter(|i| i.is_object()) {
        flatten(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = get("additionalProperties").filter(|i| i.is_object()) {
        flatten(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn generated_crds_match_upstream_structure() {
    let ours: BTreeMap<String, Value> = kubevirt_api::crd::all()
        .into_iter()
        .map(|crd| {
            let v = serde_json::to_value(&crd).expect("CRD serializes");
            (crd.metadata.name.clone().unwrap_or_default(), v)
        })
        .collect();
    let mut schemas: BTreeMap<(String, String), BTreeMap<String, Node>> = BTreeMap::new();
    for (name, crd) in &ours {
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let mut nodes = BTreeMap::new();
            flatten(&v["schema"]["openAPIV3Schema"], "", &mut nodes);
            schemas.insert(
                (name.clone(), v["name"].as_str().unwrap_or("").to_string()),
                nodes,
            );
        }
    }

    let mut problems = Vec::new();
    let mut checked = 0usize;
    for line in UPSTREAM.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.first().copied() {
            Some("@names") => check_names(&ours, &words, &mut problems),
            Some("@version") => check_version(&ours, &words, &mut problems),
            Some("@column") => check_column(&ours, line, &mut problems),
            Some(_) if words.len() >= 4 => {
                checked += 1;
                let key = (words[0].to_string(), words[1].to_string());
                let Some(nodes) = schemas.get(&key) else {
                    problems.push(format!("{} {}: no such CRD version", words[0], words[1]));
                    continue;
                };
                let Some(node) = nodes.get(words[2]) else {
                    problems.push(format!("missing {} {} {}", words[0], words[1], words[2]));
                    continue;
                };
                compare_node(line, &words, node, &mut problems);
            }
            _ => {}
        }
    }
    let filter = std::env::var("REFERENCE_FILTER").unwrap_or_default();
    let shown: Vec<&String> = problems.iter().filter(|p| p.contains(&filter)).collect();
    for p in &shown {
        eprintln!("{p}");
    }
    eprintln!(
        "checked {checked} upstream schema nodes; {} problems",
        problems.len()
    );
    assert!(checked > 5000, "the reference list looks truncated");
    assert!(
        problems.is_empty(),
        "{} differences from upstream's CRD structure",
        problems.len()
    );
}

fn compare_node(line: &str, words: &[&str], node: &Node, problems: &mut Vec<String>) {
    let (crd, ver, path, ty) = (words[0], words[1], words[2], words[3]);
    let at = format!("{crd} {ver} {path}");
    let mut want_format = None;
    let mut want_ios = false;
    let mut want_enum = None;
    let mut want_req = BTreeSet::new();
    let mut want_preserve = false;
    for w in &words[4..] {
        if let Some(f) = w.strip_prefix("fmt=") {
            want_format = Some(f.to_string());
        } else if *w == "ios" {
            want_ios = true;
        } else if let Some(e) = w.strip_prefix("enum=") {
            want_enum = Some(e.split('|').map(str::to_string).collect::<BTreeSet<_>>());
        } else if let Some(r) = w.strip_prefix("req=") {
            want_req = r.split(',').map(str::to_string).collect();
        } else if *w == "preserve" {
            want_preserve = true;
        }
    }
    // An int-or-string node has no type of its own; upstream writes none either.
    if node.ty != ty && !(want_ios && node.int_or_string) {
        problems.push(format!("type {at}: ours {} upstream {ty}", node.ty));
    }
    if node.format != want_format && !want_ios {
        problems.push(format!(
            "format {at}: ours {:?} upstream {want_format:?}",
            node.format
        ));
    }
    if node.int_or_string != want_ios {
        problems.push(format!(
            "int-or-string {at}: ours {} upstream {want_ios}",
            node.int_or_string
        ));
    }
    if want_enum.is_some() && node.enumeration != want_enum {
        problems.push(format!(
            "enum {at}: ours {:?} upstream {want_enum:?}",
            node.enumeration
        ));
    }
    if node.required != want_req {
        problems.push(format!(
            "required {at}: ours {:?} upstream {want_req:?}",
            node.required
        ));
    }
    if node.preserve != want_preserve {
        problems.push(format!(
            "preserve-unknown-fields {at}: ours {} upstream {want_preserve}",
            node.preserve
        ));
    }
    let _ = line;
}

fn list(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn check_names(ours: &BTreeMap<String, Value>, w: &[&str], problems: &mut Vec<String>) {
    // @names NAME SCOPE KIND PLURAL SINGULAR short=a,b cat=c
    let Some(crd) = ours.get(w[1]) else {
        problems.push(format!("missing CRD {}", w[1]));
        return;
    };
    let names = &crd["spec"]["names"];
    let split = |s: &str| -> BTreeSet<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    if crd["spec"]["scope"] != w[2] {
        problems.push(format!(
            "{}: scope {} upstream {}",
            w[1], crd["spec"]["scope"], w[2]
        ));
    }
    for (field, want) in [("kind", w[3]), ("plural", w[4]), ("singular", w[5])] {
        if names[field] != want {
            problems.push(format!(
                "{}: names.{field} {} upstream {want}",
                w[1], names[field]
            ));
        }
    }
    let short = split(w[6].trim_start_matches("short="));
    if list(&names["shortNames"]) != short {
        problems.push(format!(
            "{}: shortNames {:?} upstream {short:?}",
            w[1],
            list(&names["shortNames"])
        ));
    }
    let cats = split(w[7].trim_start_matches("cat="));
    if !cats.is_subset(&list(&names["categories"])) {
        problems.push(format!(
            "{}: categories {:?} lack upstream's {cats:?}",
            w[1],
            list(&names["categories"])
        ));
    }
}

fn find_version<'a>(ours: &'a BTreeMap<String, Value>, crd: &str, ver: &str) -> Option<&'a Value> {
    ours.get(crd)?["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == ver)
}

fn check_version(ours: &BTreeMap<String, Value>, w: &[&str], problems: &mut Vec<String>) {
    // @version NAME VER served=True storage=True deprecated=False sub=scale,status
    let Some(v) = find_version(ours, w[1], w[2]) else {
        problems.push(format!("{}: version {} missing", w[1], w[2]));
        return;
    };
    let flag = |s: &str| s.ends_with("True");
    let mut subs: BTreeSet<String> = v["subresources"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    subs.retain(|s| !v["subresources"][s].is_null());
    let want_subs: BTreeSet<String> = w[6]
        .trim_start_matches("sub=")
        .split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    let checks = [
        ("served", v["served"].as_bool() == Some(flag(w[3]))),
        ("storage", v["storage"].as_bool() == Some(flag(w[4]))),
        (
            "deprecated",
            v["deprecated"].as_bool().unwrap_or(false) == flag(w[5]),
        ),
        ("subresources", subs == want_subs),
    ];
    for (what, ok) in checks {
        if !ok {
            problems.push(format!(
                "{} {}: {what} differs from upstream ({})",
                w[1],
                w[2],
                w[3..].join(" ")
            ));
        }
    }
}

fn check_column(ours: &BTreeMap<String, Value>, line: &str, problems: &mut Vec<String>) {
    // @column NAME VER COLUMN\tTYPE\tJSONPATH\tPRIORITY
    let (head, rest) = line.split_once('\t').unwrap_or((line, ""));
    let head: Vec<&str> = head.splitn(4, ' ').collect();
    let rest: Vec<&str> = rest.split('\t').collect();
    if head.len() < 4 || rest.len() < 3 {
        problems.push(format!("unreadable reference line: {line}"));
        return;
    }
    let Some(v) = find_version(ours, head[1], head[2]) else {
        return;
    };
    let found = v["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["name"] == head[3]
                && c["type"] == rest[0]
                && c["jsonPath"] == rest[1]
                && c["priority"].as_i64().unwrap_or(0).to_string() == rest[2]
        });
    if !found {
        problems.push(format!(
            "{} {}: printer column {} ({}) missing or different",
            head[1],
            head[2],
            head[3],
            rest.join(" ")
        ));
    }
}
