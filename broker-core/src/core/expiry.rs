//! The expiry sweep over stored messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use store_api::MessageId;
use tracing::warn;

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
}
