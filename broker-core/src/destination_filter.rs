//! Destination names with structure: ActiveMQ's wildcards and composite (comma) lists.
//!
//! Names are `.`-separated elements. In a filter, an element `*` matches exactly one element
//! and a final `>` matches one or more remaining elements (`orders.>` matches `orders.eu` and
//! `orders.eu.paris`, not `orders`). ActiveMQ treats any name containing `*` or `>` as a
//! pattern; here a `*` or `>` must be a whole element, and `>` must be the last one, so that a
//! name like `a*b` or `a.>.b` is refused with a clear error instead of matching something a
//! reader would not guess.
//!
//! A composite name is a comma list (`a,b`, or `queue://a,topic://c` to mix kinds): each element
//! without a `queue://` / `topic://` prefix takes the kind the composite was given as.

use store_api::{Destination, DestinationKind};

/// A destination name that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination name {name:?}: {reason}")]
pub struct DestinationNameError {
    pub name: String,
    pub reason: &'static str,
}

fn invalid(name: &str, reason: &'static str) -> DestinationNameError {
    DestinationNameError {
        name: name.to_owned(),
        reason,
    }
}

/// One element of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Literal(String),
    /// `*`: any one element.
    One,
    /// `>`: one or more elements, only last.
    Rest,
}

/// A parsed wildcard name, matched against plain destination names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationFilter {
    elements: Vec<Element>,
}

/// True when `name` has an element `*` or `>` (so it names a set of destinations). A name with
/// `*` or `>` inside an element is not a wildcard, but [`DestinationFilter::parse`] refuses it.
pub fn is_wildcard(name: &str) -> bool {
    name.split('.').any(|e| e == "*" || e == ">")
}

/// True when `name` holds a character only a wildcard may use: such a name is a wildcard or
/// malformed, never a plain destination.
pub fn has_wildcard_chars(name: &str) -> bool {
    name.contains('*') || name.contains('>')
}

impl DestinationFilter {
    /// Parses a filter; a plain name is a filter that matches only itself.
    pub fn parse(name: &str) -> Result<DestinationFilter, DestinationNameError> {
        if name.is_empty() {
            return Err(invalid(name, "it is empty"));
        }
        let parts: Vec<&str> = name.split('.').collect();
        let mut elements = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let element = match *part {
                "*" => Element::One,
                ">" if i + 1 == parts.len() => Element::Rest,
                ">" => return Err(invalid(name, "'>' may only be the last element")),
                "" if has_wildcard_chars(name) => {
                    return Err(invalid(name, "a wildcard name has an empty element"));
                }
                p if has_wildcard_chars(p) => {
                    return Err(invalid(
                        name,
                        "'*' and '>' must be whole elements (between dots)",
                    ));
                }
                p => Element::Literal(p.to_owned()),
            };
            elements.push(element);
        }
        Ok(DestinationFilter { elements })
    }

    /// True when the filter has a wildcard element.
    pub fn is_wildcard(&self) -> bool {
        self.elements
            .iter()
            .any(|e| !matches!(e, Element::Literal(_)))
    }

    /// Whether the plain destination name `name` is one this filter selects.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for element in &self.elements {
            match element {
                Element::Rest => return parts.next().is_some(),
                Element::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Element::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// The destinations a comma list names, each with its kind: `queue://` or `topic://` on an
/// element sets it, otherwise it is `default` (the kind the list was given as). A name without
/// a comma is one destination. Duplicates are removed (one copy per destination).
pub fn split_composite(
    name: &str,
    default: DestinationKind,
) -> Result<Vec<Destination>, DestinationNameError> {
    let mut out: Vec<Destination> = Vec::new();
    for part in name.split(',') {
        let part = part.trim();
        let (kind, bare) = if let Some(n) = part.strip_prefix("queue://") {
            (DestinationKind::Queue, n)
        } else if let Some(n) = part.strip_prefix("topic://") {
            (DestinationKind::Topic, n)
        } else {
            (default, part)
        };
        if bare.is_empty() {
            return Err(invalid(
                name,
                "a composite destination has an empty element",
            ));
        }
        if bare.contains("://") {
            return Err(invalid(
                name,
                "only queue:// and topic:// prefixes are understood",
            ));
        }
        let d = Destination {
            kind,
            name: bare.into(),
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// True when `name` is a composite (comma) list.
pub fn is_composite(name: &str) -> bool {
    name.contains(',')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(filter: &str, name: &str) -> bool {
        DestinationFilter::parse(filter).unwrap().matches(name)
    }

    #[test]
    fn star_matches_exactly_one_element() {
        assert!(m("orders.*", "orders.eu"));
        assert!(!m("orders.*", "orders"));
        assert!(!m("orders.*", "orders.eu.paris"));
        assert!(m("*.eu", "orders.eu"));
        assert!(m("orders.*.paris", "orders.eu.paris"));
        assert!(!m("orders.*.paris", "orders.eu.lyon"));
    }

    #[test]
    fn greater_than_matches_one_or_more_remaining_elements() {
        assert!(m("orders.>", "orders.eu"));
        assert!(m("orders.>", "orders.eu.paris"));
        assert!(!m("orders.>", "orders"));
        assert!(!m("orders.>", "invoices.eu"));
        assert!(m(">", "anything.at.all"));
        assert!(m("*.>", "a.b"));
        assert!(!m("*.>", "a"));
    }

    #[test]
    fn a_plain_name_matches_only_itself() {
        assert!(m("orders.eu", "orders.eu"));
        assert!(!m("orders.eu", "orders.eu.x"));
        assert!(!m("orders.eu", "orders"));
        assert!(!DestinationFilter::parse("orders.eu").unwrap().is_wildcard());
    }

    #[test]
    fn malformed_wildcards_are_refused() {
        for bad in [
            "orders.>.eu",
            "orders*",
            "a.b>",
            "orders..*",
            ".>",
            "*.",
            "",
        ] {
            let e = DestinationFilter::parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid destination name"), "{bad}");
        }
        assert!(is_wildcard("a.*") && is_wildcard(">") && !is_wildcard("a*b"));
    }

    #[test]
    fn composites_split_with_kinds_and_refuse_empty_elements() {
        let d = split_composite("a, b,topic://c,queue://d,a", DestinationKind::Queue).unwrap();
        assert_eq!(
            d,
            vec![
                Destination::queue("a"),
                Destination::queue("b"),
                Destination::topic("c"),
                Destination::queue("d"),
            ]
        );
        assert!(split_composite("a,,b", DestinationKind::Topic).is_err());
        assert!(split_composite("a,queue://", DestinationKind::Topic).is_err());
        assert!(split_composite("a,temp-queue://x", DestinationKind::Topic).is_err());
        assert_eq!(
            split_composite("x", DestinationKind::Topic).unwrap(),
            vec![Destination::topic("x")]
        );
    }

    /// A reference matcher by a different route: a regular-expression-like recursion over
    /// element slices.
    fn model(filter: &[&str], name: &[&str]) -> bool {
        match (filter.first(), name.first()) {
            (None, None) => true,
            (Some(&">"), _) => !name.is_empty(),
            (Some(&"*"), Some(_)) => model(&filter[1..], &name[1..]),
            (Some(f), Some(n)) => f == n && model(&filter[1..], &name[1..]),
            _ => false,
        }
    }

    fn element() -> impl Strategy<Value = String> {
        prop_oneof!["a", "b", "c", "ab"].prop_map(String::from)
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_model(
            name in prop::collection::vec(element(), 1..6),
            filter in prop::collection::vec(prop_oneof![
                4 => element(),
                2 => Just("*".to_owned()),
            ], 1..6),
            rest in any::<bool>(),
        ) {
            let mut filter = filter;
            if rest {
                filter.push(">".to_owned());
            }
            let f = filter.join(".");
            let n = name.join(".");
            let parsed = DestinationFilter::parse(&f).unwrap();
            let fs: Vec<&str> = filter.iter().map(String::as_str).collect();
            let ns: Vec<&str> = name.iter().map(String::as_str).collect();
            prop_assert_eq!(parsed.matches(&n), model(&fs, &ns), "{} vs {}", f, n);
            // A name always matches itself as a filter.
            prop_assert!(DestinationFilter::parse(&n).unwrap().matches(&n));
        }
    }
}
