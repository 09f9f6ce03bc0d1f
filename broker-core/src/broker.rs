//! The embeddable broker: its life cycle (lock, recovery, serving, stop), the registry of
//! destinations, routing of sends, dead-lettering, expiry and XA recovery.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use store_api::{
    Destination, Message, MessageId, PersistenceAdapter, StoreError, SubscriptionInfo,
    SubscriptionKey, TopicStore, TransactionId, TxOp, Value, Xid,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::BrokerConfig;
use crate::dispatch::{Dispatcher, Source};
use crate::error::{BrokerError, Result};
use crate::locker::{self, HeldLock};
use crate::memory::MemoryUsage;
use crate::session::Connection;
use crate::state::BrokerState;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A topic: its store, its durable subscriptions and its connected non-durable subscribers.
pub(crate) struct Topic {
    pub destination: Destination,
    pub store: Arc<dyn TopicStore>,
    pub durable: Mutex<BTreeMap<SubscriptionKey, Arc<Dispatcher>>>,
    pub subscribers: Mutex<Vec<Arc<Dispatcher>>>,
    pub enqueued: AtomicU64,
}

/// One operation a prepared XA transaction holds, to finish when it ends.
pub(crate) enum Pending {
    /// An ack: the message stays out of dispatch until the transaction ends.
    Ack {
        dispatcher: Arc<Dispatcher>,
        id: MessageId,
        /// Found at recovery (held in the dispatcher) rather than delivered in this run.
        recovered: bool,
    },
    /// An add, visible once committed.
    Add(Arc<Message>),
}

/// Everything a serving broker has: one per run between lock and stop.
pub(crate) struct Core {
    pub config: BrokerConfig,
    pub store: Arc<dyn PersistenceAdapter>,
    pub memory: MemoryUsage,
    /// Unique per run: prefixes the ids this run gives connections, producers and transactions.
    pub incarnation: String,
    queues: Mutex<HashMap<Arc<str>, Arc<Dispatcher>>>,
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    pub prepared: Mutex<HashMap<Xid, Vec<Pending>>>,
    pub client_ids: Mutex<HashSet<String>>,
    pub connections: Mutex<Vec<std::sync::Weak<crate::session::ConnectionInner>>>,
    arrival: AtomicU64,
    ids: AtomicU64,
    closed: AtomicBool,
    /// Set when this broker took over from another master: messages stamped before this
    /// instant may have been delivered by it without the ack reaching the store, so they are
    /// delivered flagged as redelivered (counted as one attempt).
    pub takeover_ms: Option<i64>,
    /// When this run started serving.
    pub started_ms: i64,
}

impl Core {
    pub(crate) fn next_arrival(&self) -> u64 {
        self.arrival.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A fresh local transaction id, unique across runs sharing a store (the high bits come
    /// from the start time).
    pub(crate) fn new_local_tx(&self) -> TransactionId {
        TransactionId::Local(self.tx_base() + self.next_id())
    }

    fn tx_base(&self) -> u64 {
        // Milliseconds since the epoch shifted up leave 2^20 ids per millisecond of start.
        ((self.started_ms.max(0) as u64) & ((1 << 43) - 1)) << 20
    }

    /// The dispatcher of a queue, creating the queue if new.
    pub(crate) async fn queue(
        self: &Arc<Self>,
        destination: &Destination,
    ) -> Result<Arc<Dispatcher>> {
        if let Some(d) = self.queues.lock().get(&destination.name) {
            return Ok(Arc::clone(d));
        }
        let store = self.store.queue_store(destination).await?;
        let mut queues = self.queues.lock();
        if let Some(d) = queues.get(&destination.name) {
            return Ok(Arc::clone(d));
        }
        let d = Dispatcher::start(self, destination.clone(), Source::Queue(store));
        queues.insert(destination.name.clone(), Arc::clone(&d));
        Ok(d)
    }

    pub(crate) async fn topic(self: &Arc<Self>, destination: &Destination) -> Result<Arc<Topic>> {
        if let Some(t) = self.topics.lock().get(&destination.name) {
            return Ok(Arc::clone(t));
        }
        let store = self.store.topic_store(destination).await?;
        let mut topics = self.topics.lock();
        let t = topics.entry(destination.name.clone()).or_insert_with(|| {
            Arc::new(Topic {
                destination: destination.clone(),
                store,
                durable: Mutex::new(BTreeMap::new()),
                subscribers: Mutex::new(Vec::new()),
                enqueued: AtomicU64::new(0),
            })
        });
        Ok(Arc::clone(t))
    }

    /// A non-durable subscriber went away.
    pub(crate) fn remove_subscriber(&self, d: &Arc<Dispatcher>) {
        let topic = self.topics.lock().get(&d.destination.name).cloned();
        if let Some(t) = topic {
            t.subscribers.lock().retain(|x| !Arc::ptr_eq(x, d));
        }
        d.close();
    }

    pub(crate) fn remove_queue(&self, destination: &Destination) -> Option<Arc<Dispatcher>> {
        self.queues.lock().remove(&destination.name)
    }

    pub(crate) fn queues(&self) -> Vec<Arc<Dispatcher>> {
        self.queues.lock().values().cloned().collect()
    }

    pub(crate) fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.lock().values().cloned().collect()
    }

    pub(crate) fn durable_dispatcher(
        self: &Arc<Self>,
        topic: &Topic,
        key: &SubscriptionKey,
    ) -> Arc<Dispatcher> {
        let mut durable = topic.durable.lock();
        Arc::clone(durable.entry(key.clone()).or_insert_with(|| {
            Dispatcher::start(
                self,
                topic.destination.clone(),
                Source::Durable {
                    store: Arc::clone(&topic.store),
                    key: key.clone(),
                },
            )
        }))
    }

    /// Routes a message outside any transaction: into the store when persistent (returning
    /// once it is durable), then to whoever should see it.
    pub(crate) async fn send(self: &Arc<Self>, message: Message) -> Result<()> {
        let message = Arc::new(message);
        if message.destination.is_queue() {
            let q = self.queue(&message.destination).await?;
            if message.persistent {
                let Source::Queue(store) = &q.source else {
                    return Ok(());
                };
                store.add((*message).clone()).await?;
                q.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                q.stored();
            } else {
                self.wait_for_memory().await?;
                q.push(message);
            }
            return Ok(());
        }
        let t = self.topic(&message.destination).await?;
        if message.persistent && !t.durable.lock().is_empty() {
            t.store.add((*message).clone()).await?;
        } else if !message.persistent {
            self.wait_for_memory().await?;
        }
        self.fan_out(&t, &message);
        Ok(())
    }

    /// After a topic message is stored (or if it is non-persistent): durable subscriptions
    /// are told, non-durable subscribers get a copy.
    pub(crate) fn fan_out(&self, topic: &Topic, message: &Arc<Message>) {
        topic.enqueued.fetch_add(1, Ordering::Relaxed);
        for d in topic.durable.lock().values() {
            if message.persistent {
                d.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                d.stored();
            } else {
                d.push(Arc::clone(message));
            }
        }
        for d in topic.subscribers.lock().iter() {
            d.push(Arc::clone(message));
        }
    }

    /// After a transaction that added `message` committed.
    pub(crate) async fn committed_add(self: &Arc<Self>, message: &Arc<Message>) -> Result<()> {
        if !message.persistent {
            return self.send((**message).clone()).await;
        }
        if message.destination.is_queue() {
            let q = self.queue(&message.destination).await?;
            q.counters.enqueued.fetch_add(1, Ordering::Relaxed);
            q.stored();
        } else {
            let t = self.topic(&message.destination).await?;
            self.fan_out(&t, message);
        }
        Ok(())
    }

    async fn wait_for_memory(&self) -> Result<()> {
        if self.memory.has_room() {
            return Ok(());
        }
        let policy = &self.config.policy;
        let full = || {
            BrokerError::ResourceLimit(format!(
                "memory is full ({} of {} bytes used by waiting messages)",
                self.memory.used(),
                self.memory.limit()
            ))
        };
        if policy.send_fail_if_no_space {
            return Err(full());
        }
        let timeout = std::time::Duration::from_millis(policy.send_timeout_ms);
        if self.memory.wait_for_room(timeout).await {
            Ok(())
        } else {
            Err(full())
        }
    }

    /// Moves a message to the dead letter queue: the copy added and the original acked in one
    /// store transaction, so a crash leaves it in exactly one place. Non-persistent messages
    /// are dropped, as ActiveMQ does by default.
    pub(crate) async fn dead_letter(
        self: &Arc<Self>,
        from: &Dispatcher,
        message: &Message,
        cause: &str,
    ) {
        if !message.persistent {
            warn!(message = %message.id, destination = %from.destination, "dropping non-persistent message: {cause}");
            return;
        }
        let dlq = Destination::queue(self.config.policy.dead_letter_queue.as_str());
        let mut copy = message.clone();
        copy.destination = dlq.clone();
        copy.sequence = 0;
        copy.expiration = 0;
        copy.properties.insert(
            "dlqDeliveryFailureCause".into(),
            Value::String(cause.to_owned()),
        );
        copy.properties.insert(
            "originalDestination".into(),
            Value::String(message.destination.to_string()),
        );
        let dlq_dispatcher = match self.queue(&dlq).await {
            Ok(d) => d,
            Err(e) => {
                error!("cannot open the dead letter queue {dlq}: {e}");
                return;
            }
        };
        let tx = self.new_local_tx();
        let mut ops = vec![TxOp::Add(copy)];
        ops.extend(from.ack_op(message));
        match self.run_transaction(&tx, ops).await {
            Ok(()) => {
                info!(message = %message.id, from = %from.destination, to = %dlq, "dead-lettered: {cause}");
                dlq_dispatcher
                    .counters
                    .enqueued
                    .fetch_add(1, Ordering::Relaxed);
                dlq_dispatcher.stored();
            }
            Err(BrokerError::Store(StoreError::Duplicate(_))) => {
                // Another subscription already dead-lettered this topic message.
                if let Err(e) = from.store_ack(message).await {
                    warn!(message = %message.id, "cannot ack a dead-lettered message: {e}");
                }
            }
            Err(BrokerError::Store(StoreError::NotFound(_))) => {}
            Err(e) => error!(message = %message.id, "cannot move to the dead letter queue: {e}"),
        }
    }

    /// Runs `ops` as one local transaction; on failure it is rolled back.
    pub(crate) async fn run_transaction(&self, tx: &TransactionId, ops: Vec<TxOp>) -> Result<()> {
        self.store.begin(tx).await?;
        let mut result = Ok(());
        for op in ops {
            if let Err(e) = self.store.enlist(tx, op).await {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            result = self.store.commit(tx).await;
        }
        if let Err(e) = result {
            let _ = self.store.rollback(tx).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Acks several delivered messages with one store transaction (one fsync), then forgets
    /// them. A message already gone is skipped.
    pub(crate) async fn ack_many(&self, items: Vec<(Arc<Dispatcher>, Arc<Message>)>) -> Result<()> {
        let ops: Vec<TxOp> = items.iter().filter_map(|(d, m)| d.ack_op(m)).collect();
        if ops.len() > 1 {
            let tx = self.new_local_tx();
            if let Err(e) = self.run_transaction(&tx, ops).await {
                if !matches!(e, BrokerError::Store(StoreError::NotFound(_))) {
                    return Err(e);
                }
                for (d, m) in &items {
                    d.store_ack(m).await?;
                }
            }
        } else if let Some((d, m)) = items.iter().find(|(d, m)| d.ack_op(m).is_some()) {
            d.store_ack(m).await?;
        }
        for (d, m) in &items {
            d.settle(&m.id);
        }
        Ok(())
    }

    /// Creates or reattaches a durable subscription. A changed selector replaces the
    /// subscription, as in JMS.
    pub(crate) async fn durable_subscription(
        self: &Arc<Self>,
        topic: &Destination,
        key: &SubscriptionKey,
        selector: Option<String>,
    ) -> Result<Arc<Dispatcher>> {
        let t = self.topic(topic).await?;
        let existing = t.store.lookup_subscription(key).await?;
        if let Some(info) = &existing {
            if info.selector == selector {
                return Ok(self.durable_dispatcher(&t, key));
            }
            let d = t.durable.lock().get(key).cloned();
            if let Some(d) = &d
                && d.consumer_count() > 0
            {
                return Err(BrokerError::Invalid(format!(
                    "durable subscription {key} is in use"
                )));
            }
            info!(topic = %topic, subscription = %key, "selector changed: replacing the durable subscription");
            t.store.delete_subscription(key).await?;
            if let Some(d) = t.durable.lock().remove(key) {
                d.close();
            }
        }
        match t
            .store
            .add_subscription(SubscriptionInfo::new(key.clone(), selector), false)
            .await
        {
            Ok(()) | Err(StoreError::Duplicate(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.durable_dispatcher(&t, key))
    }

    /// Deletes a durable subscription wherever it is.
    pub(crate) async fn unsubscribe(&self, key: &SubscriptionKey) -> Result<()> {
        let mut found = false;
        for t in self.topics() {
            let d = t.durable.lock().get(key).cloned();
            let Some(d) = d else { continue };
            if d.consumer_count() > 0 {
                return Err(BrokerError::Invalid(format!(
                    "durable subscription {key} is in use"
                )));
            }
            t.store.delete_subscription(key).await?;
            t.durable.lock().remove(key);
            d.close();
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(BrokerError::Invalid(format!(
                "no durable subscription {key}"
            )))
        }
    }

    /// Loads destinations, durable subscriptions and prepared transactions from the store.
    async fn recover(self: &Arc<Self>) -> Result<()> {
        let destinations = self.store.destinations().await?;
        let (mut queues, mut subs) = (0, 0);
        for d in &destinations {
            if d.is_queue() {
                self.queue(d).await?;
                queues += 1;
            } else {
                let t = self.topic(d).await?;
                for info in t.store.subscriptions().await? {
                    self.durable_dispatcher(&t, &info.key);
                    subs += 1;
                }
            }
        }
        let prepared = self.store.prepared_transactions().await?;
        let n_prepared = prepared.len();
        for p in prepared {
            let mut pending = Vec::new();
            for op in p.ops {
                match op {
                    TxOp::Add(m) => pending.push(Pending::Add(Arc::new(m))),
                    TxOp::QueueAck { destination, id } => {
                        let d = self.queue(&destination).await?;
                        d.hold(id.clone());
                        pending.push(Pending::Ack {
                            dispatcher: d,
                            id,
                            recovered: true,
                        });
                    }
                    TxOp::TopicAck {
                        destination,
                        subscription,
                        id,
                    } => {
                        let t = self.topic(&destination).await?;
                        let d = self.durable_dispatcher(&t, &subscription);
                        d.hold(id.clone());
                        pending.push(Pending::Ack {
                            dispatcher: d,
                            id,
                            recovered: true,
                        });
                    }
                }
            }
            self.prepared.lock().insert(p.xid, pending);
        }
        info!(
            queues,
            topics = destinations.len() - queues,
            durable_subscriptions = subs,
            prepared_transactions = n_prepared,
            "recovered from the {} store",
            self.store.kind()
        );
        Ok(())
    }

    /// Ends a prepared XA transaction.
    pub(crate) async fn finish_prepared(self: &Arc<Self>, xid: &Xid, commit: bool) -> Result<()> {
        let pending = self
            .prepared
            .lock()
            .remove(xid)
            .ok_or_else(|| BrokerError::Invalid("no such prepared transaction".into()))?;
        let tx = TransactionId::Xa(xid.clone());
        let result = if commit {
            self.store.commit(&tx).await
        } else {
            self.store.rollback(&tx).await
        };
        if let Err(e) = result {
            self.prepared.lock().insert(xid.clone(), pending);
            return Err(e.into());
        }
        for p in pending {
            match p {
                Pending::Ack {
                    dispatcher,
                    id,
                    recovered: true,
                } => dispatcher.unhold(&id, commit),
                Pending::Ack {
                    dispatcher,
                    id,
                    recovered: false,
                } => {
                    if commit {
                        dispatcher.settle(&id);
                    } else {
                        dispatcher.redeliver(&id).await;
                    }
                }
                Pending::Add(m) if commit => self.committed_add(&m).await?,
                Pending::Add(_) => {}
            }
        }
        Ok(())
    }

    /// One pass of the expiry sweep: stored messages past their expiration that no consumer
    /// holds are dead-lettered or dropped, per policy.
    async fn sweep_expired(self: &Arc<Self>) {
        let now = now_ms();
        for q in self.queues() {
            let Source::Queue(store) = &q.source else {
                continue;
            };
            let ids = match store.expired(now, 1000).await {
                Ok(ids) => ids,
                Err(e) => {
                    warn!(queue = %q.destination, "expiry sweep failed: {e}");
                    continue;
                }
            };
            let ids: Vec<MessageId> = ids.into_iter().filter(|id| !q.is_tracked(id)).collect();
            for id in ids {
                let Ok(m) = store.get(&id).await else {
                    continue;
                };
                q.counters.expired.fetch_add(1, Ordering::Relaxed);
                if self.config.policy.expired == crate::config::ExpiredPolicy::DeadLetter
                    && *q.destination.name != *self.config.policy.dead_letter_queue
                {
                    self.dead_letter(&q, &m, "expired").await;
                } else {
                    let _ = store.remove(&id).await;
                }
            }
        }
        for t in self.topics() {
            let ids = match t.store.expired(now, 1000).await {
                Ok(ids) => ids,
                Err(e) => {
                    warn!(topic = %t.destination, "expiry sweep failed: {e}");
                    continue;
                }
            };
            let durables: Vec<Arc<Dispatcher>> = t.durable.lock().values().cloned().collect();
            let ids: Vec<MessageId> = ids
                .into_iter()
                .filter(|id| !durables.iter().any(|d| d.is_tracked(id)))
                .collect();
            for id in ids {
                // Dropped for every subscription at once; ActiveMQ likewise does not
                // dead-letter a topic message per subscriber on a sweep.
                let _ = t.store.remove(&id).await;
            }
        }
    }

    async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let connections: Vec<_> = self.connections.lock().drain(..).collect();
        for c in connections.into_iter().filter_map(|c| c.upgrade()) {
            c.abort();
        }
        for q in self.queues() {
            q.close();
        }
        for t in self.topics() {
            for d in t.durable.lock().values() {
                d.close();
            }
            for d in t.subscribers.lock().iter() {
                d.close();
            }
        }
        if let Err(e) = self.store.close().await {
            warn!("closing the store: {e}");
        }
    }
}

/// Counts for one destination (one durable subscription for `subscription`), as ActiveMQ's
/// `dstat` and web console show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStats {
    pub destination: Destination,
    pub subscription: Option<SubscriptionKey>,
    /// Waiting to be consumed (for a topic: kept for some durable subscription).
    pub pending: u64,
    pub consumers: u64,
    pub enqueued: u64,
    pub dequeued: u64,
    pub expired: u64,
}

/// The broker's state and the transitions so far.
struct StateCell {
    current: watch::Sender<BrokerState>,
    history: Mutex<Vec<BrokerState>>,
}

/// An embeddable broker, like ActiveMQ's `BrokerService`.
///
/// `Broker::new(config)` then `start()`: take the lock (waiting as a slave while another broker
/// holds it), open and recover the store, serve. Connections come from
/// [`Broker::connect`]. Losing the lock stops the broker; `stop()` stops it cleanly.
pub struct Broker {
    config: BrokerConfig,
    state: Arc<StateCell>,
    core: Mutex<Option<Arc<Core>>>,
    stop: watch::Sender<bool>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            config,
            state: Arc::new(StateCell {
                current: watch::Sender::new(BrokerState::Created),
                history: Mutex::new(vec![BrokerState::Created]),
            }),
            core: Mutex::new(None),
            stop: watch::Sender::new(false),
            monitor: Mutex::new(None),
        }
    }

    /// Builds a broker from a config file and starts it.
    pub async fn start_from_file(path: &std::path::Path) -> Result<Broker> {
        let b = Broker::new(BrokerConfig::from_file(path)?);
        b.start().await?;
        Ok(b)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn state(&self) -> BrokerState {
        *self.state.current.borrow()
    }

    /// Every state the broker has been in, in order, from `Created`.
    pub fn history(&self) -> Vec<BrokerState> {
        self.state.history.lock().clone()
    }

    /// Follows the state as it changes.
    pub fn watch_state(&self) -> watch::Receiver<BrokerState> {
        self.state.current.subscribe()
    }

    fn set_state(state: &StateCell, name: &str, to: BrokerState) {
        let mut history = state.history.lock();
        let from = *state.current.borrow();
        info!(broker = name, "{from} -> {to}");
        history.push(to);
        state.current.send_replace(to);
    }

    /// Takes the lock (waiting as long as another broker holds it), recovers the store and
    /// starts serving. Returns once serving; `stop()` from another task ends a wait.
    pub async fn start(&self) -> Result<()> {
        if self.state() != BrokerState::Created {
            return Err(BrokerError::Invalid(format!(
                "the broker was already started (it is {})",
                self.state()
            )));
        }
        let name = self.config.broker.name.clone();
        Self::set_state(&self.state, &name, BrokerState::WaitingForLock);
        let mut stop = self.stop.subscribe();
        let lock = tokio::select! {
            lock = locker::acquire(&self.config) => lock,
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                Self::set_state(&self.state, &name, BrokerState::Stopped);
                return Err(BrokerError::NotServing(BrokerState::Stopped));
            }
        };
        let mut lock = match lock {
            Ok(l) => l,
            Err(e) => {
                Self::set_state(&self.state, &name, BrokerState::Stopped);
                return Err(e);
            }
        };
        Self::set_state(&self.state, &name, BrokerState::Recovering);
        info!(
            broker = %name,
            lock = %lock.describe(),
            took_over = lock.took_over(),
            "this broker is the master"
        );
        let core = match self.open_core(&lock).await {
            Ok(c) => c,
            Err(e) => {
                lock.release().await;
                Self::set_state(&self.state, &name, BrokerState::Stopped);
                return Err(e);
            }
        };
        *self.core.lock() = Some(Arc::clone(&core));
        Self::set_state(&self.state, &name, BrokerState::Serving);

        let state = Arc::clone(&self.state);
        let interval = self.config.expire_check_interval();
        let monitor = tokio::spawn(async move {
            let sweeper = {
                let core = Arc::clone(&core);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        if core.is_closed() {
                            return;
                        }
                        core.sweep_expired().await;
                    }
                })
            };
            tokio::select! {
                why = lock.lost() => {
                    error!(broker = %name, "lost the master lock: {why}; stopping so that another broker can take over");
                    Self::set_state(&state, &name, BrokerState::LockLost);
                    core.shutdown().await;
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    core.shutdown().await;
                    lock.release().await;
                }
            }
            sweeper.abort();
            Self::set_state(&state, &name, BrokerState::Stopped);
        });
        *self.monitor.lock() = Some(monitor);
        Ok(())
    }

    async fn open_core(&self, lock: &HeldLock) -> Result<Arc<Core>> {
        let store = crate::persistence::open(&self.config, lock.fence()).await?;
        let start = now_ms();
        let core = Arc::new(Core {
            memory: MemoryUsage::new(self.config.memory_limit()),
            incarnation: format!("{}-{}-{start}", self.config.broker.name, std::process::id()),
            config: self.config.clone(),
            store,
            queues: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
            client_ids: Mutex::new(HashSet::new()),
            connections: Mutex::new(Vec::new()),
            arrival: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            takeover_ms: lock.took_over().then_some(start),
            started_ms: start,
        });
        if let Err(e) = core.recover().await {
            core.shutdown().await;
            return Err(e);
        }
        Ok(core)
    }

    /// Stops serving: connections are closed (unacked messages stay in the store for the next
    /// run), the store is closed and the lock released. A slave still waiting stops waiting.
    pub async fn stop(&self) {
        if matches!(self.state(), BrokerState::Serving) {
            Self::set_state(&self.state, &self.config.broker.name, BrokerState::Stopping);
        }
        self.stop.send_replace(true);
        let monitor = self.monitor.lock().take();
        if let Some(m) = monitor {
            let _ = m.await;
        }
        self.core.lock().take();
    }

    /// Resolves once the broker has stopped, for any reason (a lost lock included).
    pub async fn stopped(&self) {
        let mut w = self.state.current.subscribe();
        let _ = w.wait_for(|s| *s == BrokerState::Stopped).await;
    }

    pub(crate) fn core(&self) -> Result<Arc<Core>> {
        let core = self.core.lock().clone();
        match core {
            Some(c) if self.state() == BrokerState::Serving && !c.is_closed() => Ok(c),
            _ => Err(BrokerError::NotServing(self.state())),
        }
    }

    /// Opens a connection. A client id, when given, must not be in use by another connection
    /// (it names the connection's durable subscriptions).
    pub async fn connect(&self, client_id: Option<&str>) -> Result<Connection> {
        Connection::open(self.core()?, client_id, None)
    }

    /// As [`Broker::connect`], naming the peer's address (shown by [`Broker::connections`]).
    pub async fn connect_from(&self, client_id: Option<&str>, remote: &str) -> Result<Connection> {
        Connection::open(self.core()?, client_id, Some(remote))
    }

    /// Open connections, oldest first.
    pub fn connections(&self) -> Result<Vec<crate::session::ConnectionInfo>> {
        let core = self.core()?;
        let all: Vec<_> = core
            .connections
            .lock()
            .iter()
            .filter_map(|c| c.upgrade())
            .collect();
        Ok(all.iter().filter_map(|c| c.info()).collect())
    }

    /// The engine's counters ([`store_api::PersistenceAdapter::metrics`]).
    pub fn store_metrics(&self) -> Result<Vec<(&'static str, u64)>> {
        Ok(self.core()?.store.metrics())
    }

    /// When this run started serving, in milliseconds since the epoch.
    pub fn serving_since_ms(&self) -> Result<i64> {
        Ok(self.core()?.started_ms)
    }

    /// Sends one message from the broker itself (the console's "send a test message").
    pub async fn send(
        &self,
        destination: Destination,
        out: crate::session::Outgoing,
    ) -> Result<MessageId> {
        let core = self.core()?;
        let id = MessageId::new(format!("ID:{}-console", core.incarnation), core.next_id());
        let mut out = out;
        out.priority = out.priority.min(store_api::MAX_PRIORITY);
        let message = out.into_message(id.clone(), destination, now_ms());
        core.send(message).await?;
        Ok(id)
    }

    /// Deletes a queue with its messages. Its consumers see the end of their stream.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        let core = self.core()?;
        let destination = Destination::queue(name);
        if let Some(d) = core.remove_queue(&destination) {
            d.close();
        }
        core.store.remove_destination(&destination).await?;
        Ok(())
    }

    /// Deletes a durable subscription; it must have no active consumer.
    pub async fn delete_durable_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.core()?.unsubscribe(key).await
    }

    /// The store's engine name.
    pub fn store_kind(&self) -> Result<&'static str> {
        Ok(self.core()?.store.kind())
    }

    pub async fn store_size(&self) -> Result<u64> {
        Ok(self.core()?.store.size_on_disk().await?)
    }

    /// Message bytes held in memory now, the peak since start, and the limit.
    pub fn memory_usage(&self) -> Result<(u64, u64, u64)> {
        let c = self.core()?;
        Ok((c.memory.used(), c.memory.peak(), c.memory.limit()))
    }

    /// Counts per queue, per topic and per durable subscription, sorted.
    pub async fn destination_stats(&self) -> Result<Vec<DestinationStats>> {
        let core = self.core()?;
        let mut out = Vec::new();
        for q in core.queues() {
            let Source::Queue(store) = &q.source else {
                continue;
            };
            out.push(DestinationStats {
                destination: q.destination.clone(),
                subscription: None,
                pending: store.count().await? + q.non_persistent(),
                consumers: q.consumer_count() as u64,
                enqueued: q.counters.enqueued.load(Ordering::Relaxed),
                dequeued: q.counters.dequeued.load(Ordering::Relaxed),
                expired: q.counters.expired.load(Ordering::Relaxed),
            });
        }
        for t in core.topics() {
            let durables: Vec<Arc<Dispatcher>> = t.durable.lock().values().cloned().collect();
            let subscribers: Vec<Arc<Dispatcher>> = t.subscribers.lock().clone();
            let consumers = durables
                .iter()
                .chain(&subscribers)
                .map(|d| d.consumer_count() as u64)
                .sum();
            let dequeued = durables
                .iter()
                .chain(&subscribers)
                .map(|d| d.counters.dequeued.load(Ordering::Relaxed))
                .sum();
            out.push(DestinationStats {
                destination: t.destination.clone(),
                subscription: None,
                pending: t.store.count().await?,
                consumers,
                enqueued: t.enqueued.load(Ordering::Relaxed),
                dequeued,
                expired: 0,
            });
            for d in durables {
                let Some(key) = d.subscription() else {
                    continue;
                };
                out.push(DestinationStats {
                    destination: t.destination.clone(),
                    subscription: Some(key.clone()),
                    pending: t.store.pending_count(key).await? + d.non_persistent(),
                    consumers: d.consumer_count() as u64,
                    enqueued: d.counters.enqueued.load(Ordering::Relaxed),
                    dequeued: d.counters.dequeued.load(Ordering::Relaxed),
                    expired: d.counters.expired.load(Ordering::Relaxed),
                });
            }
        }
        out.sort_by(|a, b| {
            (&a.destination, &a.subscription).cmp(&(&b.destination, &b.subscription))
        });
        Ok(out)
    }

    /// Durable subscriptions of every topic, with their selectors.
    pub async fn durable_subscriptions(&self) -> Result<Vec<(Destination, SubscriptionInfo)>> {
        let core = self.core()?;
        let mut out = Vec::new();
        for t in core.topics() {
            for info in t.store.subscriptions().await? {
                out.push((t.destination.clone(), info));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.key).cmp(&(&b.0, &b.1.key)));
        Ok(out)
    }

    /// Deletes every message of a queue; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64> {
        let core = self.core()?;
        let q = core.queue(&Destination::queue(queue)).await?;
        let Source::Queue(store) = &q.source else {
            return Ok(0);
        };
        let in_memory = q.clear_window();
        let stored = store.purge().await?;
        Ok(stored.max(in_memory))
    }

    /// Up to `max` messages of a queue in delivery order, without consuming them.
    pub async fn browse(&self, queue: &str, max: usize) -> Result<Vec<Message>> {
        self.browse_after(queue, None, max).await
    }

    /// The page of a queue's messages after `after` (the [`store_api::OrderKey`] of the
    /// previous page's last message), for browsing a queue of any depth.
    pub async fn browse_after(
        &self,
        queue: &str,
        after: Option<store_api::OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let core = self.core()?;
        let q = core.queue(&Destination::queue(queue)).await?;
        let Source::Queue(store) = &q.source else {
            return Ok(Vec::new());
        };
        Ok(store.browse(after, max).await?)
    }

    /// XA transactions prepared and not yet ended (found at recovery or prepared since).
    pub fn prepared_transactions(&self) -> Result<Vec<Xid>> {
        let core = self.core()?;
        let mut xids: Vec<Xid> = core.prepared.lock().keys().cloned().collect();
        xids.sort();
        Ok(xids)
    }

    pub async fn commit_prepared(&self, xid: &Xid) -> Result<()> {
        self.core()?.finish_prepared(xid, true).await
    }

    pub async fn rollback_prepared(&self, xid: &Xid) -> Result<()> {
        self.core()?.finish_prepared(xid, false).await
    }

    /// Runs the expiry sweep now instead of waiting for its interval.
    pub async fn expire_now(&self) -> Result<()> {
        self.core()?.sweep_expired().await;
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
