//! Checking and applying a transaction's operations against the destinations it touches, all
//! locked at once so that no reader sees half a commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use store_api::{Destination, MessageId, Result, SubscriptionKey, TxOp};

use crate::{DestState, StoredMessages};

/// The locked states of every destination a transaction touches.
pub(crate) struct Locked<'a> {
    pub(crate) states: HashMap<Destination, &'a mut DestState>,
}

impl Locked<'_> {
    /// Checks that every operation would succeed when applied in order, without changing
    /// anything: the all-or-nothing half of commit.
    pub(crate) fn check(&self, ops: &[TxOp]) -> Result<()> {
        store_api::tx_check::check_ops(ops, &mut LockedProbe(self))
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

/// Answers the transaction check from the locked destination states.
struct LockedProbe<'a, 'b>(&'a Locked<'b>);

impl store_api::tx_check::StateProbe for LockedProbe<'_, '_> {
    fn contains(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        Ok(match self.0.states.get(d).map(|s| &**s) {
            Some(DestState::Queue(q)) => q.contains(id),
            Some(DestState::Topic(t)) => t.contains(id),
            _ => false,
        })
    }

    fn ackable(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        Ok(
            matches!(self.0.states.get(d).map(|s| &**s), Some(DestState::Queue(q)) if q.contains(id)),
        )
    }

    fn pending_for(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        Ok(
            matches!(self.0.states.get(d).map(|s| &**s), Some(DestState::Topic(t)) if t.is_pending(key, id)),
        )
    }

    fn subscriptions(&mut self, d: &Destination) -> Result<Vec<SubscriptionKey>> {
        Ok(match self.0.states.get(d).map(|s| &**s) {
            Some(DestState::Topic(t)) => t.subscriptions.keys().cloned().collect(),
            _ => Vec::new(),
        })
    }
}
