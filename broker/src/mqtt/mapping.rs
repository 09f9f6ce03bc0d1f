//! How MQTT names and levels map onto broker-core's, as ActiveMQ's MQTT transport maps them:
//! topic `a/b/c` is the JMS topic `a.b.c` (and a `.` inside an MQTT level becomes `/`, so the
//! mapping goes both ways), filter levels `+` and `#` are `*` and `>`; QoS 0 is a
//! non-persistent message, QoS 1 and 2 persistent ones, with the publisher's QoS kept in a
//! property so that a subscriber gets min(its QoS, the publisher's).

use broker_core::{Body, Destination, Message, Value};
use bytes::Bytes;
use mqtt_codec::QoS;

/// The message property holding the QoS a message was published with.
pub const QOS_PROPERTY: &str = "ActiveMQ.MQTT.QoS";

/// Swaps the level separators: `/` ↔ `.`.
fn swap_separators(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// The JMS topic of an MQTT topic name.
pub fn topic_to_jms(topic: &str) -> Destination {
    Destination::topic(swap_separators(topic))
}

/// The MQTT topic name of a JMS destination name.
pub fn jms_to_topic(name: &str) -> String {
    swap_separators(name)
}

/// The JMS topics an MQTT topic filter subscribes to. Usually one; a filter ending in `/#`
/// also needs its parent level exactly (MQTT's `a/#` matches `a`; JMS's `a.>` does not), a
/// second subscription that never matches what the first does.
pub fn filter_to_jms(filter: &str) -> Vec<Destination> {
    let jms: String = filter
        .split('/')
        .map(|level| match level {
            "+" => "*".to_owned(),
            "#" => ">".to_owned(),
            l => l.replace('.', "/"),
        })
        .collect::<Vec<_>>()
        .join(".");
    let mut out = vec![Destination::topic(jms.clone())];
    if let Some(parent) = jms.strip_suffix(".>") {
        out.push(Destination::topic(parent));
    }
    out
}

/// The QoS a message was published with: its property, else persistent = 1 (a message from
/// STOMP or OpenWire), non-persistent = 0.
pub fn message_qos(m: &Message) -> QoS {
    match m.properties.get(QOS_PROPERTY) {
        Some(Value::I32(1)) => QoS::AtLeastOnce,
        Some(Value::I32(2)) => QoS::ExactlyOnce,
        Some(Value::I32(_)) => QoS::AtMostOnce,
        _ if m.persistent => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    }
}

/// A message's body as MQTT payload bytes: bytes as they are, text as UTF-8.
pub fn payload(m: &Message) -> Bytes {
    match &m.body {
        Body::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Body::Bytes(b) | Body::Object(b) => b.clone(),
        Body::Empty => Bytes::new(),
        other => Bytes::from(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(topic_to_jms("a/b/c").name.as_ref(), "a.b.c");
        assert_eq!(topic_to_jms("v1.0/x").name.as_ref(), "v1/0.x");
        assert_eq!(jms_to_topic("v1/0.x"), "v1.0/x");
        let names = |f: &str| {
            filter_to_jms(f)
                .into_iter()
                .map(|d| d.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("a/+/c"), ["a.*.c"]);
        assert_eq!(names("a/#"), ["a.>", "a"]);
        assert_eq!(names("#"), [">"]);
        assert_eq!(names("+/#"), ["*.>", "*"]);
    }
}
