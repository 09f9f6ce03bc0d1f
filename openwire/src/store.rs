//! OpenWire messages as `store-api` messages and back, as ActiveMQ's stores hold them: the
//! bytes of a KahaDB journal record or of `ACTIVEMQ_MSGS.MSG` are one `Message` command
//! marshalled by a default `OpenWireFormat` (version 11, loose encoding, size prefix).
//!
//! Both directions keep what the store's message model has: id, destination, priority,
//! timestamp, expiration, persistence, redelivery count, correlation id, reply-to, type, group
//! id and sequence, properties and the body of each of the five JMS kinds. What the model has
//! no place for (a `char` or a nested map as a property, JMSXUserID, the broker path) is not
//! carried into the store message.
//!
//! # Producer ids
//!
//! ActiveMQ names a message's producer `<connection id>:<session>:<producer>` (its
//! `ProducerId.toString()`, the `MSGID_PROD` column) and this broker's OpenWire door keeps that
//! text as the store's producer. A producer from another protocol (`stomp-7`) has no such
//! shape: it travels as the connection id with session and producer -1, which no ActiveMQ
//! client uses, so the mapping is one-to-one both ways ([`producer_id`], [`store_producer`]).
//! Session and producer are read back only from canonical decimals, so `a:01:2` is a
//! connection id of its own and not `a:1:2`.

use bytes::BytesMut;
use store_api::{Body, Destination as StoreDestination, Message as StoreMessage, Value as V};

use crate::{
    Command, DEFAULT_MAX_INFLATED_SIZE, DecodeError, Destination, EncodeError, Message, MessageId,
    MessageKind, PrimitiveMap, ProducerId, Value, WireFormat,
};

/// The OpenWire version ActiveMQ 5.x stores write (`CommandTypes.PROTOCOL_STORE_VERSION`).
pub const STORE_VERSION: i32 = 11;

/// Session and producer of a producer that is not an OpenWire one.
const FOREIGN: i64 = -1;

/// The wire format ActiveMQ's stores marshal messages with: version 11, loose encoding.
pub fn store_wire_format() -> WireFormat {
    WireFormat {
        version: STORE_VERSION,
        tight_encoding_enabled: false,
        // A stored row is already in memory whole: its size is not a peer's claim to check.
        max_frame_size: i32::MAX as u64,
        ..WireFormat::default()
    }
}

/// The encodings a stored OpenWire message may be in, most likely first: stores made by 5.12
/// and later use version 11, older ones older versions; tight encoding only if configured.
const ENCODINGS: [(i32, bool); 10] = [
    (11, false),
    (12, false),
    (10, false),
    (9, false),
    (6, false),
    (11, true),
    (12, true),
    (10, true),
    (9, true),
    (6, true),
];

/// Decodes stored OpenWire messages, trying the encoding that worked last first.
#[derive(Debug, Default, Clone)]
pub struct StoredDecoder {
    last: Option<(i32, bool)>,
}

impl StoredDecoder {
    /// The message the bytes hold, or why none of the encodings reads them whole.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Message, DecodeError> {
        let order = self.last.into_iter().chain(ENCODINGS);
        let mut first_error = None;
        for (version, tight) in order {
            let wf = WireFormat {
                version,
                tight_encoding_enabled: tight,
                ..store_wire_format()
            };
            let mut buf = BytesMut::from(bytes);
            match crate::decode(&mut buf, &wf) {
                Ok(Some(Command::Message(m))) if buf.is_empty() => {
                    self.last = Some((version, tight));
                    return Ok(*m);
                }
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(DecodeError::InvalidFrameSize(bytes.len() as i32)))
    }
}

/// The OpenWire producer id a store producer travels as.
pub fn producer_id(producer: &str) -> ProducerId {
    let mut parts = producer.rsplitn(3, ':');
    let value = parts.next().and_then(canonical);
    let session = parts.next().and_then(canonical);
    match (parts.next(), session, value) {
        (Some(connection), Some(session_id), Some(value)) => ProducerId {
            connection_id: connection.to_owned(),
            session_id,
            value,
        },
        _ => ProducerId {
            connection_id: producer.to_owned(),
            session_id: FOREIGN,
            value: FOREIGN,
        },
    }
}

/// A non-negative decimal without leading zeros.
fn canonical(s: &str) -> Option<i64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// ActiveMQ's `ProducerId.toString()`: the `MSGID_PROD` column.
pub fn producer_text(p: &ProducerId) -> String {
    format!("{}:{}:{}", p.connection_id, p.session_id, p.value)
}

/// The store producer of an OpenWire producer id (the inverse of [`producer_id`]).
pub fn store_producer(p: &ProducerId) -> String {
    if p.session_id == FOREIGN && p.value == FOREIGN {
        p.connection_id.clone()
    } else {
        producer_text(p)
    }
}

/// The `MSGID_PROD` column ActiveMQ writes for a store producer.
pub fn producer_column(producer: &str) -> String {
    producer_text(&producer_id(producer))
}

/// The store producer of a `MSGID_PROD` column (the inverse of [`producer_column`]).
pub fn producer_of_column(column: &str) -> String {
    column.strip_suffix(":-1:-1").unwrap_or(column).to_owned()
}

/// An OpenWire value as the store's; `None` for what the model cannot hold.
pub fn to_store_value(v: &Value) -> Option<V> {
    Some(match v {
        Value::Bool(b) => V::Bool(*b),
        Value::Byte(n) => V::I8(*n),
        Value::Short(n) => V::I16(*n),
        Value::Int(n) => V::I32(*n),
        Value::Long(n) => V::I64(*n),
        Value::Float(n) => V::F32(*n),
        Value::Double(n) => V::F64(*n),
        Value::String(s) => V::String(s.clone()),
        Value::Bytes(b) => V::Bytes(b.clone()),
        // The model has no char: a one-character string is the closest a selector can see.
        Value::Char(c) => V::String(String::from_utf16_lossy(&[*c])),
        // JMS properties and map or stream entries of a JMS client are never these.
        Value::Null | Value::Map(_) | Value::List(_) => return None,
    })
}

/// A store value as OpenWire's.
pub fn to_openwire_value(v: &V) -> Value {
    match v {
        V::Bool(b) => Value::Bool(*b),
        V::I8(n) => Value::Byte(*n),
        V::I16(n) => Value::Short(*n),
        V::I32(n) => Value::Int(*n),
        V::I64(n) => Value::Long(*n),
        V::F32(n) => Value::Float(*n),
        V::F64(n) => Value::Double(*n),
        V::String(s) => Value::String(s.clone()),
        V::Bytes(b) => Value::Bytes(b.clone()),
    }
}

/// An OpenWire map as the store's, dropping entries the model cannot hold.
pub fn to_store_map(m: &PrimitiveMap) -> std::collections::BTreeMap<String, V> {
    m.entries
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), to_store_value(v)?)))
        .collect()
}

/// A store map as OpenWire's.
pub fn to_openwire_map(m: &std::collections::BTreeMap<String, V>) -> PrimitiveMap {
    let mut out = PrimitiveMap::new();
    for (k, v) in m {
        out.insert(k.clone(), to_openwire_value(v));
    }
    out
}

fn openwire_destination(d: &StoreDestination) -> Destination {
    if d.is_queue() {
        Destination::queue(d.name.as_ref())
    } else {
        Destination::topic(d.name.as_ref())
    }
}

fn store_destination(d: &Destination) -> StoreDestination {
    if d.kind.is_queue() {
        StoreDestination::queue(d.physical_name.as_str())
    } else {
        StoreDestination::topic(d.physical_name.as_str())
    }
}

/// A store message as the OpenWire message ActiveMQ would have stored.
pub fn to_openwire(m: &StoreMessage) -> Result<Message, EncodeError> {
    let kind = match &m.body {
        Body::Empty => MessageKind::Plain,
        Body::Text(_) => MessageKind::Text,
        Body::Bytes(_) => MessageKind::Bytes,
        Body::Map(_) => MessageKind::Map,
        Body::Stream(_) => MessageKind::Stream,
        Body::Object(_) => MessageKind::Object,
    };
    let mut o = Message::new(kind);
    match &m.body {
        Body::Empty => {}
        Body::Text(t) => o.set_text(Some(t))?,
        Body::Bytes(b) | Body::Object(b) => o.content = Some(b.clone()),
        Body::Map(map) => o.set_map_body(&to_openwire_map(map))?,
        Body::Stream(values) => {
            let values: Vec<Value> = values.iter().map(to_openwire_value).collect();
            o.set_stream_body(&values)?
        }
    }
    let producer = producer_id(&m.id.producer);
    o.producer_id = Some(producer.clone());
    o.message_id = Some(MessageId {
        text_view: None,
        producer_id: Some(producer),
        // The column is a signed BIGINT: the bits are kept as they are.
        producer_sequence_id: m.id.producer_seq as i64,
        broker_sequence_id: m.sequence as i64,
    });
    o.destination = Some(openwire_destination(&m.destination));
    o.persistent = m.persistent;
    o.priority = m.priority.min(9) as i8;
    o.timestamp = m.timestamp;
    o.expiration = m.expiration;
    o.correlation_id = m.correlation_id.clone();
    o.jms_type = m.message_type.clone();
    o.group_id = m.group_id.clone();
    o.group_sequence = m.group_seq;
    o.reply_to = m.reply_to.as_ref().map(openwire_destination);
    o.redelivery_counter = i32::try_from(m.redelivery_count).unwrap_or(i32::MAX);
    if !m.properties.is_empty() {
        o.set_properties(&to_openwire_map(&m.properties))?;
    }
    Ok(o)
}

/// A store message as the bytes ActiveMQ's stores hold: the [`to_openwire`] message marshalled
/// with [`store_wire_format`].
pub fn encode_stored(m: &StoreMessage) -> Result<Vec<u8>, EncodeError> {
    let o = to_openwire(m)?;
    let mut out = BytesMut::new();
    crate::encode(
        &Command::Message(Box::new(o)),
        &store_wire_format(),
        &mut out,
    )?;
    Ok(out.to_vec())
}

/// An OpenWire message as the store's, in `destination` (the store's place for it, which
/// ActiveMQ also keeps beside the message). Fails when the message has no producer id or a
/// body that does not decode.
pub fn to_store(o: &Message, destination: StoreDestination) -> Result<StoreMessage, String> {
    let id = o.message_id.as_ref().ok_or("the message has no id")?;
    let producer = id
        .producer_id
        .as_ref()
        .ok_or("the message id has no producer")?;
    let bad = |e: DecodeError| format!("unreadable body: {e}");
    let max = DEFAULT_MAX_INFLATED_SIZE;
    let body = match o.kind {
        MessageKind::Plain => Body::Empty,
        MessageKind::Text => Body::Text(o.text(max).map_err(bad)?.unwrap_or_default()),
        MessageKind::Bytes => Body::Bytes(o.body(max).map_err(bad)?),
        MessageKind::Object => Body::Object(o.body(max).map_err(bad)?),
        MessageKind::Map => Body::Map(to_store_map(&o.map_body(max).map_err(bad)?)),
        MessageKind::Stream => Body::Stream(
            o.stream_body(max)
                .map_err(bad)?
                .iter()
                .filter_map(to_store_value)
                .collect(),
        ),
    };
    let store_id =
        store_api::MessageId::new(store_producer(producer), id.producer_sequence_id as u64);
    let mut m = StoreMessage::new(store_id, destination, body);
    m.sequence = u64::try_from(id.broker_sequence_id).unwrap_or(0);
    m.priority = o.priority.clamp(0, 9) as u8;
    m.persistent = o.persistent;
    m.timestamp = o.timestamp;
    m.expiration = o.expiration.max(0);
    m.redelivery_count = u32::try_from(o.redelivery_counter).unwrap_or(0);
    m.correlation_id = o.correlation_id.clone();
    m.reply_to = o.reply_to.as_ref().map(store_destination);
    m.message_type = o.jms_type.clone();
    m.group_id = o.group_id.clone();
    m.group_seq = o.group_sequence;
    m.properties = to_store_map(
        &o.properties()
            .map_err(|e| format!("unreadable properties: {e}"))?,
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn full(body: Body) -> StoreMessage {
        let mut m = StoreMessage::new(
            store_api::MessageId::new("ID:host-1-2-3:1:4:7", 12),
            StoreDestination::queue("orders.€"),
            body,
        );
        m.sequence = 99;
        m.priority = 7;
        m.timestamp = 1_700_000_000_123;
        m.expiration = 1_900_000_000_456;
        m.redelivery_count = 3;
        m.correlation_id = Some("corr".into());
        m.reply_to = Some(StoreDestination::topic("replies"));
        m.message_type = Some("Order".into());
        m.group_id = Some("g".into());
        m.group_seq = 42;
        m.properties.insert("i64".into(), V::I64(i64::MIN));
        m.properties.insert("s".into(), V::String("wert".into()));
        m.properties
            .insert("b".into(), V::Bytes(Bytes::from_static(&[0, 255])));
        m
    }

    #[test]
    fn every_body_kind_round_trips_through_the_stored_bytes() {
        let mut map = BTreeMap::new();
        map.insert("k".to_owned(), V::F64(2.5));
        for body in [
            Body::Empty,
            Body::Text("hällo".into()),
            Body::Text(String::new()),
            Body::Bytes(Bytes::from_static(b"\x00\x01")),
            Body::Object(Bytes::from_static(b"\xac\xed")),
            Body::Map(map),
            Body::Stream(vec![V::I32(1), V::String("x".into())]),
        ] {
            let m = full(body);
            let bytes = encode_stored(&m).unwrap();
            let o = StoredDecoder::default().decode(&bytes).unwrap();
            assert_eq!(to_store(&o, m.destination.clone()).unwrap(), m);
        }
    }

    #[test]
    fn producer_ids_map_one_to_one() {
        for p in [
            "ID:host-1-2-3:1:4",
            "stomp-7",
            "",
            "a:01:2",
            "a:-1:-1",
            "x:1",
            ":1:2",
        ] {
            let id = producer_id(p);
            assert_eq!(store_producer(&id), p, "{p}");
            assert_eq!(producer_of_column(&producer_column(p)), p, "{p}");
        }
        assert_eq!(producer_column("ID:h-1:1:4"), "ID:h-1:1:4");
        assert_eq!(producer_column("stomp-7"), "stomp-7:-1:-1");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(
            StoredDecoder::default()
                .decode(b"\x00\x00\x00\x02\x17\x01")
                .is_err()
        );
        assert!(StoredDecoder::default().decode(b"").is_err());
    }
}
