//! Writing journaled batches to RocksDB outside the store's lock, several at a time.
//!
//! Under the store's lock a write only updates the index, appends its batch to the journal and
//! queues the batch's records here, in journal order. Whoever finds no one applying then writes
//! everything queued to RocksDB as **one** `WriteBatch` (one pass through RocksDB's write path
//! and one log record for the group, plus a single `replay_from` for its last record), so the
//! lock is held for memory work only and concurrent writers reach the journal's group commit
//! sooner. A reader applies what is queued before it reads, so it never sees an index entry
//! whose record RocksDB does not have yet.
//!
//! Merging relies on RocksDB's `WriteBatch` representation, stable since LevelDB: a 12-byte
//! header (sequence `fixed64`, record count `fixed32`, both little-endian) and the records one
//! after another; appending one batch to another is copying its records and adding the counts
//! (what RocksDB's own `WriteBatchInternal::Append` does).

use parking_lot::Mutex;
use rocksdb::{DB, WriteBatch};
use store_journal::Location;

use crate::error::{LevelDbError, Result};

/// The `WriteBatch` header: sequence number and record count.
const HEADER: usize = 12;

/// Records queued for RocksDB, already in the journal.
#[derive(Default)]
struct Queued {
    /// Header (filled in when taken) and the records of every queued batch, in journal order.
    rep: Vec<u8>,
    count: u32,
    /// The journal location of the last queued batch.
    last: Option<Location>,
}

/// The queue and the right to apply it.
#[derive(Default)]
pub(crate) struct Applier {
    queued: Mutex<Queued>,
    /// Held by the one writing the queue to RocksDB, so groups reach it in journal order.
    applying: Mutex<()>,
}

impl Applier {
    /// Queues a batch whose journal record is at `at`. Called under the store's lock, in
    /// journal order.
    pub(crate) fn push(&self, data: &[u8], at: Location) -> Result<()> {
        let (Some(count), Some(records)) = (data.get(8..HEADER), data.get(HEADER..)) else {
            return Err(bad(format!("a WriteBatch of {} bytes", data.len())));
        };
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
        let mut q = self.queued.lock();
        if q.rep.is_empty() {
            q.rep.resize(HEADER, 0);
        }
        q.rep.extend_from_slice(records);
        q.count = q.count.saturating_add(count);
        q.last = Some(at);
        Ok(())
    }

    /// Writes what is queued, unless someone else is writing it (they will take it too).
    /// Returns the journal location of the last batch this call wrote, if any.
    pub(crate) fn apply(&self, db: &DB) -> Result<Option<Location>> {
        let mut last = None;
        loop {
            let Some(guard) = self.applying.try_lock() else {
                return Ok(last);
            };
            while let Some(at) = self.write_queued(db)? {
                last = Some(at);
            }
            drop(guard);
            // A batch queued after the last check and before the release found the applier
            // busy and left it here: take it now rather than leave it for the next write.
            if self.queued.lock().last.is_none() {
                return Ok(last);
            }
        }
    }

    /// Writes what is queued, waiting for a writer already doing it (a reader must see it).
    pub(crate) fn apply_all(&self, db: &DB) -> Result<Option<Location>> {
        let _guard = self.applying.lock();
        let mut last = None;
        while let Some(at) = self.write_queued(db)? {
            last = Some(at);
        }
        Ok(last)
    }

    /// Takes everything queued and writes it to RocksDB as one batch; the caller holds
    /// `applying`.
    fn write_queued(&self, db: &DB) -> Result<Option<Location>> {
        let (mut rep, count, at) = {
            let mut q = self.queued.lock();
            let Some(at) = q.last.take() else {
                return Ok(None);
            };
            let count = std::mem::take(&mut q.count);
            (std::mem::take(&mut q.rep), count, at)
        };
        rep[8..HEADER].copy_from_slice(&count.to_le_bytes());
        let mut batch = WriteBatch::from_data(&rep);
        crate::journal::mark(db, &mut batch, at)?;
        // Not synced: the journal record is what survives a crash (see journal.rs).
        db.write_opt(batch, &crate::journal::write_options())
            .map_err(|e| LevelDbError::rocks("writing a batch", e))?;
        Ok(Some(at))
    }
}

fn bad(what: String) -> LevelDbError {
    LevelDbError::BadRecord {
        what: "write batch",
        cf: "(none)",
        reason: format!("{what} is shorter than its header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_batches_keep_every_record_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let db = DB::open_cf(&o, dir.path(), ["meta"]).expect("open");
        let applier = Applier::default();
        for (n, (k, v)) in [("a", "1"), ("b", "2"), ("a", "3")].iter().enumerate() {
            let mut b = WriteBatch::default();
            b.put(k, v);
            b.put(format!("{k}{n}"), v);
            applier
                .push(
                    b.data(),
                    Location {
                        file: 1,
                        offset: n as u32,
                    },
                )
                .expect("push");
        }
        let last = applier.apply(&db).expect("apply");
        assert_eq!(last, Some(Location { file: 1, offset: 2 }));
        assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get("b").expect("get").as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get("a2").expect("get").as_deref(), Some(&b"3"[..]));
        assert_eq!(applier.apply(&db).expect("apply"), None);
        assert!(applier.push(&[0; 5], Location::default()).is_err());
    }
}
