//! A queue's messages, indexed by delivery order and by id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use store_api::{CursorPosition, DeliveryOrder, Message, MessageId, OrderKey};

use crate::StoredMessages;

/// Everything in delivery order, with the id index, the exact byte count and the cursor.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    by_order: BTreeMap<OrderKey, Arc<Message>>,
    by_id: HashMap<MessageId, OrderKey>,
    /// Messages with an expiration, by (expiration, order), so the expiry scan does not walk
    /// the whole queue.
    expiring: BTreeSet<(i64, OrderKey)>,
    bytes: u64,
    pub(crate) cursor: CursorPosition,
}

impl QueueState {
    pub(crate) fn browse(&self, after: Option<OrderKey>, max: usize) -> Vec<Message> {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = after.map_or(Unbounded, Excluded);
        self.by_order
            .range((lower, Unbounded))
            .take(max)
            .map(|(_, m)| Message::clone(m))
            .collect()
    }

    pub(crate) fn recover_next(&mut self, order: DeliveryOrder, max: usize) -> Vec<Message> {
        let batch = next_batch(&self.by_order, &self.cursor, order, max);
        for m in &batch {
            self.cursor.advance(OrderKey::of(m));
        }
        batch
    }

    pub(crate) fn key_of(&self, id: &MessageId) -> Option<OrderKey> {
        self.by_id.get(id).copied()
    }
}

impl StoredMessages for QueueState {
    fn contains(&self, id: &MessageId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Stores `message` with `sequence`. The caller checked the id is new.
    fn insert(&mut self, mut message: Message, sequence: u64) {
        message.sequence = sequence;
        let key = OrderKey::of(&message);
        self.bytes += message.size();
        if message.expiration != 0 {
            self.expiring.insert((message.expiration, key));
        }
        self.by_id.insert(message.id.clone(), key);
        self.by_order.insert(key, Arc::new(message));
    }

    fn get(&self, id: &MessageId) -> Option<&Arc<Message>> {
        self.by_id.get(id).and_then(|k| self.by_order.get(k))
    }

    fn remove(&mut self, id: &MessageId) -> bool {
        let Some(key) = self.by_id.remove(id) else {
            return false;
        };
        let Some(message) = self.by_order.remove(&key) else {
            return false;
        };
        self.bytes -= message.size();
        if message.expiration != 0 {
            self.expiring.remove(&(message.expiration, key));
        }
        true
    }

    fn clear(&mut self) -> u64 {
        let n = self.by_order.len() as u64;
        self.by_order.clear();
        self.by_id.clear();
        self.expiring.clear();
        self.bytes = 0;
        n
    }

    fn count(&self) -> u64 {
        self.by_order.len() as u64
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn expired(&self, now_ms: i64, max: usize) -> Vec<MessageId> {
        expired_keys(&self.expiring, now_ms, max)
            .into_iter()
            .filter_map(|k| self.by_order.get(&k).map(|m| m.id.clone()))
            .collect()
    }
}

/// Up to `max` messages of `ordered` the cursor has not returned, in delivery order: per
/// priority, high to low, everything after that priority's position.
pub(crate) fn next_batch(
    ordered: &BTreeMap<OrderKey, Arc<Message>>,
    cursor: &CursorPosition,
    order: DeliveryOrder,
    max: usize,
) -> Vec<Message> {
    let mut batch = Vec::new();
    for (from, to) in cursor.pending_ranges() {
        let Some(limit) = order.range_limit(batch.len(), max) else {
            break;
        };
        batch.extend(
            ordered
                .range(from..=to)
                .take(limit)
                .map(|(_, m)| Message::clone(m)),
        );
    }
    order.finish(&mut batch, OrderKey::of, max);
    batch
}

/// The first `max`, in delivery order, of the messages in `expiring` whose expiration is at or
/// before `now_ms`.
pub(crate) fn expired_keys(
    expiring: &BTreeSet<(i64, OrderKey)>,
    now_ms: i64,
    max: usize,
) -> Vec<OrderKey> {
    // The greatest OrderKey is the lowest priority with the highest sequence.
    let last = OrderKey {
        priority: 0,
        sequence: u64::MAX,
    };
    let mut keys: Vec<OrderKey> = expiring.range(..=(now_ms, last)).map(|(_, k)| *k).collect();
    keys.sort_unstable();
    keys.truncate(max);
    keys
}
