//! The admin API of a serving broker: what the web console and the CLI tools list, browse,
//! purge, delete and send. Every call answers `NotServing` unless the broker is the master.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use store_api::{Destination, Message, MessageId, SubscriptionInfo, SubscriptionKey, Xid};

use crate::broker::Broker;
use crate::core::now_ms;
use crate::core::scheduler::ScheduledJob;
use crate::dispatch::{Dispatcher, Source};
use crate::error::Result;

/// The creations and deletions of temporary destinations, as [`Broker::watch_temporaries`]
/// gives them (a receiver that falls far behind is told it lagged).
pub type TemporaryEvents = tokio::sync::broadcast::Receiver<crate::core::temporary::TemporaryEvent>;

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
    /// For a topic: messages dropped for slow non-durable subscribers over their pending
    /// limit (`limits.max_pending_non_durable`) since start; 0 otherwise.
    pub slow_consumer_dropped: u64,
}

/// Refuses an admin call on a live temporary queue: these only know store-backed queues, and
/// would otherwise create an ordinary queue of the same name. (Unlike ActiveMQ, whose console
/// browses and purges temporary queues too.)
fn not_temporary(core: &crate::core::Core, destination: &Destination, what: &str) -> Result<()> {
    if core.temporaries.contains(destination) {
        return Err(crate::error::BrokerError::InvalidDestination(format!(
            "{} cannot be {what} here",
            crate::core::temporary::temporary_url(destination)
        )));
    }
    Ok(())
}

impl Broker {
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

    /// The consumers alive now, ordered by id, as their "started" advisories described them
    /// (a new watcher of the consumer advisories is told of these first).
    pub fn live_consumers(&self) -> Result<Vec<crate::core::advisory::LiveConsumer>> {
        Ok(self.core()?.live_consumers.all())
    }

    /// The engine's counters ([`store_api::PersistenceAdapter::metrics`]).
    pub fn store_metrics(&self) -> Result<Vec<(&'static str, u64)>> {
        Ok(self.core()?.store.metrics())
    }

    /// Whether the store takes writes (it refuses them while its disk is full, and takes them
    /// again by itself once space is freed).
    pub fn store_status(&self) -> Result<crate::core::StoreStatus> {
        Ok(self.core()?.store_status())
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
        // Composite and virtual-topic sends copy as from a client; a wildcard is refused.
        let routes = core.routes(&message.destination)?;
        if let [only] = routes.as_slice()
            && *only == message.destination
        {
            core.send(message).await?;
        } else {
            let copies = routes
                .into_iter()
                .map(|d| {
                    let mut copy = message.clone();
                    copy.destination = d;
                    copy
                })
                .collect();
            let placed = core.place_all(copies).await?;
            placed.written.await?;
            core.delivered(placed.then);
        }
        Ok(id)
    }

    /// Deletes a queue with its messages. Its consumers see the end of their stream.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        let core = self.core()?;
        let destination = Destination::queue(name);
        not_temporary(&core, &destination, "deleted")?;
        if let Some(d) = core.remove_queue(&destination) {
            d.close();
        }
        core.store.remove_destination(&destination).await?;
        core.advise(crate::core::advisory::Advisory::Destination {
            destination: &destination,
            created: false,
        });
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

    /// The broker's memory account, for what a protocol door holds on a connection's behalf
    /// (its outgoing queue) to count against `limits.memory_bytes` too.
    pub fn memory(&self) -> Result<Arc<crate::memory::MemoryUsage>> {
        Ok(Arc::clone(&self.core()?.memory))
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
            let stored = match store.count().await {
                Ok(n) => n,
                // Removed as inactive meanwhile (`gc_inactive_destinations`): not listed.
                Err(_) if !core.has_destination(&q.destination) => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(DestinationStats {
                destination: q.destination.clone(),
                subscription: None,
                pending: stored + q.non_persistent(),
                consumers: q.consumer_count() as u64,
                enqueued: q.counters.enqueued.load(Ordering::Relaxed),
                dequeued: q.counters.dequeued.load(Ordering::Relaxed),
                expired: q.counters.expired.load(Ordering::Relaxed),
                slow_consumer_dropped: 0,
            });
        }
        for t in core.topics() {
            let pending = match t.store.count().await {
                Ok(n) => n,
                // Being removed as inactive, its store maybe gone already: not listed.
                Err(_) if !t.gc.is_live() => continue,
                Err(e) => return Err(e.into()),
            };
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
                pending,
                consumers,
                enqueued: t.enqueued.load(Ordering::Relaxed),
                dequeued,
                expired: 0,
                slow_consumer_dropped: t.slow_consumer_dropped.load(Ordering::Relaxed),
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
                    slow_consumer_dropped: 0,
                });
            }
        }
        // Temporary destinations are listed while they live: all their messages are in
        // memory, none in the store.
        for (destination, pending, consumers) in core.temporaries.stats() {
            out.push(DestinationStats {
                destination,
                subscription: None,
                pending,
                consumers,
                enqueued: 0,
                dequeued: 0,
                expired: 0,
                slow_consumer_dropped: 0,
            });
        }
        out.sort_by(|a, b| {
            (&a.destination, &a.subscription).cmp(&(&b.destination, &b.subscription))
        });
        Ok(out)
    }

    /// Live temporary queues and topics with the id of the connection owning each, sorted.
    pub fn temporary_destinations(&self) -> Result<Vec<(Destination, String)>> {
        Ok(self.core()?.temporaries.list())
    }

    /// Whether `destination` is a live temporary destination.
    pub fn is_temporary(&self, destination: &Destination) -> bool {
        self.core()
            .is_ok_and(|c| c.temporaries.contains(destination))
    }

    /// Every temporary destination created or deleted from now on, and those live now (in
    /// that order, so that none is missed between the two; one may be in both).
    pub fn watch_temporaries(&self) -> Result<(TemporaryEvents, Vec<(Destination, String)>)> {
        let core = self.core()?;
        let rx = core.temporaries.subscribe();
        Ok((rx, core.temporaries.list()))
    }

    /// The store's use: (bytes of stored messages at the last measure, `limits.store_bytes`).
    pub fn store_usage(&self) -> Result<(u64, u64)> {
        let core = self.core()?;
        Ok((core.store_usage.used(), core.config.limits.store_bytes))
    }

    /// The temp store's use: (bytes of spooled non-persistent messages, `limits.temp_bytes`);
    /// (0, 0) when spooling is off.
    pub fn temp_usage(&self) -> Result<(u64, u64)> {
        let core = self.core()?;
        Ok(core
            .temp
            .as_ref()
            .map_or((0, 0), |t| (t.usage().used(), t.usage().limit())))
    }

    /// The temp store's segment files on disk now (0 when spooling is off).
    pub fn temp_files(&self) -> Result<usize> {
        Ok(self.core()?.temp.as_ref().map_or(0, |t| t.segment_count()))
    }

    /// The scheduled jobs (`AMQ_SCHEDULED_DELAY` and the others), soonest first.
    pub async fn scheduled_jobs(&self) -> Result<Vec<ScheduledJob>> {
        self.core()?.scheduled_jobs().await
    }

    /// Cancels scheduled job `id` and its repeats; false when there is no such job.
    pub async fn cancel_scheduled(&self, id: &str) -> Result<bool> {
        self.core()?.cancel_scheduled(id).await
    }

    /// Durable subscriptions of every topic, with their selectors.
    pub async fn durable_subscriptions(&self) -> Result<Vec<(Destination, SubscriptionInfo)>> {
        let core = self.core()?;
        let mut out = Vec::new();
        for t in core.topics() {
            let infos = match t.store.subscriptions().await {
                Ok(infos) => infos,
                // Being removed as inactive: it has none.
                Err(_) if !t.gc.is_live() => continue,
                Err(e) => return Err(e.into()),
            };
            for info in infos {
                out.push((t.destination.clone(), info));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.key).cmp(&(&b.0, &b.1.key)));
        Ok(out)
    }

    /// Deletes every message of a queue; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64> {
        let core = self.core()?;
        not_temporary(&core, &Destination::queue(queue), "purged")?;
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
        not_temporary(&core, &Destination::queue(queue), "browsed")?;
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

    /// One pass of `gc_inactive_destinations` now, as its timer runs it every
    /// `gc_check_interval_ms` (for tests and tools): removes the queues and topics inactive
    /// for their timeout.
    pub async fn gc_now(&self) -> Result<()> {
        self.core()?.sweep_inactive().await;
        Ok(())
    }
}
