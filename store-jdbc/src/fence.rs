//! The fence a locker hands to a store: whether this broker still holds the lock and, for the
//! lease locker, the epoch every write transaction must find in the lock row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

const NO_EPOCH: i64 = i64::MIN;

/// Shared between a locker and the stores it guards. Cloning gives another handle on the same
/// state.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    held: AtomicBool,
    epoch: AtomicI64,
    /// Milliseconds; 0 for no limit.
    idle_transaction_limit: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence::new()
    }
}

impl Fence {
    /// A fence not yet held: a store behind it refuses writes until a locker grants it.
    pub fn new() -> Fence {
        Fence(Arc::new(Inner {
            held: AtomicBool::new(false),
            epoch: AtomicI64::new(NO_EPOCH),
            idle_transaction_limit: AtomicU64::new(0),
        }))
    }

    /// True while the locker holds the lock.
    pub fn is_held(&self) -> bool {
        self.0.held.load(Ordering::Acquire)
    }

    /// The epoch write transactions must find in the lock row, if the locker fences by epoch.
    pub fn epoch(&self) -> Option<i64> {
        match self.0.epoch.load(Ordering::Acquire) {
            NO_EPOCH => None,
            e => Some(e),
        }
    }

    /// How long a write transaction of a store behind this fence may sit idle before the
    /// database ends it and its session, if the locker needs such a limit.
    ///
    /// The lease locker does: each write transaction share-locks the lock row to check the
    /// epoch, so a master frozen (stopped, swapped out, cut off behind a half-open connection)
    /// inside one would block the slave's take-over for as long as the database keeps the
    /// idle session, which is hours by default. With the limit shorter than the lease, the
    /// slave takes over when the lease runs out, frozen transaction or not.
    pub fn idle_transaction_limit(&self) -> Option<Duration> {
        match self.0.idle_transaction_limit.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Sets [`Fence::idle_transaction_limit`]; at least a millisecond.
    pub fn limit_idle_transactions(&self, limit: Duration) {
        let ms = limit.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.0.idle_transaction_limit.store(ms, Ordering::Release);
    }

    /// Marks the lock held, fencing writes by `epoch` when given.
    pub fn grant(&self, epoch: Option<i64>) {
        self.0
            .epoch
            .store(epoch.unwrap_or(NO_EPOCH), Ordering::Release);
        self.0.held.store(true, Ordering::Release);
    }

    /// Marks the lock lost: every later write is refused.
    pub fn revoke(&self) {
        self.0.held.store(false, Ordering::Release);
    }
}
