//! The journal records KahaDB writes: one byte of type, then the fields in the `store-api`
//! codec's primitives. See FORMAT.md for the table.

use store_api::codec::{self, Reader, Writer};
use store_api::{
    DecodeError, Destination, Message, MessageId, OrderKey, SubscriptionInfo, SubscriptionKey,
    TxOp, Xid,
};

/// A change to the store, as journaled. Replaying the journal's commands in order rebuilds the
/// index.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A message (with its sequence) added to its destination; for a topic, with the
    /// subscriptions it is pending for. Naming them, rather than meaning "the subscriptions
    /// that exist", keeps a replay right when the records that created those subscriptions
    /// are gone from the journal.
    Add {
        message: Message,
        pending_for: Vec<SubscriptionKey>,
    },
    QueueAck {
        dest: Destination,
        id: MessageId,
    },
    TopicAck {
        dest: Destination,
        key: SubscriptionKey,
        id: MessageId,
    },
    /// A new subscription; `retroactive` lists the kept messages it starts with (none for a
    /// plain subscription), for the same reason `Add` names its subscriptions.
    Subscribe {
        dest: Destination,
        info: SubscriptionInfo,
        retroactive: Vec<OrderKey>,
    },
    Unsubscribe {
        dest: Destination,
        key: SubscriptionKey,
    },
    /// A topic message dropped for every subscription.
    TopicRemove {
        dest: Destination,
        id: MessageId,
    },
    Purge {
        dest: Destination,
    },
    /// Creates the destination if it does not exist (also written to move its anchor forward).
    EnsureDestination {
        dest: Destination,
    },
    RemoveDestination {
        dest: Destination,
        last_sequence: u64,
    },
    DeleteAll {
        last_sequence: u64,
    },
    /// An XA transaction's operations, durable at prepare (also written to move it forward).
    Prepare {
        xid: Xid,
        ops: Vec<TxOp>,
    },
    /// A prepared transaction ended; a commit's effects are the records before it in the same
    /// atomic append.
    XaEnd {
        xid: Xid,
        committed: bool,
    },
    /// A live message copied forward by journal compaction, with the subscriptions it is still
    /// pending for (topics).
    Relocate {
        message: Message,
        pending_for: Vec<SubscriptionKey>,
    },
    /// A subscription with nothing pending, re-anchored forward by compaction.
    EnsureSubscription {
        dest: Destination,
        info: SubscriptionInfo,
    },
}

fn write_info(w: &mut Writer, info: &SubscriptionInfo) {
    codec::write_subscription_key(w, &info.key);
    match &info.selector {
        Some(s) => {
            w.u8(1);
            w.str(s);
        }
        None => w.u8(0),
    }
}

fn read_info(r: &mut Reader<'_>) -> Result<SubscriptionInfo, DecodeError> {
    let key = codec::read_subscription_key(r)?;
    let selector = match r.u8()? {
        0 => None,
        1 => Some(r.str("selector")?.to_owned()),
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "selector flag",
                tag,
                at: r.position() - 1,
            });
        }
    };
    Ok(SubscriptionInfo { key, selector })
}

fn write_keys(w: &mut Writer, keys: &[SubscriptionKey]) {
    w.varint(keys.len() as u64);
    for k in keys {
        codec::write_subscription_key(w, k);
    }
}

fn read_keys(r: &mut Reader<'_>) -> Result<Vec<SubscriptionKey>, DecodeError> {
    let n = r.length()?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(codec::read_subscription_key(r)?);
    }
    Ok(keys)
}

fn write_xid(w: &mut Writer, xid: &Xid) {
    codec::write_transaction_id(w, &store_api::TransactionId::Xa(xid.clone()));
}

fn read_xid(r: &mut Reader<'_>) -> Result<Xid, DecodeError> {
    match codec::read_transaction_id(r)? {
        store_api::TransactionId::Xa(x) => Ok(x),
        store_api::TransactionId::Local(_) => {
            Err(DecodeError::Invalid("expected an XA transaction id".into()))
        }
    }
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        // Sized for an add's message up front: growing the buffer by doubling copied each body
        // three or four times on its way to the journal.
        let mut w = match self {
            Command::Add {
                message,
                pending_for,
            } => {
                Writer::with_capacity(1 + codec::encoded_len(message) + 8 + pending_for.len() * 32)
            }
            _ => Writer::new(),
        };
        match self {
            Command::Add {
                message,
                pending_for,
            } => {
                w.u8(1);
                codec::write_message(&mut w, message);
                write_keys(&mut w, pending_for);
            }
            Command::QueueAck { dest, id } => {
                w.u8(2);
                codec::write_destination(&mut w, dest);
                codec::write_message_id(&mut w, id);
            }
            Command::TopicAck { dest, key, id } => {
                w.u8(3);
                codec::write_destination(&mut w, dest);
                codec::write_subscription_key(&mut w, key);
                codec::write_message_id(&mut w, id);
            }
            Command::Subscribe {
                dest,
                info,
                retroactive,
            } => {
                w.u8(4);
                codec::write_destination(&mut w, dest);
                write_info(&mut w, info);
                w.varint(retroactive.len() as u64);
                for k in retroactive {
                    w.u8(k.priority);
                    w.varint(k.sequence);
                }
            }
            Command::Unsubscribe { dest, key } => {
                w.u8(5);
                codec::write_destination(&mut w, dest);
                codec::write_subscription_key(&mut w, key);
            }
            Command::TopicRemove { dest, id } => {
                w.u8(6);
                codec::write_destination(&mut w, dest);
                codec::write_message_id(&mut w, id);
            }
            Command::Purge { dest } => {
                w.u8(7);
                codec::write_destination(&mut w, dest);
            }
            Command::EnsureDestination { dest } => {
                w.u8(8);
                codec::write_destination(&mut w, dest);
            }
            Command::RemoveDestination {
                dest,
                last_sequence,
            } => {
                w.u8(9);
                codec::write_destination(&mut w, dest);
                w.varint(*last_sequence);
            }
            Command::DeleteAll { last_sequence } => {
                w.u8(10);
                w.varint(*last_sequence);
            }
            Command::Prepare { xid, ops } => {
                w.u8(11);
                write_xid(&mut w, xid);
                w.varint(ops.len() as u64);
                for op in ops {
                    codec::write_tx_op(&mut w, op);
                }
            }
            Command::XaEnd { xid, committed } => {
                w.u8(12);
                write_xid(&mut w, xid);
                w.u8(u8::from(*committed));
            }
            Command::Relocate {
                message,
                pending_for,
            } => {
                w.u8(13);
                codec::write_message(&mut w, message);
                write_keys(&mut w, pending_for);
            }
            Command::EnsureSubscription { dest, info } => {
                w.u8(14);
                codec::write_destination(&mut w, dest);
                write_info(&mut w, info);
            }
        }
        w.into_inner()
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader::new(bytes);
        let bool_at = |r: &mut Reader<'_>| -> Result<bool, DecodeError> {
            match r.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                tag => Err(DecodeError::InvalidTag {
                    what: "flag",
                    tag,
                    at: r.position() - 1,
                }),
            }
        };
        let cmd = match r.u8()? {
            1 => Command::Add {
                message: codec::read_message(&mut r)?,
                pending_for: read_keys(&mut r)?,
            },
            2 => Command::QueueAck {
                dest: codec::read_destination(&mut r)?,
                id: codec::read_message_id(&mut r)?,
            },
            3 => Command::TopicAck {
                dest: codec::read_destination(&mut r)?,
                key: codec::read_subscription_key(&mut r)?,
                id: codec::read_message_id(&mut r)?,
            },
            4 => {
                let dest = codec::read_destination(&mut r)?;
                let info = read_info(&mut r)?;
                let n = r.length()?;
                let mut retroactive = Vec::with_capacity(n);
                for _ in 0..n {
                    let priority = r.u8()?;
                    retroactive.push(OrderKey {
                        priority,
                        sequence: r.varint()?,
                    });
                }
                Command::Subscribe {
                    dest,
                    info,
                    retroactive,
                }
            }
            5 => Command::Unsubscribe {
                dest: codec::read_destination(&mut r)?,
                key: codec::read_subscription_key(&mut r)?,
            },
            6 => Command::TopicRemove {
                dest: codec::read_destination(&mut r)?,
                id: codec::read_message_id(&mut r)?,
            },
            7 => Command::Purge {
                dest: codec::read_destination(&mut r)?,
            },
            8 => Command::EnsureDestination {
                dest: codec::read_destination(&mut r)?,
            },
            9 => Command::RemoveDestination {
                dest: codec::read_destination(&mut r)?,
                last_sequence: r.varint()?,
            },
            10 => Command::DeleteAll {
                last_sequence: r.varint()?,
            },
            11 => {
                let xid = read_xid(&mut r)?;
                let n = r.length()?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    ops.push(codec::read_tx_op(&mut r)?);
                }
                Command::Prepare { xid, ops }
            }
            12 => Command::XaEnd {
                xid: read_xid(&mut r)?,
                committed: bool_at(&mut r)?,
            },
            13 => {
                let message = codec::read_message(&mut r)?;
                let pending_for = read_keys(&mut r)?;
                Command::Relocate {
                    message,
                    pending_for,
                }
            }
            14 => Command::EnsureSubscription {
                dest: codec::read_destination(&mut r)?,
                info: read_info(&mut r)?,
            },
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "journal command",
                    tag,
                    at: 0,
                });
            }
        };
        r.finish()?;
        Ok(cmd)
    }
}

/// Decodes only the message of an `Add` or `Relocate` record: what a read by location needs.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    match Command::decode(bytes)? {
        Command::Add { message: m, .. } | Command::Relocate { message: m, .. } => Ok(m),
        _ => Err(DecodeError::Invalid(
            "the record at this location is not a message".into(),
        )),
    }
}
