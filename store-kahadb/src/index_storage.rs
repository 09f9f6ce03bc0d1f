//! What the KahaDB and the AMQ engine share, and the one seam between them: where the index
//! lives between checkpoints.
//!
//! Both engines append every change to the same journal (`store-journal`) in the same records
//! (FORMAT.md), apply it to the same index (per destination, B+trees from delivery order to
//! journal location and from message id to order; per durable subscription its pending set; a
//! catalog with exact counts, per-journal-file live counters and the ack rule map), and run the
//! same write path, GC and ack compaction: that is [`JournaledStore`]. They differ only in how
//! the index is kept, which is an [`IndexStorage`]: KahaDB's page file (`db.data`, a bounded
//! page cache, checkpoints that write the dirty pages through `db.redo`), or AMQ's in-memory
//! index written whole as a snapshot at each checkpoint (crate `store-amq`). An engine's config
//! implements [`EngineConfig`], which maps it onto the shared settings and picks its storage,
//! and its store type is `JournaledStore<ItsConfig>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use store_journal::fs::FileSystem;
use store_journal::{Journal, Location};

pub use crate::adapter::JournaledStore;
use crate::config::KahaDbConfig;
use crate::error::{KahaError, Result};
pub use crate::index::{Index, IndexImage, Page};
use crate::store::KahaDbStats;

/// Where an engine keeps its index between checkpoints: how it is loaded at open, written at a
/// checkpoint, and counted on disk. Everything else about the index is shared.
pub trait IndexStorage: Send + Sync + 'static {
    /// The engine's name, as `PersistenceAdapter::kind` reports it.
    fn kind(&self) -> &'static str;

    /// The journal's directory and its files' name prefix and suffix.
    fn journal_layout(&self) -> (PathBuf, &'static str, &'static str);

    /// Loads the last checkpoint (an empty index when there is none); returns it with the
    /// journal location to replay from, which must not lie past `journal`'s end.
    fn load(&self, journal: &Journal) -> Result<(Index, Location)>;

    /// Loading or replaying failed with `error`. If that is damage to this storage's own files,
    /// removes them, so that the index can be rebuilt from the whole journal, and returns true.
    fn discard_damaged(&self, error: &KahaError) -> Result<bool> {
        let _ = error;
        Ok(false)
    }

    /// Writes a checkpoint of everything applied to `index` so far (calls never overlap). The
    /// checkpoint must never reflect a record that is not durable: it syncs `journal` up to
    /// the location it captures before writing anything.
    fn checkpoint(&self, index: &Mutex<Index>, journal: &Journal) -> Result<Checkpointed>;

    /// Whether a checkpoint should start before its interval is up.
    fn checkpoint_due_early(&self, index: &Mutex<Index>) -> bool {
        let _ = index;
        false
    }

    /// Bytes the index takes on disk.
    fn size_on_disk(&self) -> u64;

    /// Counters of its own, reported after the journal's.
    fn metrics(&self, stats: &KahaDbStats) -> Vec<(&'static str, u64)> {
        let _ = stats;
        Vec::new()
    }
}

/// An engine's settings: the shared ones, and where its index lives.
pub trait EngineConfig: Send + Sync + 'static {
    /// The journal, checkpoint, GC and compaction settings the shared engine runs on.
    fn settings(&self) -> KahaDbConfig;

    /// Where the index lives, under the settings' directory, on `fs`. Does no I/O.
    fn index_storage(&self, fs: Arc<dyn FileSystem>) -> Box<dyn IndexStorage>;
}

/// A durable checkpoint: the journal location it reflects, and what GC needs to know of the
/// index as of that location ([`Index::checkpointed`], taken under the same lock).
pub struct Checkpointed {
    pub at: Location,
    pub(crate) file_refs: BTreeMap<u32, u64>,
    pub(crate) outlives: BTreeMap<u32, BTreeSet<u32>>,
}
