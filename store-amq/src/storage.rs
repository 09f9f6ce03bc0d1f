//! The AMQ engine's home for the index: wholly in memory (never evicted, never read back), and
//! written whole as a snapshot at each checkpoint, named by the control file. Reads never touch
//! the disk for the index; memory and checkpoint cost grow with the index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use store_journal::fs::FileSystem;
use store_journal::{Journal, Location};
use store_kahadb::index_storage::{Checkpointed, Index, IndexStorage};

use crate::error::Result;
use crate::layout::{AmqPaths, LOG_PREFIX, LOG_SUFFIX};
use crate::snapshot;

/// The in-memory index and its snapshots under one store directory.
pub(crate) struct SnapshotStorage {
    fs: Arc<dyn FileSystem>,
    paths: AmqPaths,
    /// The generation of the last snapshot written (or loaded).
    generation: Mutex<u64>,
}

impl SnapshotStorage {
    pub(crate) fn new(fs: Arc<dyn FileSystem>, dir: &Path) -> SnapshotStorage {
        SnapshotStorage {
            fs,
            paths: AmqPaths::new(dir),
            generation: Mutex::new(0),
        }
    }

    fn empty(&self) -> Result<(Index, Location)> {
        Ok((Index::in_memory(&self.paths.kr_dir)?, Location::default()))
    }
}

impl IndexStorage for SnapshotStorage {
    fn kind(&self) -> &'static str {
        "amq"
    }

    fn journal_layout(&self) -> (PathBuf, &'static str, &'static str) {
        (self.paths.journal_dir.clone(), LOG_PREFIX, LOG_SUFFIX)
    }

    fn load(&self, journal: &Journal) -> Result<(Index, Location)> {
        match snapshot::load(self.fs.as_ref(), &self.paths) {
            Some((ix, at, g)) if at <= journal.tail() => {
                *self.generation.lock() = g;
                Ok((ix, at))
            }
            Some((_, at, g)) => {
                tracing::warn!(
                    mark = %at,
                    journal_end = %journal.tail(),
                    "the index snapshot reflects more of the journal than the journal holds \
                     (damaged or truncated logs): replaying the whole journal"
                );
                *self.generation.lock() = g;
                self.empty()
            }
            None => self.empty(),
        }
    }

    fn checkpoint(&self, index: &Mutex<Index>, journal: &Journal) -> Result<Checkpointed> {
        let (image, done) = {
            let mut ix = index.lock();
            let at = journal.tail();
            (ix.image(), ix.checkpointed(at))
        };
        let mut generation = self.generation.lock();
        // The snapshot must never reflect a record that is not durable.
        journal.sync().wait()?;
        snapshot::write(
            self.fs.as_ref(),
            &self.paths,
            &image,
            done.at,
            *generation + 1,
        )?;
        *generation += 1;
        Ok(done)
    }

    fn size_on_disk(&self) -> u64 {
        let kr = &self.paths.kr_dir;
        self.fs
            .list(kr)
            .unwrap_or_default()
            .iter()
            .map(|n| {
                self.fs
                    .open(&kr.join(n), false)
                    .and_then(|f| f.len())
                    .unwrap_or(0)
            })
            .sum()
    }
}
