//! The fence a locker hands to a store: whether this broker still holds the lock and, for the
//! lease locker, the epoch every write transaction must find in the lock row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

const NO_EPOCH: i64 = i64::MIN;

/// Shared between a locker and the stores it guards. Cloning gives another handle on the same
/// state.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    held: AtomicBool,
    epoch: AtomicI64,
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
