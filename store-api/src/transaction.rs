//! Transactions and durable-subscription identities.

use std::fmt;

use crate::message::{Destination, Message, MessageId};

/// An XA transaction branch id, as a transaction manager hands it over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xid {
    pub format_id: i32,
    pub global_id: Vec<u8>,
    pub branch_qualifier: Vec<u8>,
}

/// A local (one-phase, broker-assigned) or an XA (two-phase) transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransactionId {
    Local(u64),
    Xa(Xid),
}

impl TransactionId {
    pub fn is_xa(&self) -> bool {
        matches!(self, TransactionId::Xa(_))
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionId::Local(n) => write!(f, "local:{n}"),
            TransactionId::Xa(x) => {
                write!(f, "xa:{}:", x.format_id)?;
                for b in &x.global_id {
                    write!(f, "{b:02x}")?;
                }
                f.write_str(":")?;
                for b in &x.branch_qualifier {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// A durable subscription's identity: the JMS client id and the subscription name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionKey {
    pub client_id: String,
    pub name: String,
}

impl SubscriptionKey {
    pub fn new(client_id: impl Into<String>, name: impl Into<String>) -> Self {
        SubscriptionKey {
            client_id: client_id.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for SubscriptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.client_id, self.name)
    }
}

/// What the store keeps about a durable subscription. The selector is stored, not evaluated:
/// the broker acks messages a selector does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub key: SubscriptionKey,
    pub selector: Option<String>,
}

impl SubscriptionInfo {
    pub fn new(key: SubscriptionKey, selector: Option<String>) -> Self {
        SubscriptionInfo { key, selector }
    }
}

/// One operation enlisted in a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOp {
    /// Add a message to its destination (queue or topic) at commit.
    Add(Message),
    /// Remove a message from a queue at commit.
    QueueAck {
        destination: Destination,
        id: MessageId,
    },
    /// Acknowledge a topic message for one durable subscription at commit.
    TopicAck {
        destination: Destination,
        subscription: SubscriptionKey,
        id: MessageId,
    },
}

/// An XA transaction that was prepared and not yet committed or rolled back, as reported after a
/// reopen, with its operations in the order they were enlisted.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedTransaction {
    pub xid: Xid,
    pub ops: Vec<TxOp>,
}

impl PreparedTransaction {
    /// The prepared XA transactions among an engine's open ones, given as
    /// `(id, operations, prepared)`, in iteration order.
    pub fn collect<'a>(
        open: impl IntoIterator<Item = (&'a TransactionId, &'a [TxOp], bool)>,
    ) -> Vec<PreparedTransaction> {
        open.into_iter()
            .filter_map(|(id, ops, prepared)| match id {
                TransactionId::Xa(xid) if prepared => Some(PreparedTransaction {
                    xid: xid.clone(),
                    ops: ops.to_vec(),
                }),
                _ => None,
            })
            .collect()
    }
}
