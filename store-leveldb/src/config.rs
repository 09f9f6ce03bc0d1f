//! The engine's settings, named after ActiveMQ's `<levelDB>` attributes where one exists.

use std::path::PathBuf;

/// How the LevelDB engine opens its RocksDB database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelDbConfig {
    /// The database directory (ActiveMQ's `directory`).
    pub directory: PathBuf,
    /// Every write waits for an fsync of the journal before it returns, shared by the writers
    /// that arrived meanwhile (ActiveMQ's `sync`). Off, writes reach the operating system
    /// only, except XA prepares, which are always synced.
    pub sync: bool,
    /// Each journal file's size (ActiveMQ's `logSize`): a file is deleted once RocksDB holds
    /// all of it and no stored message's body is in it. Default 32 MiB, KahaDB's journal file
    /// size, where ActiveMQ's LevelDB store has 100 MiB: after a crash the newest file is
    /// scanned whole at open (measured with the `open_time` example, 1 GiB stored: about 50 ms
    /// with 32 MiB files, 60 to 240 ms with 100 MiB). It also caps RocksDB's own log before it flushes the memtables that pin it.
    pub log_size: u64,
    /// How long an acknowledgement no client waits for may wait for a write that one does, to
    /// share its fsync (`store_journal::JournalConfig::defer_delay`; zero writes it at once).
    pub ack_sync_delay: std::time::Duration,
    /// The block cache shared by every column family (ActiveMQ's `indexCacheSize`, 256 MiB).
    pub index_cache_size: usize,
    /// Each column family's memtable size (ActiveMQ's `indexWriteBufferSize`, 6 MiB).
    pub index_write_buffer_size: usize,
    /// Check block checksums on every read (ActiveMQ's `verifyChecksums`). On by default, unlike
    /// ActiveMQ: a damaged block then fails with an error naming the file instead of returning
    /// whatever bytes are there.
    pub verify_checksums: bool,
    /// RocksDB's paranoid checks: refuse to open, and stop writing, on any sign of damage
    /// (ActiveMQ's `paranoidChecks`). On by default, as in RocksDB.
    pub paranoid_checks: bool,
    /// Run RocksDB's repair (salvage what the files still hold, drop the rest) before opening.
    /// Off by default: repair can lose data, so it is for an operator who asked for it.
    pub repair: bool,
    /// Reads message bodies from sealed journal files through read-only maps (a consumer far
    /// behind the head reads many small bodies: a load from a map instead of a `pread` each),
    /// as KahaDB's `mmap_reads`; the maps kept are bounded (128 MiB). On by default.
    pub mmap_reads: bool,
}

impl LevelDbConfig {
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        LevelDbConfig {
            directory: directory.into(),
            sync: true,
            log_size: 32 * 1024 * 1024,
            ack_sync_delay: store_journal::DEFAULT_DEFER_DELAY,
            index_cache_size: 256 * 1024 * 1024,
            index_write_buffer_size: 6 * 1024 * 1024,
            verify_checksums: true,
            paranoid_checks: true,
            repair: false,
            mmap_reads: true,
        }
    }
}
