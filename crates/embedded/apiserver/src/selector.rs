//! Label and field selectors: parsing the query strings and matching them (pure).
//!
//! Label selector syntax (as `kubectl -l` and `labelSelector=` use it): requirements joined by
//! commas, each one of `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>n`,
//! `k<n`. Field selectors: `f=v`, `f==v`, `f!=v` joined by commas.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelReq {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector(pub Vec<LabelReq>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReq {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector(pub Vec<FieldReq>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".to_string());
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed '('".to_string());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn check_key(k: &str) -> Result<String, String> {
    if k.is_empty() {
        return Err("empty key".to_string());
    }
    if let Some(e) = crate::meta::label_key_error(k) {
        return Err(format!("invalid label key \"{k}\": {e}"));
    }
    Ok(k.to_string())
}

fn check_value(v: &str) -> Result<String, String> {
    if let Some(e) = crate::meta::label_value_error(v) {
        return Err(format!("invalid label value: \"{v}\": {e}"));
    }
    Ok(v.to_string())
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, found \"{rest}\""))?;
    let mut vals = Vec::new();
    for v in inner.split(',') {
        vals.push(check_value(v.trim())?);
    }
    Ok(vals)
}

/// Finds ` in ` / ` notin ` as whole words after the key.
fn split_set_op<'a>(req: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut search = 0;
    while let Some(pos) = req[search..].find(op) {
        let at = search + pos;
        let before_ok = at > 0 && req.as_bytes()[at - 1].is_ascii_whitespace();
        let after = at + op.len();
        let after_ok = req[after..]
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c == '(');
        if before_ok && after_ok {
            return Some((&req[..at], &req[after..]));
        }
        search = after;
    }
    None
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(LabelSelector::default());
        }
        let mut reqs = Vec::new();
        for part in split_top(s)? {
            let req = part.trim();
            if req.is_empty() {
                return Err(format!("found empty requirement in \"{s}\""));
            }
            reqs.push(Self::parse_req(req)?);
        }
        Ok(LabelSelector(reqs))
    }

    fn parse_req(req: &str) -> Result<LabelReq, String> {
        if let Some(k) = req.strip_prefix('!') {
            return Ok(LabelReq::NotExists(check_key(k.trim())?));
        }
        if let Some((k, rest)) = split_set_op(req, "notin") {
            return Ok(LabelReq::NotIn(check_key(k.trim())?, parse_set(rest)?));
        }
        if let Some((k, rest)) = split_set_op(req, "in") {
            return Ok(LabelReq::In(check_key(k.trim())?, parse_set(rest)?));
        }
        if let Some((k, v)) = req.split_once("!=") {
            return Ok(LabelReq::NotEq(
                check_key(k.trim())?,
                check_value(v.trim())?,
            ));
        }
        if let Some((k, v)) = req.split_once("==") {
            return Ok(LabelReq::Eq(check_key(k.trim())?, check_value(v.trim())?));
        }
        if let Some((k, v)) = req.split_once('=') {
            return Ok(LabelReq::Eq(check_key(k.trim())?, check_value(v.trim())?));
        }
        for (op, gt) in [('>', true), ('<', false)] {
            if let Some((k, v)) = req.split_once(op) {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("for '{op}' operator, the value must be an integer"))?;
                let k = check_key(k.trim())?;
                return Ok(if gt {
                    LabelReq::Gt(k, n)
                } else {
                    LabelReq::Lt(k, n)
                });
            }
        }
        if req.contains(char::is_whitespace) {
            return Err(format!("unable to parse requirement: \"{req}\""));
        }
        Ok(LabelReq::Exists(check_key(req)?))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Gt(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            LabelReq::Lt(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }
}

impl LabelSelector {
    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`); an absent or null
    /// selector, like `{}`, matches everything.
    pub fn from_object(v: Option<&serde_json::Value>) -> Result<Self, String> {
        use serde_json::Value;
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(LabelSelector::default());
        };
        let Some(m) = v.as_object() else {
            return Err("a label selector must be an object".to_string());
        };
        let mut reqs = Vec::new();
        if let Some(labels) = m.get("matchLabels").filter(|l| !l.is_null()) {
            let Some(labels) = labels.as_object() else {
                return Err("matchLabels must be a map of strings".to_string());
            };
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("matchLabels.{k} must be a string"))?;
                reqs.push(LabelReq::Eq(check_key(k)?, check_value(v)?));
            }
        }
        if let Some(exprs) = m.get("matchExpressions").filter(|l| !l.is_null()) {
            let Some(exprs) = exprs.as_array() else {
                return Err("matchExpressions must be a list".to_string());
            };
            for e in exprs {
                let key = check_key(e.get("key").and_then(Value::as_str).unwrap_or(""))?;
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
                reqs.push(match op {
                    "In" | "NotIn" if values.is_empty() => {
                        return Err(format!("for '{op}' operator, values set can't be empty"));
                    }
                    "In" => LabelReq::In(key, values),
                    "NotIn" => LabelReq::NotIn(key, values),
                    "Exists" => LabelReq::Exists(key),
                    "DoesNotExist" => LabelReq::NotExists(key),
                    other => {
                        return Err(format!(
                            "\"{other}\" is not a valid label selector operator"
                        ));
                    }
                });
            }
        }
        Ok(LabelSelector(reqs))
    }
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(FieldSelector::default());
        }
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            reqs.push(FieldReq {
                field: field.trim().to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first field not in `supported`, for the 400 "field label not supported".
    pub fn unsupported<'a>(&'a self, supported: &[&str]) -> Option<&'a str> {
        self.0
            .iter()
            .map(|r| r.field.as_str())
            .find(|f| !supported.contains(f))
    }

    /// Matches against the object's field values (`None` reads as the empty string, as upstream).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }

    /// The value required by `field=value`, when the selector pins the field (used to narrow a
    /// scan, e.g. `metadata.name=x`).
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = LabelSelector::parse("app in (a, b),!m,x=1,y==2,z!=3,w,v notin (q),n>4,o<5")
            .expect("parses");
        assert_eq!(
            s.0,
            vec![
                LabelReq::In("app".into(), vec!["a".into(), "b".into()]),
                LabelReq::NotExists("m".into()),
                LabelReq::Eq("x".into(), "1".into()),
                LabelReq::Eq("y".into(), "2".into()),
                LabelReq::NotEq("z".into(), "3".into()),
                LabelReq::Exists("w".into()),
                LabelReq::NotIn("v".into(), vec!["q".into()]),
                LabelReq::Gt("n".into(), 4),
                LabelReq::Lt("o".into(), 5),
            ]
        );
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "a"), ("tier", "web")]);
        let m = |s: &str| LabelSelector::parse(s).expect("parses").matches(&l);
        assert!(m("app in (a,b),!m"));
        assert!(!m("app in (b)"));
        assert!(m("app notin (b)"));
        assert!(m("missing notin (b)"));
        assert!(m("tier!=db"));
        assert!(m("missing!=db"));
        assert!(!m("missing"));
        assert!(m(""));
    }

    #[test]
    fn selector_objects() {
        let l = labels(&[("app", "a"), ("tier", "web")]);
        let sel = |v: serde_json::Value| LabelSelector::from_object(Some(&v));
        let m = |v: serde_json::Value| sel(v).expect("valid").matches(&l);
        assert!(m(serde_json::json!({})));
        assert!(m(serde_json::json!({"matchLabels": {"app": "a"}})));
        assert!(!m(serde_json::json!({"matchLabels": {"app": "b"}})));
        assert!(m(serde_json::json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["web", "db"]},
            {"key": "x", "operator": "DoesNotExist"}]})));
        assert!(!m(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]})
        ));
        assert!(LabelSelector::from_object(None).expect("none").is_empty());
        assert!(
            sel(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).is_err()
        );
        assert!(
            sel(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}))
                .is_err()
        );
        assert!(sel(serde_json::json!([1])).is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["app in (a", "a b", "=x", "app in a", "k=v v", ",", "n>x"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=p1,status.phase!=Running").expect("parses");
        assert!(f.matches(|k| match k {
            "metadata.name" => Some("p1".into()),
            _ => None,
        }));
        assert_eq!(f.unsupported(&["metadata.name"]), Some("status.phase"));
        assert_eq!(f.pinned("metadata.name"), Some("p1"));
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-z]([a-z0-9-]{0,6}[a-z0-9])?"
    }
    fn val() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}"
    }

    proptest! {
        // A selector printed from requirements parses back to the same requirements, and its
        // matching agrees with the requirement's meaning evaluated directly.
        #[test]
        fn round_trip_and_semantics(
            k in key(), v in val(), vs in proptest::collection::vec(val(), 1..4),
            present in proptest::option::of(val()),
        ) {
            let mut l = BTreeMap::new();
            if let Some(p) = &present { l.insert(k.clone(), p.clone()); }
            let cases = vec![
                (format!("{k}={v}"), present.as_deref() == Some(v.as_str())),
                (format!("{k}!={v}"), present.as_deref() != Some(v.as_str())),
                (format!("{k} in ({})", vs.join(",")), present.as_ref().is_some_and(|p| vs.contains(p))),
                (format!("{k} notin ({})", vs.join(",")), !present.as_ref().is_some_and(|p| vs.contains(p))),
                (k.clone(), present.is_some()),
                (format!("!{k}"), present.is_none()),
            ];
            for (sel, expect) in cases {
                let parsed = LabelSelector::parse(&sel).map_err(TestCaseError::fail)?;
                prop_assert_eq!(parsed.matches(&l), expect, "{}", sel);
            }
        }

        // A conjunction matches exactly when every part matches.
        #[test]
        fn conjunction(a in key(), b in key(), va in val(), vb in val(), la in val(), lb in val()) {
            let l: BTreeMap<String, String> = [(a.clone(), la.clone()), (b.clone(), lb.clone())].into_iter().collect();
            let s1 = format!("{a}={va}");
            let s2 = format!("{b}!={vb}");
            let both = LabelSelector::parse(&format!("{s1},{s2}")).map_err(TestCaseError::fail)?;
            let m1 = LabelSelector::parse(&s1).map_err(TestCaseError::fail)?.matches(&l);
            let m2 = LabelSelector::parse(&s2).map_err(TestCaseError::fail)?.matches(&l);
            prop_assert_eq!(both.matches(&l), m1 && m2);
        }

        // Arbitrary input never panics the parser.
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = LabelSelector::parse(&s);
            let _ = FieldSelector::parse(&s);
        }
    }
}
