//! KahaDB's home for the index: `db.data`, a page file behind a bounded cache, checkpointed by
//! writing only the dirty pages, through the `db.redo` double write (FORMAT.md); and the
//! journal as `db-N.log` beside it. A checkpoint writes the catalog into fresh pages and the
//! metadata page (page 0) pointing at them, with the dirty tree pages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use store_journal::fs::FileSystem;
use store_journal::{Journal, Location};

use store_api::DecodeError;
use store_api::codec::{Reader, Writer};

use crate::error::{KahaError, Result};
use crate::index::{Catalog, Index, read_loc, write_loc};
use crate::index_storage::{Checkpointed, IndexStorage};
use crate::page_file::{self, FlushSet, META_PAGE, PageFile, PageId};
use crate::store::KahaDbStats;

const META_MAGIC: &[u8; 8] = b"KDBMETA1";

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

    fn journal_layout(&self) -> (PathBuf, &'static str, &'static str) {
        (self.dir.clone(), "db-", ".log")
    }

    fn load(&self, journal: &Journal) -> Result<(Index, Location)> {
        let (pf, has_checkpoint) = PageFile::open(self.fs.clone(), &self.dir, self.cache_pages)?;
        let (ix, from) = if has_checkpoint {
            load_index(pf)?
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
            capture(&mut ix, at)
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

/// What a page-file checkpoint needs after the index lock is released.
struct CheckpointSnapshot {
    flush: FlushSet,
    checkpointed: Checkpointed,
}

/// The metadata page: where the checkpoint is in the journal, where its catalog is, and how
/// many pages the index file had.
struct Meta {
    at: Location,
    catalog_first: PageId,
    catalog_len: usize,
    catalog_crc: u32,
    catalog_pages: Vec<PageId>,
    file_pages: u64,
}

fn parse_meta(r: &mut Reader<'_>) -> std::result::Result<Meta, DecodeError> {
    if r.take(8)? != META_MAGIC {
        return Err(DecodeError::Invalid("bad metadata magic".into()));
    }
    let at = read_loc(r)?;
    let catalog_first = r.varint()?;
    let catalog_len = r.varint()? as usize;
    let catalog_crc = r.u32()?;
    let mut catalog_pages = Vec::new();
    for _ in 0..r.length()? {
        catalog_pages.push(r.varint()?);
    }
    let file_pages = r.varint()?;
    Ok(Meta {
        at,
        catalog_first,
        catalog_len,
        catalog_crc,
        catalog_pages,
        file_pages,
    })
}

fn bad_catalog(pf: &PageFile, why: impl std::fmt::Display) -> KahaError {
    KahaError::Corrupt {
        file: pf.path().to_path_buf(),
        offset: 0,
        reason: format!("catalog: {why}"),
    }
}

/// Loads the last checkpoint from `pf`; returns the index and the journal location to
/// replay from.
fn load_index(mut pf: PageFile) -> Result<(Index, Location)> {
    let meta = pf.read_meta()?;
    let mut r = Reader::new(&meta);
    let parsed = parse_meta(&mut r);
    let meta = parsed.map_err(|e| bad_catalog(&pf, e))?;
    // Pages past the checkpoint's end are leftovers of an interrupted checkpoint.
    pf.file_pages = meta.file_pages;
    let blob = pf.read_blob(meta.catalog_first, meta.catalog_len)?;
    if crc32fast::hash(&blob) != meta.catalog_crc {
        return Err(bad_catalog(&pf, "checksum mismatch"));
    }
    let (cat, free) = Catalog::decode(&blob).map_err(|e| bad_catalog(&pf, e))?;
    pf.set_free_pages(free);
    let mut index = Index::empty(pf);
    index.cat = cat;
    index.catalog_pages = meta.catalog_pages;
    Ok((index, meta.at))
}

/// Captures a consistent checkpoint of everything applied so far, which reflects the
/// journal up to `at`. The caller writes it once the journal is durable up to `at`.
fn capture(ix: &mut Index, at: Location) -> CheckpointSnapshot {
    for p in std::mem::take(&mut ix.catalog_pages) {
        ix.pf.release(p);
    }
    let estimate = ix.cat.encode(ix.pf.free_pages());
    let n = page_file::blob_page_count(estimate.len()) + 1;
    let pages: Vec<PageId> = (0..n).map(|_| ix.pf.allocate()).collect();
    let blob = ix.cat.encode(ix.pf.free_pages());
    let mut w = Writer::new();
    w.raw(META_MAGIC);
    write_loc(&mut w, at);
    w.varint(pages[0]);
    w.varint(blob.len() as u64);
    w.u32(crc32fast::hash(&blob));
    w.varint(pages.len() as u64);
    for p in &pages {
        w.varint(*p);
    }
    w.varint(ix.pf.file_pages);
    let mut extra = page_file::blob_pages(&blob, &pages);
    extra.push((META_PAGE, page_file::meta_page(&w.into_inner())));
    ix.catalog_pages = pages;
    CheckpointSnapshot {
        flush: ix.pf.take_flush_set(extra),
        checkpointed: ix.checkpointed(at),
    }
}
