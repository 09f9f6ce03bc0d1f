//! Messages both ways between OpenWire and broker-core, following ActiveMQ's mapping so that
//! STOMP and OpenWire clients see the same message: a Text message is text, Bytes bytes, Map,
//! Stream and Object keep their kind; JMS headers map to broker-core's fields.

use broker_core::{Body, Destination, DestinationKind, Message, Outgoing, Value};
use openwire::store::{
    to_openwire_map, to_openwire_value, to_store_map as to_core_map,
    to_store_value as to_core_value,
};
use openwire::{MessageKind, PrimitiveMap};

/// The largest body a compressed OpenWire message may inflate to.
const MAX_INFLATED: usize = openwire::DEFAULT_MAX_INFLATED_SIZE;

/// Why a message or destination cannot be mapped: the text goes into the exception the client
/// sees, the class says which JMS exception it becomes.
#[derive(Debug)]
pub struct Unmappable {
    pub class: &'static str,
    pub message: String,
}

impl Unmappable {
    fn invalid(message: String) -> Unmappable {
        Unmappable {
            class: "javax.jms.JMSException",
            message,
        }
    }
}

/// An OpenWire destination as a broker-core one: a temporary queue or topic keeps its name
/// (the client's `ID:<connection id>:<n>`) and becomes a queue or topic that broker-core knows
/// as temporary (the caller tells it so from `d.kind`). A composite (`a,b`, `a,topic://c`) or
/// wildcard (`orders.>`) name already has ActiveMQ's syntax, which broker-core reads: it passes
/// through as it is.
pub fn destination(d: &openwire::Destination) -> Result<Destination, Unmappable> {
    let refuse = |why: &str| Unmappable {
        class: "javax.jms.InvalidDestinationException",
        message: format!("{why}: {}", d.physical_name),
    };
    if d.physical_name.is_empty() {
        return Err(refuse("a destination needs a name"));
    }
    Ok(if d.kind.is_queue() {
        Destination::queue(d.physical_name.as_str())
    } else {
        Destination::topic(d.physical_name.as_str())
    })
}

/// A broker-core destination as OpenWire's; `temporary` when broker-core has it as a live
/// temporary destination.
pub fn openwire_destination(d: &Destination, temporary: bool) -> openwire::Destination {
    let mut o = match d.kind {
        DestinationKind::Queue => openwire::Destination::queue(d.name.as_ref()),
        DestinationKind::Topic => openwire::Destination::topic(d.name.as_ref()),
    };
    if temporary {
        o.kind = match d.kind {
            DestinationKind::Queue => openwire::DestinationKind::TempQueue,
            DestinationKind::Topic => openwire::DestinationKind::TempTopic,
        };
    }
    o
}

/// An OpenWire message as one to produce.
pub fn outgoing(m: &openwire::Message) -> Result<Outgoing, Unmappable> {
    let bad = |e: openwire::DecodeError| Unmappable::invalid(format!("unreadable message: {e}"));
    let body = match m.kind {
        MessageKind::Plain => Body::Empty,
        MessageKind::Text => Body::Text(m.text(MAX_INFLATED).map_err(bad)?.unwrap_or_default()),
        MessageKind::Bytes => Body::Bytes(m.body(MAX_INFLATED).map_err(bad)?),
        MessageKind::Object => Body::Object(m.body(MAX_INFLATED).map_err(bad)?),
        MessageKind::Map => Body::Map(to_core_map(&m.map_body(MAX_INFLATED).map_err(bad)?)),
        MessageKind::Stream => Body::Stream(
            m.stream_body(MAX_INFLATED)
                .map_err(bad)?
                .iter()
                .filter_map(to_core_value)
                .collect(),
        ),
    };
    let mut out = Outgoing::new(body);
    out.persistent = m.persistent;
    out.priority = m.priority.clamp(0, 9) as u8;
    out.expiration = m.expiration.max(0);
    out.correlation_id = m.correlation_id.clone();
    out.message_type = m.jms_type.clone();
    out.group_id = m.group_id.clone();
    out.group_seq = m.group_sequence;
    out.reply_to = m.reply_to.as_ref().map(destination).transpose()?;
    out.properties = to_core_map(&m.properties().map_err(bad)?);
    // The brokers a bridged message came through: kept with it, for the bridges' loop check
    // (a selector on this property) and for the next hop.
    if let Some(path) = m.broker_path.as_ref().filter(|p| !p.is_empty()) {
        let ids: Vec<&str> = path.iter().map(|b| b.value.as_str()).collect();
        out.properties.insert(
            crate::network::BROKER_PATH_PROPERTY.into(),
            Value::String(ids.join(",")),
        );
        // Another broker sending again what it may have sent before: the copy says so.
        out.redelivery_count = u32::try_from(m.redelivery_counter).unwrap_or(0);
    }
    Ok(out)
}

/// A broker-core message as OpenWire's, with the id the client acknowledges it by;
/// `temporary` says which destinations (its own, its reply-to) are live temporary ones.
pub fn dispatched(
    m: &Message,
    id: openwire::MessageId,
    temporary: &dyn Fn(&Destination) -> bool,
) -> Result<openwire::Message, String> {
    let kind = match &m.body {
        Body::Empty => MessageKind::Plain,
        Body::Text(_) => MessageKind::Text,
        Body::Bytes(_) => MessageKind::Bytes,
        Body::Map(_) => MessageKind::Map,
        Body::Stream(_) => MessageKind::Stream,
        Body::Object(_) => MessageKind::Object,
    };
    let mut o = openwire::Message::new(kind);
    let e = |e: openwire::EncodeError| e.to_string();
    match &m.body {
        Body::Empty => {}
        Body::Text(t) => o.set_text(Some(t)).map_err(e)?,
        Body::Bytes(b) | Body::Object(b) => o.content = Some(b.clone()),
        Body::Map(map) => o.set_map_body(&to_openwire_map(map)).map_err(e)?,
        Body::Stream(values) => {
            let values: Vec<_> = values.iter().map(to_openwire_value).collect();
            o.set_stream_body(&values).map_err(e)?
        }
    }
    o.producer_id = id.producer_id.clone();
    o.message_id = Some(id);
    o.destination = Some(openwire_destination(
        &m.destination,
        temporary(&m.destination),
    ));
    o.persistent = m.persistent;
    o.priority = m.priority.min(9) as i8;
    o.expiration = m.expiration;
    o.timestamp = m.timestamp;
    o.correlation_id = m.correlation_id.clone();
    o.jms_type = m.message_type.clone();
    o.group_id = m.group_id.clone();
    o.group_sequence = m.group_seq;
    // The dispatcher marks a group's first message for a consumer with a property, which goes
    // out in the property map (where `getBooleanProperty` finds it) and, from OpenWire
    // version 10 on, in the message's own field too.
    o.jmsx_group_first_for_consumer = matches!(
        m.properties.get(broker_core::GROUP_FIRST_FOR_CONSUMER),
        Some(Value::Bool(true))
    );
    o.reply_to = m
        .reply_to
        .as_ref()
        .map(|r| openwire_destination(r, temporary(r)));
    o.redelivery_counter = i32::try_from(m.redelivery_count).unwrap_or(i32::MAX);
    o.data_structure = super::advisory::data_structure(m).map(Box::new);
    if !m.properties.is_empty() {
        let mut props = PrimitiveMap::new();
        for (k, v) in &m.properties {
            if k != crate::network::BROKER_PATH_PROPERTY {
                props.insert(k.clone(), to_openwire_value(v));
            }
        }
        // Back where OpenWire keeps it.
        if let Some(Value::String(path)) = m.properties.get(crate::network::BROKER_PATH_PROPERTY) {
            o.broker_path = Some(
                path.split(',')
                    .filter(|b| !b.is_empty())
                    .map(|b| openwire::BrokerId {
                        value: b.to_owned(),
                    })
                    .collect(),
            );
        }
        o.set_properties(&props).map_err(e)?;
    }
    Ok(o)
}
