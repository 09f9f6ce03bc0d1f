//! `<networkConnectors>`: each `<networkConnector>` as a `[[network_connectors]]` entry, its
//! attributes in snake case (`networkTTL` → `network_ttl`, `prefetchSize` → `prefetch`,
//! `userName` → `user_name`) and its destination lists as `queue://name` / `topic://name`
//! filters. What has no counterpart (ActiveMQ's `messageTTL`, `consumerTTL`,
//! `bridgeTempDestinations`, ...) is reported attribute by attribute.

use roxmltree::Node;

use super::ImportError;
use super::out::{Doc, int, strings};
use super::xml::{Ctx, attr_path, children, elements, name, path};

/// The destination lists of a connector: ActiveMQ's element, our key.
const LISTS: [(&str, &str); 3] = [
    ("excludedDestinations", "excluded_destinations"),
    (
        "dynamicallyIncludedDestinations",
        "dynamically_included_destinations",
    ),
    (
        "staticallyIncludedDestinations",
        "statically_included_destinations",
    ),
];

pub(crate) fn map(ctx: &mut Ctx, broker: Node, doc: &mut Doc) -> Result<(), ImportError> {
    let mut names: Vec<String> = Vec::new();
    for ncs in children(broker, "networkConnectors") {
        ctx.visit(ncs);
        // Other kinds (`multicastNetworkConnector`, `ldapNetworkConnector`) are reported with
        // their reasons at the end.
        for c in children(ncs, "networkConnector") {
            connector(ctx, c, doc, &mut names)?;
        }
    }
    Ok(())
}

fn connector(
    ctx: &mut Ctx,
    c: Node,
    doc: &mut Doc,
    names: &mut Vec<String>,
) -> Result<(), ImportError> {
    ctx.visit(c);
    let Some(uri) = ctx.attr(c, "uri")? else {
        ctx.unmapped(c, "a networkConnector without a uri");
        return Ok(());
    };
    // Names must differ here (they name the bridges in the log, the console and /metrics);
    // ActiveMQ calls every unnamed connector `bridge`.
    let given = ctx.attr(c, "name")?;
    let mut unique = given.clone().unwrap_or_else(|| "bridge".to_owned());
    if names.contains(&unique) {
        let base = unique.clone();
        let mut n = 2;
        while names.contains(&unique) {
            unique = format!("{base}-{n}");
            n += 1;
        }
        ctx.note(
            path(c),
            format!(
                "named {unique:?}: {} is another connector's",
                given.map_or("the default name \"bridge\"".to_owned(), |g| format!(
                    "{g:?}"
                ))
            ),
        );
    }
    names.push(unique.clone());
    let t = doc.push("network_connectors");
    t.set("uri", uri);
    t.set("name", unique);
    for (attr, key) in [
        ("duplex", "duplex"),
        ("conduitSubscriptions", "conduit_subscriptions"),
        ("dynamicOnly", "dynamic_only"),
    ] {
        if let Some(v) = ctx.bool_attr(c, attr)? {
            t.set(key, v);
        }
    }
    if ctx.bool_attr(c, "decreaseNetworkConsumerPriority")? == Some(true) {
        ctx.unmapped_at(
            attr_path(c, "decreaseNetworkConsumerPriority"),
            "decreaseNetworkConsumerPriority=\"true\": consumers have no priorities here; left false",
        );
    }
    for (attr, key) in [("networkTTL", "network_ttl"), ("prefetchSize", "prefetch")] {
        if let Some(v) = ctx.u64_attr(c, attr)? {
            t.set(key, int(v));
        }
    }
    for (attr, key) in [("userName", "user_name"), ("password", "password")] {
        if let Some(v) = ctx.attr(c, attr)? {
            t.set(key, v);
        }
    }
    for (element, key) in LISTS {
        let mut filters = Vec::new();
        for list in children(c, element) {
            ctx.visit(list);
            for d in elements(list) {
                let kind = match name(d) {
                    "queue" => "queue",
                    "topic" => "topic",
                    _ => {
                        ctx.unmapped(d, "only queue and topic destinations are filtered here");
                        continue;
                    }
                };
                ctx.visit(d);
                match ctx.attr(d, "physicalName")? {
                    Some(n) if !n.is_empty() => filters.push(format!("{kind}://{n}")),
                    _ => ctx.unmapped(d, "a destination without a physicalName"),
                }
            }
        }
        if !filters.is_empty() {
            t.set(key, strings(&filters));
        }
    }
    if c.attribute("password").is_some_and(|p| !p.is_empty()) {
        ctx.note(
            path(c),
            "the remote broker's password is copied in clear text",
        );
    }
    Ok(())
}
