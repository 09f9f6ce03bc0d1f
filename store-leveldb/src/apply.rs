//! Writing journaled batches to RocksDB outside the store's lock, several at a time.
//!
//! Under the store's lock a write only updates the index, appends its batch to the journal and
//! queues the batch's records here, in journal order. The apply thread writes everything queued
//! to RocksDB as **one** `WriteBatch` (one pass through RocksDB's write path and one log record
//! for the group, plus a single `replay_from` for its last record), so the lock is held for
//! memory work only, and RocksDB's write is off the path of the journal's group commit: it
//! runs on the core the fsync leaves free, while writers go straight on to wait for their
//! fsync, which is usually long enough for the batch to be in RocksDB when it ends. A writer
//! returns only once its batch is (see `Applier::wait_applied`); one that finds 16 MiB queued
//! writes the queue itself, so it stays bounded. A reader applies what is queued before it
//! reads, so it never sees an index entry whose record RocksDB does not have yet.
//!
//! Merging relies on RocksDB's `WriteBatch` representation, stable since LevelDB: a 12-byte
//! header (sequence `fixed64`, record count `fixed32`, both little-endian) and the records one
//! after another; appending one batch to another is copying its records and adding the counts
//! (what RocksDB's own `WriteBatchInternal::Append` does). Each record is copied as RocksDB is
//! to get it, message bodies replaced by where they lie in the journal (`record.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};
use rocksdb::{DB, WriteBatch};
use store_journal::Location;

use crate::bodies::BodyFiles;
use crate::error::{LevelDbError, Result};
use crate::journal::Applied;
use crate::record::{self, HEADER};

/// Queued bytes past which a writer writes the queue itself before it returns: the queue
/// stays bounded however far RocksDB falls behind (a stall while it compacts, say).
const FULL_BYTES: usize = 16 * 1024 * 1024;

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
pub(crate) struct Applier {
    queued: Mutex<Queued>,
    /// Held by the one writing the queue to RocksDB, so groups reach it in journal order.
    applying: Mutex<()>,
    /// Wakes the apply thread (paired with `queued`).
    work: Condvar,
    stop: AtomicBool,
    /// The last journal record written to RocksDB.
    applied: Applied,
    /// Why RocksDB refused a write: the store refuses writes from then on, and nothing touches
    /// RocksDB's log again.
    refused: Mutex<Option<String>>,
    /// Set when a write failed after the index took it: the store's next call rebuilds the
    /// index from what RocksDB holds.
    index_stale: AtomicBool,
    /// Told after every pass, written or failed: writers wait on it for their batch.
    done: tokio::sync::Notify,
    /// Whether RocksDB logs the batches (not while the journal is replayed at open: see
    /// `journal::apply_from`).
    wal: bool,
    /// The `messages` column family's id in a batch (see `record::messages_cf_id`).
    messages_cf: u32,
    /// Which journal files hold stored bodies, counted as records are queued.
    bodies: Mutex<BodyFiles>,
    /// Held shared by each body being read from the journal, exclusive by the collector while
    /// it deletes files (see `pin_files`).
    files_in_use: parking_lot::RwLock<()>,
}

impl Applier {
    /// An applier whose records before `applied` are in RocksDB already; `messages_cf` is
    /// what `record::messages_cf_id` says.
    pub(crate) fn new(applied: Location, messages_cf: u32) -> Applier {
        let a = Applier {
            queued: Mutex::default(),
            applying: Mutex::new(()),
            work: Condvar::new(),
            stop: AtomicBool::new(false),
            applied: Applied::default(),
            refused: Mutex::new(None),
            index_stale: AtomicBool::new(false),
            done: tokio::sync::Notify::new(),
            wal: true,
            messages_cf,
            bodies: Mutex::default(),
            files_in_use: parking_lot::RwLock::new(()),
        };
        a.applied.set(applied);
        a
    }

    /// For replaying the journal at open: RocksDB does not log these batches (they would take
    /// the disk space a second time); the caller flushes them to tables before anything else
    /// is written.
    pub(crate) fn for_replay(messages_cf: u32) -> Applier {
        Applier {
            wal: false,
            ..Applier::new(Location::default(), messages_cf)
        }
    }

    /// The stored bodies per journal file, as the index just loaded from RocksDB counted them.
    pub(crate) fn set_bodies(&self, bodies: BodyFiles) {
        *self.bodies.lock() = bodies;
    }

    /// Which journal files hold stored bodies.
    pub(crate) fn bodies(&self) -> parking_lot::MutexGuard<'_, BodyFiles> {
        self.bodies.lock()
    }

    /// Keeps journal files from being deleted while held. A body is located under the store's
    /// lock and read after it (its message may be acknowledged meanwhile, emptying its file):
    /// taken under that lock, this keeps the file until the read is done. Recursive, so that a
    /// batch of bodies holding many never waits for a collector queued behind the first.
    pub(crate) fn pin_files(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.files_in_use.read_recursive()
    }

    /// Held while journal files are deleted: waits for the bodies being read.
    pub(crate) fn deleting_files(&self) -> parking_lot::RwLockWriteGuard<'_, ()> {
        self.files_in_use.write()
    }

    /// Records a refused write: the store refuses writes from now on and rebuilds its index
    /// from what RocksDB holds; writers waiting for their batch are told.
    pub(crate) fn fail(&self, why: &str) {
        self.refused.lock().get_or_insert_with(|| why.to_owned());
        self.mark_stale();
        self.done.notify_waiters();
    }

    /// Why RocksDB refused a write, if it did.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.refused.lock().clone()
    }

    /// The index holds a change that did not reach the store: rebuild it at the next call.
    pub(crate) fn mark_stale(&self) {
        self.index_stale.store(true, Ordering::Release);
    }

    /// Whether the index is to be rebuilt (once: this clears it).
    pub(crate) fn take_stale(&self) -> bool {
        self.index_stale.swap(false, Ordering::AcqRel)
    }

    /// The last journal record written to RocksDB (or the open's replay position).
    pub(crate) fn applied(&self) -> Location {
        self.applied.get()
    }

    /// Waits until the batch whose journal record is at `at` is in RocksDB: an acknowledged
    /// write is then readable from RocksDB too, even if a later write to RocksDB fails (a full
    /// disk) and the index is rebuilt from it. Writes the queue itself when no one else is.
    pub(crate) async fn wait_applied(&self, db: &DB, at: Location) -> crate::error::Result<()> {
        loop {
            let mut notified = std::pin::pin!(self.done.notified());
            notified.as_mut().enable();
            if self.applied.get() >= at {
                return Ok(());
            }
            if let Some(why) = self.refusal() {
                return Err(LevelDbError::Refused(why));
            }
            if !self.try_write_all(db) {
                notified.await;
            }
        }
    }

    /// Queues a batch whose journal record is at `at`. Called under the store's lock, in
    /// journal order. Returns whether the queue is full: the caller then writes it (after
    /// releasing the store's lock).
    pub(crate) fn push(&self, data: &[u8], at: Location) -> Result<bool> {
        let mut q = self.queued.lock();
        let was_empty = q.last.is_none();
        if q.rep.is_empty() {
            q.rep.resize(HEADER, 0);
        }
        let before = q.rep.len();
        let converted = record::to_database(
            data,
            at,
            self.messages_cf,
            &mut q.rep,
            &mut self.bodies.lock(),
        );
        let count = match converted {
            Ok(count) => count,
            Err(e) => {
                q.rep.truncate(before);
                return Err(e);
            }
        };
        q.count = q.count.saturating_add(count);
        q.last = Some(at);
        let after = q.rep.len();
        drop(q);
        if was_empty {
            self.work.notify_one();
        }
        Ok(after >= FULL_BYTES)
    }

    /// Writes what is queued, waiting for the apply thread if it is doing it (a reader must
    /// see it). Returns the journal location of the last batch this call wrote, if any.
    pub(crate) fn apply_all(&self, db: &DB) -> Result<Option<Location>> {
        self.pass(self.lock_applying(), db)
    }

    /// Takes the right to write to RocksDB; see [`Applying`].
    fn lock_applying(&self) -> Applying<'_> {
        self.holding(self.applying.lock())
    }

    /// The right to write to RocksDB as `guard` holds it, released through [`Applying`].
    fn holding<'a>(&'a self, guard: MutexGuard<'a, ()>) -> Applying<'a> {
        Applying {
            guard: Some(guard),
            done: &self.done,
        }
    }

    /// Writes everything queued unless someone else is at it; returns whether it did.
    fn try_write_all(&self, db: &DB) -> bool {
        match self.applying.try_lock() {
            Some(guard) => {
                // A failure is recorded by `pass`; waiters read it from `refusal`.
                let _ = self.pass(self.holding(guard), db);
                true
            }
            None => false,
        }
    }

    /// One pass over the queue under `applying`: writes it, records a failure, and tells the
    /// writers waiting for their batch (when `guard` is released, after the failure is
    /// recorded, so that they read it).
    fn pass(&self, guard: Applying<'_>, db: &DB) -> Result<Option<Location>> {
        let written = self.write_all(db);
        if let Err(e) = &written {
            self.fail(&e.to_string());
        }
        drop(guard);
        written
    }

    /// Writes and syncs RocksDB's log (for the journal's collector). Returns false, touching
    /// nothing, once a write to RocksDB failed: after an I/O error RocksDB's log writer must
    /// not be used again (Debian's librocksdb asserts, aborting the process). Under
    /// `applying`, so no write to RocksDB runs beside it.
    pub(crate) fn sync_log(&self, db: &DB) -> Result<bool> {
        let _guard = self.lock_applying();
        if self.refused.lock().is_some() {
            return Ok(false);
        }
        match db.flush_wal(true) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e =
                    LevelDbError::rocks("syncing RocksDB's log before deleting journal files", e);
                self.fail(&e.to_string());
                Err(e)
            }
        }
    }

    /// Writes everything queued; the caller holds `applying`. Refused, touching nothing, once
    /// a write to RocksDB failed (see `sync_log`).
    fn write_all(&self, db: &DB) -> Result<Option<Location>> {
        if let Some(why) = self.refusal() {
            return Err(LevelDbError::Refused(why));
        }
        let mut last = None;
        while let Some(at) = self.write_queued(db)? {
            self.applied.set(at);
            last = Some(at);
        }
        Ok(last)
    }

    /// Empties the queue (after a refused write, nothing more may reach RocksDB).
    fn take_all(&self) -> Queued {
        std::mem::take(&mut *self.queued.lock())
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
        // A replay at open sets `replay_from` once, after the other column families are flushed
        // (see `journal::apply_from`).
        if self.wal {
            crate::journal::mark(db, &mut batch, at)?;
        }
        // Not synced: the journal record is what survives a crash (see journal.rs).
        let mut opts = crate::journal::write_options();
        opts.disable_wal(!self.wal);
        db.write_opt(batch, &opts)
            .map_err(|e| LevelDbError::rocks("writing a batch", e))?;
        Ok(Some(at))
    }
}

/// The right to write to RocksDB (`Applier::applying`). Whoever releases it tells the writers
/// waiting for their batch (`Applier::wait_applied`): one that found it taken (by a pass, or
/// by the collector syncing RocksDB's log) sleeps until then, its batch still queued, and may
/// be the only one left to write it.
struct Applying<'a> {
    guard: Option<MutexGuard<'a, ()>>,
    done: &'a tokio::sync::Notify,
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.done.notify_waiters();
    }
}

/// The thread that writes queued batches to RocksDB. Stopped (and joined) when dropped, so
/// that it lets go of the database.
pub(crate) struct ApplyThread {
    applier: Arc<Applier>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ApplyThread {
    pub(crate) fn start(applier: Arc<Applier>, db: Arc<DB>) -> std::io::Result<ApplyThread> {
        let for_thread = applier.clone();
        let thread = std::thread::Builder::new()
            .name("leveldb-apply".into())
            .spawn(move || apply_loop(&for_thread, &db))?;
        Ok(ApplyThread {
            applier,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Writes what is left, then stops the thread.
    pub(crate) fn stop(&self) {
        self.applier.stop.store(true, Ordering::Release);
        {
            let _q = self.applier.queued.lock();
            self.applier.work.notify_one();
        }
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("the leveldb apply thread panicked");
        }
    }
}

impl Drop for ApplyThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn apply_loop(applier: &Applier, db: &DB) {
    loop {
        {
            let mut q = applier.queued.lock();
            while q.last.is_none() && !applier.stop.load(Ordering::Acquire) {
                applier.work.wait(&mut q);
            }
            if q.last.is_none() {
                return;
            }
        }
        if let Err(e) = applier.apply_all(db) {
            tracing::error!("leveldb: writing journaled batches to RocksDB: {e}");
            // Nothing more reaches RocksDB until the store is reopened (which replays the
            // journal): drop what is queued rather than fail on it again.
            let _ = applier.take_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These batches go to the default column family only: no body is converted.
    const NO_MESSAGES_CF: u32 = u32::MAX;

    /// A database in a temporary directory (kept as long as the returned guard).
    fn scratch_db() -> (tempfile::TempDir, DB) {
        let dir = tempfile::tempdir().expect("dir");
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let db = DB::open_cf(&o, dir.path(), ["meta"]).expect("open");
        (dir, db)
    }

    #[test]
    fn merged_batches_keep_every_record_in_order() {
        let (_dir, db) = scratch_db();
        let applier = Applier::new(Location::default(), NO_MESSAGES_CF);
        for (n, (k, v)) in [("a", "1"), ("b", "2"), ("a", "3")].iter().enumerate() {
            let mut b = WriteBatch::default();
            b.put(k, v);
            b.put(format!("{k}{n}"), v);
            let at = Location {
                file: 1,
                offset: n as u32,
            };
            assert!(!applier.push(b.data(), at).expect("push"), "not full");
        }
        let last = applier.apply_all(&db).expect("apply");
        assert_eq!(last, Some(Location { file: 1, offset: 2 }));
        assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get("b").expect("get").as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get("a2").expect("get").as_deref(), Some(&b"3"[..]));
        assert_eq!(applier.apply_all(&db).expect("apply"), None);
        assert!(applier.push(&[0; 5], Location::default()).is_err());
    }

    #[test]
    fn a_writer_that_found_the_applier_busy_is_told_when_it_is_free() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let (_dir, db) = scratch_db();
        let applier = Applier::new(Location::default(), NO_MESSAGES_CF);
        let mut b = WriteBatch::default();
        b.put("k", "v");
        let at = Location { file: 1, offset: 0 };
        assert!(!applier.push(b.data(), at).expect("push"), "not full");
        // The collector syncing RocksDB's log holds the right to write when the writer comes to
        // wait for its batch, and no apply thread runs here: only the writer will write it.
        let held = applier.lock_applying();
        let mut wait = std::pin::pin!(applier.wait_applied(&db, at));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "busy: it waits");
        drop(held);
        // Told of the release, the writer writes its batch itself.
        assert!(
            matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(()))),
            "the release must wake the waiting writer"
        );
        assert_eq!(applier.applied(), at);
        assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_queue_past_its_bound_says_so() {
        let applier = Applier::new(Location::default(), NO_MESSAGES_CF);
        let mut b = WriteBatch::default();
        b.put("k", vec![0u8; 1 << 20]);
        let full: Vec<bool> = (0..17)
            .map(|n| {
                applier
                    .push(b.data(), Location { file: 1, offset: n })
                    .expect("push")
            })
            .collect();
        assert_eq!(
            full.iter().position(|f| *f),
            Some(15),
            "16 MiB queued is full"
        );
    }
}
