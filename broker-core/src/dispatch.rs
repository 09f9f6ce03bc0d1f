//! The dispatcher: one per queue, per durable subscription and per non-durable topic
//! subscriber. It pages messages in from the store's batch cursor into a bounded window, hands
//! them to consumers within their prefetch, and tracks each message from delivery until it is
//! acked, redelivered or dead-lettered.
//!
//! Messages reach the window only through the store's batch cursor (`recover_next`), whose
//! contract is that nothing is returned twice or skipped however adds and acks interleave: so a
//! producer's send only has to say "the store has more", and the window never duplicates or
//! loses a message. Non-persistent messages, which never touch the store, go straight into the
//! window. The window holds at most `max_page_size` store messages and pages in only while the
//! broker's memory is under its limit and someone is consuming: a queue deeper than memory stays
//! in the store.
//!
//! A non-durable topic subscriber that falls behind has at most `max_pending_non_durable`
//! messages waiting; past that the broker drops the oldest message of the lowest priority
//! waiting (ActiveMQ's `pendingMessageLimitStrategy` with an
//! `OldestMessageWithLowestPriorityEvictionStrategy`), counts it for the topic (on `/metrics`)
//! and logs once per episode of falling behind, not once per message.
//!
//! On a queue, messages with a `JMSXGroupID` go to the group's owner only (see [`groups`]),
//! and an exclusive consumer, when there is one, gets every message. A group or an exclusive
//! role moving to another consumer waits until the messages its old owner still had in flight
//! are back (acked, or returned by the closing session): so the new owner gets them first, in
//! order. ActiveMQ redelivers those itself on consumer close; here it is the session's close
//! that returns them.
//!
//! A network bridge's consumer on a queue is not given the messages that came from the broker
//! it forwards to (their broker path holds it): that stops loops. Under the queue's
//! `replay_when_no_consumers` policy it is, once the queue has no consumer here other than
//! bridges' and `replay_delay` after the message came into this dispatcher's window (ActiveMQ's
//! `ConditionalNetworkBridgeFilter`, which counts from the message's arrival at the broker;
//! the two differ only for a message paged in later, or again after a restart).
//!
//! All state sits behind one short synchronous lock, never held across an await; the awaits
//! (store reads, acks, dead-lettering) run in the dispatcher's own task or in the caller's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use store_api::{
    Destination, Message, MessageId, QueueStore, StoreError, SubscriptionKey, TopicStore, TxOp,
};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use crate::core::Core;
use crate::error::{BrokerError, Result};
use crate::policy::DestinationPolicy;
use crate::selector::Selector;
use crate::session::AckWait;

mod groups;
mod spool;

pub(crate) use spool::SpoolTicket;

/// The property a message's broker path is kept in while it is in this broker (OpenWire carries
/// it in `Message.brokerPath`): the ids of the brokers network bridges forwarded it from,
/// comma-separated, oldest first.
pub const BROKER_PATH_PROPERTY: &str = "JMSXBrokerPath";

/// What a consumer is to a network of brokers.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkRole {
    /// A network bridge's consumer, not one of this broker's own clients.
    pub network: bool,
    /// The broker a bridge's consumer forwards to (see the module docs).
    pub forwards_to: Option<Arc<str>>,
}

/// Whether `message` came through broker `id` (its broker path holds it).
fn came_through(message: &Message, id: &str) -> bool {
    matches!(message.properties.get(BROKER_PATH_PROPERTY),
        Some(store_api::Value::String(path)) if path.split(',').any(|b| b == id))
}

/// One dispatch pass's view of the replay rule.
struct Replay {
    /// The queue's `replay_when_no_consumers`, and no consumer here but bridges'.
    open: bool,
    delay_ms: i64,
    now: i64,
    /// The earliest time a message held back only by `replay_delay` may go (ms).
    next_due: std::cell::Cell<Option<i64>>,
}

impl Replay {
    /// Whether consumer `s` may take `message`, in the window since `paged_ms`.
    fn permits(&self, s: &Slot, message: &Message, paged_ms: i64) -> bool {
        let Some(remote) = &s.role.forwards_to else {
            return true;
        };
        if !came_through(message, remote) {
            return true;
        }
        if !self.open {
            return false;
        }
        let due = paged_ms.saturating_add(self.delay_ms);
        if due <= self.now {
            return true;
        }
        let next = self.next_due.get().map_or(due, |n| n.min(due));
        self.next_due.set(Some(next));
        false
    }
}

/// The property the first message of a group a consumer gets carries (ActiveMQ's name).
pub const GROUP_FIRST_FOR_CONSUMER: &str = "JMSXGroupFirstForConsumer";

/// Where a dispatcher's persistent messages come from.
pub(crate) enum Source {
    Queue(Arc<dyn QueueStore>),
    Durable {
        store: Arc<dyn TopicStore>,
        key: SubscriptionKey,
    },
    /// A non-durable topic subscriber: memory only, at most `max_pending` waiting.
    Memory {
        max_pending: usize,
        /// The topic's count of messages dropped for slow subscribers (outlives this one).
        dropped: Arc<AtomicU64>,
    },
    /// A temporary queue (`core::temporary`): queue semantics, every message held in memory
    /// only, persistent or not, as ActiveMQ keeps a temporary queue without a store.
    Temporary,
}

/// A message handed to a consumer.
pub(crate) struct Delivery {
    pub message: Arc<Message>,
    pub dispatcher: Arc<Dispatcher>,
}

/// Window order: priority high to low, then arrival; with `prioritized_messages` off every
/// message counts as the same priority, so arrival alone decides (see `Dispatcher::window_key`).
type WindowKey = (std::cmp::Reverse<u8>, u64);

struct Entry {
    message: Arc<Message>,
    arrival: u64,
    size: u64,
    /// When it came into the window (ms), for `replay_delay`.
    paged_ms: i64,
}

struct InFlight {
    entry: Entry,
    /// The consumer it was handed to: a group or exclusive role does not move on while a
    /// departed owner's messages are still out.
    consumer: u64,
}

/// How many messages a consumer may be handed before it takes them.
#[derive(Clone)]
pub(crate) enum Flow {
    /// Up to this many handed over and not yet received: a buffer in front of the application
    /// (an in-process consumer, or a door whose client acks each message as it is sent).
    Prefetch(u32),
    /// Only what its protocol door has granted (prefetch 0): the door grants one credit per
    /// message its client has room for, so nothing waits for it in a hidden buffer while
    /// another consumer could take it (ActiveMQ's prefetch counts messages dispatched to the
    /// client and not yet acked; OpenWire's pull is one credit at a time).
    Credit(Arc<Credit>),
}

impl Flow {
    /// `Prefetch(prefetch)`, or fresh credit for prefetch 0.
    pub(crate) fn for_prefetch(prefetch: u32) -> Flow {
        if prefetch == 0 {
            Flow::Credit(Arc::new(Credit::default()))
        } else {
            Flow::Prefetch(prefetch)
        }
    }

    pub(crate) fn credit(&self) -> Option<&Arc<Credit>> {
        match self {
            Flow::Credit(c) => Some(c),
            Flow::Prefetch(_) => None,
        }
    }
}

/// A consumer's credit, shared by every dispatcher it is registered on (a wildcard consumer
/// spends one credit for a message from whichever queue hands it over first).
#[derive(Debug, Default)]
pub(crate) struct Credit(AtomicU32);

impl Credit {
    fn available(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// Spends one credit; false when none is left (another dispatcher took the last one).
    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn grant(&self, n: u32) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_add(n))
            });
    }

    /// Takes back up to `n` unspent credits; returns how many it took back.
    pub(crate) fn revoke(&self, n: u32) -> u32 {
        match self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(n))
            }) {
            Ok(before) | Err(before) => before.min(n),
        }
    }
}

struct Slot {
    id: u64,
    selector: Option<Arc<Selector>>,
    flow: Flow,
    /// Handed over and not yet received by the application.
    outstanding: u32,
    /// ActiveMQ's exclusive consumer: while one is registered it gets every message.
    exclusive: bool,
    role: NetworkRole,
    tx: mpsc::UnboundedSender<Delivery>,
}

impl Slot {
    fn has_room(&self) -> bool {
        match &self.flow {
            Flow::Prefetch(p) => self.outstanding < *p,
            Flow::Credit(c) => c.available(),
        }
    }

    /// Counts a message handed over; false (and nothing counted) when its credit ran out.
    fn take(&mut self) -> bool {
        if let Flow::Credit(c) = &self.flow
            && !c.take()
        {
            return false;
        }
        self.outstanding += 1;
        true
    }

    /// Undoes `take` for a message that was not handed over after all.
    fn untake(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Flow::Credit(c) = &self.flow {
            c.grant(1);
        }
    }
}

#[derive(Default)]
struct State {
    window: BTreeMap<WindowKey, Entry>,
    /// Message id → window key, to find and dedupe window entries.
    index: HashMap<MessageId, WindowKey>,
    /// Store-backed messages in the window (non-persistent ones are not paged).
    paged: usize,
    in_flight: HashMap<MessageId, InFlight>,
    /// Acked by a prepared XA transaction: not to be delivered until it ends.
    held: HashSet<MessageId>,
    /// Held messages the cursor returned meanwhile.
    held_entries: HashMap<MessageId, Entry>,
    consumers: Vec<Slot>,
    next_consumer: usize,
    /// Message group owners (queues only).
    groups: groups::GroupMap,
    store_more: bool,
    /// Bumped when the store cursor is reset: a fetch begun before is discarded.
    generation: u64,
    reset_cursor: bool,
    slow: SlowEpisode,
    /// Messages in the temp store, in window order (see `spool`).
    spool: BTreeMap<WindowKey, Arc<crate::temp_store::SpooledRecord>>,
    /// A page-in from the temp store is under way.
    spool_reading: bool,
    closed: bool,
}

/// An episode of a slow subscriber: from its first dropped message until its window is back
/// to half the limit. One warning starts it and one line ends it, however many are dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SlowEpisode {
    dropping: bool,
    dropped: u64,
}

impl SlowEpisode {
    /// Counts a dropped message; true when it starts an episode.
    fn dropped_one(&mut self) -> bool {
        self.dropped += 1;
        !std::mem::replace(&mut self.dropping, true)
    }

    /// With `waiting` messages in the window: the number dropped in the episode when this
    /// ends it.
    fn caught_up(&mut self, waiting: usize, max_pending: usize) -> Option<u64> {
        if !self.dropping || waiting > max_pending / 2 {
            return None;
        }
        let dropped = self.dropped;
        *self = SlowEpisode::default();
        Some(dropped)
    }
}

/// The key of the message to drop from a window over its limit: the oldest of the lowest
/// priority (the window is ordered by priority high to low, then arrival).
fn eviction_victim(window: &BTreeMap<WindowKey, Entry>) -> Option<WindowKey> {
    let (lowest, _) = *window.keys().next_back()?;
    window.range((lowest, 0)..).next().map(|(k, _)| *k)
}

#[derive(Default)]
pub(crate) struct Counters {
    pub enqueued: AtomicU64,
    pub dequeued: AtomicU64,
    pub expired: AtomicU64,
    pub dead_lettered: AtomicU64,
}

pub(crate) struct Dispatcher {
    pub destination: Destination,
    pub source: Source,
    core: Weak<Core>,
    state: Mutex<State>,
    wake: Notify,
    pub counters: Counters,
    /// Its `[policy]` with its `[[policy.entries]]` applied.
    pub(crate) policy: DestinationPolicy,
    /// The queue's own memory limit (policy `memory_limit_bytes`), charged beside the
    /// broker's for every byte this dispatcher holds.
    pub(crate) memory: Option<Arc<crate::memory::MemoryUsage>>,
    /// When a message or a consumer last came or went (ms), for `gc_inactive_destinations`.
    last_active: AtomicI64,
    /// Sends on their way to the temp store for it (see `spool`).
    spooling: std::sync::atomic::AtomicUsize,
    /// The policy's `prioritized_messages`, as the order the store cursor is read in.
    order: store_api::DeliveryOrder,
}

/// Work found under the lock, done after it is released.
#[derive(Default)]
struct Work {
    expired: Vec<Entry>,
    /// Messages a subscription's selector does not match: acked for it at once.
    unmatched: Vec<Entry>,
    /// A message held back by `replay_delay` may go then (ms): the pass is run again.
    retry_at_ms: Option<i64>,
}

impl Dispatcher {
    pub(crate) fn start(
        core: &Arc<Core>,
        destination: Destination,
        source: Source,
    ) -> Arc<Dispatcher> {
        let store_backed = !matches!(source, Source::Memory { .. } | Source::Temporary);
        let destination_of_policy = destination.clone();
        let policy = core.policies.resolve(&destination_of_policy);
        let policy_order = policy.delivery_order();
        let memory = policy
            .memory_limit
            .map(|limit| Arc::new(crate::memory::MemoryUsage::new(limit)));
        let d = Arc::new(Dispatcher {
            destination,
            source,
            core: Arc::downgrade(core),
            state: Mutex::new(State {
                store_more: store_backed,
                ..State::default()
            }),
            wake: Notify::new(),
            counters: Counters::default(),
            policy,
            memory,
            last_active: AtomicI64::new(crate::core::now_ms()),
            spooling: std::sync::atomic::AtomicUsize::new(0),
            order: policy_order,
        });
        tokio::spawn(Arc::clone(&d).run());
        d
    }

    pub(crate) fn subscription(&self) -> Option<&SubscriptionKey> {
        match &self.source {
            Source::Durable { key, .. } => Some(key),
            _ => None,
        }
    }

    fn label(&self) -> String {
        match &self.source {
            Source::Durable { key, .. } => format!("{} subscription {key}", self.destination),
            Source::Memory { .. } => format!("{} subscriber", self.destination),
            Source::Queue(_) => self.destination.to_string(),
            Source::Temporary => format!("temporary {}", self.destination),
        }
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.state.lock().consumers.len()
    }

    /// Messages held in memory only (they are not in the store's counts): the non-persistent
    /// ones, or all of them for a dispatcher without a store.
    pub(crate) fn non_persistent(&self) -> u64 {
        let memory_only = matches!(self.source, Source::Memory { .. } | Source::Temporary);
        let st = self.state.lock();
        let w = st
            .window
            .values()
            .filter(|e| memory_only || !e.message.persistent)
            .count();
        let f = st
            .in_flight
            .values()
            .filter(|e| memory_only || !e.entry.message.persistent)
            .count();
        (w + f + st.spool.len()) as u64
    }

    /// The messages held in memory only (those [`Dispatcher::non_persistent`] counts), waiting
    /// or delivered and not yet acked, in window order: what a queue browser adds to what the
    /// store has. Bounded as the window and the in-flight set are, by the memory limit.
    pub(crate) fn memory_messages(&self) -> Vec<Arc<Message>> {
        let memory_only = matches!(self.source, Source::Memory { .. } | Source::Temporary);
        let st = self.state.lock();
        st.window
            .values()
            .map(|e| &e.message)
            .chain(st.in_flight.values().map(|f| &f.entry.message))
            .filter(|m| memory_only || !m.persistent)
            .cloned()
            .collect()
    }

    /// The records of the messages spooled to the temp store, in window order: a snapshot for
    /// a queue browser (holding them keeps their records until it has read them).
    pub(crate) fn spooled_records(&self) -> Vec<Arc<crate::temp_store::SpooledRecord>> {
        self.state.lock().spool.values().cloned().collect()
    }

    pub(crate) fn add_consumer(
        &self,
        id: u64,
        selector: Option<Arc<Selector>>,
        flow: Flow,
        exclusive: bool,
        role: NetworkRole,
    ) -> mpsc::UnboundedReceiver<Delivery> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.add_consumer_sender(id, selector, flow, exclusive, role, tx);
        rx
    }

    /// Registers a consumer whose deliveries go to `tx`, a channel it may share with other
    /// dispatchers (a wildcard consumer on several queues).
    pub(crate) fn add_consumer_sender(
        &self,
        id: u64,
        selector: Option<Arc<Selector>>,
        flow: Flow,
        exclusive: bool,
        role: NetworkRole,
        tx: mpsc::UnboundedSender<Delivery>,
    ) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        st.consumers.push(Slot {
            id,
            selector,
            // A prefetch of 0 is credit, never a consumer that can take nothing.
            flow: match flow {
                Flow::Prefetch(p) => Flow::Prefetch(p.max(1)),
                credit => credit,
            },
            outstanding: 0,
            exclusive,
            role,
            tx,
        });
        drop(st);
        self.touch();
        self.wake.notify_one();
    }

    pub(crate) fn remove_consumer(&self, id: u64) {
        self.touch();
        let mut st = self.state.lock();
        st.consumers.retain(|s| s.id != id);
        st.groups.remove_consumer(id);
        if st.consumers.is_empty() && matches!(self.source, Source::Durable { .. }) {
            // An inactive durable subscription keeps nothing in memory: drop the paged-in
            // window and rewind the cursor; the store still has every message pending.
            let persistent: Vec<WindowKey> = st
                .window
                .iter()
                .filter(|(_, e)| e.message.persistent)
                .map(|(k, _)| *k)
                .collect();
            let mut freed = 0;
            for k in persistent {
                if let Some(e) = st.window.remove(&k) {
                    st.index.remove(&e.message.id);
                    freed += e.size;
                }
            }
            // Non-persistent messages are not kept for an absent subscriber.
            let rest: Vec<Entry> = std::mem::take(&mut st.window).into_values().collect();
            st.index.clear();
            let spooled = std::mem::take(&mut st.spool);
            for e in rest {
                freed += e.size;
            }
            st.paged = 0;
            st.generation += 1;
            st.reset_cursor = true;
            st.store_more = true;
            drop(st);
            drop(spooled);
            self.release(freed);
            return;
        }
        drop(st);
        // The last consumer of its own gone, a bridge may now replay (replay_when_no_consumers).
        self.wake.notify_one();
    }

    /// The store has new messages for this dispatcher.
    pub(crate) fn stored(&self) {
        let anyone = {
            let mut st = self.state.lock();
            st.store_more = true;
            !st.consumers.is_empty()
        };
        self.touch();
        // With no consumer there is nothing to page in or dispatch, and the consumer that
        // comes wakes the task itself (`store_more` tells it there is something to page).
        // Skipping the wake-up spares a producer-only queue a task switch per send, and the
        // runtime the wake of an idle worker that would find nothing to do.
        if anyone {
            self.wake.notify_one();
        }
    }

    /// A message held in memory only, straight into the window: non-persistent, or any
    /// message for a non-durable topic subscriber. A subscriber over its pending limit loses
    /// the oldest of its lowest-priority waiting messages.
    pub(crate) fn push(&self, message: Arc<Message>) {
        let size = message.size();
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        if matches!(self.source, Source::Durable { .. }) && st.consumers.is_empty() {
            return;
        }
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let arrival = core.next_arrival();
        let key = self.window_key(&message, arrival);
        st.index.insert(message.id.clone(), key);
        st.window.insert(
            key,
            Entry {
                message,
                arrival,
                size,
                paged_ms: crate::core::now_ms(),
            },
        );
        self.charge(&core, size);
        self.pushed(&core, st);
    }

    /// After a message joined the window ([`Self::push`]) or the temp store
    /// ([`Self::push_spooled`]), with the lock `st` still held: a subscriber over its pending
    /// limit sheds under the lock, then the lock goes, the message is counted and the task
    /// woken.
    fn pushed(&self, core: &Arc<crate::core::Core>, mut st: parking_lot::MutexGuard<'_, State>) {
        let (freed, evicted, slow_started) = self.evict_over_limit(&mut st);
        drop(st);
        drop(evicted);
        // Outside the lock: the advisory's topic may have this very subscriber (`>`), whose
        // fan-out takes the topic's lock and then this one.
        if slow_started {
            core.advise(crate::core::advisory::Advisory::SlowConsumer {
                destination: &self.destination,
            });
        }
        self.release(freed);
        self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
        self.touch();
        self.wake.notify_one();
    }

    /// A consumer's credit grew: look for messages for it.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The application took a message off a consumer: its prefetch has room again.
    pub(crate) fn received(&self, consumer: u64) {
        let mut st = self.state.lock();
        if let Some(s) = st.consumers.iter_mut().find(|s| s.id == consumer) {
            s.outstanding = s.outstanding.saturating_sub(1);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The store operation that acks `message` for this dispatcher, inside a transaction.
    /// `None` when there is nothing to do in the store (a non-persistent message).
    pub(crate) fn ack_op(&self, message: &Message) -> Option<TxOp> {
        if !message.persistent {
            return None;
        }
        match &self.source {
            Source::Queue(_) => Some(TxOp::QueueAck {
                destination: self.destination.clone(),
                id: message.id.clone(),
            }),
            Source::Durable { key, .. } => Some(TxOp::TopicAck {
                destination: self.destination.clone(),
                subscription: key.clone(),
                id: message.id.clone(),
            }),
            Source::Memory { .. } | Source::Temporary => None,
        }
    }

    /// Acks in the store, outside a transaction. A message already gone (expired meanwhile,
    /// purged) counts as acked.
    pub(crate) async fn store_ack(&self, message: &Message, wait: AckWait) -> Result<()> {
        if !message.persistent {
            return Ok(());
        }
        let r = match (&self.source, wait) {
            (Source::Queue(q), AckWait::Receipt) => q.remove(&message.id).await,
            (Source::Queue(q), AckWait::NoReceipt) => q.remove_unwaited(&message.id).await,
            (Source::Durable { store, key }, AckWait::Receipt) => {
                store.acknowledge(key, &message.id).await
            }
            (Source::Durable { store, key }, AckWait::NoReceipt) => {
                store.acknowledge_unwaited(key, &message.id).await
            }
            (Source::Memory { .. } | Source::Temporary, _) => Ok(()),
        };
        match r {
            Err(StoreError::NotFound(_)) => Ok(()),
            other => Ok(other?),
        }
    }

    /// Acks and forgets a delivered message. An ack a full disk refuses is held by the core
    /// and written once the store takes writes again (see `core::store_health`).
    pub(crate) async fn ack(self: &Arc<Self>, message: &Message, wait: AckWait) -> Result<()> {
        if let Err(e) = self.store_ack(message, wait).await {
            let deferred = match (&e, self.core.upgrade()) {
                (BrokerError::Store(se), Some(core)) => core.health.defer_ack(se, self, message),
                _ => false,
            };
            if !deferred {
                return Err(e);
            }
        }
        self.settle(&message.id);
        Ok(())
    }

    /// Forgets a delivered message whose ack the store has applied.
    pub(crate) fn settle(&self, id: &MessageId) {
        let gone = self.state.lock().in_flight.remove(id);
        if let Some(f) = gone {
            self.counters.dequeued.fetch_add(1, Ordering::Relaxed);
            self.release(f.entry.size);
            // A group or exclusive role may have been waiting for this one to be settled.
            if f.entry.message.group_id.is_some()
                || self.state.lock().consumers.iter().any(|s| s.exclusive)
            {
                self.wake.notify_one();
            }
        }
    }

    /// Puts a delivered, unacked message back for another delivery, counting the attempt; past
    /// the maximum it goes to the dead letter queue instead.
    pub(crate) async fn redeliver(self: &Arc<Self>, id: &MessageId) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let max = self.policy.maximum_redeliveries;
        let entry = {
            let mut st = self.state.lock();
            let Some(mut f) = st.in_flight.remove(id) else {
                return;
            };
            Arc::make_mut(&mut f.entry.message).redelivery_count += 1;
            let over = f.entry.message.redelivery_count > max && !self.is_dead_letter_queue(&core);
            if !over && !st.closed {
                let delay = self
                    .policy
                    .redelivery_delay(f.entry.message.redelivery_count);
                if !delay.is_zero() {
                    // Out of the window until its delay has passed (its memory stays
                    // counted), while the messages behind it go on.
                    drop(st);
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        me.requeue(f.entry);
                    });
                    return;
                }
                let key = self.window_key(&f.entry.message, f.entry.arrival);
                st.index.insert(f.entry.message.id.clone(), key);
                st.window.insert(key, f.entry);
                drop(st);
                self.wake.notify_one();
                return;
            }
            if st.closed {
                drop(st);
                self.release(f.entry.size);
                return;
            }
            f.entry
        };
        let cause = format!(
            "delivery failed {} times (maximum_redeliveries is {max})",
            entry.message.redelivery_count
        );
        core.dead_letter(self, &entry.message, &cause).await;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.release(entry.size);
    }

    /// A delivered message its consumer's client gave up on (OpenWire's poison ack: the
    /// client's own redelivery policy is exhausted) goes to the dead letter queue at once,
    /// whatever its count here, with the client's `cause`, as ActiveMQ does. A message of a
    /// dead letter queue itself is redelivered instead, so that it is never lost.
    pub(crate) async fn poison(self: &Arc<Self>, id: &MessageId, cause: &str) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        if self.is_dead_letter_queue(&core) {
            return self.redeliver(id).await;
        }
        let Some((st, entry)) = self.take_in_flight(id) else {
            return;
        };
        drop(st);
        core.dead_letter(self, &entry.message, cause).await;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.release(entry.size);
    }

    fn is_dead_letter_queue(&self, core: &Core) -> bool {
        core.policies.is_dead_letter_queue(&self.destination)
    }

    /// A redelivery whose delay has passed goes back into the window, unless the dispatcher
    /// closed, or (a durable subscription left alone) rewound to the store, which has it, or
    /// the message came back by another way meanwhile.
    fn requeue(&self, entry: Entry) {
        let mut st = self.state.lock();
        let rewound = matches!(self.source, Source::Durable { .. }) && st.consumers.is_empty();
        let id = &entry.message.id;
        if st.closed || rewound || st.index.contains_key(id) || st.in_flight.contains_key(id) {
            drop(st);
            self.release(entry.size);
            return;
        }
        let key = self.window_key(&entry.message, entry.arrival);
        st.index.insert(id.clone(), key);
        st.window.insert(key, entry);
        drop(st);
        self.touch();
        self.wake.notify_one();
    }

    /// A message's place in the window. Arrival is the order it came into this dispatcher,
    /// which for stored messages is the order the store cursor returned them: by priority,
    /// or (with `prioritized_messages` off) by sequence, so that the window keeps the store's
    /// order either way. The message itself keeps its priority.
    fn window_key(&self, message: &Message, arrival: u64) -> WindowKey {
        self.window_key_of(message.priority, arrival)
    }

    /// [`Self::window_key`] from the priority alone (a spooled message's record keeps it).
    pub(super) fn window_key_of(&self, priority: u8, arrival: u64) -> WindowKey {
        let priority = match self.order {
            store_api::DeliveryOrder::Priority => priority,
            store_api::DeliveryOrder::Arrival => store_api::DEFAULT_PRIORITY,
        };
        (std::cmp::Reverse(priority), arrival)
    }

    fn touch(&self) {
        self.last_active
            .store(crate::core::now_ms(), Ordering::Relaxed);
    }

    /// With no consumer, nothing waiting or out and nothing new for `idle_ms`: a candidate
    /// for `gc_inactive_destinations` (its store is checked by the caller).
    pub(crate) fn is_inactive(&self, now: i64, idle: Duration) -> bool {
        let st = self.state.lock();
        st.consumers.is_empty()
            && st.window.is_empty()
            && st.in_flight.is_empty()
            && st.held.is_empty()
            && st.spool.is_empty()
            && now.saturating_sub(self.last_active.load(Ordering::Relaxed))
                >= i64::try_from(idle.as_millis()).unwrap_or(i64::MAX)
    }

    /// Returns a message a consumer never handed to the application (it closed with it
    /// prefetched): not a redelivery.
    pub(crate) fn give_back(&self, id: &MessageId) {
        let Some((mut st, entry)) = self.take_in_flight(id) else {
            return;
        };
        let key = self.window_key(&entry.message, entry.arrival);
        st.index.insert(entry.message.id.clone(), key);
        st.window.insert(key, entry);
        drop(st);
        self.wake.notify_one();
    }

    /// Takes delivered message `id` out of the in-flight set, with the state still locked;
    /// `None` when it is not there, or when the dispatcher has closed (its memory is given
    /// back then: nothing more will happen to it here).
    fn take_in_flight(
        &self,
        id: &MessageId,
    ) -> Option<(parking_lot::MutexGuard<'_, State>, Entry)> {
        let mut st = self.state.lock();
        let f = st.in_flight.remove(id)?;
        if st.closed {
            drop(st);
            self.release(f.entry.size);
            return None;
        }
        Some((st, f.entry))
    }

    /// A message delivered and found expired on its way to the application.
    pub(crate) async fn expire_delivered(&self, id: &MessageId) {
        let f = self.state.lock().in_flight.remove(id);
        if let Some(f) = f {
            self.expire(f.entry).await;
        }
    }

    /// Marks a message as acked by a prepared XA transaction found at recovery.
    pub(crate) fn hold(&self, id: MessageId) {
        let mut st = self.state.lock();
        if let Some(key) = st.index.remove(&id)
            && let Some(e) = st.window.remove(&key)
        {
            st.paged = st.paged.saturating_sub(1);
            st.held_entries.insert(id.clone(), e);
        }
        st.held.insert(id);
    }

    /// The prepared transaction holding `id` ended: committed (the message is gone) or rolled
    /// back (it can be delivered again).
    pub(crate) fn unhold(&self, id: &MessageId, committed: bool) {
        let mut st = self.state.lock();
        st.held.remove(id);
        let Some(e) = st.held_entries.remove(id) else {
            return;
        };
        if committed || st.closed {
            drop(st);
            if committed {
                self.counters.dequeued.fetch_add(1, Ordering::Relaxed);
            }
            self.release(e.size);
            return;
        }
        let key = self.window_key(&e.message, e.arrival);
        st.index.insert(e.message.id.clone(), key);
        st.window.insert(key, e);
        st.paged += 1;
        drop(st);
        self.wake.notify_one();
    }

    /// Drops every waiting message (a purge).
    pub(crate) fn clear_window(&self) -> u64 {
        let mut st = self.state.lock();
        let window = std::mem::take(&mut st.window);
        let spooled = std::mem::take(&mut st.spool);
        st.index.clear();
        st.paged = 0;
        drop(st);
        let n = (window.len() + spooled.len()) as u64;
        drop(spooled);
        self.release(window.values().map(|e| e.size).sum());
        n
    }

    /// True when a persistent message was handed to a consumer and not yet acknowledged.
    pub(crate) fn has_unacked_deliveries(&self) -> bool {
        self.state
            .lock()
            .in_flight
            .values()
            .any(|f| f.entry.message.persistent)
    }

    /// True when the message is waiting, in flight or held here.
    pub(crate) fn is_tracked(&self, id: &MessageId) -> bool {
        let st = self.state.lock();
        st.index.contains_key(id) || st.in_flight.contains_key(id) || st.held.contains(id)
    }

    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.consumers.clear();
        let mut freed: u64 = st.window.values().map(|e| e.size).sum();
        freed += st.in_flight.values().map(|f| f.entry.size).sum::<u64>();
        freed += st.held_entries.values().map(|e| e.size).sum::<u64>();
        st.window.clear();
        st.index.clear();
        st.in_flight.clear();
        st.held_entries.clear();
        let spooled = std::mem::take(&mut st.spool);
        drop(st);
        drop(spooled);
        self.release(freed);
        self.wake.notify_one();
    }

    fn release(&self, bytes: u64) {
        if bytes > 0
            && let Some(core) = self.core.upgrade()
        {
            core.memory.release(bytes);
        }
        if bytes > 0
            && let Some(m) = &self.memory
        {
            m.release(bytes);
        }
    }

    /// Counts `bytes` held here against the broker's memory and the queue's own limit.
    fn charge(&self, core: &Core, bytes: u64) {
        core.memory.add(bytes);
        if let Some(m) = &self.memory {
            m.add(bytes);
        }
    }

    /// Whether this queue's own limit (if any) has room.
    fn has_room(&self) -> bool {
        self.memory.as_ref().is_none_or(|m| m.has_room())
    }

    /// Waits until this queue's own limit has room, as a send at the broker's limit does.
    pub(crate) async fn wait_for_room(&self, core: &Core) -> crate::error::Result<()> {
        let Some(m) = &self.memory else {
            return Ok(());
        };
        core.wait_for_room(m, || {
            crate::error::BrokerError::ResourceLimit(format!(
                "{} is full ({} of its memory_limit_bytes {} used by waiting messages)",
                self.destination,
                m.used(),
                m.limit()
            ))
        })
        .await
    }

    async fn run(self: Arc<Self>) {
        loop {
            let Some(core) = self.core.upgrade() else {
                return;
            };
            let (work, fetch, reset, memory_blocked, unspool) = {
                let mut st = self.state.lock();
                if st.closed {
                    return;
                }
                let work = self.dispatch(&mut st);
                let page = core.config.limits.max_page_size;
                let memory_ok = core.memory.has_room() && self.has_room();
                let wants = st.store_more && !st.consumers.is_empty() && st.paged < page;
                let fetch = if wants && memory_ok {
                    st.store_more = false;
                    Some((page - st.paged, st.generation))
                } else {
                    None
                };
                let reset = std::mem::take(&mut st.reset_cursor);
                let room = core
                    .memory
                    .room()
                    .min(self.memory.as_ref().map_or(u64::MAX, |m| m.room()));
                let (unspool, spool_blocked) = spool::take_batch(&mut st, page, room);
                (
                    work,
                    fetch,
                    reset,
                    (wants && !memory_ok) || spool_blocked,
                    unspool,
                )
            };
            let busy = !work.expired.is_empty() || !work.unmatched.is_empty();
            let retry_at = work.retry_at_ms;
            for e in work.expired {
                self.expire(e).await;
            }
            for e in work.unmatched {
                if let Err(err) = self.store_ack(&e.message, AckWait::NoReceipt).await {
                    warn!(subscription = %self.label(), "cannot ack a message its selector does not match: {err}");
                }
                self.counters.dequeued.fetch_add(1, Ordering::Relaxed);
                self.release(e.size);
            }
            if reset
                && let Source::Durable { store, key } = &self.source
                && let Err(e) = store.reset_cursor(key).await
            {
                warn!(subscription = %self.label(), "cannot rewind the store cursor: {e}");
            }
            let unspooled = !unspool.is_empty();
            if unspooled {
                self.page_in_spool(&core, unspool).await;
            }
            if let Some((max, generation)) = fetch {
                self.fetch(&core, max, generation).await;
                continue;
            }
            if unspooled {
                continue;
            }
            if busy {
                continue;
            }
            drop(core);
            if memory_blocked {
                let _ = tokio::time::timeout(Duration::from_millis(50), self.wake.notified()).await;
            } else if let Some(at) = retry_at {
                let wait = u64::try_from(at - crate::core::now_ms())
                    .unwrap_or(0)
                    .max(1);
                let _ =
                    tokio::time::timeout(Duration::from_millis(wait), self.wake.notified()).await;
            } else {
                self.wake.notified().await;
            }
        }
    }

    async fn fetch(&self, core: &Core, max: usize, generation: u64) {
        let batch = match &self.source {
            Source::Queue(q) => q.recover_next_ordered(self.order, max).await,
            Source::Durable { store, key } => {
                store.recover_next_ordered(key, self.order, max).await
            }
            Source::Memory { .. } | Source::Temporary => Ok(Vec::new()),
        };
        let batch = match batch {
            Ok(b) => b,
            Err(StoreError::Closed) => return,
            Err(e) => {
                warn!(destination = %self.label(), "cannot page messages in from the store (retrying): {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.state.lock().store_more = true;
                return;
            }
        };
        let full = batch.len() == max;
        let mut st = self.state.lock();
        if st.closed || st.generation != generation {
            st.store_more = true;
            return;
        }
        if full {
            st.store_more = true;
        }
        let mut added = 0;
        for mut m in batch {
            if st.index.contains_key(&m.id) || st.in_flight.contains_key(&m.id) {
                continue;
            }
            if core.takeover_ms.is_some_and(|t| m.timestamp < t) && m.redelivery_count == 0 {
                m.redelivery_count = 1;
            }
            let size = m.size();
            added += size;
            let entry = Entry {
                message: Arc::new(m),
                arrival: core.next_arrival(),
                size,
                paged_ms: crate::core::now_ms(),
            };
            if st.held.contains(&entry.message.id) {
                st.held_entries.insert(entry.message.id.clone(), entry);
                continue;
            }
            let key = self.window_key(&entry.message, entry.arrival);
            st.index.insert(entry.message.id.clone(), key);
            st.window.insert(key, entry);
            st.paged += 1;
        }
        drop(st);
        self.charge(core, added);
    }

    /// Hands waiting messages to consumers with room, in window order. Runs under the lock.
    fn dispatch(self: &Arc<Self>, st: &mut State) -> Work {
        let mut work = Work::default();
        if st.window.is_empty() || !st.consumers.iter().any(Slot::has_room) {
            return work;
        }
        let now = crate::core::now_ms();
        let single = !matches!(self.source, Source::Queue(_) | Source::Temporary);
        let replay = Replay {
            open: self.policy.replay_when_no_consumers
                && st.consumers.iter().all(|s| s.role.network),
            delay_ms: i64::try_from(self.policy.replay_delay.as_millis()).unwrap_or(i64::MAX),
            now,
            next_due: std::cell::Cell::new(None),
        };
        let keys: Vec<WindowKey> = st.window.keys().copied().collect();
        // Computed at most once per pass, only when a group or exclusive role has to move.
        let mut orphans: Option<Orphans> = None;
        for key in keys {
            let mut first_for_consumer = false;
            let mut round_robin = true;
            if !st.consumers.iter().any(Slot::has_room) {
                break;
            }
            let Some(entry) = st.window.get(&key) else {
                continue;
            };
            if entry.message.is_expired(now) {
                if let Some(e) = st.window.remove(&key) {
                    st.index.remove(&e.message.id);
                    if e.message.persistent {
                        st.paged = st.paged.saturating_sub(1);
                    }
                    work.expired.push(e);
                }
                continue;
            }
            let n = st.consumers.len();
            let chosen = if single {
                (0..n).map(|i| (st.next_consumer + i) % n).find(|&i| {
                    let s = &st.consumers[i];
                    s.has_room()
                        && s.selector
                            .as_ref()
                            .is_none_or(|sel| sel.matches(&entry.message))
                })
            } else {
                let message = Arc::clone(&entry.message);
                let paged_ms = entry.paged_ms;
                match queue_choice(st, &message, paged_ms, &replay, &mut orphans) {
                    Choice::To {
                        index: i,
                        first,
                        rotate,
                    } => {
                        first_for_consumer = first;
                        round_robin = rotate;
                        Some(i)
                    }
                    // Waits for its owner, or for a departed owner's messages to come back.
                    Choice::Wait => continue,
                    Choice::Nobody => None,
                }
            };
            let Some(i) = chosen else {
                if single && let Some(e) = st.window.remove(&key) {
                    st.index.remove(&e.message.id);
                    if e.message.persistent {
                        st.paged = st.paged.saturating_sub(1);
                    }
                    work.unmatched.push(e);
                }
                continue;
            };
            // Spent before the message leaves the window: a wildcard consumer's last credit
            // may have gone to another queue's dispatcher since `has_room`.
            if !st.consumers[i].take() {
                continue;
            }
            let Some(e) = st.window.remove(&key) else {
                st.consumers[i].untake();
                continue;
            };
            st.index.remove(&e.message.id);
            // The first message of a group a consumer gets says so; only the copy handed
            // over carries it, so a redelivery to another owner is told afresh.
            let message = if first_for_consumer {
                let mut m = Message::clone(&e.message);
                m.properties.insert(
                    GROUP_FIRST_FOR_CONSUMER.to_owned(),
                    store_api::Value::Bool(true),
                );
                Arc::new(m)
            } else {
                Arc::clone(&e.message)
            };
            let delivery = Delivery {
                message,
                dispatcher: Arc::clone(self),
            };
            if st.consumers[i].tx.send(delivery).is_err() {
                // The consumer went away without unregistering: drop it, keep the message.
                debug!(destination = %self.label(), "dropping a vanished consumer");
                let gone = st.consumers.remove(i);
                st.groups.remove_consumer(gone.id);
                st.index.insert(e.message.id.clone(), key);
                st.window.insert(key, e);
                continue;
            }
            if e.message.persistent && !matches!(self.source, Source::Memory { .. }) {
                st.paged = st.paged.saturating_sub(1);
            }
            // Only a round-robin pick moves the turn on: messages going to their group's owner
            // must not skew who gets the next ungrouped one.
            if round_robin {
                st.next_consumer = (i + 1) % n.max(1);
            }
            let consumer = st.consumers[i].id;
            if !single && let Some(g) = &e.message.group_id {
                if e.message.group_seq == -1 {
                    st.groups.close(g);
                } else if first_for_consumer {
                    st.groups.assign(g, consumer);
                }
            }
            st.in_flight
                .insert(e.message.id.clone(), InFlight { entry: e, consumer });
        }
        if let Source::Memory { max_pending, .. } = &self.source
            && let Some(dropped) = st.slow.caught_up(st.window.len(), *max_pending)
        {
            info!(subscriber = %self.label(), dropped, "slow non-durable subscriber caught up");
        }
        work.retry_at_ms = replay.next_due.get();
        work
    }

    async fn expire(&self, entry: Entry) {
        self.counters.expired.fetch_add(1, Ordering::Relaxed);
        let Some(core) = self.core.upgrade() else {
            return;
        };
        core.advise(crate::core::advisory::Advisory::Expired {
            destination: &self.destination,
            message: &entry.message.id,
        });
        let to_dlq = entry.message.persistent
            && self.policy.expired == crate::config::ExpiredPolicy::DeadLetter
            && !self.is_dead_letter_queue(&core);
        if to_dlq {
            core.dead_letter(self, &entry.message, "expired").await;
        } else if let Err(e) = self.store_ack(&entry.message, AckWait::NoReceipt).await {
            warn!(destination = %self.label(), "cannot drop expired message {}: {e}", entry.message.id);
        }
        self.release(entry.size);
    }
}

/// Where a queue's dispatch pass sends one message.
enum Choice {
    /// To this consumer; `first` when it becomes the message's group owner with it, `rotate`
    /// when it was picked in round robin.
    To {
        index: usize,
        first: bool,
        rotate: bool,
    },
    /// Not now: its owner has no room, or a departed owner's messages are still out.
    Wait,
    /// No consumer with room matches it.
    Nobody,
}

/// What consumers that have gone still have in flight: their messages must come back before
/// the roles they held move on.
struct Orphans {
    any: bool,
    groups: HashSet<String>,
}

impl Orphans {
    fn of(st: &State) -> Orphans {
        let mut o = Orphans {
            any: false,
            groups: HashSet::new(),
        };
        for f in st.in_flight.values() {
            if !st.consumers.iter().any(|s| s.id == f.consumer) {
                o.any = true;
                if let Some(g) = &f.entry.message.group_id {
                    o.groups.insert(g.clone());
                }
            }
        }
        o
    }
}

/// A queue's choice of consumer for `message`: the exclusive consumer when there is one (the
/// first registered: ActiveMQ would take the highest priority first, then arrival), else the
/// group's owner, else the next consumer with room in round robin (that then owns the group).
fn queue_choice(
    st: &mut State,
    message: &Message,
    paged_ms: i64,
    replay: &Replay,
    orphans: &mut Option<Orphans>,
) -> Choice {
    let room = |s: &Slot| {
        s.has_room()
            && s.selector.as_ref().is_none_or(|sel| sel.matches(message))
            && replay.permits(s, message, paged_ms)
    };
    let group = message.group_id.as_deref();
    if let Some(i) = st.consumers.iter().position(|s| s.exclusive) {
        if orphans.get_or_insert_with(|| Orphans::of(st)).any {
            return Choice::Wait;
        }
        if !room(&st.consumers[i]) {
            return Choice::Wait;
        }
        let first = group.is_some_and(|g| st.groups.owner(g) != Some(st.consumers[i].id));
        return Choice::To {
            index: i,
            first,
            rotate: false,
        };
    }
    if let Some(g) = group {
        if let Some(owner) = st.groups.owner(g) {
            return match st.consumers.iter().position(|s| s.id == owner) {
                Some(i) if room(&st.consumers[i]) => Choice::To {
                    index: i,
                    first: false,
                    rotate: false,
                },
                _ => Choice::Wait,
            };
        }
        if orphans
            .get_or_insert_with(|| Orphans::of(st))
            .groups
            .contains(g)
        {
            return Choice::Wait;
        }
    }
    let n = st.consumers.len();
    match (0..n)
        .map(|i| (st.next_consumer + i) % n)
        .find(|&i| room(&st.consumers[i]))
    {
        Some(i) => Choice::To {
            index: i,
            first: group.is_some(),
            rotate: true,
        },
        None => Choice::Nobody,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store_api::Body;

    /// A window of messages given as (priority, arrival).
    fn window(messages: &[(u8, u64)]) -> BTreeMap<WindowKey, Entry> {
        messages
            .iter()
            .map(|&(priority, arrival)| {
                let message = Message::new(
                    MessageId::new("p", arrival),
                    Destination::topic("t"),
                    Body::Text("x".into()),
                )
                .with_priority(priority);
                let key = (std::cmp::Reverse(priority), arrival);
                let entry = Entry {
                    message: Arc::new(message),
                    arrival,
                    size: 1,
                    paged_ms: 0,
                };
                (key, entry)
            })
            .collect()
    }

    fn bridge_slot(remote: Option<&str>) -> Slot {
        Slot {
            id: 1,
            selector: None,
            flow: Flow::Prefetch(10),
            outstanding: 0,
            exclusive: false,
            role: NetworkRole {
                network: true,
                forwards_to: remote.map(Arc::from),
            },
            tx: mpsc::unbounded_channel().0,
        }
    }

    #[test]
    fn a_bridge_gets_back_what_came_from_its_broker_only_under_replay_and_after_the_delay() {
        let mut from_a = Message::new(
            MessageId::new("p", 1),
            Destination::queue("q"),
            Body::Text("x".into()),
        );
        from_a.properties.insert(
            BROKER_PATH_PROPERTY.into(),
            store_api::Value::String("ID:c,ID:a".into()),
        );
        let local = Message::new(
            MessageId::new("p", 2),
            Destination::queue("q"),
            Body::Text("x".into()),
        );
        let rule = |open| Replay {
            open,
            delay_ms: 5000,
            now: 10_000,
            next_due: std::cell::Cell::new(None),
        };
        let to_a = bridge_slot(Some("ID:a"));
        let to_b = bridge_slot(Some("ID:b"));
        let closed = rule(false);
        assert!(!closed.permits(&to_a, &from_a, 0), "a loop");
        assert!(closed.permits(&to_b, &from_a, 0));
        assert!(closed.permits(&to_a, &local, 0));
        assert!(closed.permits(&bridge_slot(None), &from_a, 0));
        let open = rule(true);
        assert!(open.permits(&to_a, &from_a, 5000), "arrived 5 s ago");
        assert_eq!(open.next_due.get(), None);
        assert!(!open.permits(&to_a, &from_a, 6000), "just arrived");
        assert!(!open.permits(&to_a, &from_a, 7000));
        assert_eq!(open.next_due.get(), Some(11_000), "the earliest due");
        // "ID:a" is not "ID:ab".
        let mut from_ab = from_a.clone();
        from_ab.properties.insert(
            BROKER_PATH_PROPERTY.into(),
            store_api::Value::String("ID:ab".into()),
        );
        assert!(closed.permits(&to_a, &from_ab, 0));
    }

    #[test]
    fn the_oldest_message_of_the_lowest_priority_is_dropped_first() {
        let mut w = window(&[(4, 0), (9, 1), (0, 2), (4, 3), (0, 4), (9, 5), (4, 6)]);
        let mut order = Vec::new();
        while let Some(k) = eviction_victim(&w) {
            order.push(w.remove(&k).unwrap().arrival);
        }
        assert_eq!(order, [2, 4, 0, 3, 6, 1, 5]);
        assert!(eviction_victim(&w).is_none());
    }

    #[test]
    fn a_slow_episode_is_announced_once_and_ends_at_half_the_limit() {
        let mut slow = SlowEpisode::default();
        assert_eq!(slow.caught_up(0, 10), None, "no episode yet");
        assert!(slow.dropped_one(), "the first drop starts an episode");
        for _ in 0..1000 {
            assert!(!slow.dropped_one(), "later drops do not announce again");
        }
        assert_eq!(slow.caught_up(6, 10), None, "still over half the limit");
        assert_eq!(slow.caught_up(5, 10), Some(1001));
        assert_eq!(slow.caught_up(0, 10), None, "ended once");
        assert!(slow.dropped_one(), "a new episode is announced again");
    }
}
