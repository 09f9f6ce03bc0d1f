//! The append-only journal that the file engines (KahaDB, AMQ, journaled JDBC) write every
//! change to: rolling, preallocated data files of sector-aligned batches of records with CRCs,
//! written by a writer thread that groups every append that arrived during the previous write and
//! fsync into the next batch (group commit; under sync `always`, `O_DIRECT` where the file system
//! takes it; optionally several groups in flight, answered in journal order; or, where it may
//! block, by the appender whose append completed the group), read back by
//! location, replayed in order, and scanned at open to cut a torn or unacknowledged tail — or to
//! refuse to open, naming file and offset, when data written after the damaged part was durable
//! follows it.
//!
//! The byte layout is in [`mod@format`]. All file access goes through [`fs::FileSystem`], so tests
//! use [`fs::SimFs`] to fail writes and fsyncs and to simulate power loss. Sealed data files
//! (no write will reach them again) may be read through read-only maps, when the config asks
//! for it: [`mmap`] holds the argument for why that is sound, and the crate's only `unsafe`.
//!
//! Guarantees:
//! - the records of one [`Journal::append`] land in one batch, which is valid as a whole or not
//!   at all after a crash;
//! - under [`SyncPolicy::Always`] an append's completion is Ok only after an `fdatasync` covering
//!   it; concurrent appends share that fsync;
//! - appends are answered in the order [`Journal::append`] was called and their locations
//!   increase in that order: an Ok means it and everything appended before it are durable;
//! - after a failed write or fsync the journal is poisoned: every later append fails until it is
//!   reopened.

mod config;
pub mod error;
pub mod format;
pub mod fs;
mod journal;
mod map_cache;
pub mod mmap;
mod recovery;
mod writer;

pub use config::{DEFAULT_DEFER_DELAY, JournalConfig, RecoveryMode, Resume};
pub use error::{JournalError, Result};
pub use journal::{Appended, Completion, Journal, JournalStats, Replay};
pub use store_api::SyncPolicy;

/// Where a record starts: data file id and byte offset of its record header. Ordered as the
/// journal is: by file, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    pub file: u32,
    pub offset: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}
