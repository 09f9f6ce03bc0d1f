//! The binary encoding of messages (and of the other contract types engines persist).
//!
//! Layout of an encoded [`Message`], version 1. Integers are explicitly little-endian;
//! `varint` is unsigned LEB128 (at most 10 bytes); `str` and `bin` are a varint length followed by
//! that many bytes (UTF-8 for `str`).
//!
//! | field | encoding |
//! |---|---|
//! | version | `u8` = 1 |
//! | flags | `u8`: bit 0 persistent, 1 correlation id, 2 reply-to, 3 type, 4 group id; others 0 |
//! | producer id, producer sequence | `str`, `varint` |
//! | destination | `u8` kind (0 queue, 1 topic), `str` name |
//! | sequence | `varint` |
//! | priority | `u8` (0..=9) |
//! | timestamp, expiration | `i64` LE each |
//! | redelivery count | `varint` (fits `u32`) |
//! | correlation id, reply-to, type, group id | each present only when its flag is set: `str`, destination, `str`, `str` |
//! | group sequence | `i32` LE |
//! | properties | `varint` count, then per property `str` name (strictly ascending) and a value |
//! | body | `u8` kind (0 empty, 1 text `str`, 2 bytes `bin`, 3 map: count + (`str` name ascending, value)*, 4 stream: count + value*, 5 object `bin`) |
//!
//! A value is a `u8` tag then: 0 bool (`u8` 0 or 1), 1 `i8`, 2 `i16`, 3 `i32`, 4 `i64`, 5 `f32`,
//! 6 `f64` (IEEE-754 bits, LE), 7 `str`, 8 `bin`.
//!
//! Decoding checks every length against the bytes that remain before allocating, rejects unknown
//! tags and versions, non-canonical forms (unsorted or repeated names, bool bytes other than 0/1,
//! set reserved flag bits) and trailing bytes, so `decode(encode(m)) == m` and any other input is
//! an error, never a panic.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::message::{Body, Destination, DestinationKind, MAX_PRIORITY, Message, MessageId, Value};
use crate::transaction::{SubscriptionKey, TransactionId, TxOp, Xid};

/// The current message encoding version.
pub const MESSAGE_VERSION: u8 = 1;

const FLAG_PERSISTENT: u8 = 1;
const FLAG_CORRELATION: u8 = 1 << 1;
const FLAG_REPLY_TO: u8 = 1 << 2;
const FLAG_TYPE: u8 = 1 << 3;
const FLAG_GROUP: u8 = 1 << 4;
const FLAGS_KNOWN: u8 = 0b1_1111;

/// Appends encoded primitives to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    pub fn bin(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bin(s.as_bytes());
    }

    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

/// Reads encoded primitives from a byte slice, failing (never panicking) on short or bad input.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may carry only the top bit of a u64.
            if i == 9 && bits > 1 {
                return Err(DecodeError::VarintOverflow { at: start });
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                // A zero final byte after the first is a longer spelling of a shorter varint:
                // refused, so that every value has exactly one encoding.
                if i > 0 && byte == 0 {
                    return Err(DecodeError::Invalid(format!(
                        "varint at byte {start} is not minimally encoded"
                    )));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow { at: start })
    }

    /// A varint used as a length or count; bounded by the bytes left so that no allocation is
    /// made for data that is not there.
    pub fn length(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let v = self.varint()?;
        let remaining = self.remaining() as u64;
        if v > remaining {
            return Err(DecodeError::Truncated {
                at,
                needed: usize::try_from(v - remaining).unwrap_or(usize::MAX),
            });
        }
        Ok(v as usize)
    }

    pub fn bin(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.length()?;
        self.take(n)
    }

    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let b = self.bin()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8 { what, at })
    }
}

/// Encodes a message in the current version.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut w = Writer::with_capacity(encoded_len(msg));
    write_message(&mut w, msg);
    w.into_inner()
}

/// Appends the encoding of a message to `w`.
pub fn write_message(w: &mut Writer, msg: &Message) {
    let mut flags = 0;
    if msg.persistent {
        flags |= FLAG_PERSISTENT;
    }
    if msg.correlation_id.is_some() {
        flags |= FLAG_CORRELATION;
    }
    if msg.reply_to.is_some() {
        flags |= FLAG_REPLY_TO;
    }
    if msg.message_type.is_some() {
        flags |= FLAG_TYPE;
    }
    if msg.group_id.is_some() {
        flags |= FLAG_GROUP;
    }
    w.u8(MESSAGE_VERSION);
    w.u8(flags);
    write_message_id(w, &msg.id);
    write_destination(w, &msg.destination);
    w.varint(msg.sequence);
    w.u8(msg.priority);
    w.i64(msg.timestamp);
    w.i64(msg.expiration);
    w.varint(u64::from(msg.redelivery_count));
    if let Some(c) = &msg.correlation_id {
        w.str(c);
    }
    if let Some(d) = &msg.reply_to {
        write_destination(w, d);
    }
    if let Some(t) = &msg.message_type {
        w.str(t);
    }
    if let Some(g) = &msg.group_id {
        w.str(g);
    }
    w.u32(msg.group_seq as u32);
    w.varint(msg.properties.len() as u64);
    for (k, v) in &msg.properties {
        w.str(k);
        write_value(w, v);
    }
    match &msg.body {
        Body::Empty => w.u8(0),
        Body::Text(s) => {
            w.u8(1);
            w.str(s);
        }
        Body::Bytes(b) => {
            w.u8(2);
            w.bin(b);
        }
        Body::Map(m) => {
            w.u8(3);
            w.varint(m.len() as u64);
            for (k, v) in m {
                w.str(k);
                write_value(w, v);
            }
        }
        Body::Stream(vs) => {
            w.u8(4);
            w.varint(vs.len() as u64);
            for v in vs {
                write_value(w, v);
            }
        }
        Body::Object(b) => {
            w.u8(5);
            w.bin(b);
        }
    }
}

/// Decodes one message; the whole input must be the message.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(buf);
    let m = read_message(&mut r)?;
    r.finish()?;
    Ok(m)
}

/// Reads one message from `r`, leaving the reader after it.
pub fn read_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let version = r.u8()?;
    if version != MESSAGE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let flags_at = r.position();
    let flags = r.u8()?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::InvalidTag {
            what: "message flags",
            tag: flags,
            at: flags_at,
        });
    }
    let id = read_message_id(r)?;
    let destination = read_destination(r)?;
    let sequence = r.varint()?;
    let priority_at = r.position();
    let priority = r.u8()?;
    if priority > MAX_PRIORITY {
        return Err(DecodeError::Invalid(format!(
            "priority {priority} at byte {priority_at} is above {MAX_PRIORITY}"
        )));
    }
    let timestamp = r.i64()?;
    let expiration = r.i64()?;
    let rc_at = r.position();
    let redelivery_count = u32::try_from(r.varint()?).map_err(|_| {
        DecodeError::Invalid(format!("redelivery count at byte {rc_at} exceeds u32"))
    })?;
    let correlation_id = optional(flags & FLAG_CORRELATION, || {
        Ok(r.str("correlation id")?.to_owned())
    })?;
    let reply_to = if flags & FLAG_REPLY_TO != 0 {
        Some(read_destination(r)?)
    } else {
        None
    };
    let message_type = optional(flags & FLAG_TYPE, || Ok(r.str("type")?.to_owned()))?;
    let group_id = optional(flags & FLAG_GROUP, || Ok(r.str("group id")?.to_owned()))?;
    let group_seq = r.u32()? as i32;
    let properties = read_value_map(r, "property name")?;
    let body_at = r.position();
    let body = match r.u8()? {
        0 => Body::Empty,
        1 => Body::Text(r.str("text body")?.to_owned()),
        2 => Body::Bytes(Bytes::copy_from_slice(r.bin()?)),
        3 => Body::Map(read_value_map(r, "map entry name")?),
        4 => {
            let n = r.length()?;
            let mut vs = Vec::with_capacity(n);
            for _ in 0..n {
                vs.push(read_value(r)?);
            }
            Body::Stream(vs)
        }
        5 => Body::Object(Bytes::copy_from_slice(r.bin()?)),
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "body kind",
                tag,
                at: body_at,
            });
        }
    };
    Ok(Message {
        id,
        destination,
        sequence,
        priority,
        timestamp,
        expiration,
        persistent: flags & FLAG_PERSISTENT != 0,
        redelivery_count,
        correlation_id,
        reply_to,
        message_type,
        group_id,
        group_seq,
        properties,
        body,
    })
}

fn optional<T>(
    flag: u8,
    read: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if flag != 0 {
        read().map(Some)
    } else {
        Ok(None)
    }
}

/// Exact length of [`encode`]'s output, computed without encoding.
pub fn encoded_len(msg: &Message) -> usize {
    fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }
    fn bin_len(n: usize) -> usize {
        varint_len(n as u64) + n
    }
    fn dest_len(d: &Destination) -> usize {
        1 + bin_len(d.name.len())
    }
    fn value_len(v: &Value) -> usize {
        1 + match v {
            Value::Bool(_) | Value::I8(_) => 1,
            Value::I16(_) => 2,
            Value::I32(_) | Value::F32(_) => 4,
            Value::I64(_) | Value::F64(_) => 8,
            Value::String(s) => bin_len(s.len()),
            Value::Bytes(b) => bin_len(b.len()),
        }
    }
    fn map_len(m: &BTreeMap<String, Value>) -> usize {
        varint_len(m.len() as u64)
            + m.iter()
                .map(|(k, v)| bin_len(k.len()) + value_len(v))
                .sum::<usize>()
    }
    2 + bin_len(msg.id.producer.len())
        + varint_len(msg.id.producer_seq)
        + dest_len(&msg.destination)
        + varint_len(msg.sequence)
        + 1
        + 16
        + varint_len(u64::from(msg.redelivery_count))
        + msg.correlation_id.as_ref().map_or(0, |s| bin_len(s.len()))
        + msg.reply_to.as_ref().map_or(0, dest_len)
        + msg.message_type.as_ref().map_or(0, |s| bin_len(s.len()))
        + msg.group_id.as_ref().map_or(0, |s| bin_len(s.len()))
        + 4
        + map_len(&msg.properties)
        + 1
        + match &msg.body {
            Body::Empty => 0,
            Body::Text(s) => bin_len(s.len()),
            Body::Bytes(b) | Body::Object(b) => bin_len(b.len()),
            Body::Map(m) => map_len(m),
            Body::Stream(vs) => {
                varint_len(vs.len() as u64) + vs.iter().map(value_len).sum::<usize>()
            }
        }
}

fn write_value(w: &mut Writer, v: &Value) {
    match v {
        Value::Bool(b) => {
            w.u8(0);
            w.u8(u8::from(*b));
        }
        Value::I8(x) => {
            w.u8(1);
            w.u8(*x as u8);
        }
        Value::I16(x) => {
            w.u8(2);
            w.raw(&x.to_le_bytes());
        }
        Value::I32(x) => {
            w.u8(3);
            w.raw(&x.to_le_bytes());
        }
        Value::I64(x) => {
            w.u8(4);
            w.raw(&x.to_le_bytes());
        }
        Value::F32(x) => {
            w.u8(5);
            w.raw(&x.to_bits().to_le_bytes());
        }
        Value::F64(x) => {
            w.u8(6);
            w.raw(&x.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            w.u8(7);
            w.str(s);
        }
        Value::Bytes(b) => {
            w.u8(8);
            w.bin(b);
        }
    }
}

fn read_value(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    let at = r.position();
    Ok(match r.u8()? {
        0 => match r.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "bool",
                    tag,
                    at: at + 1,
                });
            }
        },
        1 => Value::I8(r.u8()? as i8),
        2 => Value::I16(i16::from_le_bytes(r.array()?)),
        3 => Value::I32(i32::from_le_bytes(r.array()?)),
        4 => Value::I64(r.i64()?),
        5 => Value::F32(f32::from_bits(r.u32()?)),
        6 => Value::F64(f64::from_bits(r.u64()?)),
        7 => Value::String(r.str("string value")?.to_owned()),
        8 => Value::Bytes(Bytes::copy_from_slice(r.bin()?)),
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "value",
                tag,
                at,
            });
        }
    })
}

fn read_value_map(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<BTreeMap<String, Value>, DecodeError> {
    let n = r.length()?;
    let mut map = BTreeMap::new();
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let at = r.position();
        let k = r.str(what)?;
        if last.is_some_and(|l| l >= k) {
            return Err(DecodeError::Invalid(format!(
                "{what} at byte {at} is not in strictly ascending order"
            )));
        }
        last = Some(k);
        let v = read_value(r)?;
        map.insert(k.to_owned(), v);
    }
    Ok(map)
}

pub fn write_message_id(w: &mut Writer, id: &MessageId) {
    w.str(&id.producer);
    w.varint(id.producer_seq);
}

pub fn read_message_id(r: &mut Reader<'_>) -> Result<MessageId, DecodeError> {
    let producer: Arc<str> = Arc::from(r.str("producer id")?);
    let producer_seq = r.varint()?;
    Ok(MessageId {
        producer,
        producer_seq,
    })
}

pub fn write_destination(w: &mut Writer, d: &Destination) {
    w.u8(match d.kind {
        DestinationKind::Queue => 0,
        DestinationKind::Topic => 1,
    });
    w.str(&d.name);
}

pub fn read_destination(r: &mut Reader<'_>) -> Result<Destination, DecodeError> {
    let at = r.position();
    let kind = match r.u8()? {
        0 => DestinationKind::Queue,
        1 => DestinationKind::Topic,
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "destination kind",
                tag,
                at,
            });
        }
    };
    let name = Arc::from(r.str("destination name")?);
    Ok(Destination { kind, name })
}

pub fn write_subscription_key(w: &mut Writer, k: &SubscriptionKey) {
    w.str(&k.client_id);
    w.str(&k.name);
}

pub fn read_subscription_key(r: &mut Reader<'_>) -> Result<SubscriptionKey, DecodeError> {
    let client_id = r.str("client id")?.to_owned();
    let name = r.str("subscription name")?.to_owned();
    Ok(SubscriptionKey { client_id, name })
}

/// `u8` 0 + `varint` for a local id; `u8` 1 + `i32` format id (as `u32` LE) + `bin` global id +
/// `bin` branch qualifier for an XA id.
pub fn write_transaction_id(w: &mut Writer, id: &TransactionId) {
    match id {
        TransactionId::Local(n) => {
            w.u8(0);
            w.varint(*n);
        }
        TransactionId::Xa(x) => {
            w.u8(1);
            w.u32(x.format_id as u32);
            w.bin(&x.global_id);
            w.bin(&x.branch_qualifier);
        }
    }
}

pub fn read_transaction_id(r: &mut Reader<'_>) -> Result<TransactionId, DecodeError> {
    let at = r.position();
    match r.u8()? {
        0 => Ok(TransactionId::Local(r.varint()?)),
        1 => {
            let format_id = r.u32()? as i32;
            let global_id = r.bin()?.to_vec();
            let branch_qualifier = r.bin()?.to_vec();
            Ok(TransactionId::Xa(Xid {
                format_id,
                global_id,
                branch_qualifier,
            }))
        }
        tag => Err(DecodeError::InvalidTag {
            what: "transaction id",
            tag,
            at,
        }),
    }
}

/// `u8` 0 + message for an add; `u8` 1 + destination + message id for a queue ack; `u8` 2 +
/// destination + subscription key + message id for a durable-subscription ack.
pub fn write_tx_op(w: &mut Writer, op: &TxOp) {
    match op {
        TxOp::Add(m) => {
            w.u8(0);
            write_message(w, m);
        }
        TxOp::QueueAck { destination, id } => {
            w.u8(1);
            write_destination(w, destination);
            write_message_id(w, id);
        }
        TxOp::TopicAck {
            destination,
            subscription,
            id,
        } => {
            w.u8(2);
            write_destination(w, destination);
            write_subscription_key(w, subscription);
            write_message_id(w, id);
        }
    }
}

pub fn read_tx_op(r: &mut Reader<'_>) -> Result<TxOp, DecodeError> {
    let at = r.position();
    match r.u8()? {
        0 => Ok(TxOp::Add(read_message(r)?)),
        1 => Ok(TxOp::QueueAck {
            destination: read_destination(r)?,
            id: read_message_id(r)?,
        }),
        2 => Ok(TxOp::TopicAck {
            destination: read_destination(r)?,
            subscription: read_subscription_key(r)?,
            id: read_message_id(r)?,
        }),
        tag => Err(DecodeError::InvalidTag {
            what: "transaction operation",
            tag,
            at,
        }),
    }
}
