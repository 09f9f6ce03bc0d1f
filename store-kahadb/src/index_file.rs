//! KahaDB's home for the index: `db.data`, a page file behind a bounded cache, checkpointed by
//! writing only the dirty pages, through the `db.redo` double write (FORMAT.md); and the
//! journal as `db-N.log` beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use store_journal::fs::FileSystem;
use store_journal::{Journal, Location};

use crate::error::{KahaError, Result};
use crate::index::Index;
use crate::index_storage::{Checkpointed, IndexStorage};
use crate::page_file::PageFile;
use crate::store::KahaDbStats;

/// The page file `db.data` (and its `db.redo`) in a store directory.
pub(crate) struct PageFileStorage {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    cache_pages: usize,
    write_batch_pages: usize,
}

impl PageFileStorage {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        cache_pages: usize,
        write_batch_pages: usize,
    ) -> PageFileStorage {
        PageFileStorage {
            fs,
            dir: dir.to_path_buf(),
            cache_pages,
            write_batch_pages,
        }
    }
}

fn is_index_file(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n == "db.data" || n == "db.redo")
}

impl IndexStorage for PageFileStorage {
    fn kind(&self) -> &'static str {
        "kahadb"
    }

    fn journal_files(&self) -> (PathBuf, &'static str, &'static str) {
        (self.dir.clone(), "db-", ".log")
    }

    fn load(&self, journal: &Journal) -> Result<(Index, Location)> {
        let (pf, has_checkpoint) = PageFile::open(self.fs.clone(), &self.dir, self.cache_pages)?;
        let (ix, from) = if has_checkpoint {
            Index::load(pf)?
        } else {
            if !journal.file_ids().is_empty() {
                tracing::info!(dir = %self.dir.display(), "no index: rebuilding it from the whole journal");
            }
            (Index::empty(pf), Location::default())
        };
        if from > journal.tail() {
            // The index reflects records the journal no longer holds (its end was damaged or
            // cut): it cannot be trusted, so it is rebuilt from what the journal has.
            return Err(KahaError::Corrupt {
                file: self.dir.join("db.data"),
                offset: 0,
                reason: format!(
                    "the index reflects the journal up to {from}, but the journal ends at {}",
                    journal.tail()
                ),
            });
        }
        Ok((ix, from))
    }

    fn discard_damaged(&self, error: &KahaError) -> Result<bool> {
        let KahaError::Corrupt {
            file,
            offset,
            reason,
        } = error
        else {
            return Ok(false);
        };
        if !file.starts_with(&self.dir) || !is_index_file(file) {
            return Ok(false);
        }
        tracing::warn!(
            file = %file.display(),
            offset,
            "index corrupted ({reason}); recovering the index through journal replay"
        );
        for name in ["db.data", "db.redo"] {
            let p = self.dir.join(name);
            if self.fs.exists(&p) {
                self.fs
                    .remove(&p)
                    .map_err(|e| KahaError::io(format!("removing {}", p.display()), e))?;
            }
        }
        Ok(true)
    }

    fn checkpoint(&self, index: &Mutex<Index>, journal: &Journal) -> Result<Checkpointed> {
        let snap = {
            let mut ix = index.lock();
            let at = journal.tail();
            ix.snapshot(at)
        };
        let written = (|| {
            // The index must never reflect a record that is not durable.
            journal.sync().wait()?;
            let (fs, redo, data, data_path) = index.lock().pf.io_handles();
            PageFile::write_flush_set(fs.as_ref(), &redo, data.as_ref(), &data_path, &snap.flush)
        })();
        index.lock().pf.flush_done();
        written.map(|()| snap.checkpointed)
    }

    fn checkpoint_due_early(&self, index: &Mutex<Index>) -> bool {
        // Bounds the memory dirty pages hold.
        index.lock().pf.dirty_pages() >= self.write_batch_pages
    }

    fn size_on_disk(&self) -> u64 {
        self.fs
            .open(&self.dir.join("db.data"), false)
            .and_then(|f| f.len())
            .unwrap_or(0)
    }

    fn metrics(&self, stats: &KahaDbStats) -> Vec<(&'static str, u64)> {
        vec![("index_pages", stats.index_pages)]
    }
}
