//! The changes journaled since the last checkpoint, per destination: what readers merge over
//! the database, and what the next checkpoint moves into it.
//!
//! Two facts make the merge simple. Every sequence in the overlay is above every sequence in
//! the database (the checkpoint empties the overlay, and later adds take later sequences), so
//! per priority a cursor reads the database first and the overlay after. And an add acked in
//! the same cycle leaves the overlay entirely: it never reaches the database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use store_api::{Destination, Message, MessageId, OrderKey, SubscriptionKey};
use store_jdbc::journaled::CheckpointBatch;

/// A queue's changes.
#[derive(Debug, Default)]
pub struct QueueDelta {
    pub adds: BTreeMap<OrderKey, Arc<Message>>,
    pub by_id: HashMap<MessageId, OrderKey>,
    pub add_bytes: u64,
    /// Messages in the database acked since the checkpoint: their key and size.
    pub removed: HashMap<MessageId, (OrderKey, u64)>,
    pub removed_bytes: u64,
}

/// A topic message journaled since the checkpoint and the subscriptions still owing an ack.
#[derive(Debug)]
pub struct TopicAdd {
    pub message: Arc<Message>,
    pub pending: BTreeSet<SubscriptionKey>,
}

/// Acks since the checkpoint of one topic message that is in the database.
#[derive(Debug)]
pub struct DbAcks {
    pub key: OrderKey,
    pub size: u64,
    /// Subscriptions the database has it pending for.
    pub refs: u64,
    pub acked: BTreeSet<SubscriptionKey>,
}

impl DbAcks {
    pub fn released(&self) -> bool {
        self.acked.len() as u64 >= self.refs
    }
}

/// A topic's changes.
#[derive(Debug, Default)]
pub struct TopicDelta {
    pub adds: BTreeMap<OrderKey, TopicAdd>,
    pub by_id: HashMap<MessageId, OrderKey>,
    pub add_bytes: u64,
    /// Per subscription: overlay adds pending for it (count, bytes).
    pub add_pending: HashMap<SubscriptionKey, (u64, u64)>,
    pub db_acks: HashMap<MessageId, DbAcks>,
    /// Per subscription: database messages it acked since the checkpoint (count, bytes).
    pub db_acked: HashMap<SubscriptionKey, (u64, u64)>,
    /// Database messages every subscription has acked since the checkpoint (count, bytes).
    pub released: (u64, u64),
}

#[derive(Debug, Default)]
pub struct Overlay {
    pub queues: HashMap<Destination, QueueDelta>,
    pub topics: HashMap<Destination, TopicDelta>,
    /// Encoded bytes of the adds held, to bound memory between checkpoints.
    pub bytes: u64,
}

fn add_to(e: &mut (u64, u64), size: u64) {
    e.0 += 1;
    e.1 += size;
}

fn sub_from(e: &mut (u64, u64), size: u64) {
    e.0 = e.0.saturating_sub(1);
    e.1 = e.1.saturating_sub(size);
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.queues
            .values()
            .all(|q| q.adds.is_empty() && q.removed.is_empty())
            && self
                .topics
                .values()
                .all(|t| t.adds.is_empty() && t.db_acks.is_empty())
    }

    pub fn queue(&self, d: &Destination) -> Option<&QueueDelta> {
        self.queues.get(d)
    }

    pub fn topic(&self, d: &Destination) -> Option<&TopicDelta> {
        self.topics.get(d)
    }

    /// A queue message, or a topic message with its pending subscriptions.
    pub fn add(&mut self, m: Message, subs: &[SubscriptionKey]) {
        let key = OrderKey::of(&m);
        let size = m.size();
        let d = m.destination.clone();
        if d.is_queue() {
            let q = self.queues.entry(d).or_default();
            q.by_id.insert(m.id.clone(), key);
            q.adds.insert(key, Arc::new(m));
            q.add_bytes += size;
        } else {
            if subs.is_empty() {
                return;
            }
            let t = self.topics.entry(d).or_default();
            for s in subs {
                add_to(t.add_pending.entry(s.clone()).or_default(), size);
            }
            t.by_id.insert(m.id.clone(), key);
            t.adds.insert(
                key,
                TopicAdd {
                    message: Arc::new(m),
                    pending: subs.iter().cloned().collect(),
                },
            );
            t.add_bytes += size;
        }
        self.bytes += size;
    }

    /// A queue ack of an overlay add: the pair cancels. False if the id is not an overlay add.
    pub fn cancel_queue_add(&mut self, d: &Destination, id: &MessageId) -> bool {
        let Some(q) = self.queues.get_mut(d) else {
            return false;
        };
        let Some(key) = q.by_id.remove(id) else {
            return false;
        };
        if let Some(m) = q.adds.remove(&key) {
            let size = m.size();
            q.add_bytes -= size;
            self.bytes = self.bytes.saturating_sub(size);
        }
        true
    }

    /// A queue ack of a database message.
    pub fn remove_db(&mut self, d: &Destination, id: MessageId, key: OrderKey, size: u64) {
        let q = self.queues.entry(d.clone()).or_default();
        if q.removed.insert(id, (key, size)).is_none() {
            q.removed_bytes += size;
        }
    }

    /// A durable ack of an overlay topic add. False if it is not one pending for `sub`.
    pub fn ack_topic_add(
        &mut self,
        d: &Destination,
        sub: &SubscriptionKey,
        id: &MessageId,
    ) -> bool {
        let Some(t) = self.topics.get_mut(d) else {
            return false;
        };
        let Some(key) = t.by_id.get(id).copied() else {
            return false;
        };
        let Some(entry) = t.adds.get_mut(&key) else {
            return false;
        };
        if !entry.pending.remove(sub) {
            return false;
        }
        let size = entry.message.size();
        if let Some(e) = t.add_pending.get_mut(sub) {
            sub_from(e, size);
        }
        if entry.pending.is_empty() {
            t.adds.remove(&key);
            t.by_id.remove(id);
            t.add_bytes -= size;
            self.bytes = self.bytes.saturating_sub(size);
        }
        true
    }

    /// A durable ack of a database topic message, pending in the database for `refs`
    /// subscriptions.
    pub fn ack_topic_db(
        &mut self,
        d: &Destination,
        sub: &SubscriptionKey,
        id: &MessageId,
        key: OrderKey,
        size: u64,
        refs: u64,
    ) {
        let t = self.topics.entry(d.clone()).or_default();
        let e = t.db_acks.entry(id.clone()).or_insert(DbAcks {
            key,
            size,
            refs,
            acked: BTreeSet::new(),
        });
        if !e.acked.insert(sub.clone()) {
            return;
        }
        add_to(t.db_acked.entry(sub.clone()).or_default(), size);
        if e.released() {
            add_to(&mut t.released, size);
        }
    }

    /// Whether a database topic message was acked by `sub` (or by everyone) since the
    /// checkpoint.
    pub fn db_acked(&self, d: &Destination, sub: Option<&SubscriptionKey>, id: &MessageId) -> bool {
        let Some(e) = self.topics.get(d).and_then(|t| t.db_acks.get(id)) else {
            return false;
        };
        match sub {
            Some(s) => e.acked.contains(s),
            None => e.released(),
        }
    }

    /// Everything as one checkpoint batch, to be applied in the database in one transaction.
    pub fn batch(&self, mark: i64) -> CheckpointBatch {
        let mut b = CheckpointBatch {
            mark,
            ..CheckpointBatch::default()
        };
        for q in self.queues.values() {
            for m in q.adds.values() {
                b.adds.push((Message::clone(m), Vec::new()));
            }
        }
        for (d, q) in &self.queues {
            for id in q.removed.keys() {
                b.queue_acks.push((d.clone(), id.clone()));
            }
        }
        for t in self.topics.values() {
            for a in t.adds.values() {
                b.adds.push((
                    Message::clone(&a.message),
                    a.pending.iter().cloned().collect(),
                ));
            }
        }
        for (d, t) in &self.topics {
            for (id, e) in &t.db_acks {
                for s in &e.acked {
                    b.topic_acks.push((d.clone(), s.clone(), id.clone()));
                }
            }
        }
        b.adds.sort_by_key(|(m, _)| m.sequence);
        b
    }

    /// Forgets one destination's changes (after it was flushed and then purged or removed).
    pub fn forget(&mut self, d: &Destination) {
        if let Some(q) = self.queues.remove(d) {
            self.bytes = self.bytes.saturating_sub(q.add_bytes);
        }
        if let Some(t) = self.topics.remove(d) {
            self.bytes = self.bytes.saturating_sub(t.add_bytes);
        }
    }
}
