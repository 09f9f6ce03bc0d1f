//! A queue or topic handle: the per-destination half of the contract over the shared index.

use std::sync::Arc;

use async_trait::async_trait;
use store_api::{
    DeliveryOrder, Destination, DestinationStore, Message, MessageId, OrderKey, QueueStore, Result,
    StoreError, SubscriptionInfo, SubscriptionKey, TopicStore,
};

use crate::index::{DestIndex, Index, QueueIndex, SubIndex, TopicIndex, next_batch};
use crate::store::{Located, Reads, Shared, Wait};

pub(crate) struct Handle {
    shared: Arc<Shared>,
    destination: Destination,
    incarnation: u64,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>, destination: Destination, incarnation: u64) -> Self {
        Handle {
            shared,
            destination,
            incarnation,
        }
    }

    fn removed(&self) -> StoreError {
        StoreError::NotFound(format!("destination {} was removed", self.destination))
    }

    fn missing(&self, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!("message {id} in {}", self.destination))
    }

    fn no_subscription(&self, key: &SubscriptionKey) -> StoreError {
        StoreError::NotFound(format!("subscription {key} on {}", self.destination))
    }

    /// This handle's destination in the index, unless it was removed since.
    fn check<'a>(&self, index: &'a mut Index) -> Result<&'a mut DestIndex> {
        match index.destinations.get_mut(&self.destination) {
            Some(dest) if dest.incarnation == self.incarnation => Ok(&mut dest.index),
            _ => Err(self.removed()),
        }
    }

    fn queue<'s, T>(
        &'s self,
        f: impl FnOnce(&mut QueueIndex, &Reads<'_, 's>) -> Result<T>,
    ) -> Result<T> {
        self.shared.read(|index, reads| match self.check(index)? {
            DestIndex::Queue(q) => f(q, reads),
            DestIndex::Topic(_) => Err(self.removed()),
        })
    }

    fn topic<'s, T>(
        &'s self,
        f: impl FnOnce(&mut TopicIndex, &Reads<'_, 's>) -> Result<T>,
    ) -> Result<T> {
        self.shared.read(|index, reads| match self.check(index)? {
            DestIndex::Topic(t) => f(t, reads),
            DestIndex::Queue(_) => Err(self.removed()),
        })
    }

    fn subscription<'s, T>(
        &'s self,
        key: &SubscriptionKey,
        f: impl FnOnce(&mut SubIndex, &Reads<'_, 's>) -> Result<T>,
    ) -> Result<T> {
        self.topic(|t, reads| {
            let s = t
                .subscriptions
                .get_mut(key)
                .ok_or_else(|| self.no_subscription(key))?;
            f(s, reads)
        })
    }

    /// The order key of a kept message.
    fn order_of(&self, index: &mut Index, id: &MessageId) -> Result<OrderKey> {
        let found = match self.check(index)? {
            DestIndex::Queue(q) => q.messages.by_id.get(id).copied(),
            DestIndex::Topic(t) => t.messages.by_id.get(id).copied(),
        };
        found.ok_or_else(|| self.missing(id))
    }

    async fn remove_with(&self, id: &MessageId, wait: Wait) -> Result<()> {
        let ((), pending) = self.shared.write(wait, |index, batch| {
            self.check(index)?;
            if index.remove(&self.destination, id, batch) {
                Ok(())
            } else {
                Err(self.missing(id))
            }
        })?;
        pending.durable().await
    }

    async fn acknowledge_with(
        &self,
        key: &SubscriptionKey,
        id: &MessageId,
        wait: Wait,
    ) -> Result<()> {
        let ((), pending) = self.shared.write(wait, |index, batch| {
            let DestIndex::Topic(t) = self.check(index)? else {
                return Err(self.removed());
            };
            if !t.subscriptions.contains_key(key) {
                return Err(self.no_subscription(key));
            }
            if index.acknowledge(&self.destination, key, id, batch) {
                Ok(())
            } else {
                Err(StoreError::NotFound(format!(
                    "message {id} is not pending for subscription {key} on {}",
                    self.destination
                )))
            }
        })?;
        pending.durable().await
    }
}

#[async_trait]
impl DestinationStore for Handle {
    fn destination(&self) -> &Destination {
        &self.destination
    }

    async fn add(&self, message: Message) -> Result<u64> {
        message.validate_for(&self.destination)?;
        let (seq, pending) = self.shared.write(Wait::Policy, |index, batch| {
            self.check(index)?;
            if index.contains(&self.destination, &message.id) {
                return Err(StoreError::Duplicate(format!(
                    "message {} in {}",
                    message.id, self.destination
                )));
            }
            Ok(index.add(message, batch))
        })?;
        pending.durable().await?;
        Ok(seq)
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.shared
            .read(|index, reads| {
                let order = self.order_of(index, id)?;
                reads.body(&self.destination, order)
            })?
            .load()
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.remove_with(id, Wait::Policy).await
    }

    async fn remove_unwaited(&self, id: &MessageId) -> Result<()> {
        self.remove_with(id, Wait::Deferred).await
    }

    async fn purge(&self) -> Result<u64> {
        let (n, pending) = self.shared.write(Wait::Policy, |index, batch| {
            self.check(index)?;
            Ok(index.purge(&self.destination, batch))
        })?;
        pending.durable().await?;
        Ok(n)
    }

    async fn count(&self) -> Result<u64> {
        self.shared.read(|index, _| {
            Ok(match self.check(index)? {
                DestIndex::Queue(q) => q.messages.by_order.len() as u64,
                DestIndex::Topic(t) => t.messages.by_order.len() as u64,
            })
        })
    }

    async fn bytes(&self) -> Result<u64> {
        self.shared.read(|index, _| {
            Ok(match self.check(index)? {
                DestIndex::Queue(q) => q.messages.bytes,
                DestIndex::Topic(t) => t.messages.bytes,
            })
        })
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.shared.read(|index, _| {
            Ok(match self.check(index)? {
                DestIndex::Queue(q) => q
                    .messages
                    .expired(now_ms, max)
                    .into_iter()
                    .filter_map(|o| q.messages.by_order.get(&o).map(|e| e.id.clone()))
                    .collect(),
                DestIndex::Topic(t) => t
                    .messages
                    .expired(now_ms, max)
                    .into_iter()
                    .filter_map(|o| t.messages.by_order.get(&o).map(|k| k.entry.id.clone()))
                    .collect(),
            })
        })
    }
}

fn after_range(after: Option<OrderKey>) -> (std::ops::Bound<OrderKey>, std::ops::Bound<OrderKey>) {
    use std::ops::Bound::{Excluded, Unbounded};
    (after.map_or(Unbounded, Excluded), Unbounded)
}

#[async_trait]
impl QueueStore for Handle {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.queue(|q, reads| {
            let orders: Vec<OrderKey> = q
                .messages
                .by_order
                .range(after_range(after))
                .take(max)
                .map(|(o, _)| *o)
                .collect();
            reads.bodies(&self.destination, orders)
        })
        .and_then(Located::load_all)
    }

    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        self.queue(|q, reads| {
            let by_order = &q.messages.by_order;
            let orders = next_batch(
                |from, to| Box::new(by_order.range(from..=to).map(|(o, _)| *o)),
                &q.cursor,
                order,
                max,
            );
            let batch = reads.bodies(&self.destination, orders.iter().copied())?;
            for o in orders {
                q.cursor.advance(o);
            }
            Ok(batch)
        })
        .and_then(Located::load_all)
    }

    async fn reset_cursor(&self) -> Result<()> {
        self.queue(|q, _| {
            q.cursor.reset();
            Ok(())
        })
    }

    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        self.shared.read(|index, _| {
            let last = index.last_sequence;
            let DestIndex::Queue(q) = self.check(index)? else {
                return Err(self.removed());
            };
            let order = q
                .messages
                .by_id
                .get(id)
                .copied()
                .ok_or_else(|| self.missing(id))?;
            q.cursor.set_after(order, last);
            Ok(())
        })
    }
}

#[async_trait]
impl TopicStore for Handle {
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Policy, |index, batch| {
            let DestIndex::Topic(t) = self.check(index)? else {
                return Err(self.removed());
            };
            if t.subscriptions.contains_key(&info.key) {
                return Err(StoreError::Duplicate(format!(
                    "subscription {} on {}",
                    info.key, self.destination
                )));
            }
            index.add_subscription(&self.destination, info, retroactive, batch);
            Ok(())
        })?;
        pending.durable().await
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Policy, |index, batch| {
            self.check(index)?;
            if index.delete_subscription(&self.destination, key, batch) {
                Ok(())
            } else {
                Err(self.no_subscription(key))
            }
        })?;
        pending.durable().await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.topic(|t, _| Ok(t.subscriptions.values().map(|s| s.info.clone()).collect()))
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.topic(|t, _| Ok(t.subscriptions.get(key).map(|s| s.info.clone())))
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.acknowledge_with(key, id, Wait::Policy).await
    }

    async fn acknowledge_unwaited(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.acknowledge_with(key, id, Wait::Deferred).await
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.subscription(key, |s, reads| {
            let orders: Vec<OrderKey> = s
                .pending
                .range(after_range(after))
                .take(max)
                .copied()
                .collect();
            reads.bodies(&self.destination, orders)
        })
        .and_then(Located::load_all)
    }

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.subscription(key, |s, reads| {
            let pending = &s.pending;
            let orders = next_batch(
                |from, to| Box::new(pending.range(from..=to).copied()),
                &s.cursor,
                order,
                max,
            );
            let batch = reads.bodies(&self.destination, orders.iter().copied())?;
            for o in orders {
                s.cursor.advance(o);
            }
            Ok(batch)
        })
        .and_then(Located::load_all)
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.subscription(key, |s, _| {
            s.cursor.reset();
            Ok(())
        })
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.shared.read(|index, _| {
            let last = index.last_sequence;
            let DestIndex::Topic(t) = self.check(index)? else {
                return Err(self.removed());
            };
            let order = t
                .messages
                .by_id
                .get(id)
                .copied()
                .ok_or_else(|| self.missing(id))?;
            let s = t
                .subscriptions
                .get_mut(key)
                .ok_or_else(|| self.no_subscription(key))?;
            if !s.pending.contains(&order) {
                return Err(self.missing(id));
            }
            s.cursor.set_after(order, last);
            Ok(())
        })
    }

    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.subscription(key, |s, _| Ok(s.pending.len() as u64))
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.subscription(key, |s, _| Ok(s.bytes))
    }
}
