//! A small protobuf reader for KahaDB's journal commands (`journal-data.proto`): varints,
//! length-delimited fields, unknown fields skipped. Hand-written rather than generated because
//! ActiveMQ's own protobuf compiler gives `KahaLocalTransactionId` two fields numbered 1 and
//! tells them apart by wire type, which a stock toolchain rejects.

/// Why a command's bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("truncated protobuf")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("wire type {0} is not supported")]
    WireType(u8),
    #[error("required field {0} missing")]
    Missing(&'static str),
    #[error("field {0} is not UTF-8")]
    Utf8(&'static str),
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// KahaDB nests at most four levels (update > add > transaction info > id); anything deeper is
/// not a KahaDB command, and refusing it keeps hostile input from exhausting the stack.
const MAX_DEPTH: u32 = 8;

/// One field's value, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads `(field number, wire type, value)` triples off a message's bytes.
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    /// The next field, `None` at the end.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = varint(&mut self.buf)?;
        let number = (tag >> 3) as u32;
        let value = match (tag & 7) as u8 {
            0 => Value::Varint(varint(&mut self.buf)?),
            1 => Value::Fixed64(u64::from_le_bytes(
                take(&mut self.buf, 8)?
                    .try_into()
                    .map_err(|_| ProtoError::Truncated)?,
            )),
            2 => {
                let len =
                    usize::try_from(varint(&mut self.buf)?).map_err(|_| ProtoError::Truncated)?;
                Value::Bytes(take(&mut self.buf, len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                take(&mut self.buf, 4)?
                    .try_into()
                    .map_err(|_| ProtoError::Truncated)?,
            )),
            w => return Err(ProtoError::WireType(w)),
        };
        Ok(Some((number, value)))
    }
}

/// Reads a base-128 varint off the front of `buf`.
pub fn varint(buf: &mut &[u8]) -> Result<u64, ProtoError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(ProtoError::Truncated)?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtoError::VarintTooLong)
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], ProtoError> {
    if buf.len() < len {
        return Err(ProtoError::Truncated);
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

fn string(v: Value<'_>, what: &'static str) -> Result<String, ProtoError> {
    match v {
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| ProtoError::Utf8(what)),
        _ => Err(ProtoError::Missing(what)),
    }
}

fn bytes(v: Value<'_>, what: &'static str) -> Result<Vec<u8>, ProtoError> {
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        _ => Err(ProtoError::Missing(what)),
    }
}

fn int(v: Value<'_>) -> u64 {
    match v {
        Value::Varint(n) | Value::Fixed64(n) => n,
        Value::Fixed32(n) => u64::from(n),
        Value::Bytes(_) => 0,
    }
}

/// `KahaDestination.DestinationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DestinationType {
    Queue,
    Topic,
    TempQueue,
    TempTopic,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KahaDestination {
    pub kind: DestinationType,
    pub name: String,
}

/// `KahaTransactionInfo`: a local or an XA transaction id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxId {
    Local {
        connection_id: String,
        transaction_id: i64,
    },
    Xa {
        format_id: i32,
        branch_qualifier: Vec<u8>,
        global_id: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddMessage {
    pub tx: Option<TxId>,
    pub destination: KahaDestination,
    pub message_id: String,
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveMessage {
    pub tx: Option<TxId>,
    pub destination: KahaDestination,
    pub message_id: String,
    /// Set for a topic ack: `clientId:subscriptionName`.
    pub subscription_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub destination: KahaDestination,
    pub key: String,
    pub retroactive: bool,
    /// The OpenWire `SubscriptionInfo`; `None` deletes the subscription.
    pub info: Option<Vec<u8>>,
}

/// One journal command, as far as the import needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add(AddMessage),
    /// `KAHA_UPDATE_MESSAGE_COMMAND`: the message's new bytes, same id.
    Update(AddMessage),
    Remove(RemoveMessage),
    Prepare(TxId),
    Commit(TxId),
    Rollback(TxId),
    RemoveDestination(KahaDestination),
    Subscription(Subscription),
    /// Trace, producer audit, ack-file map, scheduler jobs, rewritten-file markers: nothing
    /// pending depends on them.
    Ignored(u8),
}

/// A journal record's payload: the `KahaEntryType` byte, then the command framed with a
/// varint length.
pub fn decode_command(payload: &[u8]) -> Result<Command, ProtoError> {
    let (&kind, mut rest) = payload.split_first().ok_or(ProtoError::Truncated)?;
    let len = usize::try_from(varint(&mut rest)?).map_err(|_| ProtoError::Truncated)?;
    let body = take(&mut rest, len)?;
    Ok(match kind {
        1 => Command::Add(add_message(body, 0)?),
        2 => Command::Remove(remove_message(body)?),
        3 => Command::Prepare(tx_only(body)?),
        4 => Command::Commit(tx_only(body)?),
        5 => Command::Rollback(tx_only(body)?),
        6 => {
            let mut dest = None;
            let mut f = Fields::new(body);
            while let Some((n, v)) = f.next_field()? {
                if n == 1 {
                    dest = Some(destination(v, 1)?);
                }
            }
            Command::RemoveDestination(dest.ok_or(ProtoError::Missing("destination"))?)
        }
        7 => Command::Subscription(subscription(body)?),
        10 => {
            let mut add = None;
            let mut f = Fields::new(body);
            while let Some((n, v)) = f.next_field()? {
                if let (1, Value::Bytes(b)) = (n, v) {
                    add = Some(add_message(b, 1)?);
                }
            }
            Command::Update(add.ok_or(ProtoError::Missing("message"))?)
        }
        other => Command::Ignored(other),
    })
}

fn add_message(body: &[u8], depth: u32) -> Result<AddMessage, ProtoError> {
    let (mut tx, mut dest, mut id, mut message) = (None, None, None, None);
    let mut f = Fields::new(body);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => tx = Some(transaction(v, depth + 1)?),
            2 => dest = Some(destination(v, depth + 1)?),
            3 => id = Some(string(v, "messageId")?),
            4 => message = Some(bytes(v, "message")?),
            _ => {}
        }
    }
    Ok(AddMessage {
        tx: tx.flatten(),
        destination: dest.ok_or(ProtoError::Missing("destination"))?,
        message_id: id.ok_or(ProtoError::Missing("messageId"))?,
        message: message.ok_or(ProtoError::Missing("message"))?,
    })
}

fn remove_message(body: &[u8]) -> Result<RemoveMessage, ProtoError> {
    let (mut tx, mut dest, mut id, mut key) = (None, None, None, None);
    let mut f = Fields::new(body);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => tx = Some(transaction(v, 1)?),
            2 => dest = Some(destination(v, 1)?),
            3 => id = Some(string(v, "messageId")?),
            5 => key = Some(string(v, "subscriptionKey")?),
            _ => {}
        }
    }
    Ok(RemoveMessage {
        tx: tx.flatten(),
        destination: dest.ok_or(ProtoError::Missing("destination"))?,
        message_id: id.ok_or(ProtoError::Missing("messageId"))?,
        subscription_key: key,
    })
}

fn tx_only(body: &[u8]) -> Result<TxId, ProtoError> {
    let mut tx = None;
    let mut f = Fields::new(body);
    while let Some((n, v)) = f.next_field()? {
        if n == 1 {
            tx = transaction(v, 1)?;
        }
    }
    tx.ok_or(ProtoError::Missing("transaction_info"))
}

fn subscription(body: &[u8]) -> Result<Subscription, ProtoError> {
    let (mut dest, mut key, mut retroactive, mut info) = (None, None, false, None);
    let mut f = Fields::new(body);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => dest = Some(destination(v, 1)?),
            2 => key = Some(string(v, "subscriptionKey")?),
            3 => retroactive = int(v) != 0,
            4 => info = Some(bytes(v, "subscriptionInfo")?),
            _ => {}
        }
    }
    Ok(Subscription {
        destination: dest.ok_or(ProtoError::Missing("destination"))?,
        key: key.ok_or(ProtoError::Missing("subscriptionKey"))?,
        retroactive,
        info,
    })
}

fn nested<'a>(v: Value<'a>, depth: u32, what: &'static str) -> Result<&'a [u8], ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(ProtoError::Missing(what)),
    }
}

fn destination(v: Value<'_>, depth: u32) -> Result<KahaDestination, ProtoError> {
    let body = nested(v, depth, "destination")?;
    let (mut kind, mut name) = (DestinationType::Queue, None);
    let mut f = Fields::new(body);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => {
                kind = match int(v) {
                    1 => DestinationType::Topic,
                    2 => DestinationType::TempQueue,
                    3 => DestinationType::TempTopic,
                    _ => DestinationType::Queue,
                }
            }
            2 => name = Some(string(v, "destination.name")?),
            _ => {}
        }
    }
    Ok(KahaDestination {
        kind,
        name: name.ok_or(ProtoError::Missing("destination.name"))?,
    })
}

/// `KahaTransactionInfo`; `None` when it names neither a local nor an XA transaction.
fn transaction(v: Value<'_>, depth: u32) -> Result<Option<TxId>, ProtoError> {
    let body = nested(v, depth, "transaction_info")?;
    let mut out = None;
    let mut f = Fields::new(body);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => {
                let body = nested(v, depth + 1, "local_transaction_id")?;
                let (mut conn, mut id) = (None, None);
                let mut f = Fields::new(body);
                // Both fields are number 1: the string is length-delimited, the id a varint.
                while let Some((n, v)) = f.next_field()? {
                    match (n, v) {
                        (1, Value::Bytes(_)) => conn = Some(string(v, "connection_id")?),
                        (1, Value::Varint(x)) => id = Some(x as i64),
                        _ => {}
                    }
                }
                out = Some(TxId::Local {
                    connection_id: conn.ok_or(ProtoError::Missing("connection_id"))?,
                    transaction_id: id.ok_or(ProtoError::Missing("transaction_id"))?,
                });
            }
            2 => {
                let body = nested(v, depth + 1, "xa_transaction_id")?;
                let (mut format_id, mut bq, mut gid) = (None, None, None);
                let mut f = Fields::new(body);
                while let Some((n, v)) = f.next_field()? {
                    match n {
                        1 => format_id = Some(int(v) as i32),
                        2 => bq = Some(bytes(v, "branch_qualifier")?),
                        3 => gid = Some(bytes(v, "global_transaction_id")?),
                        _ => {}
                    }
                }
                out = Some(TxId::Xa {
                    format_id: format_id.ok_or(ProtoError::Missing("format_id"))?,
                    branch_qualifier: bq.ok_or(ProtoError::Missing("branch_qualifier"))?,
                    global_id: gid.ok_or(ProtoError::Missing("global_transaction_id"))?,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_bytes(n: u32, b: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn local_transaction_id_fields_share_number_one() {
        let mut local = field_bytes(1, b"ID:c1");
        local.extend_from_slice(&[0x08, 7]);
        let info = field_bytes(1, &local);
        let mut dest = vec![0x08, 0];
        dest.extend(field_bytes(2, b"q"));
        let mut add = field_bytes(1, &info);
        add.extend(field_bytes(2, &dest));
        add.extend(field_bytes(3, b"ID:m"));
        add.extend(field_bytes(4, b"xyz"));
        let mut payload = vec![1, add.len() as u8];
        payload.extend(add);
        let Command::Add(a) = decode_command(&payload).unwrap() else {
            panic!("not an add");
        };
        assert_eq!(
            a.tx,
            Some(TxId::Local {
                connection_id: "ID:c1".into(),
                transaction_id: 7
            })
        );
        assert_eq!(a.destination.name, "q");
        assert_eq!(a.message, b"xyz");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            &[][..],
            &[1],
            &[1, 200],
            &[10, 3, 0x0a, 0xff, 0xff],
            &[2, 2, 0x0f, 0],
        ] {
            assert!(decode_command(input).is_err());
        }
    }
}
