//! `limits.store_bytes`, ActiveMQ's `storeUsage`: the bytes of the messages the store keeps
//! (every destination's [`DestinationStore::bytes`](store_api::DestinationStore::bytes), each
//! message once, scheduled jobs included), against a limit. A persistent send that finds the
//! store full is held until consumers have drained it below the limit (ActiveMQ's producer
//! flow control), or refused at once with `send_fail_if_no_space`, or after
//! `send_timeout_ms`. The usage is measured every `store_usage_check_interval_ms` and grows by
//! each send in between, so a burst cannot overshoot by more than what one interval takes in.
//!
//! The same monitor logs once when memory, the store or the temp store (`limits.temp_bytes`)
//! passes 70 % and 90 % of its limit, and once when it is back below 70 %.
//!
//! ActiveMQ measures the store as the engine's size on disk (journal files); this broker counts
//! message bytes instead, which every engine reports the same way (a JDBC store has no size on
//! disk of its own) and which falls as soon as consumers ack, rather than when a journal file is
//! cleaned up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};

use super::Core;
use super::scheduler;
use crate::dispatch::Source;
use crate::error::{BrokerError, Result};

/// The store's use against `limits.store_bytes`.
#[derive(Debug, Default)]
pub(crate) struct StoreUsage {
    used: AtomicU64,
    /// Measured at least once: until then nothing is held.
    measured: std::sync::atomic::AtomicBool,
    changed: Notify,
    /// The highest threshold (0, 70, 90) warned about, per limit: memory, store, temp store.
    warned: [AtomicU8; 3],
}

impl StoreUsage {
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The threshold `used` of `limit` is at: 90, 70 or 0.
fn level(used: u64, limit: u64) -> u8 {
    if limit == 0 {
        return 0;
    }
    let pct = used.saturating_mul(100) / limit;
    if pct >= 90 {
        90
    } else if pct >= 70 {
        70
    } else {
        0
    }
}

impl Core {
    /// A persistent send of `bytes` may go on: the store is under `limits.store_bytes`, or
    /// has come back under it within the wait the policy allows.
    pub(crate) async fn wait_for_store(&self, bytes: u64) -> Result<()> {
        let limit = self.config.limits.store_bytes;
        let usage = &self.store_usage;
        let room = || !usage.measured.load(Ordering::Acquire) || usage.used() < limit;
        if !room() {
            let policy = &self.config.policy;
            let full = || {
                BrokerError::ResourceLimit(format!(
                    "the store is full ({} of limits.store_bytes {limit} bytes used by stored messages); consumers must drain it first",
                    usage.used()
                ))
            };
            if policy.send_fail_if_no_space {
                return Err(full());
            }
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(policy.send_timeout_ms);
            loop {
                let changed = usage.changed.notified();
                if room() {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() && !room() {
                    return Err(full());
                }
            }
        }
        usage.used.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Measures the store's use, and warns about memory and store thresholds.
    pub(crate) async fn refresh_store_usage(&self) {
        let mut total: u64 = 0;
        for q in self.queues() {
            if let Source::Queue(store) = &q.source {
                total = total.saturating_add(store.bytes().await.unwrap_or(0));
            }
        }
        for t in self.topics() {
            total = total.saturating_add(t.store.bytes().await.unwrap_or(0));
        }
        if let Ok(jobs) = self.store.queue_store(&scheduler::jobs()).await {
            total = total.saturating_add(jobs.bytes().await.unwrap_or(0));
        }
        let usage = &self.store_usage;
        usage.used.store(total, Ordering::Relaxed);
        usage.measured.store(true, Ordering::Release);
        usage.changed.notify_waiters();
        self.warn_levels(
            "store",
            1,
            total,
            self.config.limits.store_bytes,
            "limits.store_bytes",
        );
        let (used, limit) = (self.memory.used(), self.memory.limit());
        self.warn_levels("memory", 0, used, limit, "limits.memory_bytes");
        if let Some(temp) = &self.temp {
            let (used, limit) = (temp.usage().used(), temp.usage().limit());
            self.warn_levels("the temp store", 2, used, limit, "limits.temp_bytes");
        }
    }

    fn warn_levels(&self, what: &str, slot: usize, used: u64, limit: u64, key: &str) {
        let now = level(used, limit);
        let before = self.store_usage.warned[slot].swap(now, Ordering::Relaxed);
        if now > before {
            warn!(used, limit, "{what} is at {now} % of {key}");
        } else if now == 0 && before > 0 {
            info!(used, limit, "{what} is back below 70 % of {key}");
        }
    }

    /// The monitor: measures every `limits.store_usage_check_interval_ms` until the core
    /// closes.
    pub(crate) async fn watch_usage(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.limits.store_usage_check_interval_ms);
        loop {
            self.refresh_store_usage().await;
            tokio::time::sleep(every).await;
            if self.is_closed() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::level;

    #[test]
    fn levels_are_70_and_90_percent() {
        assert_eq!(level(69, 100), 0);
        assert_eq!(level(70, 100), 70);
        assert_eq!(level(89, 100), 70);
        assert_eq!(level(90, 100), 90);
        assert_eq!(level(200, 100), 90);
        assert_eq!(level(5, 0), 0);
    }
}
