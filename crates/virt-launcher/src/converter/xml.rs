//! A tiny XML element builder and printer: enough for libvirt domain documents, with stable,
//! human-readable output (two-space indent, attributes in insertion order) so golden files diff
//! well. Attributes use single quotes, as libvirt's own output does.

use std::fmt::Write;

/// An element with attributes and children (elements or text).
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    children: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn new(name: &'static str) -> Self {
        Element {
            name,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// `<name>text</name>`.
    pub fn with_text(name: &'static str, text: impl Into<String>) -> Self {
        Element::new(name).text(text)
    }

    pub fn attr(mut self, key: &'static str, value: impl ToString) -> Self {
        self.attrs.push((key, value.to_string()));
        self
    }

    pub fn attr_opt<T: ToString>(self, key: &'static str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.attr(key, v),
            None => self,
        }
    }

    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    pub fn child_opt(self, child: Option<Element>) -> Self {
        match child {
            Some(c) => self.child(c),
            None => self,
        }
    }

    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        self.children
            .extend(children.into_iter().map(Node::Element));
        self
    }

    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty() && self.children.is_empty()
    }

    /// The document, newline-terminated.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        out.push_str(&indent);
        out.push('<');
        out.push_str(self.name);
        for (k, v) in &self.attrs {
            // Writing to a String cannot fail.
            let _ = write!(out, " {k}='{}'", escape(v));
        }
        match self.children.as_slice() {
            [] => out.push_str("/>\n"),
            [Node::Text(t)] => {
                let _ = writeln!(out, ">{}</{}>", escape(t), self.name);
            }
            children => {
                out.push_str(">\n");
                for c in children {
                    match c {
                        Node::Element(e) => e.write(out, depth + 1),
                        Node::Text(t) => {
                            let _ = writeln!(out, "{indent}  {}", escape(t));
                        }
                    }
                }
                let _ = writeln!(out, "{indent}</{}>", self.name);
            }
        }
    }
}

/// Escapes the five XML special characters (quotes too, so one function serves attributes and
/// text).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_elements_text_and_escapes() {
        let doc = Element::new("domain")
            .attr("type", "qemu")
            .child(Element::with_text("name", "a<b>&'c'"))
            .child(Element::new("devices").child(Element::new("x").attr("p", "\"q\"")));
        assert_eq!(
            doc.render(),
            "<domain type='qemu'>\n  <name>a&lt;b&gt;&amp;&apos;c&apos;</name>\n  <devices>\n    <x p='&quot;q&quot;'/>\n  </devices>\n</domain>\n"
        );
    }
}
