//! The engine's own journal in front of RocksDB, as ActiveMQ's LevelDB store keeps its own log
//! in front of LevelDB: durability comes from `store-journal` (preallocated, zero-filled files,
//! group commit, one `fdatasync` shared by every writer that arrived meanwhile), and RocksDB is
//! the index, written without a sync.
//!
//! **A write** appends its `WriteBatch`'s bytes to the journal under the store's lock, and the
//! same records reach RocksDB right after, in journal order, with a `replay_from` put in the
//! `meta` column family: the location just after the last record written (`apply.rs`). RocksDB
//! writes its own log without syncing it and with `manual_wal_flush` (the log's bytes sit in
//! RocksDB's buffer until it fills or the collector below flushes it): a memory copy, no system
//! call. The caller then waits for the journal's fsync only.
//!
//! **At open** RocksDB recovers a consistent prefix of the batches (point-in-time recovery of
//! its unsynced log, over its flushed tables), whose `replay_from` says exactly which journal
//! records it holds; the records from there on are applied again. RocksDB may hold *more* than
//! the journal when the crash took a journal tail that was never acknowledged while RocksDB's
//! copy reached the disk: then `replay_from` is past the journal's end, and is moved back to it
//! (synced) before any new record can be written there.
//!
//! **Message bodies stay in the journal**: RocksDB holds where each lies (`record.rs`, which
//! also says when a body stays inline in RocksDB instead).
//!
//! **Journal files are deleted** by a collector thread once a file is sealed: it syncs
//! RocksDB's log (so every batch applied so far survives without the journal) and deletes the
//! files wholly before the last applied record that hold no stored message's body (`bodies.rs`).
//! If the database later comes back with a `replay_from` in a journal file that is gone,
//! records were lost in RocksDB's own files, and open fails saying so instead of serving a
//! store with a hole; so does a stored message whose body's file is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rocksdb::{DB, WriteBatch, WriteOptions};
use store_journal::{Journal, JournalConfig, Location, SyncPolicy};

use crate::apply::Applier;
use crate::bodies::BodyFiles;
use crate::config::LevelDbConfig;
use crate::error::{LevelDbError, Result};
use crate::keys::{self, Cf};

/// The journal's directory inside the database directory (RocksDB ignores subdirectories).
pub(crate) const DIRECTORY: &str = "journal";

/// Opens the journal (running its recovery scan) in `<directory>/journal`.
pub(crate) fn open(config: &LevelDbConfig) -> Result<Journal> {
    let mut jc = JournalConfig::new(config.directory.join(DIRECTORY), "log-", ".dat");
    jc.max_file_length = config.log_size.max(64 * 1024);
    jc.sync = if config.sync {
        SyncPolicy::Always
    } else {
        SyncPolicy::Never
    };
    jc.map_replay = true;
    jc.map_reads = config.mmap_reads;
    jc.defer_delay = config.ack_sync_delay;
    Ok(Journal::open(jc, Arc::new(store_journal::fs::RealFs))?)
}

/// Writes to RocksDB: its log written (into its buffer), not synced; the journal is what makes
/// a batch durable.
pub(crate) fn write_options() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(false);
    o
}

/// Adds the `replay_from` record for a batch whose journal record is at `at`.
pub(crate) fn mark(db: &DB, batch: &mut WriteBatch, at: Location) -> Result<()> {
    let meta = db
        .cf_handle(Cf::Meta.name())
        .ok_or(LevelDbError::MissingColumnFamily(Cf::Meta.name()))?;
    batch.put_cf(meta, keys::REPLAY_FROM, keys::location_value(after(at)));
    Ok(())
}

/// The first location after a record's start: replay from here skips that record.
fn after(at: Location) -> Location {
    Location {
        file: at.file,
        offset: at.offset.saturating_add(1),
    }
}

/// Applies the journal records RocksDB does not hold yet. Returns the position before which
/// every record is applied, and how many were.
pub(crate) fn replay(db: &DB, journal: &Journal, messages_cf: u32) -> Result<(Location, u64)> {
    let meta = db
        .cf_handle(Cf::Meta.name())
        .ok_or(LevelDbError::MissingColumnFamily(Cf::Meta.name()))?;
    let stored = db
        .get_pinned_cf(meta, keys::REPLAY_FROM)
        .map_err(|e| LevelDbError::rocks("reading the replay position", e))?
        .map(|v| keys::read_location(&v))
        .transpose()?;
    let tail = journal.tail();
    // The journal's first file is 1; files are deleted only once the database holds their
    // records (older ones may stay for the bodies they hold), so a database whose replay
    // position is in a file that is gone lost records in RocksDB's own files.
    let files = journal.file_ids();
    let reached = stored.map_or(1, |from| from.file);
    let last = files.last().copied().unwrap_or(0);
    if let Some(missing) = (reached..=last).find(|id| files.binary_search(id).is_err()) {
        return Err(LevelDbError::Corrupt {
            file: Some(journal.directory().to_path_buf()),
            reason: format!(
                "the database holds the journal's records up to {}, but journal file {missing} \
                 is gone: records after that were lost from RocksDB's own files after the \
                 journal let them go",
                stored.map_or_else(|| "none".to_owned(), |l| l.to_string())
            ),
        });
    }
    let Some(from) = stored else {
        // A new store, or one written before the engine had a journal: everything the journal
        // holds (nothing, for those) is to be applied.
        return apply_from(db, journal, Location::default(), messages_cf);
    };
    if from > tail {
        // RocksDB kept batches whose journal records the crash took (never acknowledged: the
        // journal's fsync answers a write). Keep them (they are a consistent prefix), but
        // point replay at the journal's end before new records are written there, or a later
        // open would skip those.
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, keys::REPLAY_FROM, keys::location_value(tail));
        db.write_opt(batch, &write_options())
            .and_then(|()| db.flush_wal(true))
            .map_err(|e| LevelDbError::rocks("moving the replay position back", e))?;
        tracing::warn!(
            "leveldb: the database held writes past the journal's end ({from} > {tail}), none of \
             them acknowledged; kept"
        );
        return Ok((tail, 0));
    }
    apply_from(db, journal, from, messages_cf)
}

fn apply_from(
    db: &DB,
    journal: &Journal,
    from: Location,
    messages_cf: u32,
) -> Result<(Location, u64)> {
    let mut count = 0;
    // Merged as the apply thread merges them: one RocksDB write per 16 MiB of records instead
    // of one per record (a crash can leave tens of thousands to replay). Not logged by RocksDB
    // (after a full disk, a second copy in its log is what would not fit), and without
    // `replay_from`: the other column families are flushed to tables first, then
    // `replay_from` is written and its column family flushed. A crash before that replays from
    // the old position again, over column families that may already hold the records
    // (replaying a batch again is idempotent: puts and deletes of whole values).
    let applier = Applier::for_replay(messages_cf);
    let mut last = None;
    for record in journal.replay(from) {
        let (at, data) = record?;
        if applier.push(&data, at)? {
            applier.apply_all(db)?;
        }
        last = Some(at);
        count += 1;
    }
    applier.apply_all(db)?;
    if let Some(at) = last {
        let flush = |cf: Cf| {
            let h = db
                .cf_handle(cf.name())
                .ok_or(LevelDbError::MissingColumnFamily(cf.name()))?;
            db.flush_cf(h)
                .map_err(|e| LevelDbError::rocks("flushing replayed journal records", e))
        };
        for cf in Cf::ALL.into_iter().filter(|c| *c != Cf::Meta) {
            flush(cf)?;
        }
        let mut batch = WriteBatch::default();
        mark(db, &mut batch, at)?;
        let mut opts = write_options();
        opts.disable_wal(true);
        db.write_opt(batch, &opts)
            .map_err(|e| LevelDbError::rocks("recording the replay position", e))?;
        flush(Cf::Meta)?;
    }
    Ok((last.map_or(from, after), count))
}

/// The last applied record's position (`file << 32 | offset`), read by the collector.
#[derive(Default)]
pub(crate) struct Applied(AtomicU64);

impl Applied {
    pub(crate) fn set(&self, at: Location) {
        let v = (u64::from(at.file) << 32) | u64::from(at.offset);
        self.0.fetch_max(v, Ordering::Release);
    }

    pub(crate) fn get(&self) -> Location {
        let v = self.0.load(Ordering::Acquire);
        Location {
            file: (v >> 32) as u32,
            offset: v as u32,
        }
    }
}

#[derive(Default)]
struct Signal {
    wanted: bool,
    stop: bool,
}

struct Inner {
    signal: Mutex<Signal>,
    wake: Condvar,
}

/// The thread that deletes journal files RocksDB no longer needs.
pub(crate) struct Collector {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Collector {
    /// Starts the thread; its first pass is asked for when a journal file is sealed.
    pub(crate) fn start(
        db: Arc<DB>,
        journal: Arc<Journal>,
        applier: Arc<Applier>,
    ) -> std::io::Result<Collector> {
        let inner = Arc::new(Inner {
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
        });
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("leveldb-journal-gc".into())
            .spawn(move || collect_loop(&for_thread, &db, &journal, &applier))?;
        Ok(Collector {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Asks for a pass (a journal file was sealed).
    pub(crate) fn wake(&self) {
        self.inner.signal.lock().wanted = true;
        self.inner.wake.notify_one();
    }

    /// Stops the thread, which drops its handle on the database.
    pub(crate) fn stop(&self) {
        self.inner.signal.lock().stop = true;
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("the leveldb journal collector panicked");
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn collect_loop(inner: &Inner, db: &DB, journal: &Journal, applier: &Applier) {
    loop {
        {
            let mut s = inner.signal.lock();
            while !s.wanted && !s.stop {
                inner.wake.wait(&mut s);
            }
            if s.stop {
                return;
            }
            s.wanted = false;
        }
        if let Err(e) = collect(applier, db, journal) {
            tracing::warn!("leveldb: deleting journal files: {e}");
        }
    }
}

/// Deletes the records of messages whose bodies the journal never wrote (`recovery::load`
/// lists them): RocksDB kept batches whose journal records the crash took, none of them
/// acknowledged (the journal's fsync answers a write), and a message is not kept without its
/// body.
pub(crate) fn drop_unwritten(db: &DB, records: Vec<(Cf, Vec<u8>)>) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    for (cf, key) in &records {
        let h = db
            .cf_handle(cf.name())
            .ok_or(LevelDbError::MissingColumnFamily(cf.name()))?;
        batch.delete_cf(h, key);
    }
    db.write_opt(batch, &write_options())
        .and_then(|()| db.flush_wal(true))
        .map_err(|e| LevelDbError::rocks("deleting messages the journal never wrote", e))?;
    tracing::warn!(
        "leveldb: dropped {} records of messages whose journal records the crash took (never \
         acknowledged)",
        records.len()
    );
    Ok(())
}

/// Every journal file holding a stored message's body exists; otherwise open fails naming it.
pub(crate) fn check_body_files(journal: &Journal, bodies: &BodyFiles) -> Result<()> {
    let files = journal.file_ids();
    match bodies.holding().find(|f| files.binary_search(f).is_err()) {
        None => Ok(()),
        Some(f) => Err(LevelDbError::Corrupt {
            file: Some(journal.config().path_of(f)),
            reason: "the database holds messages whose bodies are in this journal file, and \
                     it is missing"
                .into(),
        }),
    }
}

/// One pass: every file before the last applied record's that holds no stored message's body
/// is deleted once RocksDB's log is synced past it. Also run at open, before anything is
/// written: after a full disk these files are what keeps it full.
pub(crate) fn collect(applier: &Applier, db: &DB, journal: &Journal) -> Result<()> {
    let upto = applier.applied();
    let old: Vec<u32> = {
        let bodies = applier.bodies();
        // After the journal refused a write, the index heal rebuilds the counts from RocksDB
        // while groups taken before the failure may still be answered: delete nothing until
        // the store is reopened (which it must be). Checked under the counts' lock, which the
        // heal takes after the refusal is set: these counts are the ones kept up to it.
        if journal.refusal().is_some() {
            return Ok(());
        }
        journal
            .file_ids()
            .into_iter()
            .filter(|&id| id < upto.file && bodies.is_free(id, upto))
            .collect()
    };
    if old.is_empty() {
        return Ok(());
    }
    // Everything applied before `upto` was read, so its batches are in RocksDB's memtables and
    // log buffer; this writes and syncs that log, after which the batches survive without the
    // journal (RocksDB replays them, or its flushed tables hold them).
    if !applier.sync_log(db)? {
        return Ok(());
    }
    {
        let _deleting = applier.deleting_files();
        journal.delete_files(&old)?;
    }
    applier.bodies().forget(&old);
    tracing::debug!(files = ?old, "leveldb: deleted journal files");
    Ok(())
}
