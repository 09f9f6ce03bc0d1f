//! Accounting of the message bytes the broker holds in memory, against one configured limit.
//!
//! Every message the broker holds (in a dispatch window, in flight to a consumer, waiting in a
//! transacted session) is counted here. Store-backed destinations stop paging in when the limit
//! is reached, so a deep queue costs at most about the limit however many messages the store
//! holds. Sends held in memory only (non-persistent ones, and topic messages, persistent or
//! not, while the topic has non-durable subscribers, each of which gets a copy) go to the temp
//! store when the limit is reached (`crate::temp_store`); with `limits.temp_bytes` 0 they wait
//! (or fail, per policy) for room. The temp store's own use is counted with this type too.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct MemoryUsage {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
    freed: Notify,
}

impl MemoryUsage {
    pub fn new(limit: u64) -> Self {
        MemoryUsage {
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            freed: Notify::new(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The highest `used` seen since start.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn has_room(&self) -> bool {
        self.used() < self.limit
    }

    /// Bytes still free under the limit.
    pub fn room(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    pub fn add(&self, bytes: u64) {
        let now = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
        self.freed.notify_waiters();
    }

    /// Waits until there is room (or `timeout` passes); true when there is room.
    pub async fn wait_for_room(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let freed = self.freed.notified();
            if self.has_room() {
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.has_room();
            }
        }
    }
}
