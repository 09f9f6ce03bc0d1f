//! Read-only maps of sealed journal data files: the one module in the workspace that maps a
//! file, and the one place in this crate where `unsafe` is allowed.
//!
//! A data file is *sealed* once the journal's answered writes have reached a later file (the
//! `written` location the journal keeps is in a later file): every batch that will
//! ever be in it is on it, and no write to it is in flight (writes are answered in journal
//! order, and `written` advances only over answered writes). Replay can then take a sealed
//! file's batches from a map instead of two `pread`s and a buffer per batch, and a read by
//! location its record (the maps reads keep are bounded: `map_cache.rs`).
//!
//! Why a mapped file can neither change nor shrink while mapped — a write would change bytes
//! under the `&[u8]` the map lends, and an access past the end of a truncated file raises
//! SIGBUS, which kills the process:
//! - nothing in the journal writes to, extends or truncates a sealed file: appends go to the
//!   file after `written`; recovery zeroes a torn tail only during open, before any map exists,
//!   and only in the newest files; compaction copies records forward (appends to the tail);
//! - GC deletes a sealed file by unlinking it ([`crate::Journal::delete_files`], which also drops
//!   the journal's own map of it first, so the space is freed at once). A reader still holding a
//!   map keeps the file's inode, and so every mapped byte, until it drops the map: unlinking
//!   never shrinks a file;
//! - no other process writes the store's files while the journal is open: the directory belongs
//!   to the broker that holds its lock (a slave waits for the lock before it opens anything).
//!   Editing or truncating journal files under a running broker is outside the contract; with
//!   maps it can crash the broker (SIGBUS) where `pread` would have returned damaged bytes that
//!   the checksums catch.
//!
//! The journal asks for a map only through [`SealedProof`], which only it can make, after
//! checking that the file is sealed.

#![allow(unsafe_code)]

use std::io;

/// The journal's word that a data file is sealed (see the module docs). Only this crate can
/// make one, so code outside it cannot map a file the journal may still write.
#[derive(Debug)]
pub struct SealedProof(());

impl SealedProof {
    /// Called only once the file's id is below the file of the journal's `written` location.
    pub(crate) fn file_is_sealed() -> SealedProof {
        SealedProof(())
    }
}

/// A read-only map of a whole sealed data file.
pub struct SealedMap {
    map: memmap2::Mmap,
}

impl std::fmt::Debug for SealedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedMap")
            .field("len", &self.map.len())
            .finish()
    }
}

impl SealedMap {
    /// Maps all of `file`, a sealed journal data file. `None` for an empty file, which cannot
    /// be mapped (and holds nothing to read).
    pub(crate) fn new(file: &std::fs::File, _sealed: SealedProof) -> io::Result<Option<SealedMap>> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(None);
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::other("a journal file too large to map on this platform"))?;
        // SAFETY: the map is read-only and the file is sealed (`SealedProof`): the journal never
        // writes to, extends or truncates it again, and deleting it only unlinks it, which keeps
        // its bytes for as long as this map lives. No other process writes the store's files
        // while it is open (the module docs give the whole argument). So the bytes behind the
        // map neither change nor go away while the `&[u8]` it lends is alive.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        Ok(Some(SealedMap { map }))
    }

    /// Tells the kernel the map will be read front to back (replay): read ahead widely, and
    /// drop pages behind the reader first.
    pub(crate) fn advise_sequential(&self) -> io::Result<()> {
        self.map.advise(memmap2::Advice::Sequential)
    }

    /// The map's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}
