//! The expiry sweep over stored messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use store_api::MessageId;
use tracing::{info, warn};

use super::{Core, now_ms};
use crate::dispatch::{Dispatcher, Source};

impl Core {
    /// One pass of the expiry sweep: stored messages past their expiration that no consumer
    /// holds are dead-lettered or dropped, per policy.
    pub(crate) async fn sweep_expired(self: &Arc<Self>) {
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
                self.advise(super::advisory::Advisory::Expired {
                    destination: &q.destination,
                    message: &id,
                });
                if q.policy.expired == crate::config::ExpiredPolicy::DeadLetter
                    && !self.policies.is_dead_letter_queue(&q.destination)
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
}

impl Core {
    /// `gc_inactive_destinations`: removes the queues that have had no consumer and no
    /// message for their `inactive_timeout_before_gc_ms`, from the broker and from the store;
    /// then the inactive topics (`topic_gc`).
    /// A send racing with the removal is not lost: its message is in the store, and the queue
    /// comes back with it at its next use.
    pub(crate) async fn sweep_inactive(self: &Arc<Self>) {
        let now = crate::core::now_ms();
        for q in self.queues() {
            let Some(idle) = q.policy.gc_after else {
                continue;
            };
            let Source::Queue(store) = &q.source else {
                continue;
            };
            if !q.is_inactive(now, idle) || !matches!(store.count().await, Ok(0)) {
                continue;
            }
            // Only the dispatcher looked at: one made since is not this one's to remove.
            let removed = self.remove_queue_if(&q);
            if !removed {
                continue;
            }
            self.advise(super::advisory::Advisory::Destination {
                destination: &q.destination,
                created: false,
            });
            q.close();
            if !matches!(store.count().await, Ok(0)) {
                continue;
            }
            match self.store.remove_destination(&q.destination).await {
                Ok(()) => {
                    info!(queue = %q.destination, idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX), "removed an inactive queue (gc_inactive_destinations)")
                }
                Err(e) => {
                    warn!(queue = %q.destination, "cannot remove an inactive queue from the store: {e}")
                }
            }
        }
        self.sweep_inactive_topics().await;
    }
}
