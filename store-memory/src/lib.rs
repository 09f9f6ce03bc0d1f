//! The in-memory message store: every guarantee of the `store-api` contract except
//! durability. Used when a broker runs non-persistent, and as the fastest engine in the
//! benchmarks.
//!
//! Each destination has its own lock, so producers on different queues never contend; a
//! sequence is assigned under the destination's lock, which keeps each destination's
//! insertion order equal to its sequence order (the cursor can then never skip an add).
//! Topic messages are kept by reference count: one per subscription that still has the message
//! pending, released on the last ack — not ActiveMQ's fixed 100-message LRU. A commit locks
//! every destination it touches (in a fixed order) and checks every operation before applying
//! any, so readers never see half a transaction.

mod queue;
mod topic;
mod transaction;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use store_api::{
    DeliveryOrder, Destination, DestinationStore, Message, MessageId, OpenTransactions, OrderKey,
    PersistenceAdapter, PreparedTransaction, QueueStore, Result, StoreError, SubscriptionInfo,
    SubscriptionKey, TopicStore, TransactionId, TxOp, Xid,
};

use queue::QueueState;
use topic::TopicState;
use transaction::Locked;

/// The state of one destination. `Removed` is left behind for handles that outlive a
/// `remove_destination`, so they fail with `NotFound` instead of touching a new destination.
#[derive(Debug)]
pub(crate) enum DestState {
    Removed,
    Queue(QueueState),
    Topic(TopicState),
}

#[derive(Debug)]
struct Dest {
    destination: Destination,
    state: Mutex<DestState>,
}

#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    last_sequence: AtomicU64,
    destinations: Mutex<BTreeMap<Destination, Arc<Dest>>>,
    transactions: Mutex<OpenTransactions>,
}

impl Shared {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn next_sequence(&self) -> u64 {
        self.last_sequence.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn open_destination(&self, d: &Destination) -> Arc<Dest> {
        self.destinations
            .lock()
            .entry(d.clone())
            .or_insert_with(|| {
                Arc::new(Dest {
                    destination: d.clone(),
                    state: Mutex::new(if d.is_queue() {
                        DestState::Queue(QueueState::default())
                    } else {
                        DestState::Topic(TopicState::default())
                    }),
                })
            })
            .clone()
    }
}

/// The in-memory store. Cheap to create; everything is gone when it is dropped.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A handle on the destination, created if new.
    fn handle(&self, destination: &Destination) -> Arc<Handle> {
        Arc::new(Handle {
            shared: self.shared.clone(),
            dest: self.shared.open_destination(destination),
        })
    }

    /// Locks the destinations `ops` touch, in destination order so that two commits can never
    /// deadlock. Adds create their destination; acks of a destination that does not exist are
    /// left for the check to reject.
    fn lock_for(&self, ops: &[TxOp], create: bool) -> Vec<Arc<Dest>> {
        let mut names: Vec<&Destination> = ops.iter().map(transaction::destination_of).collect();
        names.sort();
        names.dedup();
        let mut dests = Vec::new();
        for d in names {
            let is_add = ops
                .iter()
                .any(|op| matches!(op, TxOp::Add(m) if &m.destination == d));
            if create && is_add {
                dests.push(self.shared.open_destination(d));
            } else if let Some(existing) = self.shared.destinations.lock().get(d) {
                dests.push(existing.clone());
            }
        }
        dests
    }

    /// Runs `f` over the locked states of the destinations `ops` touch.
    fn with_locked<T>(
        &self,
        ops: &[TxOp],
        create: bool,
        f: impl FnOnce(&mut Locked<'_>) -> Result<T>,
    ) -> Result<T> {
        let dests = self.lock_for(ops, create);
        let mut guards: Vec<(Destination, MutexGuard<'_, DestState>)> = dests
            .iter()
            .map(|d| (d.destination.clone(), d.state.lock()))
            .collect();
        let mut locked = Locked {
            states: guards
                .iter_mut()
                .filter(|(_, g)| !matches!(**g, DestState::Removed))
                .map(|(d, g)| (d.clone(), &mut **g))
                .collect(),
        };
        f(&mut locked)
    }
}

#[async_trait]
impl PersistenceAdapter for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.shared.check_open()?;
        Ok(self.shared.destinations.lock().keys().cloned().collect())
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        self.shared.check_open()?;
        destination.expect_queue()?;
        Ok(self.handle(destination))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        self.shared.check_open()?;
        destination.expect_topic()?;
        Ok(self.handle(destination))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        self.shared.check_open()?;
        let removed = self.shared.destinations.lock().remove(destination);
        match removed {
            Some(dest) => {
                *dest.state.lock() = DestState::Removed;
                Ok(())
            }
            None => Err(StoreError::NotFound(format!("destination {destination}"))),
        }
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.shared.check_open()?;
        self.shared.transactions.lock().begin(tx)
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.shared.check_open()?;
        let mut txs = self.shared.transactions.lock();
        txs.check_enlist(tx)?;
        if store_api::tx_check::check_enlisted(&op)? {
            self.with_locked(std::slice::from_ref(&op), false, |l| {
                l.check(std::slice::from_ref(&op))
            })?;
        }
        txs.enlist(tx, op)
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        self.shared.check_open()?;
        let mut txs = self.shared.transactions.lock();
        let ops = txs.to_prepare(xid)?;
        self.with_locked(ops, false, |l| l.check(ops))?;
        txs.mark_prepared(&TransactionId::Xa(xid.clone()), ());
        Ok(())
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        self.shared.check_open()?;
        let mut txs = self.shared.transactions.lock();
        let ops = txs.get(tx)?.ops.clone();
        self.with_locked(&ops, true, |l| {
            l.check(&ops)?;
            l.apply(ops.clone(), &self.shared.last_sequence);
            Ok(())
        })?;
        txs.end(tx).map(|_| ())
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        self.shared.check_open()?;
        self.shared.transactions.lock().end(tx).map(|_| ())
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.shared.check_open()?;
        Ok(self.shared.transactions.lock().prepared())
    }

    async fn checkpoint(&self, _cleanup: bool) -> Result<()> {
        self.shared.check_open()
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.shared.check_open()?;
        Ok(0)
    }

    async fn delete_all(&self) -> Result<()> {
        self.shared.check_open()?;
        let mut txs = self.shared.transactions.lock();
        let removed = std::mem::take(&mut *self.shared.destinations.lock());
        for dest in removed.values() {
            *dest.state.lock() = DestState::Removed;
        }
        txs.clear();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::Release);
        Ok(())
    }
}

/// A queue or topic handle. It shares the destination's state with every other handle to it.
struct Handle {
    shared: Arc<Shared>,
    dest: Arc<Dest>,
}

impl Handle {
    fn removed(&self) -> StoreError {
        StoreError::NotFound(format!("destination {} was removed", self.dest.destination))
    }

    fn queue<T>(&self, f: impl FnOnce(&mut QueueState) -> Result<T>) -> Result<T> {
        self.shared.check_open()?;
        match &mut *self.dest.state.lock() {
            DestState::Queue(q) => f(q),
            _ => Err(self.removed()),
        }
    }

    fn topic<T>(&self, f: impl FnOnce(&mut TopicState) -> Result<T>) -> Result<T> {
        self.shared.check_open()?;
        match &mut *self.dest.state.lock() {
            DestState::Topic(t) => f(t),
            _ => Err(self.removed()),
        }
    }

    /// Runs `f` on the destination's messages, queue or topic alike.
    fn stored<T>(&self, f: impl FnOnce(&mut dyn StoredMessages) -> Result<T>) -> Result<T> {
        self.shared.check_open()?;
        match &mut *self.dest.state.lock() {
            DestState::Queue(q) => f(q),
            DestState::Topic(t) => f(t),
            DestState::Removed => Err(self.removed()),
        }
    }

    fn missing(&self, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!("message {id} in {}", self.dest.destination))
    }

    fn no_subscription(&self, key: &SubscriptionKey) -> StoreError {
        StoreError::NotFound(format!("subscription {key} on {}", self.dest.destination))
    }

    fn subscription<T>(
        &self,
        key: &SubscriptionKey,
        f: impl FnOnce(&mut topic::Subscription, &TopicState) -> Result<T>,
    ) -> Result<T> {
        self.topic(|t| {
            // The subscription is taken out so that it can be used beside the topic's state.
            let mut sub = t
                .subscriptions
                .remove(key)
                .ok_or_else(|| self.no_subscription(key))?;
            let result = f(&mut sub, t);
            t.subscriptions.insert(key.clone(), sub);
            result
        })
    }
}

/// What a queue's and a topic's state answer alike, so that the [`DestinationStore`] half of a
/// handle is written once.
pub(crate) trait StoredMessages {
    fn contains(&self, id: &MessageId) -> bool;
    /// Stores `message` with `sequence`; the caller checked the id is new.
    fn insert(&mut self, message: Message, sequence: u64);
    fn get(&self, id: &MessageId) -> Option<&Arc<Message>>;
    /// Drops the message (for every subscription of a topic); false if it was not kept.
    fn remove(&mut self, id: &MessageId) -> bool;
    /// Drops every message; returns how many there were.
    fn clear(&mut self) -> u64;
    fn count(&self) -> u64;
    fn bytes(&self) -> u64;
    fn expired(&self, now_ms: i64, max: usize) -> Vec<MessageId>;
}

#[async_trait]
impl DestinationStore for Handle {
    fn destination(&self) -> &Destination {
        &self.dest.destination
    }

    async fn add(&self, message: Message) -> Result<u64> {
        message.validate_for(&self.dest.destination)?;
        self.stored(|k| {
            if k.contains(&message.id) {
                return Err(StoreError::Duplicate(format!(
                    "message {} in {}",
                    message.id, self.dest.destination
                )));
            }
            let seq = self.shared.next_sequence();
            k.insert(message, seq);
            Ok(seq)
        })
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.stored(|k| {
            k.get(id)
                .map(|m| Message::clone(m))
                .ok_or_else(|| self.missing(id))
        })
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.stored(|k| {
            if !k.remove(id) {
                return Err(self.missing(id));
            }
            Ok(())
        })
    }

    async fn purge(&self) -> Result<u64> {
        self.stored(|k| Ok(k.clear()))
    }

    async fn count(&self) -> Result<u64> {
        self.stored(|k| Ok(k.count()))
    }

    async fn bytes(&self) -> Result<u64> {
        self.stored(|k| Ok(k.bytes()))
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.stored(|k| Ok(k.expired(now_ms, max)))
    }
}

#[async_trait]
impl QueueStore for Handle {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.queue(|q| Ok(q.browse(after, max)))
    }

    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        self.queue(|q| Ok(q.recover_next(order, max)))
    }

    async fn reset_cursor(&self) -> Result<()> {
        self.queue(|q| {
            q.cursor.reset();
            Ok(())
        })
    }

    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        self.queue(|q| {
            let key = q.key_of(id).ok_or_else(|| self.missing(id))?;
            q.cursor
                .set_after(key, self.shared.last_sequence.load(Ordering::Acquire));
            Ok(())
        })
    }
}

#[async_trait]
impl TopicStore for Handle {
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        self.topic(|t| {
            if t.subscriptions.contains_key(&info.key) {
                return Err(StoreError::Duplicate(format!(
                    "subscription {} on {}",
                    info.key, self.dest.destination
                )));
            }
            t.add_subscription(info, retroactive);
            Ok(())
        })
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.topic(|t| {
            if t.delete_subscription(key) {
                Ok(())
            } else {
                Err(self.no_subscription(key))
            }
        })
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.topic(|t| Ok(t.subscriptions.values().map(|s| s.info.clone()).collect()))
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.topic(|t| Ok(t.subscriptions.get(key).map(|s| s.info.clone())))
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.topic(|t| {
            if !t.subscriptions.contains_key(key) {
                return Err(self.no_subscription(key));
            }
            if t.acknowledge(key, id) {
                Ok(())
            } else {
                Err(StoreError::NotFound(format!(
                    "message {id} is not pending for subscription {key} on {}",
                    self.dest.destination
                )))
            }
        })
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.subscription(key, |s, _| Ok(s.browse(after, max)))
    }

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.subscription(key, |s, _| Ok(s.recover_next(order, max)))
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.subscription(key, |s, _| {
            s.cursor.reset();
            Ok(())
        })
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        let last = self.shared.last_sequence.load(Ordering::Acquire);
        self.subscription(key, |s, t| {
            let order = s.key_of_pending(id, t).ok_or_else(|| {
                StoreError::NotFound(format!(
                    "message {id} is not pending for subscription {key} on {}",
                    self.dest.destination
                ))
            })?;
            s.cursor.set_after(order, last);
            Ok(())
        })
    }

    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.subscription(key, |s, _| Ok(s.pending_count()))
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.subscription(key, |s, _| Ok(s.pending_bytes()))
    }
}
