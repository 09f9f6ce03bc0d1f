//! The AMQ engine: ActiveMQ's pre-5.4 store, rebuilt without its faults. Every change is appended
//! to rolling data logs (`journal/data-N`, 32 MiB, the shared `store-journal`: group commit,
//! CRCs, torn-tail recovery); the reference index (per destination: message → log location and
//! expiration, durable subscriptions and their exact pending sets) lives wholly in memory; each
//! checkpoint (every 20 s by default) writes it as one snapshot (`kr-store/index-G.snapshot`,
//! written to a temporary file, fsynced, renamed, directory fsynced) and then records the
//! snapshot and the journal mark it reflects in `journal/data-control`, written twice.
//!
//! Opening loads the newest snapshot a valid control slot names and replays the logs from its
//! mark, so recovery time follows the data written since the last checkpoint, after a clean or
//! an unclean stop; with no usable snapshot it replays everything, saying so in the log.
//! Cleanup deletes a log only once a snapshot past it is durable and nothing it holds is
//! referenced (ActiveMQ's AMQ-1479 deleted logs the snapshot still needed).
//!
//! What differs from ActiveMQ's AMQ store: adds are fsynced by default (sync policy `always`;
//! ActiveMQ's did not sync adds), a torn log tail is cut by checksum instead of being read as
//! data, and recovery after an unclean stop replays from the last snapshot rather than the
//! whole journal.
//!
//! The trade-off against KahaDB, whose journal, index logic, GC and compaction it shares (see
//! `store-kahadb`'s FORMAT.md for the record layouts): index reads never touch the disk, but the
//! index must fit in memory and each checkpoint writes all of it, where KahaDB keeps a bounded
//! page cache and writes only changed pages.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use store_api::{
    Destination, PersistenceAdapter, PreparedTransaction, QueueStore, Result, SyncPolicy,
    TopicStore, TransactionId, TxOp, Xid,
};
use store_kahadb::{IndexLayout, KahaDbConfig, KahaDbStats, KahaDbStore};

pub use store_kahadb::KahaError as AmqError;

/// AMQ store settings, with ActiveMQ's AMQ defaults where they apply.
#[derive(Debug, Clone)]
pub struct AmqConfig {
    pub directory: PathBuf,
    /// `maxFileLength`: 32 MiB.
    pub max_file_length: u64,
    /// Sync `always` by default (ActiveMQ's AMQ store did not sync adds).
    pub sync: SyncPolicy,
    /// `checkpointInterval`: 20 s.
    pub checkpoint_interval: Duration,
    /// `cleanupInterval`: 30 s.
    pub cleanup_interval: Duration,
    /// Skip damaged log ranges (logged) instead of refusing to open.
    pub ignore_corrupt_logs: bool,
    pub preallocate: bool,
    /// Under sync `always`, the append that completes a group commit writes and fsyncs it on its
    /// own thread (a runtime worker of a multi-threaded runtime, never a single-threaded one)
    /// instead of waking the journal's writer thread: one context switch less per group. Not
    /// within a second of a write+fsync that took over 20 ms (a disk in trouble stalls the
    /// writer thread instead).
    /// Default true.
    pub leader_writes: bool,
}

impl AmqConfig {
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        AmqConfig {
            directory: directory.into(),
            max_file_length: 32 * 1024 * 1024,
            sync: SyncPolicy::Always,
            checkpoint_interval: Duration::from_secs(20),
            cleanup_interval: Duration::from_secs(30),
            ignore_corrupt_logs: false,
            preallocate: true,
            leader_writes: true,
        }
    }

    fn engine(&self) -> KahaDbConfig {
        let mut c = KahaDbConfig::new(&self.directory);
        c.layout = IndexLayout::Snapshot;
        c.journal_max_file_length = self.max_file_length;
        c.sync = self.sync;
        c.checkpoint_interval = self.checkpoint_interval;
        c.cleanup_interval = self.cleanup_interval;
        c.ignore_missing_journal_files = self.ignore_corrupt_logs;
        c.preallocate = self.preallocate;
        c.leader_writes = self.leader_writes;
        c
    }
}

/// The AMQ store. Cloning shares it.
#[derive(Clone)]
pub struct AmqStore {
    inner: KahaDbStore,
}

impl AmqStore {
    pub fn open(config: AmqConfig) -> std::result::Result<AmqStore, AmqError> {
        Ok(AmqStore {
            inner: KahaDbStore::open(config.engine())?,
        })
    }

    /// Opens over a given file system (tests use the fault-injecting one).
    pub fn open_with_fs(
        config: AmqConfig,
        fs: Arc<dyn store_journal::fs::FileSystem>,
    ) -> std::result::Result<AmqStore, AmqError> {
        Ok(AmqStore {
            inner: KahaDbStore::open_with_fs(config.engine(), fs)?,
        })
    }

    pub fn stats(&self) -> KahaDbStats {
        self.inner.stats()
    }

    /// The data log ids present, oldest first.
    pub fn log_files(&self) -> Vec<u32> {
        self.inner.journal_files()
    }
}

#[async_trait]
impl PersistenceAdapter for AmqStore {
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        // KahaDB's counters, without its page file's.
        let mut m = PersistenceAdapter::metrics(&self.inner);
        m.retain(|(k, _)| *k != "index_pages");
        m
    }

    fn kind(&self) -> &'static str {
        "amq"
    }
    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.inner.destinations().await
    }
    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        self.inner.queue_store(destination).await
    }
    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        self.inner.topic_store(destination).await
    }
    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        self.inner.remove_destination(destination).await
    }
    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.inner.begin(tx).await
    }
    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.inner.enlist(tx, op).await
    }
    async fn prepare(&self, xid: &Xid) -> Result<()> {
        self.inner.prepare(xid).await
    }
    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        self.inner.commit(tx).await
    }
    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        self.inner.rollback(tx).await
    }
    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.inner.prepared_transactions().await
    }
    async fn checkpoint(&self, cleanup: bool) -> Result<()> {
        self.inner.checkpoint(cleanup).await
    }
    async fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk().await
    }
    async fn delete_all(&self) -> Result<()> {
        self.inner.delete_all().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
