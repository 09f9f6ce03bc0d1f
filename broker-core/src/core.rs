//! The serving broker's inside, one per run between taking the lock and stopping: the registry
//! of destinations, routing of sends, dead-lettering, transactions and durable subscriptions.
//! Sessions and dispatchers work through [`Core`]; the public [`crate::Broker`] only starts and
//! stops it, and the admin API reads it.

pub(crate) mod advisory;
mod expiry;
pub(crate) mod producer_audit;
mod recovery;
mod routing;
pub(crate) mod scheduler;
pub(crate) mod scheduler_management;
mod store_health;
pub(crate) mod store_usage;
mod temp_spool;
pub(crate) mod temporary;
mod topic_gc;
mod wildcard_durable;

pub(crate) use routing::QueueFanIn;
pub(crate) use store_health::StoreHealth;
pub use store_health::StoreStatus;
pub(crate) use wildcard_durable::WildcardDurable;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use store_api::{
    Destination, Message, MessageId, Pending as StorePending, PersistenceAdapter, StoreError,
    SubscriptionInfo, SubscriptionKey, TopicStore, TransactionId, TxOp, Value, Xid,
};
use tracing::{error, info, warn};

use crate::config::CoreConfig;
use crate::destination_filter::{DestinationFilter, is_wildcard};
use crate::dispatch::{Dispatcher, Source};
use crate::error::{BrokerError, Result};
use crate::locker::Leaving;
use crate::memory::MemoryUsage;
use crate::session::AckWait;

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
    /// Messages dropped for slow non-durable subscribers, over all of them, past and present.
    pub slow_consumer_dropped: Arc<AtomicU64>,
    /// When a subscriber or a message last came or went (ms), for `gc_inactive_destinations`.
    pub last_active: AtomicI64,
    /// Live, retiring or gone (`topic_gc`): once `gc_inactive_destinations` starts removing
    /// it nothing registers on it any more, and whoever finds it waits and looks again.
    pub(crate) gc: topic_gc::GcState,
}

/// One operation a prepared XA transaction holds, to finish when it ends.
pub(crate) enum PreparedOp {
    /// An ack: the message stays out of dispatch until the transaction ends.
    Ack {
        dispatcher: Arc<Dispatcher>,
        id: MessageId,
        /// Found at recovery (held in the dispatcher) rather than delivered in this run.
        recovered: bool,
        /// The consumer's session to give it back to on rollback, if still open (see
        /// [`crate::Session::acknowledge_in_returning`]), with the message itself.
        back_to: Option<crate::session::ReturnTo>,
    },
    /// An add, visible once committed.
    Add(Arc<Message>),
}

/// A message with its place taken: the store write to wait for, then what delivers it.
pub(crate) struct Placed {
    pub written: StorePending<u64>,
    pub then: Then,
}

impl Placed {
    pub(crate) fn done() -> Placed {
        Placed {
            written: StorePending::ready(Ok(0)),
            then: Then::Nothing,
        }
    }
}

/// What makes a placed message deliverable once it is written.
pub(crate) enum Then {
    Nothing,
    /// A persistent queue message: the queue pages it from its store.
    Stored(Arc<Dispatcher>),
    /// A non-persistent queue message, held in memory.
    Push(Arc<Dispatcher>, Arc<Message>),
    /// A topic message, to its durable and non-durable subscribers.
    FanOut(Arc<Topic>, Arc<Message>),
    /// A non-persistent queue message written to the temp store (`temp_spool`).
    Spooled(Arc<Dispatcher>, temp_spool::Spool),
    /// A topic message whose in-memory copies went to the temp store instead.
    FanOutSpooled(Arc<Topic>, Arc<Message>, temp_spool::Spool),
    /// The copies of a composite or virtual-topic send, each to its destination.
    Many(Vec<Then>),
    /// A temporary topic's message, to each of its subscribers.
    PushAll(Vec<Arc<Dispatcher>>, Arc<Message>),
    /// A scheduled job (`scheduler`), due at the time given.
    Scheduled(i64, store_api::MessageId),
}

/// Everything a serving broker has: one per run between lock and stop.
pub(crate) struct Core {
    pub config: CoreConfig,
    pub store: Arc<dyn PersistenceAdapter>,
    pub memory: Arc<MemoryUsage>,
    /// Where non-persistent messages go when memory is full; `None` with `limits.temp_bytes`
    /// 0.
    pub(crate) temp: Option<Arc<crate::temp_store::TempStore>>,
    /// Whether the store takes writes, and the acks held while it does not.
    pub(crate) health: StoreHealth,
    /// Unique per run: prefixes the ids this run gives connections, producers and transactions.
    pub incarnation: String,
    queues: Mutex<HashMap<Arc<str>, Arc<Dispatcher>>>,
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    /// Non-durable subscribers on wildcard topics, with their filters (see `routing`).
    wildcard_subscribers: Mutex<Vec<(DestinationFilter, Arc<Dispatcher>)>>,
    /// Consumers on wildcard queues (see `routing`).
    wildcard_consumers: Mutex<Vec<Arc<QueueFanIn>>>,
    /// Durable subscriptions on wildcard topics (see `wildcard_durable`).
    wildcard_durables: Mutex<Vec<Arc<WildcardDurable>>>,
    /// What client-given message ids were stored (see `producer_audit`).
    pub(crate) producer_audit: producer_audit::ProducerAudit,
    /// The topics that are virtual (`broker.virtual_topic_name`).
    virtual_topics: DestinationFilter,
    /// Temporary queues and topics, which live beside the others and never in the store.
    pub(crate) temporaries: temporary::Temporaries,
    pub prepared: Mutex<HashMap<Xid, Vec<PreparedOp>>>,
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
    /// Scheduled and delayed delivery (`scheduler`).
    pub(crate) scheduler: scheduler::Scheduler,
    /// Producers per destination, for producer advisories.
    pub(crate) producer_counts: advisory::ProducerCounts,
    /// The consumers alive now, as their advisories described them.
    pub(crate) live_consumers: advisory::LiveConsumers,
    /// Advisories on their way to their topics, in order.
    pub(crate) advisories: advisory::Advisories,
    /// The store's use against `limits.store_bytes`.
    pub(crate) store_usage: store_usage::StoreUsage,
    /// `[policy]` and its `[[policy.entries]]`, resolved per destination.
    pub(crate) policies: crate::policy::Policies,
}

impl Core {
    /// A serving core over an opened store, recovered from it. `took_over` marks a run that
    /// took over from a master that did not stop cleanly.
    pub(crate) async fn open(
        config: CoreConfig,
        store: Arc<dyn PersistenceAdapter>,
        took_over: bool,
    ) -> Result<Arc<Core>> {
        let start = now_ms();
        // With virtual topics off no topic is virtual (and the name is not checked).
        let virtual_topics = if config.broker.use_virtual_topics {
            config.broker.virtual_topic_filter()?
        } else {
            DestinationFilter::parse("-")?
        };
        let policies = crate::policy::Policies::new(&config.policy)?;
        let temp = match temp_spool::open(&config).await {
            Ok(temp) => temp,
            Err(e) => {
                if let Err(close) = store.close().await {
                    warn!("closing the store: {close}");
                }
                return Err(e);
            }
        };
        let core = Arc::new(Core {
            policies,
            temp,
            memory: Arc::new(MemoryUsage::new(config.memory_limit())),
            health: StoreHealth::default(),
            incarnation: format!("{}-{}-{start}", config.broker.name, std::process::id()),
            config,
            store,
            queues: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            wildcard_subscribers: Mutex::new(Vec::new()),
            wildcard_consumers: Mutex::new(Vec::new()),
            wildcard_durables: Mutex::new(Vec::new()),
            producer_audit: producer_audit::ProducerAudit::default(),
            virtual_topics,
            temporaries: temporary::Temporaries::default(),
            prepared: Mutex::new(HashMap::new()),
            client_ids: Mutex::new(HashSet::new()),
            connections: Mutex::new(Vec::new()),
            arrival: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            takeover_ms: took_over.then_some(start),
            started_ms: start,
            scheduler: scheduler::Scheduler::default(),
            producer_counts: advisory::ProducerCounts::default(),
            live_consumers: advisory::LiveConsumers::default(),
            advisories: advisory::Advisories::default(),
            store_usage: store_usage::StoreUsage::default(),
        });
        if let Err(e) = core.recover().await {
            core.shutdown().await;
            return Err(e);
        }
        // Jobs stored by an earlier run are delivered even with `scheduler_support` off now:
        // the setting decides what is scheduled, never what is lost.
        tokio::spawn(Core::run_scheduler(Arc::downgrade(&core)));
        tokio::spawn(Core::run_advisories(Arc::downgrade(&core)));
        Ok(core)
    }

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
        if scheduler::is_jobs(destination) {
            return Err(BrokerError::InvalidDestination(format!(
                "{destination} is the scheduler's own store, not a queue to use"
            )));
        }
        let store = self.store.queue_store(destination).await?;
        let mut queues = self.queues.lock();
        if let Some(d) = queues.get(&destination.name) {
            return Ok(Arc::clone(d));
        }
        let d = Dispatcher::start(self, destination.clone(), Source::Queue(store));
        queues.insert(destination.name.clone(), Arc::clone(&d));
        drop(queues);
        self.attach_wildcard_consumers(&d);
        self.advise(advisory::Advisory::Destination {
            destination,
            created: true,
        });
        Ok(d)
    }

    /// Whether `destination` exists in this run already (using it creates nothing).
    /// Queues and topics that exist now (for `limits.max_destinations`).
    pub(crate) fn destination_count(&self) -> usize {
        self.queues.lock().len() + self.topics.lock().len()
    }

    pub(crate) fn has_destination(&self, destination: &Destination) -> bool {
        if destination.is_queue() {
            self.queues.lock().contains_key(&destination.name)
        } else {
            self.topics.lock().contains_key(&destination.name)
        }
    }

    pub(crate) async fn topic(self: &Arc<Self>, destination: &Destination) -> Result<Arc<Topic>> {
        loop {
            let found = self.topics.lock().get(&destination.name).cloned();
            match found {
                // Being removed: its successor is created once it is gone.
                Some(t) if !t.gc.is_live() => t.gc.wait_retired().await,
                Some(t) => return Ok(t),
                None => break,
            }
        }
        let store = self.store.topic_store(destination).await?;
        // A new topic carries the wildcard durable subscriptions that match it: in its store
        // before it is visible, so its first message is kept for them.
        let wildcard_durables = self.wildcard_durables_of(&destination.name);
        for w in &wildcard_durables {
            match store
                .add_subscription(
                    SubscriptionInfo::new(w.key.clone(), w.selector.clone()),
                    false,
                )
                .await
            {
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut created = false;
        let t = Arc::clone(
            self.topics
                .lock()
                .entry(destination.name.clone())
                .or_insert_with(|| {
                    created = true;
                    let durable = wildcard_durables
                        .iter()
                        .map(|w| {
                            let source = Source::Durable {
                                store: Arc::clone(&store),
                                key: w.key.clone(),
                            };
                            let d = Dispatcher::start(self, destination.clone(), source);
                            (w.key.clone(), d)
                        })
                        .collect();
                    Arc::new(Topic {
                        destination: destination.clone(),
                        store,
                        durable: Mutex::new(durable),
                        // Listed before the topic is visible, so no message sent to it is missed.
                        subscribers: Mutex::new(self.wildcard_subscribers_of(&destination.name)),
                        enqueued: AtomicU64::new(0),
                        slow_consumer_dropped: Arc::new(AtomicU64::new(0)),
                        last_active: AtomicI64::new(now_ms()),
                        gc: topic_gc::GcState::default(),
                    })
                }),
        );
        if created {
            // Their connected consumers take the new topic's messages too.
            self.add_wildcard_durables(&t).await?;
            self.advise(advisory::Advisory::Destination {
                destination,
                created: true,
            });
        }
        Ok(t)
    }

    /// A non-durable subscriber went away.
    pub(crate) fn remove_subscriber(&self, d: &Arc<Dispatcher>) {
        if is_wildcard(&d.destination.name) {
            self.remove_wildcard_subscriber(d);
            d.close();
            return;
        }
        let topic = self.topics.lock().get(&d.destination.name).cloned();
        if let Some(t) = topic {
            t.subscribers.lock().retain(|x| !Arc::ptr_eq(x, d));
            t.touch();
        } else {
            self.temporaries.remove_subscriber(d);
        }
        d.close();
    }

    pub(crate) fn remove_queue(&self, destination: &Destination) -> Option<Arc<Dispatcher>> {
        self.queues.lock().remove(&destination.name)
    }

    /// Removes `d` from the queues if it is still the one registered under its name.
    pub(crate) fn remove_queue_if(&self, d: &Arc<Dispatcher>) -> bool {
        let mut queues = self.queues.lock();
        match queues.get(&d.destination.name) {
            Some(x) if Arc::ptr_eq(x, d) => {
                queues.remove(&d.destination.name);
                true
            }
            _ => false,
        }
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

    /// Routes a message: stores a persistent one (per the sync policy), then hands it to its
    /// queue or to the topic's subscribers.
    pub(crate) async fn send(self: &Arc<Self>, message: Message) -> Result<()> {
        let placed = self.place(message).await?;
        placed.written.await?;
        self.delivered(placed.then);
        Ok(())
    }

    /// The first half of [`Core::send`], for a producer that pipelines: when this returns the
    /// message has its place (a persistent one is submitted to the store, so whatever the
    /// producer sends next sorts after it). What is left is to wait for `written` and then
    /// call [`Core::delivered`] with `then`.
    pub(crate) async fn place(self: &Arc<Self>, message: Message) -> Result<Placed> {
        let message = Arc::new(message);
        if let Some(placed) = self.temporaries.place(self, &message).await? {
            return Ok(placed);
        }
        if message.destination.is_queue() {
            let q = self.queue(&message.destination).await?;
            if message.persistent {
                let Source::Queue(store) = &q.source else {
                    return Ok(Placed::done());
                };
                self.wait_for_store(message.size()).await?;
                let written = store.submit_add((*message).clone()).await?;
                return Ok(Placed {
                    written,
                    then: Then::Stored(q),
                });
            }
            if let Some(spool) = self.spool_for_queue(&q, &message).await? {
                return Ok(Placed {
                    written: StorePending::ready(Ok(0)),
                    then: Then::Spooled(q, spool),
                });
            }
            self.wait_for_memory().await?;
            q.wait_for_room(self).await?;
            return Ok(Placed {
                written: StorePending::ready(Ok(0)),
                then: Then::Push(q, message),
            });
        }
        let t = self.topic(&message.destination).await?;
        // A copy for each non-durable subscriber is held in memory, persistent or not, so
        // such a send waits for room as a non-persistent one does: persistence only spares
        // the durable subscriptions, which page from the store within the limit.
        // With a temp store they go there instead when memory is full.
        let spool = self.spool_for_topic(&t, &message).await?;
        if spool.is_none() && (!message.persistent || !t.subscribers.lock().is_empty()) {
            self.wait_for_memory().await?;
        }
        let written = if message.persistent && !t.durable.lock().is_empty() {
            self.wait_for_store(message.size()).await?;
            t.store.submit_add((*message).clone()).await?
        } else {
            StorePending::ready(Ok(0))
        };
        let then = match spool {
            Some(spool) => Then::FanOutSpooled(t, message, spool),
            None => Then::FanOut(t, message),
        };
        Ok(Placed { written, then })
    }

    /// The second half of [`Core::send`]: the message is stored (or needed no storing).
    pub(crate) fn delivered(&self, then: Then) {
        match then {
            Then::Nothing => {}
            Then::Stored(q) => {
                q.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                q.stored();
            }
            Then::Push(q, message) => q.push(message),
            Then::FanOut(t, message) => self.fan_out(&t, &message),
            Then::Spooled(q, spool) => self.deliver_spooled(&q, spool),
            Then::FanOutSpooled(t, message, spool) => self.fan_out_spooled(&t, &message, spool),
            Then::Many(thens) => {
                for then in thens {
                    self.delivered(then);
                }
            }
            Then::PushAll(subscribers, message) => {
                for d in subscribers {
                    d.push(Arc::clone(&message));
                }
            }
            Then::Scheduled(due, id) => self.scheduled(due, id),
        }
    }

    /// After a topic message is stored (or if it is non-persistent): durable subscriptions
    /// are told, non-durable subscribers get a copy.
    pub(crate) fn fan_out(&self, topic: &Topic, message: &Arc<Message>) {
        topic.enqueued.fetch_add(1, Ordering::Relaxed);
        topic.touch();
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
        if scheduler::is_jobs(&message.destination) {
            self.committed_job(message);
            return Ok(());
        }
        if !message.persistent || self.temporaries.contains(&message.destination) {
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

    pub(crate) async fn wait_for_memory(&self) -> Result<()> {
        self.wait_for_room(&self.memory, || {
            BrokerError::ResourceLimit(format!(
                "memory is full ({} of {} bytes used by waiting messages)",
                self.memory.used(),
                self.memory.limit()
            ))
        })
        .await
    }

    /// Producer flow control on `usage` (the broker's memory, or a queue's own limit): goes on
    /// while it has room; otherwise fails at once with `full` under `send_fail_if_no_space`,
    /// or waits for room up to `send_timeout_ms`.
    pub(crate) async fn wait_for_room(
        &self,
        usage: &MemoryUsage,
        full: impl Fn() -> BrokerError,
    ) -> Result<()> {
        if usage.has_room() {
            return Ok(());
        }
        let policy = &self.config.policy;
        if policy.send_fail_if_no_space {
            return Err(full());
        }
        let timeout = std::time::Duration::from_millis(policy.send_timeout_ms);
        if usage.wait_for_room(timeout).await {
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
        let dlq = from.policy.dead_letter_queue.clone();
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
                self.advise(advisory::Advisory::DeadLettered {
                    destination: &from.destination,
                    message: &message.id,
                    dead_letter_queue: &dlq,
                });
                dlq_dispatcher
                    .counters
                    .enqueued
                    .fetch_add(1, Ordering::Relaxed);
                dlq_dispatcher.stored();
            }
            Err(BrokerError::Store(StoreError::Duplicate(_))) => {
                // Another subscription already dead-lettered this topic message.
                if let Err(e) = from.store_ack(message, AckWait::Receipt).await {
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
    pub(crate) async fn ack_many(
        &self,
        items: Vec<(Arc<Dispatcher>, Arc<Message>)>,
        wait: AckWait,
    ) -> Result<()> {
        let ops: Vec<TxOp> = items.iter().filter_map(|(d, m)| d.ack_op(m)).collect();
        if ops.len() > 1 {
            let tx = self.new_local_tx();
            if let Err(e) = self.run_transaction(&tx, ops).await {
                if let BrokerError::Store(se) = &e
                    && se.kind() == store_api::ErrorKind::DiskFull
                {
                    // Held until the store takes writes again (see `store_health`).
                    for (d, m) in &items {
                        if d.ack_op(m).is_some() && !self.health.defer_ack(se, d, m) {
                            return Err(e);
                        }
                        d.settle(&m.id);
                    }
                    return Ok(());
                }
                if !matches!(e, BrokerError::Store(StoreError::NotFound(_))) {
                    return Err(e);
                }
                for (d, m) in &items {
                    d.store_ack(m, wait).await?;
                }
            }
        } else if let Some((d, m)) = items.iter().find(|(d, m)| d.ack_op(m).is_some()) {
            d.ack(m, wait).await?;
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
        loop {
            let t = self.topic(topic).await?;
            match self
                .durable_subscription_on(&t, key, selector.clone())
                .await
            {
                Ok(Some(d)) => return Ok(d),
                // The topic was being removed as inactive: again, on its successor.
                Ok(None) => t.gc.wait_retired().await,
                Err(_) if !t.gc.is_live() => t.gc.wait_retired().await,
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Core::durable_subscription`] on `t`; `None` when `t` is retiring.
    async fn durable_subscription_on(
        self: &Arc<Self>,
        t: &Arc<Topic>,
        key: &SubscriptionKey,
        selector: Option<String>,
    ) -> Result<Option<Arc<Dispatcher>>> {
        let topic = &t.destination;
        let existing = t.store.lookup_subscription(key).await?;
        if let Some(info) = &existing {
            if info.selector == selector {
                return Ok(self.live_durable_dispatcher(t, key));
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
        Ok(self.live_durable_dispatcher(t, key))
    }

    /// Deletes a durable subscription wherever it is.
    /// The topics durable subscription `key` is on (a wildcard one's pattern included).
    pub(crate) fn subscription_topics(&self, key: &SubscriptionKey) -> Vec<Destination> {
        let mut out: Vec<Destination> = self
            .wildcard_durables
            .lock()
            .iter()
            .filter(|w| w.key == *key)
            .map(|w| w.destination.clone())
            .collect();
        out.extend(
            self.topics()
                .into_iter()
                .filter(|t| t.durable.lock().contains_key(key))
                .map(|t| t.destination.clone()),
        );
        out
    }

    pub(crate) async fn unsubscribe(&self, key: &SubscriptionKey) -> Result<()> {
        let mut found = self.delete_wildcard_durable(key).await?;
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
            t.touch();
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

    /// Closes every connection and the store. Says whether messages delivered by this broker
    /// were still unacknowledged (looked at before the connections close, which puts them
    /// back): they were handed to applications, so the next master must flag them.
    pub(crate) async fn shutdown(&self) -> Leaving {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Leaving::Settled;
        }
        let unsettled = self.queues().iter().any(|q| q.has_unacked_deliveries())
            || self.topics().iter().any(|t| {
                t.durable
                    .lock()
                    .values()
                    .any(|d| d.has_unacked_deliveries())
            });
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
        if unsettled {
            info!(
                "stopping with deliveries not yet acknowledged: the next master flags them redelivered"
            );
            Leaving::Unsettled
        } else {
            Leaving::Settled
        }
    }
}
