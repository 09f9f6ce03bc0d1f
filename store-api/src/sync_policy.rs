//! When a durable engine forces its writes to stable storage.

use std::time::Duration;

/// How an engine makes writes durable. The default is [`SyncPolicy::Always`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// A write returns Ok only once it is on stable storage. Concurrent writers share one fsync
    /// (group commit).
    #[default]
    Always,
    /// Writes are forced at least once per interval; a crash loses at most about one interval.
    /// XA prepares are still forced before they return.
    Periodic(Duration),
    /// Writes are left to the operating system, except XA prepares.
    Never,
}

impl SyncPolicy {
    /// ActiveMQ's `journalDiskSyncInterval` default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
}
