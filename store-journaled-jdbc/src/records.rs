//! The journal records: one per acknowledged change, in the `store-api` encoding.
//!
//! ```text
//! record = u8 tag, then
//!   1 add:        message (its sequence set)
//!   2 queue ack:  destination, message id
//!   3 topic ack:  destination, subscription key, message id
//!   4 commit:     varint n, n × tx op (adds carry their sequences)
//! ```
//!
//! A local transaction's commit is one record, so it replays all or nothing.

use store_api::codec::{self, Reader, Writer};
use store_api::{DecodeError, Destination, Message, MessageId, SubscriptionKey, TxOp};

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Add(Message),
    QueueAck(Destination, MessageId),
    TopicAck(Destination, SubscriptionKey, MessageId),
    Commit(Vec<TxOp>),
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Record::Add(m) => {
                w.u8(1);
                codec::write_message(&mut w, m);
            }
            Record::QueueAck(d, id) => {
                w.u8(2);
                codec::write_destination(&mut w, d);
                codec::write_message_id(&mut w, id);
            }
            Record::TopicAck(d, k, id) => {
                w.u8(3);
                codec::write_destination(&mut w, d);
                codec::write_subscription_key(&mut w, k);
                codec::write_message_id(&mut w, id);
            }
            Record::Commit(ops) => {
                w.u8(4);
                w.varint(ops.len() as u64);
                for op in ops {
                    codec::write_tx_op(&mut w, op);
                }
            }
        }
        w.into_inner()
    }

    pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader::new(buf);
        let rec = match r.u8()? {
            1 => Record::Add(codec::read_message(&mut r)?),
            2 => Record::QueueAck(
                codec::read_destination(&mut r)?,
                codec::read_message_id(&mut r)?,
            ),
            3 => Record::TopicAck(
                codec::read_destination(&mut r)?,
                codec::read_subscription_key(&mut r)?,
                codec::read_message_id(&mut r)?,
            ),
            4 => {
                let n = r.varint()?;
                let mut ops = Vec::new();
                for _ in 0..n {
                    ops.push(codec::read_tx_op(&mut r)?);
                }
                Record::Commit(ops)
            }
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "journaled-jdbc record",
                    tag,
                    at: 0,
                });
            }
        };
        r.finish()?;
        Ok(rec)
    }
}
