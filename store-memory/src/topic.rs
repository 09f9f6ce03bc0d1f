//! A topic's kept messages and its durable subscriptions. A message is kept while some
//! subscription holds a reference to it; the last ack releases it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use store_api::{
    CursorPosition, DeliveryOrder, Message, MessageId, OrderKey, SubscriptionInfo, SubscriptionKey,
};

use crate::StoredMessages;
use crate::queue::{expired_keys, next_batch};

#[derive(Debug)]
struct Kept {
    message: Arc<Message>,
    /// How many subscriptions have it pending.
    refs: usize,
}

#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) info: SubscriptionInfo,
    pending: BTreeMap<OrderKey, Arc<Message>>,
    bytes: u64,
    pub(crate) cursor: CursorPosition,
}

impl Subscription {
    pub(crate) fn browse(&self, after: Option<OrderKey>, max: usize) -> Vec<Message> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.pending
            .range((after.map_or(Unbounded, Excluded), Unbounded))
            .take(max)
            .map(|(_, m)| Message::clone(m))
            .collect()
    }

    pub(crate) fn recover_next(&mut self, order: DeliveryOrder, max: usize) -> Vec<Message> {
        let batch = next_batch(&self.pending, &self.cursor, order, max);
        for m in &batch {
            self.cursor.advance(OrderKey::of(m));
        }
        batch
    }

    pub(crate) fn pending_count(&self) -> u64 {
        self.pending.len() as u64
    }

    pub(crate) fn pending_bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn key_of_pending(&self, id: &MessageId, topic: &TopicState) -> Option<OrderKey> {
        topic
            .by_id
            .get(id)
            .copied()
            .filter(|k| self.pending.contains_key(k))
    }
}

#[derive(Debug, Default)]
pub(crate) struct TopicState {
    messages: BTreeMap<OrderKey, Kept>,
    by_id: HashMap<MessageId, OrderKey>,
    expiring: BTreeSet<(i64, OrderKey)>,
    bytes: u64,
    pub(crate) subscriptions: BTreeMap<SubscriptionKey, Subscription>,
}

impl TopicState {
    pub(crate) fn is_pending(&self, key: &SubscriptionKey, id: &MessageId) -> bool {
        self.subscriptions
            .get(key)
            .is_some_and(|s| s.key_of_pending(id, self).is_some())
    }

    /// Drops one subscription's reference; releases the message when it was the last.
    fn release(&mut self, key: OrderKey) {
        let Some(kept) = self.messages.get_mut(&key) else {
            return;
        };
        kept.refs -= 1;
        if kept.refs == 0
            && let Some(kept) = self.messages.remove(&key)
        {
            self.forget(key, &kept.message);
        }
    }

    fn forget(&mut self, key: OrderKey, message: &Message) {
        self.by_id.remove(&message.id);
        self.bytes -= message.size();
        if message.expiration != 0 {
            self.expiring.remove(&(message.expiration, key));
        }
    }

    /// Acknowledges for one subscription; false if it was not pending there.
    pub(crate) fn acknowledge(&mut self, sub: &SubscriptionKey, id: &MessageId) -> bool {
        let Some(key) = self.by_id.get(id).copied() else {
            return false;
        };
        let Some(s) = self.subscriptions.get_mut(sub) else {
            return false;
        };
        match s.pending.remove(&key) {
            Some(m) => {
                s.bytes -= m.size();
                self.release(key);
                true
            }
            None => false,
        }
    }

    pub(crate) fn add_subscription(&mut self, info: SubscriptionInfo, retroactive: bool) {
        let mut sub = Subscription {
            info,
            pending: BTreeMap::new(),
            bytes: 0,
            cursor: CursorPosition::default(),
        };
        if retroactive {
            for (key, kept) in self.messages.iter_mut() {
                kept.refs += 1;
                sub.bytes += kept.message.size();
                sub.pending.insert(*key, kept.message.clone());
            }
        }
        self.subscriptions.insert(sub.info.key.clone(), sub);
    }

    pub(crate) fn delete_subscription(&mut self, key: &SubscriptionKey) -> bool {
        match self.subscriptions.remove(key) {
            Some(sub) => {
                for k in sub.pending.keys() {
                    self.release(*k);
                }
                true
            }
            None => false,
        }
    }
}

impl StoredMessages for TopicState {
    fn contains(&self, id: &MessageId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Stores `message` for every current subscription; with none, it is not kept.
    fn insert(&mut self, mut message: Message, sequence: u64) {
        if self.subscriptions.is_empty() {
            return;
        }
        message.sequence = sequence;
        let key = OrderKey::of(&message);
        let size = message.size();
        let message = Arc::new(message);
        for s in self.subscriptions.values_mut() {
            s.pending.insert(key, message.clone());
            s.bytes += size;
        }
        self.bytes += size;
        if message.expiration != 0 {
            self.expiring.insert((message.expiration, key));
        }
        self.by_id.insert(message.id.clone(), key);
        self.messages.insert(
            key,
            Kept {
                message,
                refs: self.subscriptions.len(),
            },
        );
    }

    fn get(&self, id: &MessageId) -> Option<&Arc<Message>> {
        self.by_id
            .get(id)
            .and_then(|k| self.messages.get(k))
            .map(|k| &k.message)
    }

    /// Drops a message for every subscription.
    fn remove(&mut self, id: &MessageId) -> bool {
        let Some(key) = self.by_id.get(id).copied() else {
            return false;
        };
        for s in self.subscriptions.values_mut() {
            if let Some(m) = s.pending.remove(&key) {
                s.bytes -= m.size();
            }
        }
        if let Some(kept) = self.messages.remove(&key) {
            self.forget(key, &kept.message);
        }
        true
    }

    fn clear(&mut self) -> u64 {
        let n = self.messages.len() as u64;
        self.messages.clear();
        self.by_id.clear();
        self.expiring.clear();
        self.bytes = 0;
        for s in self.subscriptions.values_mut() {
            s.pending.clear();
            s.bytes = 0;
        }
        n
    }

    fn count(&self) -> u64 {
        self.messages.len() as u64
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn expired(&self, now_ms: i64, max: usize) -> Vec<MessageId> {
        expired_keys(&self.expiring, now_ms, max)
            .into_iter()
            .filter_map(|k| self.messages.get(&k).map(|m| m.message.id.clone()))
            .collect()
    }
}
