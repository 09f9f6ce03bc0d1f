//! Checking and applying a transaction's operations against the destinations it touches, all
//! locked at once so that no reader sees half a commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use store_api::{Destination, MessageId, Result, StoreError, SubscriptionKey, TxOp};

use crate::DestState;

/// The locked states of every destination a transaction touches.
pub(crate) struct Locked<'a> {
    pub(crate) states: HashMap<Destination, &'a mut DestState>,
}

fn missing(d: &Destination, id: &MessageId) -> StoreError {
    StoreError::NotFound(format!("message {id} in {d}"))
}

fn not_pending(d: &Destination, key: &SubscriptionKey, id: &MessageId) -> StoreError {
    StoreError::NotFound(format!(
        "message {id} is not pending for subscription {key} on {d}"
    ))
}

impl Locked<'_> {
    /// Checks that every operation would succeed when applied in order, without changing
    /// anything: the all-or-nothing half of commit.
    pub(crate) fn check(&self, ops: &[TxOp]) -> Result<()> {
        // What the earlier operations of this transaction did, over the stored state.
        let mut present: HashMap<(&Destination, &MessageId), bool> = HashMap::new();
        let mut pending: HashMap<(&Destination, &SubscriptionKey, &MessageId), bool> =
            HashMap::new();
        for op in ops {
            match op {
                TxOp::Add(m) => {
                    let d = &m.destination;
                    m.validate_for(d)?;
                    let state = self.states.get(d).map(|s| &**s);
                    let stored = match state {
                        Some(DestState::Queue(q)) => q.contains(&m.id),
                        Some(DestState::Topic(t)) => t.contains(&m.id),
                        _ => false,
                    };
                    if *present.get(&(d, &m.id)).unwrap_or(&stored) {
                        return Err(StoreError::Duplicate(format!("message {} in {d}", m.id)));
                    }
                    match state {
                        Some(DestState::Topic(t)) => {
                            present.insert((d, &m.id), t.has_subscriptions());
                            for key in t.subscriptions.keys() {
                                pending.insert((d, key, &m.id), true);
                            }
                        }
                        _ => {
                            present.insert((d, &m.id), d.is_queue());
                        }
                    }
                }
                TxOp::QueueAck { destination: d, id } => {
                    let stored = match self.states.get(d).map(|s| &**s) {
                        Some(DestState::Queue(q)) => q.contains(id),
                        _ => false,
                    };
                    if !*present.get(&(d, id)).unwrap_or(&stored) {
                        return Err(missing(d, id));
                    }
                    present.insert((d, id), false);
                }
                TxOp::TopicAck {
                    destination: d,
                    subscription: key,
                    id,
                } => {
                    let stored = match self.states.get(d).map(|s| &**s) {
                        Some(DestState::Topic(t)) => t.is_pending(key, id),
                        _ => false,
                    };
                    if !*pending.get(&(d, key, id)).unwrap_or(&stored) {
                        return Err(not_pending(d, key, id));
                    }
                    pending.insert((d, key, id), false);
                }
            }
        }
        Ok(())
    }

    /// Applies operations that [`Locked::check`] accepted.
    pub(crate) fn apply(&mut self, ops: Vec<TxOp>, last_sequence: &AtomicU64) {
        for op in ops {
            match op {
                TxOp::Add(m) => {
                    let seq = last_sequence.fetch_add(1, Ordering::AcqRel) + 1;
                    match self.states.get_mut(&m.destination).map(|s| &mut **s) {
                        Some(DestState::Queue(q)) => q.insert(m, seq),
                        Some(DestState::Topic(t)) => t.insert(m, seq),
                        _ => {}
                    }
                }
                TxOp::QueueAck { destination, id } => {
                    if let Some(DestState::Queue(q)) =
                        self.states.get_mut(&destination).map(|s| &mut **s)
                    {
                        q.remove(&id);
                    }
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    if let Some(DestState::Topic(t)) =
                        self.states.get_mut(&destination).map(|s| &mut **s)
                    {
                        t.acknowledge(&subscription, &id);
                    }
                }
            }
        }
    }
}

/// The destination an operation touches.
pub(crate) fn destination_of(op: &TxOp) -> &Destination {
    match op {
        TxOp::Add(m) => &m.destination,
        TxOp::QueueAck { destination, .. } | TxOp::TopicAck { destination, .. } => destination,
    }
}
