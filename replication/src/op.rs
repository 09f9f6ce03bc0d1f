//! One replicated store write: what a master did to its local engine, shipped to the slaves
//! in log order and applied there to theirs.
//!
//! A local transaction is shipped once, whole, at its commit (nothing of it exists before on
//! any replica); an XA transaction at its prepare (its operations) and then its outcome. The
//! encoding reuses store-api's primitives (little-endian, LEB128 varints, canonical
//! messages):
//!
//! | tag | op | fields |
//! |---|---|---|
//! | 1 | create destination | destination |
//! | 2 | remove destination | destination |
//! | 3 | add | message |
//! | 4 | remove | destination, message id |
//! | 5 | purge | destination |
//! | 6 | add subscription | destination, key, `u8` has selector, selector `str`, `u8` retroactive |
//! | 7 | delete subscription | destination, key |
//! | 8 | acknowledge | destination, key, message id |
//! | 9 | commit local | varint count, tx ops |
//! | 10 | prepare | xid (as an XA transaction id), varint count, tx ops |
//! | 11 | commit prepared | xid |
//! | 12 | roll back prepared | xid |
//! | 13 | delete all | — |

use store_api::codec::{self, Reader, Writer};
use store_api::{
    DecodeError, Destination, Message, MessageId, SubscriptionInfo, SubscriptionKey, TransactionId,
    TxOp, Xid,
};

/// A store write, as replicated.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreateDestination(Destination),
    RemoveDestination(Destination),
    Add(Message),
    Remove {
        destination: Destination,
        id: MessageId,
    },
    Purge(Destination),
    AddSubscription {
        destination: Destination,
        info: SubscriptionInfo,
        retroactive: bool,
    },
    DeleteSubscription {
        destination: Destination,
        key: SubscriptionKey,
    },
    Acknowledge {
        destination: Destination,
        key: SubscriptionKey,
        id: MessageId,
    },
    /// A local transaction's operations, applied all or nothing.
    Commit(Vec<TxOp>),
    Prepare {
        xid: Xid,
        ops: Vec<TxOp>,
    },
    CommitPrepared(Xid),
    RollbackPrepared(Xid),
    DeleteAll,
}

fn write_ops(w: &mut Writer, ops: &[TxOp]) {
    w.varint(ops.len() as u64);
    for op in ops {
        codec::write_tx_op(w, op);
    }
}

fn read_ops(r: &mut Reader<'_>) -> Result<Vec<TxOp>, DecodeError> {
    let n = r.length()?;
    // Each op takes at least a few bytes: the bound keeps a lying count from allocating.
    let mut ops = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        ops.push(codec::read_tx_op(r)?);
    }
    Ok(ops)
}

fn write_xid(w: &mut Writer, xid: &Xid) {
    codec::write_transaction_id(w, &TransactionId::Xa(xid.clone()));
}

fn read_xid(r: &mut Reader<'_>) -> Result<Xid, DecodeError> {
    match codec::read_transaction_id(r)? {
        TransactionId::Xa(xid) => Ok(xid),
        TransactionId::Local(_) => Err(DecodeError::Invalid(
            "a local transaction where an xid belongs".into(),
        )),
    }
}

fn read_bool(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(
            "a boolean byte other than 0 or 1".into(),
        )),
    }
}

/// A committed transaction's operation as the record that does it alone (a slave replaying a
/// commit op by op, see `apply.rs`).
impl From<TxOp> for Op {
    fn from(op: TxOp) -> Op {
        match op {
            TxOp::Add(m) => Op::Add(m),
            TxOp::QueueAck { destination, id } => Op::Remove { destination, id },
            TxOp::TopicAck {
                destination,
                subscription,
                id,
            } => Op::Acknowledge {
                destination,
                key: subscription,
                id,
            },
        }
    }
}

impl Op {
    /// The op's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(match self {
            Op::Add(m) => codec::encoded_len(m) + 1,
            _ => 64,
        });
        match self {
            Op::CreateDestination(d) => {
                w.u8(1);
                codec::write_destination(&mut w, d);
            }
            Op::RemoveDestination(d) => {
                w.u8(2);
                codec::write_destination(&mut w, d);
            }
            Op::Add(m) => {
                w.u8(3);
                codec::write_message(&mut w, m);
            }
            Op::Remove { destination, id } => {
                w.u8(4);
                codec::write_destination(&mut w, destination);
                codec::write_message_id(&mut w, id);
            }
            Op::Purge(d) => {
                w.u8(5);
                codec::write_destination(&mut w, d);
            }
            Op::AddSubscription {
                destination,
                info,
                retroactive,
            } => {
                w.u8(6);
                codec::write_destination(&mut w, destination);
                codec::write_subscription_key(&mut w, &info.key);
                w.u8(u8::from(info.selector.is_some()));
                w.str(info.selector.as_deref().unwrap_or(""));
                w.u8(u8::from(*retroactive));
            }
            Op::DeleteSubscription { destination, key } => {
                w.u8(7);
                codec::write_destination(&mut w, destination);
                codec::write_subscription_key(&mut w, key);
            }
            Op::Acknowledge {
                destination,
                key,
                id,
            } => {
                w.u8(8);
                codec::write_destination(&mut w, destination);
                codec::write_subscription_key(&mut w, key);
                codec::write_message_id(&mut w, id);
            }
            Op::Commit(ops) => {
                w.u8(9);
                write_ops(&mut w, ops);
            }
            Op::Prepare { xid, ops } => {
                w.u8(10);
                write_xid(&mut w, xid);
                write_ops(&mut w, ops);
            }
            Op::CommitPrepared(xid) => {
                w.u8(11);
                write_xid(&mut w, xid);
            }
            Op::RollbackPrepared(xid) => {
                w.u8(12);
                write_xid(&mut w, xid);
            }
            Op::DeleteAll => w.u8(13),
        }
        w.into_inner()
    }

    /// Decodes exactly one op from `buf`: any other input is an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Op, DecodeError> {
        let mut r = Reader::new(buf);
        let op = match r.u8()? {
            1 => Op::CreateDestination(codec::read_destination(&mut r)?),
            2 => Op::RemoveDestination(codec::read_destination(&mut r)?),
            3 => Op::Add(codec::read_message(&mut r)?),
            4 => Op::Remove {
                destination: codec::read_destination(&mut r)?,
                id: codec::read_message_id(&mut r)?,
            },
            5 => Op::Purge(codec::read_destination(&mut r)?),
            6 => {
                let destination = codec::read_destination(&mut r)?;
                let key = codec::read_subscription_key(&mut r)?;
                let has = read_bool(&mut r)?;
                let selector = r.str("selector")?;
                if !has && !selector.is_empty() {
                    return Err(DecodeError::Invalid(
                        "a selector marked absent is not empty".into(),
                    ));
                }
                let retroactive = read_bool(&mut r)?;
                Op::AddSubscription {
                    destination,
                    info: SubscriptionInfo::new(key, has.then(|| selector.to_owned())),
                    retroactive,
                }
            }
            7 => Op::DeleteSubscription {
                destination: codec::read_destination(&mut r)?,
                key: codec::read_subscription_key(&mut r)?,
            },
            8 => Op::Acknowledge {
                destination: codec::read_destination(&mut r)?,
                key: codec::read_subscription_key(&mut r)?,
                id: codec::read_message_id(&mut r)?,
            },
            9 => Op::Commit(read_ops(&mut r)?),
            10 => Op::Prepare {
                xid: read_xid(&mut r)?,
                ops: read_ops(&mut r)?,
            },
            11 => Op::CommitPrepared(read_xid(&mut r)?),
            12 => Op::RollbackPrepared(read_xid(&mut r)?),
            13 => Op::DeleteAll,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "replicated op",
                    tag,
                    at: 0,
                });
            }
        };
        r.finish()?;
        Ok(op)
    }
}
