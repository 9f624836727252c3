//! The subset of JSONPath that CRD printer columns use: `.a.b`, `.a[0]`, `.a[*].b`, `.a['k.x']`
//! and filters `.a[?(@.type=='Ready')].status` (pure).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, value: String },
}

/// A parsed path; [`JsonPath::eval`] returns every value it reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    pub fn parse(src: &str) -> Result<Self, String> {
        let mut s = src.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
        let s = s.strip_prefix('$').unwrap_or(s);
        let b = s.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                        j += 1;
                    }
                    if j > start {
                        steps.push(Step::Field(s[start..j].to_string()));
                    }
                    i = j;
                }
                b'[' => {
                    let end = find_close(s, i).ok_or_else(|| format!("unclosed '[' in {src}"))?;
                    steps.push(parse_bracket(&s[i + 1..end])?);
                    i = end + 1;
                }
                _ => return Err(format!("unexpected character at {i} in {src}")),
            }
        }
        Ok(JsonPath(steps))
    }

    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(f) => {
                        if let Some(x) = v.get(f) {
                            next.push(x);
                        }
                    }
                    Step::Index(i) => {
                        if let Some(a) = v.as_array() {
                            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                            if let Some(x) = usize::try_from(idx).ok().and_then(|k| a.get(k)) {
                                next.push(x);
                            }
                        }
                    }
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter { path, value } => {
                        if let Some(a) = v.as_array() {
                            for item in a {
                                let mut x = Some(item);
                                for p in path {
                                    x = x.and_then(|x| x.get(p));
                                }
                                if x.is_some_and(|x| scalar_text(x) == *value) {
                                    next.push(item);
                                }
                            }
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

fn find_close(s: &str, open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ']') => return Some(open + i),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
        .unwrap_or(s)
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    let inner = inner.trim();
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
        let (lhs, rhs) = f
            .split_once("==")
            .ok_or_else(|| format!("unsupported filter {f}"))?;
        let lhs = lhs.trim();
        let path = lhs
            .strip_prefix("@.")
            .ok_or_else(|| format!("unsupported filter {f}"))?;
        return Ok(Step::Filter {
            path: path.split('.').map(str::to_string).collect(),
            value: unquote(rhs).to_string(),
        });
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    Ok(Step::Field(unquote(inner).to_string()))
}

/// How a value prints in a column: strings bare, everything else as JSON.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths() {
        let o = json!({"status": {"conditions": [
            {"type": "Paused", "status": "False"},
            {"type": "Ready", "status": "True"}
        ], "printableStatus": "Running"}, "spec": {"a": [{"b": 1}, {"b": 2}]},
        "metadata": {"labels": {"k.x/y": "v"}}});
        let e = |p: &str| -> Vec<Value> {
            JsonPath::parse(p)
                .expect("parses")
                .eval(&o)
                .into_iter()
                .cloned()
                .collect()
        };
        assert_eq!(
            e(".status.conditions[?(@.type=='Ready')].status"),
            vec![json!("True")]
        );
        assert_eq!(e(".status.printableStatus"), vec![json!("Running")]);
        assert_eq!(e(".spec.a[*].b"), vec![json!(1), json!(2)]);
        assert_eq!(e(".spec.a[-1].b"), vec![json!(2)]);
        assert_eq!(e(".metadata.labels['k.x/y']"), vec![json!("v")]);
        assert!(e(".status.nope").is_empty());
        assert!(JsonPath::parse(".a[1").is_err());
    }
}
