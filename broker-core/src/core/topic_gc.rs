//! `gc_inactive_destinations` for topics, as ActiveMQ: a topic with no subscriber (no
//! non-durable subscriber and no durable subscription, connected or not), no producer and no
//! message or subscriber coming or going for `inactive_timeout_before_gc_ms` is removed from
//! the broker and from the store, with a destination-deleted advisory.
//!
//! The race to get right is a subscriber arriving while the topic is removed: it must end up
//! on a live topic, never on the one going away (where it would hear nothing). So a topic is
//! removed in two steps. First, under the registry lock and the topic's subscriber locks, it
//! is found empty and marked retiring; a registration takes the same lock and refuses a topic
//! that is not live, so either the subscriber was there first (and the topic is kept) or it
//! sees the mark. Then the store is emptied and the topic leaves the registry. Whoever found
//! it retiring waits for that to finish ([`GcState::wait_retired`]) and looks the name up
//! again, which creates its successor. A durable subscription added to the store meanwhile
//! is seen by the second look at the store, and the topic is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use store_api::{Destination, SubscriptionKey};
use tracing::{info, warn};

use super::{Core, Topic, now_ms};
use crate::dispatch::{Dispatcher, Source};
use crate::error::Result;

const LIVE: u8 = 0;
const RETIRING: u8 = 1;
const GONE: u8 = 2;

/// Where a topic is in its removal as inactive.
#[derive(Default)]
pub(crate) struct GcState {
    state: AtomicU8,
    settled: tokio::sync::Notify,
}

impl GcState {
    /// Takes subscribers (it is neither being removed nor gone).
    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) == LIVE
    }

    /// Returns once the topic is no longer retiring: removed, or kept after all.
    pub(crate) async fn wait_retired(&self) {
        let settled = self.settled.notified();
        tokio::pin!(settled);
        // Registered before the state is read, so a change right after is not missed.
        settled.as_mut().enable();
        if self.state.load(Ordering::Acquire) == RETIRING {
            settled.await;
        }
    }

    fn settle(&self, to: u8) {
        self.state.store(to, Ordering::Release);
        self.settled.notify_waiters();
    }
}

impl Topic {
    /// Something came or went: the inactivity timeout starts again.
    pub(crate) fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }
}

impl Core {
    /// A non-durable subscriber of `destination`, made by `start` for the topic and listed on
    /// it; never on a topic being removed as inactive.
    pub(crate) async fn topic_subscriber(
        self: &Arc<Self>,
        destination: &Destination,
        start: impl Fn(&Topic) -> Arc<Dispatcher>,
    ) -> Result<Arc<Dispatcher>> {
        loop {
            let t = self.topic(destination).await?;
            let d = start(&t);
            {
                let mut subscribers = t.subscribers.lock();
                if t.gc.is_live() {
                    subscribers.push(Arc::clone(&d));
                    drop(subscribers);
                    t.touch();
                    return Ok(d);
                }
            }
            d.close();
            t.gc.wait_retired().await;
        }
    }

    /// The dispatcher of durable subscription `key` on `t`, made if new; `None` when `t` is
    /// being removed as inactive (the caller looks the topic up again).
    pub(crate) fn live_durable_dispatcher(
        self: &Arc<Self>,
        t: &Topic,
        key: &SubscriptionKey,
    ) -> Option<Arc<Dispatcher>> {
        let mut durable = t.durable.lock();
        if !t.gc.is_live() {
            return None;
        }
        let d = Arc::clone(durable.entry(key.clone()).or_insert_with(|| {
            Dispatcher::start(
                self,
                t.destination.clone(),
                Source::Durable {
                    store: Arc::clone(&t.store),
                    key: key.clone(),
                },
            )
        }));
        drop(durable);
        t.touch();
        Some(d)
    }

    /// One pass of `gc_inactive_destinations` over the topics.
    pub(crate) async fn sweep_inactive_topics(self: &Arc<Self>) {
        for t in self.topics() {
            let Some(idle) = self.policies.resolve(&t.destination).gc_after else {
                continue;
            };
            if !self.topic_is_idle(&t, now_ms(), idle) || !self.topic_store_is_empty(&t).await {
                continue;
            }
            if !self.begin_retiring(&t, idle) {
                continue;
            }
            // A durable subscription stored since the first look keeps the topic.
            if !self.topic_store_is_empty(&t).await {
                t.gc.settle(LIVE);
                continue;
            }
            if let Err(e) = self.store.remove_destination(&t.destination).await {
                warn!(topic = %t.destination, "cannot remove an inactive topic from the store: {e}");
                t.gc.settle(LIVE);
                continue;
            }
            {
                let mut topics = self.topics.lock();
                if topics
                    .get(&t.destination.name)
                    .is_some_and(|x| Arc::ptr_eq(x, &t))
                {
                    topics.remove(&t.destination.name);
                }
            }
            t.gc.settle(GONE);
            self.advise(super::advisory::Advisory::Destination {
                destination: &t.destination,
                created: false,
            });
            info!(topic = %t.destination, idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX), "removed an inactive topic (gc_inactive_destinations)");
        }
    }

    /// No subscriber, no producer, and nothing came or went for `idle`.
    fn topic_is_idle(&self, t: &Topic, now: i64, idle: Duration) -> bool {
        t.subscribers.lock().is_empty()
            && t.durable.lock().is_empty()
            && self.producer_counts.count(&t.destination) == 0
            && now.saturating_sub(t.last_active.load(Ordering::Relaxed))
                >= i64::try_from(idle.as_millis()).unwrap_or(i64::MAX)
    }

    /// The store holds no durable subscription of the topic (connected or not) and no message.
    async fn topic_store_is_empty(&self, t: &Topic) -> bool {
        matches!(t.store.subscriptions().await, Ok(s) if s.is_empty())
            && matches!(t.store.count().await, Ok(0))
    }

    /// Marks `t` retiring if it is still registered and still idle, under the locks every
    /// registration takes (see the module docs).
    fn begin_retiring(&self, t: &Arc<Topic>, idle: Duration) -> bool {
        let topics = self.topics.lock();
        if !topics
            .get(&t.destination.name)
            .is_some_and(|x| Arc::ptr_eq(x, t))
        {
            return false;
        }
        let subscribers = t.subscribers.lock();
        let durable = t.durable.lock();
        let idle_now = subscribers.is_empty()
            && durable.is_empty()
            && self.producer_counts.count(&t.destination) == 0
            && now_ms().saturating_sub(t.last_active.load(Ordering::Relaxed))
                >= i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        if idle_now {
            t.gc.state.store(RETIRING, Ordering::Release);
        }
        idle_now
    }
}
