//! The in-memory index: for every destination, its messages' order keys, ids, sizes and
//! expirations; for every durable subscription, the exact set of messages pending for it.
//! Bodies stay in the journal (RocksDB holds where) and are read on demand. Each change to the
//! index writes the matching records into the caller's [`Batch`], so the index and the
//! database move together.
//!
//! Open rebuilds the index from the `messages`, `subscriptions` and `pending` column families
//! (small records; bodies are not read), see `recovery.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use store_api::{
    CursorPosition, DeliveryOrder, Destination, Message, MessageId, OpenTransactions, OrderKey,
    SubscriptionInfo, SubscriptionKey,
};

use crate::batch::Batch;
use crate::keys::{self, Cf, Entry};

/// A message a topic keeps, with how many subscriptions have it pending.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) entry: Entry,
    pub(crate) refs: usize,
}

#[derive(Debug)]
pub(crate) struct SubIndex {
    pub(crate) info: SubscriptionInfo,
    pub(crate) pending: BTreeSet<OrderKey>,
    pub(crate) bytes: u64,
    pub(crate) cursor: CursorPosition,
}

impl SubIndex {
    pub(crate) fn new(info: SubscriptionInfo) -> Self {
        SubIndex {
            info,
            pending: BTreeSet::new(),
            bytes: 0,
            cursor: CursorPosition::default(),
        }
    }
}

/// What a queue and a topic share: the messages kept, by order and by id.
#[derive(Debug)]
pub(crate) struct Messages<V> {
    pub(crate) by_order: BTreeMap<OrderKey, V>,
    pub(crate) by_id: HashMap<MessageId, OrderKey>,
    /// `(expiration, order)` of messages that expire, so the expiry scan skips the rest.
    expiring: BTreeSet<(i64, OrderKey)>,
    pub(crate) bytes: u64,
}

impl<V> Default for Messages<V> {
    fn default() -> Self {
        Messages {
            by_order: BTreeMap::new(),
            by_id: HashMap::new(),
            expiring: BTreeSet::new(),
            bytes: 0,
        }
    }
}

impl<V> Messages<V> {
    pub(crate) fn insert(&mut self, order: OrderKey, entry: &Entry, value: V) {
        self.count(order, entry);
        self.by_id.insert(entry.id.clone(), order);
        self.by_order.insert(order, value);
    }

    /// Adds the messages of a destination as a scan of the `messages` column family yields
    /// them, in order: the order map is built in bulk (no search per message). `ids` is their
    /// id map, built beside (see `recovery.rs`). At open this is most of the time the index
    /// takes.
    pub(crate) fn extend_sorted(
        &mut self,
        items: Vec<(OrderKey, V)>,
        entry: impl Fn(&V) -> &Entry,
        ids: HashMap<MessageId, OrderKey>,
    ) {
        for (order, v) in &items {
            self.count(*order, entry(v));
        }
        if self.by_id.is_empty() {
            self.by_id = ids;
        } else {
            self.by_id.extend(ids);
        }
        if self.by_order.is_empty() {
            // From sorted input this is a linear bulk build.
            self.by_order = items.into_iter().collect();
        } else {
            self.by_order.extend(items);
        }
    }

    /// Counts a message's bytes, and its expiration if it has one.
    fn count(&mut self, order: OrderKey, entry: &Entry) {
        self.bytes += entry.size;
        if entry.expiration != 0 {
            self.expiring.insert((entry.expiration, order));
        }
    }

    fn forget(&mut self, order: OrderKey, entry: &Entry) {
        self.by_id.remove(&entry.id);
        self.bytes = self.bytes.saturating_sub(entry.size);
        if entry.expiration != 0 {
            self.expiring.remove(&(entry.expiration, order));
        }
    }

    pub(crate) fn expired(&self, now_ms: i64, max: usize) -> Vec<OrderKey> {
        // The greatest OrderKey is the lowest priority with the highest sequence.
        let last = OrderKey {
            priority: 0,
            sequence: u64::MAX,
        };
        let mut keys: Vec<OrderKey> = self
            .expiring
            .range(..=(now_ms, last))
            .map(|(_, k)| *k)
            .collect();
        keys.sort_unstable();
        keys.truncate(max);
        keys
    }
}

#[derive(Debug, Default)]
pub(crate) struct QueueIndex {
    pub(crate) messages: Messages<Entry>,
    pub(crate) cursor: CursorPosition,
}

#[derive(Debug, Default)]
pub(crate) struct TopicIndex {
    pub(crate) messages: Messages<Kept>,
    pub(crate) subscriptions: BTreeMap<SubscriptionKey, SubIndex>,
}

#[derive(Debug)]
pub(crate) enum DestIndex {
    Queue(QueueIndex),
    Topic(TopicIndex),
}

#[derive(Debug)]
pub(crate) struct Dest {
    /// Tells a handle whether the destination it was made for is still this one (it may have
    /// been removed and created again since).
    pub(crate) incarnation: u64,
    pub(crate) index: DestIndex,
}

/// The whole index of an open store.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) last_sequence: u64,
    next_incarnation: u64,
    pub(crate) destinations: BTreeMap<Destination, Dest>,
    pub(crate) transactions: OpenTransactions,
    /// Which journal files hold bodies, as loaded (handed to the applier, which keeps the
    /// count from then on).
    pub(crate) body_files: crate::bodies::BodyFiles,
    /// The `bodies` column family holds bodies (a store written before bodies stayed in the
    /// journal): deleting a message deletes its body there too.
    pub(crate) legacy_bodies: bool,
    /// Records of messages whose bodies the journal never wrote, as loaded: left out of the
    /// index, and deleted by the open.
    pub(crate) unwritten: Vec<(crate::keys::Cf, Vec<u8>)>,
}

/// Up to `max` keys of `ordered` the cursor has not returned, in delivery order: per priority,
/// high to low, everything after that priority's position.
pub(crate) fn next_batch<'a>(
    ordered: impl Fn(OrderKey, OrderKey) -> Box<dyn Iterator<Item = OrderKey> + 'a>,
    cursor: &CursorPosition,
    order: DeliveryOrder,
    max: usize,
) -> Vec<OrderKey> {
    let mut batch = Vec::new();
    for (from, to) in cursor.pending_ranges() {
        let Some(limit) = order.range_limit(batch.len(), max) else {
            break;
        };
        batch.extend(ordered(from, to).take(limit));
    }
    order.finish(&mut batch, |k| *k, max);
    batch
}

impl Index {
    /// Messages kept, over every destination (a topic message once, however many
    /// subscriptions it is pending for).
    pub(crate) fn message_count(&self) -> usize {
        self.destinations
            .values()
            .map(|d| match &d.index {
                DestIndex::Queue(q) => q.messages.by_order.len(),
                DestIndex::Topic(t) => t.messages.by_order.len(),
            })
            .sum()
    }

    /// The destination, created (with its record) if new; returns its incarnation.
    pub(crate) fn create(&mut self, d: &Destination, batch: &mut Batch<'_>) -> u64 {
        if let Some(dest) = self.destinations.get(d) {
            return dest.incarnation;
        }
        batch.put(Cf::Destinations, &keys::destination(d), &[]);
        self.insert_destination(d.clone())
    }

    /// Adds a destination to the index only (open, or [`Index::create`]).
    pub(crate) fn insert_destination(&mut self, d: Destination) -> u64 {
        self.next_incarnation += 1;
        let index = if d.is_queue() {
            DestIndex::Queue(QueueIndex::default())
        } else {
            DestIndex::Topic(TopicIndex::default())
        };
        let incarnation = self.next_incarnation;
        self.destinations.insert(d, Dest { incarnation, index });
        incarnation
    }

    /// Gives the destinations of an index rebuilt from the database the incarnations they had
    /// in `old`, so that handles made before the rebuild still reach them.
    pub(crate) fn keep_handles_of(&mut self, old: &Index) {
        self.next_incarnation = self.next_incarnation.max(old.next_incarnation);
        for (d, dest) in self.destinations.iter_mut() {
            match old.destinations.get(d) {
                Some(o) => dest.incarnation = o.incarnation,
                None => {
                    self.next_incarnation += 1;
                    dest.incarnation = self.next_incarnation;
                }
            }
        }
    }

    pub(crate) fn contains(&self, d: &Destination, id: &MessageId) -> bool {
        match self.destinations.get(d).map(|x| &x.index) {
            Some(DestIndex::Queue(q)) => q.messages.by_id.contains_key(id),
            Some(DestIndex::Topic(t)) => t.messages.by_id.contains_key(id),
            None => false,
        }
    }

    /// Stores a message whose id the caller checked is new, creating its destination.
    /// Returns the sequence assigned.
    pub(crate) fn add(&mut self, mut message: Message, batch: &mut Batch<'_>) -> u64 {
        let d = message.destination.clone();
        self.create(&d, batch);
        self.last_sequence += 1;
        let seq = self.last_sequence;
        batch.put(Cf::Meta, keys::LAST_SEQUENCE, &seq.to_le_bytes());
        message.sequence = seq;
        let order = OrderKey::of(&message);
        let entry = Entry {
            id: message.id.clone(),
            size: message.size(),
            expiration: message.expiration,
        };
        let Some(dest) = self.destinations.get_mut(&d) else {
            return seq;
        };
        match &mut dest.index {
            DestIndex::Queue(q) => {
                q.messages.insert(order, &entry, entry.clone());
            }
            DestIndex::Topic(t) => {
                if t.subscriptions.is_empty() {
                    return seq;
                }
                for (k, s) in t.subscriptions.iter_mut() {
                    s.pending.insert(order);
                    s.bytes += entry.size;
                    batch.put(Cf::Pending, &keys::pending(&d, k, order), &[]);
                }
                let refs = t.subscriptions.len();
                t.messages.insert(
                    order,
                    &entry,
                    Kept {
                        entry: entry.clone(),
                        refs,
                    },
                );
            }
        }
        let key = keys::message(&d, order);
        batch.put(Cf::Messages, &key, &keys::message_value(&entry, &message));
        seq
    }

    /// Deletes a message (for every subscription of a topic); false if it is not kept.
    pub(crate) fn remove(
        &mut self,
        d: &Destination,
        id: &MessageId,
        batch: &mut Batch<'_>,
    ) -> bool {
        let Some(dest) = self.destinations.get_mut(d) else {
            return false;
        };
        match &mut dest.index {
            DestIndex::Queue(q) => {
                let Some(order) = q.messages.by_id.get(id).copied() else {
                    return false;
                };
                if let Some(entry) = q.messages.by_order.remove(&order) {
                    q.messages.forget(order, &entry);
                }
                delete_message(d, order, batch);
                true
            }
            DestIndex::Topic(t) => {
                let Some(order) = t.messages.by_id.get(id).copied() else {
                    return false;
                };
                let Some(kept) = t.messages.by_order.remove(&order) else {
                    return false;
                };
                for (k, s) in t.subscriptions.iter_mut() {
                    if s.pending.remove(&order) {
                        s.bytes = s.bytes.saturating_sub(kept.entry.size);
                        batch.delete(Cf::Pending, &keys::pending(d, k, order));
                    }
                }
                t.messages.forget(order, &kept.entry);
                delete_message(d, order, batch);
                true
            }
        }
    }

    /// Whether the message is pending for the subscription.
    pub(crate) fn is_pending(&self, d: &Destination, k: &SubscriptionKey, id: &MessageId) -> bool {
        match self.destinations.get(d).map(|x| &x.index) {
            Some(DestIndex::Topic(t)) => t.messages.by_id.get(id).is_some_and(|o| {
                t.subscriptions
                    .get(k)
                    .is_some_and(|s| s.pending.contains(o))
            }),
            _ => false,
        }
    }

    /// Acknowledges a message for one subscription; releases it after the last. False if it
    /// was not pending there.
    pub(crate) fn acknowledge(
        &mut self,
        d: &Destination,
        k: &SubscriptionKey,
        id: &MessageId,
        batch: &mut Batch<'_>,
    ) -> bool {
        let Some(DestIndex::Topic(t)) = self.destinations.get_mut(d).map(|x| &mut x.index) else {
            return false;
        };
        let Some(order) = t.messages.by_id.get(id).copied() else {
            return false;
        };
        let Some(s) = t.subscriptions.get_mut(k) else {
            return false;
        };
        if !s.pending.remove(&order) {
            return false;
        }
        batch.delete(Cf::Pending, &keys::pending(d, k, order));
        release(t, d, order, Some(k), batch);
        true
    }

    /// Creates a subscription (the caller checked it is new); a retroactive one starts with
    /// every kept message pending.
    pub(crate) fn add_subscription(
        &mut self,
        d: &Destination,
        info: SubscriptionInfo,
        retroactive: bool,
        batch: &mut Batch<'_>,
    ) {
        let Some(DestIndex::Topic(t)) = self.destinations.get_mut(d).map(|x| &mut x.index) else {
            return;
        };
        batch.put(
            Cf::Subscriptions,
            &keys::subscription(d, &info.key),
            &keys::selector_value(info.selector.as_deref()),
        );
        let mut sub = SubIndex::new(info);
        if retroactive {
            for (order, kept) in t.messages.by_order.iter_mut() {
                kept.refs += 1;
                sub.bytes += kept.entry.size;
                sub.pending.insert(*order);
                batch.put(Cf::Pending, &keys::pending(d, &sub.info.key, *order), &[]);
            }
        }
        t.subscriptions.insert(sub.info.key.clone(), sub);
    }

    /// Deletes a subscription and releases what only it kept; false if absent.
    pub(crate) fn delete_subscription(
        &mut self,
        d: &Destination,
        k: &SubscriptionKey,
        batch: &mut Batch<'_>,
    ) -> bool {
        let Some(DestIndex::Topic(t)) = self.destinations.get_mut(d).map(|x| &mut x.index) else {
            return false;
        };
        let Some(sub) = t.subscriptions.remove(k) else {
            return false;
        };
        batch.delete(Cf::Subscriptions, &keys::subscription(d, k));
        for order in sub.pending {
            batch.delete(Cf::Pending, &keys::pending(d, k, order));
            release(t, d, order, None, batch);
        }
        true
    }

    /// Deletes every kept message of a destination; returns how many.
    pub(crate) fn purge(&mut self, d: &Destination, batch: &mut Batch<'_>) -> u64 {
        let ids: Vec<MessageId> = match self.destinations.get(d).map(|x| &x.index) {
            Some(DestIndex::Queue(q)) => q.messages.by_id.keys().cloned().collect(),
            Some(DestIndex::Topic(t)) => t.messages.by_id.keys().cloned().collect(),
            None => Vec::new(),
        };
        let mut n = 0;
        for id in &ids {
            if self.remove(d, id, batch) {
                n += 1;
            }
        }
        n
    }

    /// Deletes a destination with its messages and subscriptions; false if absent.
    pub(crate) fn remove_destination(&mut self, d: &Destination, batch: &mut Batch<'_>) -> bool {
        if !self.destinations.contains_key(d) {
            return false;
        }
        self.purge(d, batch);
        let subs: Vec<SubscriptionKey> = match self.destinations.get(d).map(|x| &x.index) {
            Some(DestIndex::Topic(t)) => t.subscriptions.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for k in &subs {
            self.delete_subscription(d, k, batch);
        }
        batch.delete(Cf::Destinations, &keys::destination(d));
        self.destinations.remove(d);
        true
    }

    /// Deletes every destination and prepared transaction.
    pub(crate) fn delete_all(&mut self, batch: &mut Batch<'_>) {
        let all: Vec<Destination> = self.destinations.keys().cloned().collect();
        for d in &all {
            self.remove_destination(d, batch);
        }
        for p in self.transactions.prepared() {
            batch.delete(Cf::Transactions, &keys::transaction(&p.xid));
        }
        self.transactions.clear();
    }
}

fn delete_message(d: &Destination, order: OrderKey, batch: &mut Batch<'_>) {
    let key = keys::message(d, order);
    batch.delete(Cf::Messages, &key);
    if batch.legacy_bodies {
        batch.delete(Cf::Bodies, &key);
    }
}

/// Drops one subscription's reference to a message (`by` acked it, or a deleted subscription
/// held it); deletes the message when it was the last.
fn release(
    t: &mut TopicIndex,
    d: &Destination,
    order: OrderKey,
    by: Option<&SubscriptionKey>,
    batch: &mut Batch<'_>,
) {
    let Some(kept) = t.messages.by_order.get_mut(&order) else {
        return;
    };
    if let Some(s) = by.and_then(|k| t.subscriptions.get_mut(k)) {
        s.bytes = s.bytes.saturating_sub(kept.entry.size);
    }
    kept.refs = kept.refs.saturating_sub(1);
    if kept.refs == 0
        && let Some(kept) = t.messages.by_order.remove(&order)
    {
        t.messages.forget(order, &kept.entry);
        delete_message(d, order, batch);
    }
}
