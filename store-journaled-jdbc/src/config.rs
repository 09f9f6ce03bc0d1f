//! The engine's settings.

use std::path::PathBuf;
use std::time::Duration;

use store_api::SyncPolicy;
use store_jdbc::JdbcConfig;

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct JournaledJdbcConfig {
    /// Where the journal files (`journal-N.log`) live.
    pub journal_directory: PathBuf,
    /// The database behind the journal. It must not carry a locker's fence: see
    /// [`JournaledJdbcStore::open`](crate::JournaledJdbcStore::open).
    pub jdbc: JdbcConfig,
    /// How often the overlay is moved into the database. ActiveMQ's default, 5 minutes.
    pub checkpoint_interval: Duration,
    /// A checkpoint starts early once this many journal bytes were written since the last.
    pub checkpoint_journal_bytes: u64,
    /// While checkpoints fail (the database is away), writes are refused once the overlay holds
    /// this many bytes, so memory stays bounded.
    pub max_overlay_bytes: u64,
    pub max_file_length: u64,
    pub sync: SyncPolicy,
    pub preallocate: bool,
}

impl JournaledJdbcConfig {
    pub fn new(journal_directory: impl Into<PathBuf>, jdbc: JdbcConfig) -> Self {
        JournaledJdbcConfig {
            journal_directory: journal_directory.into(),
            jdbc,
            checkpoint_interval: Duration::from_secs(300),
            checkpoint_journal_bytes: 32 * 1024 * 1024,
            max_overlay_bytes: 256 * 1024 * 1024,
            max_file_length: 32 * 1024 * 1024,
            sync: SyncPolicy::Always,
            preallocate: true,
        }
    }
}
