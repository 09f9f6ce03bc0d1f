//! The column families and the byte layout of their keys and values (see `FORMAT.md`).
//!
//! Keys start with the destination (its codec encoding: kind byte, length-prefixed name), so
//! one destination's records are contiguous. Message keys continue with `9 - priority` and the
//! sequence big-endian, so RocksDB's byte order is delivery order: priority high to low, then
//! sequence.

use store_api::codec::{self, Reader, Writer};
use store_api::{Destination, MAX_PRIORITY, Message, MessageId, OrderKey, SubscriptionKey, TxOp};

use crate::error::{LevelDbError, Result};

/// A column family the engine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    /// Destination key → empty: every destination created and not removed.
    Destinations,
    /// Destination + order → the message's id, size and expiration (what open loads), and
    /// where its body lies in the journal (or the body itself, see `record.rs`).
    Messages,
    /// Destination + order → the whole message (codec encoding): written by stores before
    /// bodies stayed in the journal only, and still read and deleted for those.
    Bodies,
    /// Destination + subscription key → selector.
    Subscriptions,
    /// Destination + subscription key + order → empty: the message is pending for the
    /// subscription (deleted by its ack).
    Pending,
    /// Transaction id → its operations: XA transactions prepared and not yet ended.
    Transactions,
    /// `last_sequence` → the highest sequence assigned, so sequences grow across reopens.
    Meta,
}

impl Cf {
    pub(crate) const ALL: [Cf; 7] = [
        Cf::Destinations,
        Cf::Messages,
        Cf::Bodies,
        Cf::Subscriptions,
        Cf::Pending,
        Cf::Transactions,
        Cf::Meta,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Destinations => "destinations",
            Cf::Messages => "messages",
            Cf::Bodies => "bodies",
            Cf::Subscriptions => "subscriptions",
            Cf::Pending => "pending",
            Cf::Transactions => "transactions",
            Cf::Meta => "meta",
        }
    }
}

pub(crate) const LAST_SEQUENCE: &[u8] = b"last_sequence";

/// Where replay of the engine's journal starts at open: every journal record before it is in
/// the database. Written with every batch (see `journal.rs`).
pub(crate) const REPLAY_FROM: &[u8] = b"replay_from";

/// A journal location as a `u64` value: file id in the high half, offset in the low.
pub(crate) fn location_value(loc: store_journal::Location) -> [u8; 8] {
    ((u64::from(loc.file) << 32) | u64::from(loc.offset)).to_le_bytes()
}

pub(crate) fn read_location(value: &[u8]) -> Result<store_journal::Location> {
    let v = read_u64(value, "replay position")?;
    Ok(store_journal::Location {
        file: (v >> 32) as u32,
        offset: v as u32,
    })
}

fn bad(what: &'static str, cf: Cf, e: impl std::fmt::Display) -> LevelDbError {
    LevelDbError::BadRecord {
        what,
        cf: cf.name(),
        reason: e.to_string(),
    }
}

pub(crate) fn destination(d: &Destination) -> Vec<u8> {
    let mut w = Writer::new();
    codec::write_destination(&mut w, d);
    w.into_inner()
}

fn put_order(key: &mut Vec<u8>, order: OrderKey) {
    key.push(MAX_PRIORITY - order.priority.min(MAX_PRIORITY));
    key.extend_from_slice(&order.sequence.to_be_bytes());
}

fn read_order(r: &mut Reader<'_>) -> std::result::Result<OrderKey, store_api::DecodeError> {
    let p = r.u8()?;
    if p > MAX_PRIORITY {
        return Err(store_api::DecodeError::Invalid(format!(
            "priority byte {p}"
        )));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(r.take(8)?);
    Ok(OrderKey {
        priority: MAX_PRIORITY - p,
        sequence: u64::from_be_bytes(seq),
    })
}

/// Bytes of the `order` suffix of message and pending keys.
pub(crate) const ORDER_LEN: usize = 9;

/// The order at the end of a message key whose destination prefix is already known.
pub(crate) fn read_order_suffix(key: &[u8]) -> Result<OrderKey> {
    let at = key.len().saturating_sub(ORDER_LEN);
    let mut r = Reader::new(&key[at..]);
    read_order(&mut r).map_err(|e| bad("message key", Cf::Messages, e))
}

pub(crate) fn message(d: &Destination, order: OrderKey) -> Vec<u8> {
    let mut key = destination(d);
    put_order(&mut key, order);
    key
}

fn subscription_prefix(d: &Destination, k: &SubscriptionKey) -> Vec<u8> {
    let mut w = Writer::new();
    codec::write_destination(&mut w, d);
    codec::write_subscription_key(&mut w, k);
    w.into_inner()
}

pub(crate) fn subscription(d: &Destination, k: &SubscriptionKey) -> Vec<u8> {
    subscription_prefix(d, k)
}

pub(crate) fn pending(d: &Destination, k: &SubscriptionKey, order: OrderKey) -> Vec<u8> {
    let mut key = subscription_prefix(d, k);
    put_order(&mut key, order);
    key
}

pub(crate) fn transaction(xid: &store_api::Xid) -> Vec<u8> {
    let mut w = Writer::new();
    codec::write_transaction_id(&mut w, &store_api::TransactionId::Xa(xid.clone()));
    w.into_inner()
}

pub(crate) fn read_destination(key: &[u8]) -> Result<Destination> {
    let mut r = Reader::new(key);
    let d = codec::read_destination(&mut r).map_err(|e| bad("destination", Cf::Destinations, e))?;
    r.finish()
        .map_err(|e| bad("destination", Cf::Destinations, e))?;
    Ok(d)
}

pub(crate) fn read_message_key(key: &[u8]) -> Result<(Destination, OrderKey)> {
    let mut r = Reader::new(key);
    let parse = |r: &mut Reader<'_>| {
        let d = codec::read_destination(r)?;
        let o = read_order(r)?;
        r.finish()?;
        Ok::<_, store_api::DecodeError>((d, o))
    };
    parse(&mut r).map_err(|e| bad("message key", Cf::Messages, e))
}

pub(crate) fn read_subscription_key(key: &[u8]) -> Result<(Destination, SubscriptionKey)> {
    let mut r = Reader::new(key);
    let parse = |r: &mut Reader<'_>| {
        let d = codec::read_destination(r)?;
        let k = codec::read_subscription_key(r)?;
        r.finish()?;
        Ok::<_, store_api::DecodeError>((d, k))
    };
    parse(&mut r).map_err(|e| bad("subscription key", Cf::Subscriptions, e))
}

pub(crate) fn read_pending_key(key: &[u8]) -> Result<(Destination, SubscriptionKey, OrderKey)> {
    let mut r = Reader::new(key);
    let parse = |r: &mut Reader<'_>| {
        let d = codec::read_destination(r)?;
        let k = codec::read_subscription_key(r)?;
        let o = read_order(r)?;
        r.finish()?;
        Ok::<_, store_api::DecodeError>((d, k, o))
    };
    parse(&mut r).map_err(|e| bad("pending key", Cf::Pending, e))
}

/// What open needs to know about a message without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: MessageId,
    pub(crate) size: u64,
    pub(crate) expiration: i64,
}

pub(crate) fn entry_value(e: &Entry) -> Vec<u8> {
    let mut w = Writer::new();
    codec::write_message_id(&mut w, &e.id);
    w.u64(e.size);
    w.i64(e.expiration);
    w.into_inner()
}

/// After the entry in a `messages` value: the body itself follows. In journal records; RocksDB
/// gets [`BODY_IN_JOURNAL`] instead, except from a record that also deletes (`record.rs`).
pub(crate) const BODY_INLINE: u8 = 1;
/// After the entry in a `messages` value: a [`BodyRef`] follows. Nothing follows in a store
/// written before bodies stayed in the journal: the body is in the `bodies` column family.
pub(crate) const BODY_IN_JOURNAL: u8 = 2;

/// A `messages` value as a store transaction's journal record holds it: the entry, then the
/// body (codec encoding).
pub(crate) fn message_value(e: &Entry, message: &Message) -> Vec<u8> {
    let mut v = entry_value(e);
    v.push(BODY_INLINE);
    v.extend_from_slice(&codec::encode(message));
    v
}

/// Where a message's body lies in the journal: `len` bytes from `start` in the data of the
/// record at `at`, with their CRC32 (the record's own checksum covers the whole record, which
/// a read of one body does not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyRef {
    pub(crate) at: store_journal::Location,
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

/// Bytes of an encoded [`BodyRef`].
pub(crate) const BODY_REF_LEN: usize = 20;

impl BodyRef {
    pub(crate) fn encode(&self) -> [u8; BODY_REF_LEN] {
        let mut b = [0u8; BODY_REF_LEN];
        for (i, v) in [self.at.file, self.at.offset, self.start, self.len, self.crc]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<BodyRef> {
        if b.len() != BODY_REF_LEN {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        Some(BodyRef {
            at: store_journal::Location {
                file: u(0),
                offset: u(1),
            },
            start: u(2),
            len: u(3),
            crc: u(4),
        })
    }
}

/// Where a stored message's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyAt {
    Journal(BodyRef),
    /// In the `messages` value itself, from this byte on.
    Inline(usize),
    /// In the `bodies` column family (a store written before bodies stayed in the journal).
    BodiesCf,
}

/// Where the body of a `messages` value is (what follows its entry), and the entry's length.
pub(crate) fn body_at(value: &[u8]) -> Result<(usize, BodyAt)> {
    let mut r = Reader::new(value);
    let mut parse = || {
        r.str("producer id")?;
        r.varint()?;
        r.u64()?;
        r.i64()?;
        Ok::<_, store_api::DecodeError>(r.position())
    };
    let entry = parse().map_err(|e| bad("message entry", Cf::Messages, e))?;
    Ok((entry, body_after(value, entry)?))
}

/// What follows the entry, which ends at `entry`, in a `messages` value.
fn body_after(value: &[u8], entry: usize) -> Result<BodyAt> {
    match value.get(entry..).and_then(|rest| rest.split_first()) {
        None => Ok(BodyAt::BodiesCf),
        Some((&BODY_INLINE, _)) => Ok(BodyAt::Inline(entry + 1)),
        Some((&BODY_IN_JOURNAL, b)) => BodyRef::decode(b).map(BodyAt::Journal).ok_or_else(|| {
            bad(
                "message entry",
                Cf::Messages,
                format!("a body reference of {} bytes", b.len()),
            )
        }),
        Some((tag, _)) => Err(bad(
            "message entry",
            Cf::Messages,
            format!("unknown body tag {tag}"),
        )),
    }
}

/// Reads a `messages` value as RocksDB holds it: the entry and where the body is. `intern`
/// turns the producer id into a shared string, so that a million messages from a few
/// producers hold a few strings (open builds its index from these).
pub(crate) fn read_entry(
    value: &[u8],
    intern: &mut impl FnMut(&str) -> std::sync::Arc<str>,
) -> Result<(Entry, BodyAt)> {
    let mut r = Reader::new(value);
    let mut parse = |r: &mut Reader<'_>| {
        // The layout of codec::write_message_id: producer string, then varint sequence.
        let producer = intern(r.str("producer id")?);
        let id = MessageId {
            producer,
            producer_seq: r.varint()?,
        };
        let size = r.u64()?;
        let expiration = r.i64()?;
        Ok::<_, store_api::DecodeError>(Entry {
            id,
            size,
            expiration,
        })
    };
    let entry = parse(&mut r).map_err(|e| bad("message entry", Cf::Messages, e))?;
    Ok((entry, body_after(value, r.position())?))
}

pub(crate) fn selector_value(selector: Option<&str>) -> Vec<u8> {
    let mut w = Writer::new();
    match selector {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.str(s);
        }
    }
    w.into_inner()
}

pub(crate) fn read_selector(value: &[u8]) -> Result<Option<String>> {
    let mut r = Reader::new(value);
    let parse = |r: &mut Reader<'_>| {
        let s = match r.u8()? {
            0 => None,
            _ => Some(r.str("selector")?.to_owned()),
        };
        r.finish()?;
        Ok::<_, store_api::DecodeError>(s)
    };
    parse(&mut r).map_err(|e| bad("subscription", Cf::Subscriptions, e))
}

pub(crate) fn ops_value(ops: &[TxOp]) -> Vec<u8> {
    let mut w = Writer::new();
    w.varint(ops.len() as u64);
    for op in ops {
        codec::write_tx_op(&mut w, op);
    }
    w.into_inner()
}

pub(crate) fn read_transaction(
    key: &[u8],
    value: &[u8],
) -> Result<(store_api::TransactionId, Vec<TxOp>)> {
    let parse = || {
        let mut r = Reader::new(key);
        let id = codec::read_transaction_id(&mut r)?;
        r.finish()?;
        let mut r = Reader::new(value);
        let n = r.varint()?;
        let mut ops = Vec::new();
        for _ in 0..n {
            ops.push(codec::read_tx_op(&mut r)?);
        }
        r.finish()?;
        Ok::<_, store_api::DecodeError>((id, ops))
    };
    parse().map_err(|e| bad("prepared transaction", Cf::Transactions, e))
}

pub(crate) fn read_body(value: &[u8]) -> Result<store_api::Message> {
    codec::decode(value).map_err(|e| bad("message body", Cf::Bodies, e))
}

pub(crate) fn read_u64(value: &[u8], what: &'static str) -> Result<u64> {
    let mut r = Reader::new(value);
    let v = r.u64().map_err(|e| bad(what, Cf::Meta, e))?;
    r.finish().map_err(|e| bad(what, Cf::Meta, e))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_in_delivery_order() {
        let d = Destination::queue("q");
        let keys = [(9, 5), (9, 7), (4, 1), (4, 300), (0, 2)];
        let encoded: Vec<Vec<u8>> = keys
            .iter()
            .map(|&(priority, sequence)| message(&d, OrderKey { priority, sequence }))
            .collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded);
        for (k, &(priority, sequence)) in encoded.iter().zip(&keys) {
            let (dd, o) = read_message_key(k).expect("decodes");
            assert_eq!(dd, d);
            assert_eq!(o, OrderKey { priority, sequence });
        }
    }

    #[test]
    fn pending_keys_round_trip() {
        let d = Destination::topic("t");
        let k = SubscriptionKey::new("c", "s");
        let o = OrderKey {
            priority: 3,
            sequence: 42,
        };
        assert_eq!(
            read_pending_key(&pending(&d, &k, o)).expect("decodes"),
            (d, k, o)
        );
    }
}
