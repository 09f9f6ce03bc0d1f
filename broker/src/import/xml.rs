//! Reading activemq.xml for `broker import-config`: element paths as the user's report names
//! them, Spring's `${...}` placeholders, ActiveMQ's value syntaxes (`"64 mb"`, booleans), and
//! the bookkeeping that makes the import exhaustive.
//!
//! Every element and attribute of the `<broker>` (and every top-level bean) is either used by a
//! mapping, or reported: the mappers mark what they read (`attr`, `visit`, `done`), and
//! [`Ctx::report_leftovers`] walks the tree afterwards and reports the rest. A mapping that
//! forgets an attribute therefore shows up as an "unmapped" line instead of being dropped
//! without a word.

use std::collections::{BTreeMap, HashSet};

use roxmltree::{Node, NodeId};

use super::{ImportError, Item};

/// What the mappers share: the `--set` values, what has been read, and what was found.
pub(crate) struct Ctx<'v> {
    vars: &'v BTreeMap<String, String>,
    /// Elements whose whole subtree is accounted for (mapped or already reported).
    done: HashSet<NodeId>,
    /// Elements a mapper recognised; their unread attributes and children are reported at the
    /// end.
    visited: HashSet<NodeId>,
    used: HashSet<(NodeId, String)>,
    pub unmapped: Vec<Item>,
    pub notes: Vec<Item>,
}

/// An element's local name (`amq:broker` and `broker` alike).
pub(crate) fn name<'a>(n: Node<'a, '_>) -> &'a str {
    n.tag_name().name()
}

/// The element children of `n`.
pub(crate) fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

/// The element children of `n` called `local`.
pub(crate) fn children<'a, 'i>(
    n: Node<'a, 'i>,
    local: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    elements(n).filter(move |c| name(*c) == local)
}

/// The first element child of `n` called `local`.
pub(crate) fn child<'a, 'i>(n: Node<'a, 'i>, local: &'static str) -> Option<Node<'a, 'i>> {
    children(n, local).next()
}

/// Attributes that tell same-named siblings apart in a path, the first one present wins:
/// `bean[@id='mysql-ds']`, `transportConnector[@name='stomp']`, `policyEntry[@queue='>']`.
const IDENTIFYING: [&str; 5] = ["id", "name", "queue", "topic", "username"];

/// The element's path from the document's root, XPath style:
/// `/beans/broker/transportConnectors/transportConnector[@name='openwire']`, or `[2]` for a
/// second unnamed sibling.
pub(crate) fn path(n: Node) -> String {
    let mut parts = Vec::new();
    for a in n.ancestors().filter(Node::is_element) {
        let local = name(a);
        let mut step = local.to_owned();
        if let Some((k, v)) = IDENTIFYING
            .iter()
            .find_map(|k| a.attribute(*k).map(|v| (*k, v)))
        {
            step.push_str(&format!("[@{k}='{v}']"));
        } else {
            let same: Vec<_> = a
                .parent()
                .map(|p| elements(p).filter(|s| name(*s) == local).collect())
                .unwrap_or_default();
            if same.len() > 1
                && let Some(i) = same.iter().position(|s| s.id() == a.id())
            {
                step.push_str(&format!("[{}]", i + 1));
            }
        }
        parts.push(step);
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

/// The path of attribute `attr` of `n`.
pub(crate) fn attr_path(n: Node, attr: &str) -> String {
    format!("{}/@{attr}", path(n))
}

impl<'v> Ctx<'v> {
    pub fn new(vars: &'v BTreeMap<String, String>) -> Self {
        Ctx {
            vars,
            done: HashSet::new(),
            visited: HashSet::new(),
            used: HashSet::new(),
            unmapped: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// `raw` with every `${name}` (or `${name:default}`, Spring's default syntax) replaced by
    /// its `--set` value; one without a value is an error naming it and `at`.
    pub fn resolve(&self, raw: &str, at: &str) -> Result<String, ImportError> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ImportError::Placeholder {
                    name: after.to_owned(),
                    path: at.to_owned(),
                    reason: "has no closing `}`".into(),
                });
            };
            let inner = &after[..end];
            let (key, default) = match inner.split_once(':') {
                Some((k, d)) => (k, Some(d)),
                None => (inner, None),
            };
            match self.vars.get(key).map(String::as_str).or(default) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(ImportError::Placeholder {
                        name: key.to_owned(),
                        path: at.to_owned(),
                        reason: format!("has no value; pass --set {key}=VALUE"),
                    });
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Attribute `attr` of `n`, placeholders resolved, marked as read.
    pub fn attr(&mut self, n: Node, attr: &str) -> Result<Option<String>, ImportError> {
        self.visited.insert(n.id());
        match n.attribute(attr) {
            None => Ok(None),
            Some(raw) => {
                self.used.insert((n.id(), attr.to_owned()));
                self.resolve(raw, &attr_path(n, attr)).map(Some)
            }
        }
    }

    /// Marks attribute `attr` of `n` as accounted for without reading it (a label, a
    /// setting whose value needs no mapping).
    pub fn skip_attr(&mut self, n: Node, attr: &str) {
        self.used.insert((n.id(), attr.to_owned()));
    }

    /// A boolean attribute as Spring reads one (`true`/`false`, `yes`/`no`, `on`/`off`,
    /// `1`/`0`); a value that is none of them is reported and read as absent.
    pub fn bool_attr(&mut self, n: Node, attr: &str) -> Result<Option<bool>, ImportError> {
        let Some(v) = self.attr(n, attr)? else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Some(true)),
            "false" | "no" | "off" | "0" => Ok(Some(false)),
            _ => {
                self.unmapped_at(attr_path(n, attr), format!("{v:?} is not a boolean"));
                Ok(None)
            }
        }
    }

    /// A whole-number attribute (`-1` allowed: ActiveMQ's "none"); a malformed one is reported.
    pub fn int_attr(&mut self, n: Node, attr: &str) -> Result<Option<i64>, ImportError> {
        let Some(v) = self.attr(n, attr)? else {
            return Ok(None);
        };
        match v.trim().parse::<i64>() {
            Ok(i) => Ok(Some(i)),
            Err(_) => {
                self.unmapped_at(attr_path(n, attr), format!("{v:?} is not a whole number"));
                Ok(None)
            }
        }
    }

    /// A non-negative whole-number attribute; a negative or malformed one is reported.
    pub fn u64_attr(&mut self, n: Node, attr: &str) -> Result<Option<u64>, ImportError> {
        match self.int_attr(n, attr)? {
            Some(i) if i >= 0 => Ok(Some(i.unsigned_abs())),
            Some(i) => {
                self.unmapped_at(
                    attr_path(n, attr),
                    format!("{i} is negative; this broker has no such setting"),
                );
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// A size attribute in ActiveMQ's syntax (`"64 mb"`, `100gb`, `1024`); a malformed one is
    /// reported.
    pub fn bytes_attr(&mut self, n: Node, attr: &str) -> Result<Option<u64>, ImportError> {
        let Some(v) = self.attr(n, attr)? else {
            return Ok(None);
        };
        match parse_bytes(&v) {
            Some(b) => Ok(Some(b)),
            None => {
                self.unmapped_at(
                    attr_path(n, attr),
                    format!("{v:?} is not a size (ActiveMQ's syntax: 1024, 64 kb, 64 mb, 2 gb)"),
                );
                Ok(None)
            }
        }
    }

    /// `n` is recognised: its attributes and children are checked at the end.
    pub fn visit(&mut self, n: Node) {
        self.visited.insert(n.id());
    }

    /// `n` and everything under it are accounted for.
    pub fn done(&mut self, n: Node) {
        self.visited.insert(n.id());
        self.done.insert(n.id());
    }

    /// `n` (and all under it) cannot be mapped, for `reason`.
    pub fn unmapped(&mut self, n: Node, reason: impl Into<String>) {
        self.done(n);
        self.unmapped_at(path(n), reason);
    }

    pub fn unmapped_at(&mut self, path: String, reason: impl Into<String>) {
        self.unmapped.push(Item {
            path,
            reason: reason.into(),
        });
    }

    /// Something mapped with a caveat the user should read.
    pub fn note(&mut self, path: String, reason: impl Into<String>) {
        self.notes.push(Item {
            path,
            reason: reason.into(),
        });
    }

    /// Reports, under `n`, every element no mapper recognised (once, at its top) and every
    /// attribute of a recognised element that nobody read.
    pub fn report_leftovers(&mut self, n: Node) {
        if self.done.contains(&n.id()) {
            return;
        }
        if !self.visited.contains(&n.id()) {
            let reason = super::reasons::element(name(n), n);
            self.unmapped(n, reason);
            return;
        }
        for a in n.attributes() {
            // Namespaced attributes (xsi:schemaLocation, Spring's p:) are about the XML.
            if a.namespace().is_some() || self.used.contains(&(n.id(), a.name().to_owned())) {
                continue;
            }
            let reason = super::reasons::attribute(name(n), a.name());
            self.unmapped_at(
                attr_path(n, a.name()),
                format!("{}={:?}: {reason}", a.name(), a.value()),
            );
        }
        let kids: Vec<_> = elements(n).collect();
        for c in kids {
            self.report_leftovers(c);
        }
    }
}

/// ActiveMQ's `MemoryPropertyEditor`: digits, optional blanks, then `b`, `k`/`kb`, `m`/`mb` or
/// `g`/`gb` in any case (powers of 1024); plain digits are bytes.
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = t[..digits_end].parse().ok()?;
    let unit = t[digits_end..].trim();
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_activemq_reads_them() {
        assert_eq!(parse_bytes("64 mb"), Some(64 << 20));
        assert_eq!(parse_bytes("100 gb"), Some(100 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes(" 32MB "), Some(32 << 20));
        assert_eq!(parse_bytes("8 k"), Some(8 << 10));
        assert_eq!(parse_bytes("5 b"), Some(5));
        assert_eq!(parse_bytes("mb"), None);
        assert_eq!(parse_bytes("64 tb"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("99999999999999999999 gb"), None);
    }

    #[test]
    fn placeholders_resolve_or_name_themselves() {
        let vars = BTreeMap::from([("activemq.data".to_owned(), "/var/d".to_owned())]);
        let ctx = Ctx::new(&vars);
        assert_eq!(
            ctx.resolve("${activemq.data}/kahadb", "/x").unwrap(),
            "/var/d/kahadb"
        );
        assert_eq!(ctx.resolve("${port:61616}", "/x").unwrap(), "61616");
        assert_eq!(ctx.resolve("plain $ text", "/x").unwrap(), "plain $ text");
        let e = ctx.resolve("${activemq.base}/data", "/beans/broker/@dataDirectory");
        match e {
            Err(ImportError::Placeholder { name, path, .. }) => {
                assert_eq!(name, "activemq.base");
                assert_eq!(path, "/beans/broker/@dataDirectory");
            }
            other => panic!("{other:?}"),
        }
        assert!(ctx.resolve("${open", "/x").is_err());
    }
}
