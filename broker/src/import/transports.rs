//! `<transportConnectors>` → `[transports]`: one listener per protocol, at the host and port
//! the connector's URI gives (0.0.0.0 kept as written), and the URI's options that have a
//! key here. A protocol ActiveMQ did not listen on is turned off, since this broker's defaults
//! listen on STOMP, OpenWire and WebSocket.

use std::collections::BTreeMap;

use roxmltree::Node;
use toml::Value;

use super::ImportError;
use super::out::{Doc, int};
use super::xml::{Ctx, attr_path, child, children, path};

/// The `[transports]` key a connector scheme maps to, or why none does.
fn key_for(scheme: &str) -> Result<&'static str, &'static str> {
    match scheme {
        "tcp" | "nio" | "auto" | "auto+nio" => Ok("openwire"),
        "ssl" | "nio+ssl" | "auto+ssl" | "auto+nio+ssl" => Ok("openwire_tls"),
        "stomp" | "stomp+nio" => Ok("stomp"),
        "stomp+ssl" | "stomp+nio+ssl" => Ok("stomp_tls"),
        "ws" => Ok("websocket"),
        "wss" => Ok("websocket_tls"),
        "mqtt" | "mqtt+nio" => Ok("mqtt"),
        "mqtt+ssl" | "mqtt+nio+ssl" => Err("no MQTT over TLS in this broker"),
        "amqp" | "amqp+nio" | "amqp+ssl" | "amqp+nio+ssl" | "amqp+ws" | "amqp+wss" => {
            Err("no AMQP in this broker")
        }
        "udp" => Err("no OpenWire over UDP in this broker"),
        "vm" => Err("no in-JVM transport (vm://) here"),
        "http" | "https" => Err("no OpenWire over HTTP in this broker"),
        _ => Err("unknown transport scheme"),
    }
}

/// The listeners that need `tls_certificate` and `tls_key`.
const TLS_KEYS: [&str; 3] = ["openwire_tls", "stomp_tls", "websocket_tls"];

/// Keys another branch is adding; printed commented out while this build's loader does not
/// know them.
const PENDING: [&str; 2] = ["mqtt", "openwire_tls"];

/// A connector URI's scheme (lower case), `host:port`, and options in order.
type SplitUri = (String, String, Vec<(String, String)>);

/// `scheme://host:port/path?query` split up; `None` when it has no `://` or no port.
fn split_uri(uri: &str) -> Option<SplitUri> {
    let (scheme, rest) = uri.split_once("://")?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let authority = authority.split('/').next().unwrap_or("");
    // A port is required: `[::]:61616` or `host:61616`.
    let (_, port) = authority.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let options = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect();
    Some((scheme.to_ascii_lowercase(), authority.to_owned(), options))
}

pub(super) fn map(ctx: &mut Ctx, root: Node, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    // key → (address, XML path) of the connector that took it.
    let mut taken: BTreeMap<&'static str, (String, String)> = BTreeMap::new();
    let mut max_connections: Option<(u64, usize)> = None;
    let mut max_frame: Option<u64> = None;
    for tcs in children(b, "transportConnectors") {
        ctx.visit(tcs);
        for tc in children(tcs, "transportConnector") {
            ctx.visit(tc);
            ctx.skip_attr(tc, "name"); // a label
            let at = attr_path(tc, "uri");
            let Some(uri) = ctx.attr(tc, "uri")? else {
                ctx.unmapped(tc, "a transportConnector without a uri");
                continue;
            };
            // The scheme first: `vm://localhost` has no port and needs no other reason.
            if let Some((s, _)) = uri.split_once("://")
                && let Err(why) = key_for(&s.to_ascii_lowercase())
            {
                ctx.unmapped(tc, format!("uri {uri}: {why}"));
                continue;
            }
            let Some((scheme, address, options)) = split_uri(&uri) else {
                ctx.unmapped(tc, format!("uri {uri:?}: expected scheme://host:port"));
                continue;
            };
            let key = match key_for(&scheme) {
                Ok(k) => k,
                Err(why) => {
                    ctx.unmapped(tc, format!("uri {uri}: {why}"));
                    continue;
                }
            };
            if let Some((first, first_path)) = taken.get(key) {
                ctx.unmapped(
                    tc,
                    format!(
                        "uri {uri}: this broker has one transports.{key} listener; the first one ({first}, {first_path}) is mapped"
                    ),
                );
                continue;
            }
            taken.insert(key, (address.clone(), path(tc)));
            if scheme.starts_with("auto") {
                ctx.note(
                    path(tc),
                    format!(
                        "{scheme}:// detects the protocol per connection in ActiveMQ; here {address} speaks OpenWire only"
                    ),
                );
            }
            if key == "websocket" || key == "websocket_tls" {
                ctx.note(
                    path(tc),
                    "ActiveMQ's WebSocket connector carries STOMP and MQTT; this broker's carries STOMP",
                );
            }
            let value = Value::String(address.clone());
            if TLS_KEYS.contains(&key) {
                doc.table("transports").set_disabled(
                    key,
                    value,
                    "needs transports.tls_certificate and tls_key (PEM files)",
                );
                ctx.note(
                    path(tc),
                    format!(
                        "transports.{key} is printed commented out: set transports.tls_certificate and transports.tls_key (PEM files converted from ActiveMQ's key store) and uncomment it"
                    ),
                );
            } else if PENDING.contains(&key) && !super::key_known("transports", key, &value) {
                doc.table("transports").set_disabled(
                    key,
                    value,
                    "not known to this build of the broker yet",
                );
                ctx.note(
                    path(tc),
                    format!(
                        "transports.{key} is not known to this build of the broker (it is being added); printed commented out, uncomment it on a broker that has it"
                    ),
                );
            } else {
                doc.table("transports").set(key, value);
            }
            // The multicast advertisement of the OpenWire listener; the other protocols are
            // not advertised here (the leftover walk reports theirs).
            if key == "openwire"
                && let Some(d) = ctx.attr(tc, "discoveryUri")?
            {
                match crate::network::discovery::MulticastUri::parse(&d) {
                    Ok(_) => {
                        doc.table("transports")
                            .set("openwire_discovery", Value::String(d));
                    }
                    Err(e) => ctx.unmapped_at(
                        attr_path(tc, "discoveryUri"),
                        format!("only multicast:// discovery here: {e}"),
                    ),
                }
            }
            for (k, v) in options {
                let bare = k.strip_prefix("transport.").unwrap_or(&k);
                match bare {
                    "maximumConnections" => match v.parse::<u64>() {
                        Ok(n) => {
                            let (sum, count) = max_connections.unwrap_or((0, 0));
                            max_connections = Some((sum.saturating_add(n), count + 1));
                        }
                        Err(_) => ctx.unmapped_at(
                            at.clone(),
                            format!("option {k}={v:?}: not a whole number"),
                        ),
                    },
                    "wireFormat.maxFrameSize" | "maxFrameSize" => {
                        match super::xml::parse_bytes(&v) {
                            Some(n) if n > 0 => max_frame = Some(max_frame.unwrap_or(0).max(n)),
                            _ => {
                                ctx.unmapped_at(at.clone(), format!("option {k}={v:?}: not a size"))
                            }
                        }
                    }
                    "hbGracePeriodMultiplier" if key == "stomp" || key == "stomp_tls" => {
                        match v.parse::<f64>() {
                            Ok(g) if (1.0..=1000.0).contains(&g) => {
                                doc.table("transports").set("stomp_heartbeat_grace", g);
                            }
                            _ => ctx.unmapped_at(
                                at.clone(),
                                format!("option {k}={v:?}: transports.stomp_heartbeat_grace takes 1.0 to 1000"),
                            ),
                        }
                    }
                    "soWriteTimeout" => match v.parse::<u64>() {
                        Ok(ms) => {
                            doc.table("transports").set("write_timeout_ms", int(ms));
                        }
                        Err(_) => ctx.unmapped_at(
                            at.clone(),
                            format!("option {k}={v:?}: not a whole number"),
                        ),
                    },
                    _ => ctx.unmapped_at(
                        at.clone(),
                        format!("option {k}={v}: this broker has no equivalent setting"),
                    ),
                }
            }
        }
    }
    if let Some((sum, count)) = max_connections {
        doc.table("limits").set("max_connections", int(sum.max(1)));
        if count > 1 {
            ctx.note(
                "/beans/broker/transportConnectors".into(),
                format!(
                    "maximumConnections is per connector in ActiveMQ and a total over every protocol here: limits.max_connections = {sum}, the sum of {count} connectors'"
                ),
            );
        }
    }
    if let Some(n) = max_frame {
        doc.table("transports").set("max_frame_bytes", int(n));
        ctx.note(
            "/beans/broker/transportConnectors".into(),
            "wireFormat.maxFrameSize becomes transports.max_frame_bytes, which applies to every protocol (the largest value given)",
        );
    }
    // This broker's defaults listen on these; ActiveMQ listened only where it had a connector.
    for key in ["openwire", "stomp", "websocket"] {
        if !taken.contains_key(key) {
            doc.table("transports").set_c(
                key,
                "",
                "off: activemq.xml has no such transportConnector",
            );
        }
    }
    // A build with MQTT listens on 1883 unless told not to; ActiveMQ did only with a connector.
    if !taken.contains_key("mqtt")
        && super::key_known("transports", "mqtt", &Value::String(String::new()))
    {
        doc.table("transports").set_c(
            "mqtt",
            "",
            "off: activemq.xml has no such transportConnector",
        );
    }
    // The console comes from jetty.xml, imported by the shipped activemq.xml.
    let jetty = children(root, "import")
        .find(|i| i.attribute("resource").is_some_and(|r| r.contains("jetty")));
    if let Some(j) = jetty {
        ctx.note(
            path(j),
            "jetty.xml is not read; the web console keeps this broker's default transports.web = \"127.0.0.1:8161\", ActiveMQ's",
        );
    } else {
        doc.table("transports")
            .set_c("web", "", "off: activemq.xml imports no jetty.xml console");
    }
    let _ = child(b, "sslContext"); // reported by the leftover walk, with how to convert it
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_as_activemq_writes_them() {
        let (s, a, o) = split_uri(
            "tcp://0.0.0.0:61616?maximumConnections=1000&wireFormat.maxFrameSize=104857600",
        )
        .unwrap();
        assert_eq!((s.as_str(), a.as_str()), ("tcp", "0.0.0.0:61616"));
        assert_eq!(o[0], ("maximumConnections".into(), "1000".into()));
        assert_eq!(o.len(), 2);
        let (s, a, o) = split_uri("ws://localhost:61614/").unwrap();
        assert_eq!(
            (s.as_str(), a.as_str(), o.len()),
            ("ws", "localhost:61614", 0)
        );
        assert_eq!(split_uri("[::]:61616").map(|x| x.1), None);
        assert_eq!(split_uri("tcp://[::]:61616").unwrap().1, "[::]:61616");
        assert!(split_uri("tcp://host").is_none());
        assert!(split_uri("vm://localhost").is_none());
        assert_eq!(key_for("stomp+nio"), Ok("stomp"));
        assert!(key_for("amqp").is_err());
    }
}
