//! KahaDB's settings, with ActiveMQ's names (snake_case) and defaults where they apply.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use store_api::SyncPolicy;
use store_journal::fs::FileSystem;

use crate::index_file::PageFileStorage;
use crate::index_storage::{EngineConfig, IndexStorage};

/// How a KahaDB store is laid out and run. `KahaDbConfig::new(dir)` gives ActiveMQ's defaults.
/// The journal, checkpoint and GC fields are also the settings the AMQ engine maps its own onto
/// ([`EngineConfig::settings`]); the index fields are the page file's.
#[derive(Debug, Clone)]
pub struct KahaDbConfig {
    /// Holds `db-N.log`, `db.data` and `db.redo`.
    pub directory: PathBuf,
    /// `journalMaxFileLength`: 32 MiB.
    pub journal_max_file_length: u64,
    /// `journalMaxWriteBatchSize`: 4 MiB.
    pub journal_max_write_batch_size: usize,
    /// `journalDiskSyncStrategy` / `journalDiskSyncInterval`: always.
    pub sync: SyncPolicy,
    /// `checkpointInterval`: 5 s; zero turns the timer off (checkpoints still run at close).
    pub checkpoint_interval: Duration,
    /// `cleanupInterval`: 30 s: how often a checkpoint also deletes unneeded journal files.
    pub cleanup_interval: Duration,
    /// `indexCacheSize`: 10,000 pages of 4 KiB kept in memory (dirty pages are kept on top of
    /// this until the next checkpoint).
    pub index_cache_size: usize,
    /// `indexWriteBatchSize`: 1,000; a checkpoint is started early once this many index pages
    /// are dirty, which bounds the memory they hold.
    pub index_write_batch_size: usize,
    /// `ignoreMissingJournalfiles`: false; true skips damaged journal ranges (logging each)
    /// instead of refusing to open.
    pub ignore_missing_journal_files: bool,
    /// Preallocate each journal file's blocks when it is created, ahead of need
    /// (`preallocationScope=entire_journal_async`): synced appends then overwrite allocated
    /// blocks, about 25 % more fsyncs per second on the development VM.
    pub preallocate: bool,
    /// `enableAckCompaction`: true: a journal file kept alive only by a few records has them
    /// copied forward so it can be deleted.
    pub enable_compaction: bool,
    /// A file is compacted when at most this many records keep it alive.
    pub compaction_threshold: u64,
    /// `cleanupOnStop`: true.
    pub cleanup_on_stop: bool,
    /// Under sync `always`, the add that completes a group commit writes and fsyncs it on its
    /// own thread (a runtime worker of a multi-threaded runtime, never a single-threaded one)
    /// instead of waking the journal's writer thread: one context switch less per group. Not
    /// within a second of a write+fsync that took over 20 ms (a disk in trouble stalls the
    /// writer thread instead).
    /// Default true.
    pub leader_writes: bool,
    /// Replay at open (the journal after the last checkpoint, or all of it when the index is
    /// rebuilt) reads sealed journal files (those no write will reach again) through read-only
    /// maps, one file at a time, instead of two `pread`s per batch. Default true: a 1 GiB
    /// journal scans faster, and the index rebuild is no slower (figures in the README's
    /// Benchmarks section, `benches/examples/cold_read.rs`).
    pub mmap_replay: bool,
    /// Reads of message bodies in sealed journal files (a consumer far behind the head) go
    /// through read-only maps of those files instead of two `pread`s per message. Default
    /// true: a cold drain of 1 GiB measured about 1.7 times as fast. The maps kept add up to
    /// 128 MiB to the resident memory (mapped pages count in it; they are the page cache's).
    pub mmap_reads: bool,
    /// Under sync `always`, how long an ack no client waits for (no receipt, no response
    /// required: auto acks, a JMS client's asynchronous acks) may wait for a write that must
    /// be durable now, to share its fsync instead of taking one of its own. It is durable
    /// before it completes either way; what it changes is fsyncs per message when consumers
    /// ack while producers send. Default 2 ms; 0 writes every ack at once. (ActiveMQ's KahaDB
    /// does not fsync a durable subscriber's acks at all, nor a queue ack without a response.)
    pub ack_sync_delay: Duration,
}

impl KahaDbConfig {
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        KahaDbConfig {
            directory: directory.into(),
            journal_max_file_length: 32 * 1024 * 1024,
            journal_max_write_batch_size: 4 * 1024 * 1024,
            sync: SyncPolicy::Always,
            checkpoint_interval: Duration::from_secs(5),
            cleanup_interval: Duration::from_secs(30),
            index_cache_size: 10_000,
            index_write_batch_size: 1_000,
            ignore_missing_journal_files: false,
            preallocate: true,
            enable_compaction: true,
            compaction_threshold: 100,
            cleanup_on_stop: true,
            leader_writes: true,
            mmap_replay: true,
            mmap_reads: true,
            ack_sync_delay: store_journal::DEFAULT_DEFER_DELAY,
        }
    }
}

impl EngineConfig for KahaDbConfig {
    fn settings(&self) -> KahaDbConfig {
        self.clone()
    }

    fn index_storage(&self, fs: Arc<dyn FileSystem>) -> Box<dyn IndexStorage> {
        Box::new(PageFileStorage::new(
            fs,
            &self.directory,
            self.index_cache_size,
            self.index_write_batch_size,
        ))
    }
}
