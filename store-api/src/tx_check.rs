//! The all-or-nothing half of commit, written once for every engine: would every operation of a
//! transaction succeed if applied in order to the state now? Engines answer a few questions
//! about their state through [`StateProbe`]; the bookkeeping of what earlier operations of the
//! same transaction did lives here.

use std::collections::HashMap;

use crate::error::{Result, StoreError};
use crate::message::{Destination, MessageId};
use crate::transaction::{SubscriptionKey, TxOp};

/// What [`check_ops`] needs to know about an engine's committed state.
pub trait StateProbe {
    /// A message with this id is stored in the destination (an add of it is a duplicate).
    fn contains(&mut self, d: &Destination, id: &MessageId) -> Result<bool>;
    /// The message is stored and visible, so a queue ack of it can apply.
    fn ackable(&mut self, d: &Destination, id: &MessageId) -> Result<bool>;
    /// The message is visible and pending for the subscription.
    fn pending_for(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool>;
    /// The subscriptions of a topic now (what a topic add would be pending for).
    fn subscriptions(&mut self, d: &Destination) -> Result<Vec<SubscriptionKey>>;
}

/// The argument checks `enlist` makes before taking an operation: a message the contract
/// refuses, or an ack naming a destination of the wrong kind, is `InvalidArgument`. Returns
/// true for an ack, whose message must also be checked against the state now (a duplicate add
/// is found at commit, against the state then).
pub fn check_enlisted(op: &TxOp) -> Result<bool> {
    match op {
        TxOp::Add(m) => m.validate_for(&m.destination).map(|()| false),
        TxOp::QueueAck { destination, .. } if !destination.is_queue() => {
            Err(StoreError::InvalidArgument(format!(
                "queue ack names {destination}, which is not a queue"
            )))
        }
        TxOp::TopicAck { destination, .. } if !destination.is_topic() => {
            Err(StoreError::InvalidArgument(format!(
                "topic ack names {destination}, which is not a topic"
            )))
        }
        TxOp::QueueAck { .. } | TxOp::TopicAck { .. } => Ok(true),
    }
}

/// Checks that every operation would succeed when applied in order, changing nothing.
/// `NotFound` for an ack whose message is gone (or never pending), `Duplicate` for an add of an
/// id already stored or added earlier in the same transaction, `InvalidArgument` for a message
/// the contract refuses.
pub fn check_ops(ops: &[TxOp], probe: &mut impl StateProbe) -> Result<()> {
    // What the earlier operations did, over the committed state.
    let mut present: HashMap<(&Destination, &MessageId), bool> = HashMap::new();
    let mut pending: HashMap<(&Destination, SubscriptionKey, &MessageId), bool> = HashMap::new();
    for op in ops {
        match op {
            TxOp::Add(m) => {
                let d = &m.destination;
                m.validate_for(d)?;
                let stored = match present.get(&(d, &m.id)) {
                    Some(p) => *p,
                    None => probe.contains(d, &m.id)?,
                };
                if stored {
                    return Err(StoreError::Duplicate(format!("message {} in {d}", m.id)));
                }
                let subs = if d.is_topic() {
                    probe.subscriptions(d)?
                } else {
                    Vec::new()
                };
                present.insert((d, &m.id), d.is_queue() || !subs.is_empty());
                for k in subs {
                    pending.insert((d, k, &m.id), true);
                }
            }
            TxOp::QueueAck { destination: d, id } => {
                let stored = match present.get(&(d, id)) {
                    Some(p) => *p,
                    None => probe.ackable(d, id)?,
                };
                if !stored {
                    return Err(StoreError::NotFound(format!("message {id} in {d}")));
                }
                present.insert((d, id), false);
            }
            TxOp::TopicAck {
                destination: d,
                subscription,
                id,
            } => {
                let key = (d, subscription.clone(), id);
                let is = match pending.get(&key) {
                    Some(p) => *p,
                    None => probe.pending_for(d, subscription, id)?,
                };
                if !is {
                    return Err(StoreError::NotFound(format!(
                        "message {id} is not pending for subscription {subscription} on {d}"
                    )));
                }
                pending.insert(key, false);
            }
        }
    }
    Ok(())
}
