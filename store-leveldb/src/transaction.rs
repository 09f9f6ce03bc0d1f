//! Transactions against the index: the contract's all-or-nothing check answered from the
//! index, and applying checked operations into one batch.

use store_api::tx_check::StateProbe;
use store_api::{Destination, MessageId, Result, SubscriptionKey, TxOp};

use crate::batch::Batch;
use crate::index::{DestIndex, Index};

/// Answers [`store_api::tx_check::check_ops`] from the index.
pub(crate) struct IndexProbe<'a>(pub(crate) &'a Index);

impl StateProbe for IndexProbe<'_> {
    fn contains(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        Ok(self.0.contains(d, id))
    }

    fn ackable(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        Ok(d.is_queue() && self.0.contains(d, id))
    }

    fn pending_for(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        Ok(self.0.is_pending(d, key, id))
    }

    fn subscriptions(&mut self, d: &Destination) -> Result<Vec<SubscriptionKey>> {
        Ok(match self.0.destinations.get(d).map(|x| &x.index) {
            Some(DestIndex::Topic(t)) => t.subscriptions.keys().cloned().collect(),
            _ => Vec::new(),
        })
    }
}

/// Applies operations the check accepted, in order, into one batch: a commit reaches the log
/// as a single write.
pub(crate) fn apply(index: &mut Index, ops: Vec<TxOp>, batch: &mut Batch<'_>) {
    for op in ops {
        match op {
            TxOp::Add(m) => {
                index.add(m, batch);
            }
            TxOp::QueueAck { destination, id } => {
                index.remove(&destination, &id, batch);
            }
            TxOp::TopicAck {
                destination,
                subscription,
                id,
            } => {
                index.acknowledge(&destination, &subscription, &id, batch);
            }
        }
    }
}
