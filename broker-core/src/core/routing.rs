//! Where a send goes and where a wildcard consumer listens: ActiveMQ's composite destinations,
//! virtual topics and wildcards, on top of the plain per-destination routing in `core.rs`.
//!
//! - A send names one destination or a composite list; [`Core::routes`] expands it into plain
//!   destinations (adding, for a virtual topic, every existing consumer queue), refusing a
//!   wildcard or a malformed name. More than one destination is placed by [`Core::place_all`]:
//!   every stored copy in ONE store transaction, so a crash leaves all copies or none.
//! - A non-durable subscriber on a wildcard topic is one memory dispatcher listed among the
//!   subscribers of every matching topic; a topic created later finds it in
//!   `wildcard_subscribers` and lists it too.
//! - A consumer on a wildcard queue ([`QueueFanIn`]) is one consumer registered on every
//!   matching queue's dispatcher with one shared channel; a queue created later attaches it.
//!
//! Lock order: `topics` / `queues` may be held while taking a wildcard registry, never the
//! reverse (a new wildcard consumer registers, releases, then looks at the destinations).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use store_api::{Destination, Message, Pending as StorePending, TxOp};
use tokio::sync::mpsc;

use super::{Core, Placed, Then};
use crate::destination_filter::{
    self, DestinationFilter, DestinationNameError, has_wildcard_chars, is_composite,
};
use crate::dispatch::{Delivery, Dispatcher, Flow, Source};
use crate::error::Result;
use crate::selector::Selector;

/// One consumer on every queue a wildcard matches, now and later (or on every part of a
/// wildcard durable subscription, see `wildcard_durable`).
pub(crate) struct QueueFanIn {
    pub filter: DestinationFilter,
    pub id: u64,
    selector: Option<Arc<Selector>>,
    flow: Flow,
    tx: mpsc::UnboundedSender<Delivery>,
    attached: Mutex<Vec<Arc<Dispatcher>>>,
    closed: AtomicBool,
}

impl QueueFanIn {
    pub(crate) fn new(
        filter: DestinationFilter,
        id: u64,
        selector: Option<Arc<Selector>>,
        flow: Flow,
    ) -> (Arc<QueueFanIn>, mpsc::UnboundedReceiver<Delivery>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let fan_in = Arc::new(QueueFanIn {
            filter,
            id,
            selector,
            flow,
            tx,
            attached: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        (fan_in, rx)
    }

    /// Registers the consumer on `d` unless it is there already or closed.
    pub(crate) fn attach(&self, d: &Arc<Dispatcher>) {
        let mut attached = self.attached.lock();
        if self.closed.load(Ordering::Acquire) || attached.iter().any(|a| Arc::ptr_eq(a, d)) {
            return;
        }
        d.add_consumer_sender(
            self.id,
            self.selector.clone(),
            self.flow.clone(),
            // A wildcard consumer is never exclusive on the queues it matches.
            false,
            // Counted as one of this broker's own consumers: a bridge forwarding a wildcard
            // (rare: demand is per destination) keeps its queues from replaying, never loops
            // (its loop selector stays).
            crate::dispatch::NetworkRole::default(),
            self.tx.clone(),
        );
        attached.push(Arc::clone(d));
    }

    /// Its credit grew: every dispatcher it is on looks for messages for it.
    pub(crate) fn wake(&self) {
        for d in self.attached.lock().iter() {
            d.wake();
        }
    }

    /// Unregisters from every queue; nothing attaches it again.
    pub(crate) fn detach_all(&self) {
        self.closed.store(true, Ordering::Release);
        let attached = std::mem::take(&mut *self.attached.lock());
        for d in attached {
            d.remove_consumer(self.id);
        }
    }
}

/// The refusal of a send to a wildcard.
fn wildcard_send(name: &str) -> DestinationNameError {
    DestinationNameError {
        name: name.to_owned(),
        reason: "a wildcard names a set of destinations and cannot be sent to; send to one of them",
    }
}

impl Core {
    /// The plain destinations a send to `destination` reaches, in order, without duplicates:
    /// the composite's elements, and after each virtual topic its existing consumer queues.
    pub(crate) fn routes(&self, destination: &Destination) -> Result<Vec<Destination>> {
        let parts = if is_composite(&destination.name) {
            destination_filter::split_composite(&destination.name, destination.kind)?
        } else {
            vec![destination.clone()]
        };
        let mut out: Vec<Destination> = Vec::with_capacity(parts.len());
        for d in parts {
            if has_wildcard_chars(&d.name) {
                // Malformed names get the parser's reason; well-formed wildcards are refused.
                DestinationFilter::parse(&d.name)?;
                return Err(wildcard_send(&d.name).into());
            }
            let consumer_queues = if d.is_topic() {
                self.virtual_topic_queues(&d.name)?
            } else {
                Vec::new()
            };
            for d in std::iter::once(d).chain(consumer_queues) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// The existing queues a virtual topic `topic` copies to (none when it is not virtual).
    fn virtual_topic_queues(&self, topic: &str) -> Result<Vec<Destination>> {
        let broker = &self.config.broker;
        if !broker.use_virtual_topics || !self.virtual_topics.matches(topic) {
            return Ok(Vec::new());
        }
        let filter = broker.virtual_queue_filter(topic)?;
        let mut names: Vec<Arc<str>> = self
            .queues
            .lock()
            .keys()
            .filter(|q| filter.matches(q))
            .cloned()
            .collect();
        names.sort();
        Ok(names.into_iter().map(Destination::queue).collect())
    }

    /// Places one copy of a message per destination (the copies differ only in their
    /// destination). Every copy that is stored is stored in one store transaction, written
    /// before this returns; what remains is delivery.
    pub(crate) async fn place_all(self: &Arc<Self>, copies: Vec<Message>) -> Result<Placed> {
        let (ops, then, in_memory) = self.route_ops(copies).await?;
        let (then, in_memory) = if in_memory {
            self.spool_copies(then).await?
        } else {
            (then, false)
        };
        if in_memory {
            self.wait_for_memory().await?;
        }
        if !ops.is_empty() {
            let bytes = ops
                .iter()
                .map(|op| match op {
                    TxOp::Add(m) => m.size(),
                    _ => 0,
                })
                .sum();
            self.wait_for_store(bytes).await?;
            let tx = self.new_local_tx();
            self.run_transaction(&tx, ops).await?;
        }
        Ok(Placed {
            written: StorePending::ready(Ok(0)),
            then,
        })
    }

    /// The store operations that add `copies` (the persistent ones a store keeps), what
    /// delivers them once those are written, and whether any copy is held in memory (so the
    /// caller waits for room first).
    pub(crate) async fn route_ops(
        self: &Arc<Self>,
        copies: Vec<Message>,
    ) -> Result<(Vec<TxOp>, Then, bool)> {
        let mut ops = Vec::with_capacity(copies.len());
        let mut thens = Vec::with_capacity(copies.len());
        let mut in_memory = false;
        for message in copies {
            let message = Arc::new(message);
            if message.destination.is_queue() {
                let q = self.queue(&message.destination).await?;
                if !message.persistent {
                    in_memory = true;
                    thens.push(Then::Push(q, message));
                } else if matches!(q.source, Source::Queue(_)) {
                    ops.push(TxOp::Add((*message).clone()));
                    thens.push(Then::Stored(q));
                }
            } else {
                let t = self.topic(&message.destination).await?;
                // As in `place`: copies for non-durable subscribers are held in memory.
                if !message.persistent || !t.subscribers.lock().is_empty() {
                    in_memory = true;
                }
                if message.persistent && !t.durable.lock().is_empty() {
                    ops.push(TxOp::Add((*message).clone()));
                }
                thens.push(Then::FanOut(t, message));
            }
        }
        Ok((ops, Then::Many(thens), in_memory))
    }

    /// A non-durable subscriber on a wildcard topic: listed on every matching topic, and on
    /// those created later.
    pub(crate) fn add_wildcard_subscriber(&self, filter: DestinationFilter, d: &Arc<Dispatcher>) {
        self.wildcard_subscribers
            .lock()
            .push((filter.clone(), Arc::clone(d)));
        for t in self.topics() {
            if filter.matches(&t.destination.name) {
                let mut subscribers = t.subscribers.lock();
                if !subscribers.iter().any(|s| Arc::ptr_eq(s, d)) {
                    subscribers.push(Arc::clone(d));
                }
            }
        }
    }

    /// The wildcard subscribers a new topic named `name` is to list.
    pub(crate) fn wildcard_subscribers_of(&self, name: &str) -> Vec<Arc<Dispatcher>> {
        self.wildcard_subscribers
            .lock()
            .iter()
            .filter(|(f, _)| f.matches(name))
            .map(|(_, d)| Arc::clone(d))
            .collect()
    }

    /// A wildcard subscriber went away: off every topic.
    pub(crate) fn remove_wildcard_subscriber(&self, d: &Arc<Dispatcher>) {
        self.wildcard_subscribers
            .lock()
            .retain(|(_, x)| !Arc::ptr_eq(x, d));
        for t in self.topics() {
            t.subscribers.lock().retain(|x| !Arc::ptr_eq(x, d));
        }
    }

    /// A consumer on every queue `filter` matches, now and later. Its deliveries arrive on
    /// the returned receiver, each naming the queue's dispatcher it came from.
    pub(crate) fn add_queue_fan_in(
        &self,
        filter: DestinationFilter,
        id: u64,
        selector: Option<Arc<Selector>>,
        flow: Flow,
    ) -> (Arc<QueueFanIn>, mpsc::UnboundedReceiver<Delivery>) {
        let (fan_in, rx) = QueueFanIn::new(filter, id, selector, flow);
        self.wildcard_consumers.lock().push(Arc::clone(&fan_in));
        for q in self.queues() {
            if fan_in.filter.matches(&q.destination.name) {
                fan_in.attach(&q);
            }
        }
        (fan_in, rx)
    }

    /// A new queue: the wildcard consumers that match it attach.
    pub(crate) fn attach_wildcard_consumers(&self, q: &Arc<Dispatcher>) {
        let matching: Vec<Arc<QueueFanIn>> = self
            .wildcard_consumers
            .lock()
            .iter()
            .filter(|f| f.filter.matches(&q.destination.name))
            .cloned()
            .collect();
        for f in matching {
            f.attach(q);
        }
    }

    pub(crate) fn remove_queue_fan_in(&self, fan_in: &Arc<QueueFanIn>) {
        self.wildcard_consumers
            .lock()
            .retain(|f| !Arc::ptr_eq(f, fan_in));
        fan_in.detach_all();
    }
}
