//! The store: opening (load the index, replay the journal, or rebuild), the write path (journal
//! append and index update under the index lock, then wait for the group commit outside it), the
//! background checkpoint, journal GC and compaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use store_api::{Destination, Message, MessageId, OrderKey, StoreError, TxOp, WriteRefusal};
use store_journal::fs::FileSystem;
use store_journal::{Completion, Journal, JournalConfig, Location, RecoveryMode};

use crate::config::KahaDbConfig;
use crate::error::{KahaError, Result};
use crate::index::{Entry, Index};
use crate::index_storage::IndexStorage;
use crate::records::{self, Command};

/// Counters for benchmarks and monitoring.
#[derive(Debug, Clone, Copy, Default)]
pub struct KahaDbStats {
    pub journal: store_journal::JournalStats,
    pub journal_files: usize,
    pub index_pages: u64,
    pub index_page_reads: u64,
    pub checkpoints: u64,
    pub files_deleted: u64,
    pub records_compacted: u64,
    /// Journal records replayed when the store was opened (what recovery had to redo).
    pub records_replayed_at_open: u64,
}

pub(crate) struct Inner {
    pub(crate) config: KahaDbConfig,
    /// Replaced as a whole when the store reopens itself after its disk was full.
    journal: RwLock<Arc<Journal>>,
    journal_config: JournalConfig,
    fs: Arc<dyn FileSystem>,
    pub(crate) index: Mutex<Index>,
    pub(crate) closed: AtomicBool,
    poisoned: Mutex<Option<WriteRefusal>>,
    /// Counts the reopens in place: a write that began before one must not touch the index
    /// loaded by it.
    epoch: AtomicU64,
    checkpoint_lock: Mutex<()>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    background: Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Mutex<KahaDbStats>,
    /// Where the index lives between checkpoints: the one thing the engines do differently.
    pub(crate) storage: Box<dyn IndexStorage>,
}

/// What a write left to finish once its records are durable.
pub(crate) struct PendingWrite {
    completion: Completion,
    epoch: u64,
    /// Adds made in this write: hidden until durable, undone if the write fails.
    adds: Vec<(Message, Location)>,
    pub(crate) locations: Vec<Location>,
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        self.check_open()?;
        if let Some(r) = &*self.poisoned.lock() {
            return Err(r.to_error());
        }
        Ok(())
    }

    /// The journal appends go to now.
    pub(crate) fn journal(&self) -> Arc<Journal> {
        self.journal.read().clone()
    }

    /// Why writes are refused, if they are.
    pub(crate) fn refusal(&self) -> Option<WriteRefusal> {
        if let Some(r) = self.poisoned.lock().clone() {
            return Some(r);
        }
        // The journal's writer can fail on its own (preallocating the next file, say) and a
        // write then fails on the poisoned journal by a path that never reached `poison`:
        // the store refuses from then on all the same, and must say so, for why.
        let journal = self.journal().refusal()?;
        self.poison(journal.reason, journal.disk_full.is_some());
        self.poisoned.lock().clone()
    }

    /// Refuses writes from now on. `disk_full`: the failure was the file system being full
    /// (here or, as the journal recorded it, in the journal's writer), which a reopen in place
    /// can get over once space is freed; any other failure needs a reopen by the operator.
    fn poison(&self, why: String, disk_full: bool) {
        let journal = self.journal().refusal();
        let disk_full = disk_full || journal.is_some_and(|r| r.disk_full.is_some());
        let mut p = self.poisoned.lock();
        if p.is_none() {
            tracing::error!(dir = %self.config.directory.display(), disk_full, "{} store refuses writes: {why}", self.storage.kind());
            *p = Some(WriteRefusal {
                disk_full: disk_full.then(|| self.config.directory.clone()),
                reason: why,
            });
        }
    }

    /// The error a failed write returns: `DiskFull` while the store is refused for want of
    /// space, whatever the journal called it.
    fn failed_write(&self, e: StoreError) -> StoreError {
        match self.refusal() {
            Some(r) if r.disk_full.is_some() => r.to_error(),
            _ => e,
        }
    }

    /// Journals `cmds` as one atomic append and applies them to the index, under the caller's
    /// index lock. The caller then awaits [`Inner::finish`] without the lock.
    pub(crate) fn write(
        &self,
        ix: &mut MutexGuard<'_, Index>,
        cmds: Vec<Command>,
        force_sync: bool,
    ) -> Result<PendingWrite, StoreError> {
        self.write_as(ix, cmds, |j, refs| j.append(refs, force_sync))
    }

    /// [`Inner::write`] of an ack; `unwaited`: no client waits for it, so its fsync may be
    /// shared with the next write that must be durable now, if one comes within the journal's
    /// defer delay.
    pub(crate) fn write_ack(
        &self,
        ix: &mut MutexGuard<'_, Index>,
        cmd: Command,
        unwaited: bool,
    ) -> Result<PendingWrite, StoreError> {
        if unwaited {
            self.write_as(ix, vec![cmd], |j, refs| j.append_deferred(refs))
        } else {
            self.write(ix, vec![cmd], false)
        }
    }

    fn write_as(
        &self,
        ix: &mut MutexGuard<'_, Index>,
        cmds: Vec<Command>,
        append: impl FnOnce(&Journal, &[&[u8]]) -> store_journal::Result<store_journal::Appended>,
    ) -> Result<PendingWrite, StoreError> {
        self.check_writable()?;
        let encoded: Vec<Vec<u8>> = cmds.iter().map(Command::encode).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|e| e.as_slice()).collect();
        let appended = append(&self.journal(), &refs).map_err(KahaError::from)?;
        let mut adds = Vec::new();
        for (cmd, loc) in cmds.into_iter().zip(appended.locations.iter().copied()) {
            if let Err(e) = ix.apply(&cmd, loc) {
                // The journal holds a record the index could not take: stop writing.
                self.poison(
                    format!("applying a journaled change to the index failed: {e}"),
                    false,
                );
                return Err(e.into());
            }
            if let Command::Add { message: m, .. } = cmd {
                ix.pending
                    .entry(m.destination.clone())
                    .or_default()
                    .insert(m.sequence);
                adds.push((m, loc));
            }
        }
        Ok(PendingWrite {
            completion: appended.completion,
            epoch: self.epoch.load(Ordering::Acquire),
            adds,
            locations: appended.locations,
        })
    }

    /// The shape of most writes: under one index lock, `f` checks what it needs and calls
    /// [`Inner::write`]; then, without the lock, wait for the write to be durable. Checking and
    /// writing under one lock is what stops two callers from both passing a check that only one
    /// of their writes can satisfy.
    pub(crate) async fn locked_write(
        &self,
        f: impl FnOnce(&mut MutexGuard<'_, Index>) -> Result<PendingWrite, StoreError>,
    ) -> Result<Vec<Location>, StoreError> {
        let w = {
            let mut ix = self.index.lock();
            f(&mut ix)?
        };
        self.finish(w).await
    }

    /// Waits for a write to be durable, then makes its adds visible (or undoes them).
    pub(crate) async fn finish(&self, w: PendingWrite) -> Result<Vec<Location>, StoreError> {
        let result = w.completion.await;
        let mut ix = self.index.lock();
        // After a reopen in place the index is what the files hold: this write's adds are in
        // it if their records reached the disk whole, and not otherwise.
        if self.epoch.load(Ordering::Acquire) == w.epoch {
            for (m, loc) in &w.adds {
                if let Some(p) = ix.pending.get_mut(&m.destination) {
                    p.remove(&m.sequence);
                }
                if result.is_err() {
                    let _ = ix.undo_add(m, *loc);
                }
            }
        }
        drop(ix);
        match result {
            Ok(()) => Ok(w.locations),
            Err(e) => {
                self.poison(e.to_string(), false);
                Err(self.failed_write(KahaError::from(e).into()))
            }
        }
    }

    /// Reads the messages of index entries from the journal.
    pub(crate) fn read_messages(
        &self,
        d: &Destination,
        entries: Vec<(OrderKey, Entry)>,
    ) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        for (_, e) in entries {
            out.push(self.read_message(d, e.loc)?);
        }
        Ok(out)
    }

    pub(crate) fn read_message(
        &self,
        d: &Destination,
        loc: Location,
    ) -> Result<Message, StoreError> {
        let bytes = self.journal().read(loc).map_err(KahaError::from)?;
        let m = records::decode_message(&bytes).map_err(|e| KahaError::BadRecord {
            location: loc.to_string(),
            reason: e.to_string(),
        })?;
        if &m.destination != d {
            return Err(KahaError::BadRecord {
                location: loc.to_string(),
                reason: format!("index points {d} at a message of {}", m.destination),
            }
            .into());
        }
        Ok(m)
    }

    /// Reads a message by id, looking it up again if compaction moved it meanwhile.
    pub(crate) fn get_message(
        &self,
        d: &Destination,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        for attempt in 0..2 {
            let loc = {
                let mut ix = self.index.lock();
                match ix.lookup(d, id)? {
                    Some((ok, e))
                        if !ix.pending.get(d).is_some_and(|p| p.contains(&ok.sequence)) =>
                    {
                        e.loc
                    }
                    _ => return Ok(None),
                }
            };
            match self.read_message(d, loc) {
                Ok(m) => return Ok(Some(m)),
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(None)
    }

    // ---- checkpoints, GC, compaction ----

    pub(crate) fn checkpoint(&self, cleanup: bool) -> Result<()> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        if self.poisoned.lock().is_some() {
            return Ok(());
        }
        let done = match self.storage.checkpoint(&self.index, &self.journal()) {
            Ok(done) => done,
            Err(e) => {
                let disk_full =
                    matches!(&e, KahaError::Io { source, .. } if store_api::is_disk_full(source));
                self.poison(format!("checkpoint failed: {e}"), disk_full);
                return Err(e);
            }
        };
        self.counters.lock().checkpoints += 1;
        if cleanup {
            self.collect_garbage(done.at, &done.file_refs, &done.outlives)?;
            if self.config.enable_compaction {
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Deletes journal files before the checkpoint that hold nothing the index needs and no
    /// removal that a still-present older file needs (the ack rule).
    fn collect_garbage(
        &self,
        at: Location,
        file_refs: &BTreeMap<u32, u64>,
        outlives: &BTreeMap<u32, BTreeSet<u32>>,
    ) -> Result<()> {
        let journal = self.journal();
        let tail = journal.tail_file();
        let present: BTreeSet<u32> = journal.file_ids().into_iter().collect();
        let mut doomed: BTreeSet<u32> = present
            .iter()
            .copied()
            .filter(|f| *f < at.file && *f < tail && !file_refs.contains_key(f))
            .collect();
        loop {
            let before = doomed.len();
            let keep: Vec<u32> = doomed
                .iter()
                .copied()
                .filter(|f| {
                    outlives.get(f).is_some_and(|victims| {
                        victims
                            .iter()
                            .any(|v| present.contains(v) && !doomed.contains(v))
                    })
                })
                .collect();
            for f in keep {
                doomed.remove(&f);
            }
            if doomed.len() == before {
                break;
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = doomed.iter().copied().collect();
        tracing::debug!(files = ?ids, "deleting journal files nothing needs");
        journal.delete_files(&ids)?;
        self.counters.lock().files_deleted += ids.len() as u64;
        let mut ix = self.index.lock();
        ix.cat.outlives.retain(|f, _| !doomed.contains(f));
        for victims in ix.cat.outlives.values_mut() {
            victims.retain(|v| !doomed.contains(v));
        }
        Ok(())
    }

    /// Copies the few live records of the oldest lightly used journal file forward, so the next
    /// GC can delete it (and with it every file kept only by the ack rule for it).
    fn compact(&self) -> Result<()> {
        let tail = self.journal().tail_file();
        let (pending, moved) = {
            let mut ix = self.index.lock();
            let candidate = ix
                .cat
                .file_refs
                .iter()
                .find(|(f, n)| **f + 1 < tail && **n <= self.config.compaction_threshold)
                .map(|(f, _)| *f);
            let Some(file) = candidate else {
                return Ok(());
            };
            let mut cmds = Vec::new();
            // Where each relocated message was, in the order of `cmds`.
            let mut moved = Vec::new();
            for (d, ok, e) in ix.messages_in_file(file)? {
                if ix.pending.get(&d).is_some_and(|p| p.contains(&ok.sequence)) {
                    return Ok(());
                }
                let message = self
                    .read_message(&d, e.loc)
                    .map_err(|e| KahaError::BadRecord {
                        location: file.to_string(),
                        reason: e.to_string(),
                    })?;
                let pending_for = if d.is_topic() {
                    ix.pending_for(&d, ok)?
                } else {
                    Vec::new()
                };
                moved.push((d, message.id.clone(), e.loc));
                cmds.push(Command::Relocate {
                    message,
                    pending_for,
                });
            }
            for (d, meta) in &ix.cat.destinations {
                if meta.anchor.file == file {
                    cmds.push(Command::EnsureDestination { dest: d.clone() });
                }
                for s in meta.subs.values().filter(|s| s.anchor.file == file) {
                    if s.count > 0 {
                        // Its pending set is not in the record; the file must stay.
                        return Ok(());
                    }
                    cmds.push(Command::EnsureSubscription {
                        dest: d.clone(),
                        info: s.info.clone(),
                    });
                }
            }
            for (xid, loc) in &ix.cat.prepared {
                if loc.file == file {
                    let ops = ix
                        .txs
                        .find(&store_api::TransactionId::Xa(xid.clone()))
                        .map(|t| t.ops.clone())
                        .unwrap_or_default();
                    cmds.push(Command::Prepare {
                        xid: xid.clone(),
                        ops,
                    });
                }
            }
            if cmds.is_empty() {
                return Ok(());
            }
            let n = cmds.len() as u64;
            tracing::info!(
                file,
                records = n,
                "compacting: copying the last live records of a journal file forward"
            );
            self.counters.lock().records_compacted += n;
            let pending = self
                .write(&mut ix, cmds, false)
                .map_err(|e| KahaError::Poisoned(e.to_string()))?;
            (pending, moved)
        };
        let PendingWrite {
            completion,
            locations,
            ..
        } = pending;
        if let Err(e) = completion.wait() {
            // The copies never reached the disk (the journal is poisoned now, so nothing can
            // have been written after them): point the index back at the originals, which are
            // intact and which GC keeps, so that reads go on until the store is reopened.
            let mut ix = self.index.lock();
            for ((d, id, old), new) in moved.iter().zip(&locations) {
                ix.undo_relocate(d, id, *new, *old)?;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// After a refusal for want of space: if there is room again, reopens the store in place
    /// (see `PersistenceAdapter::resume_writes`) and returns true. False while the disk is
    /// still full, or when the refusal was not for space (a failed fsync: what reached the
    /// disk is unknown, so only the operator's reopen is safe).
    pub(crate) fn resume_writes(&self) -> Result<bool, StoreError> {
        self.check_open()?;
        let refusal = self.refusal();
        if let store_journal::Resume::Answer(writable) = self
            .journal_config
            .resume(refusal.as_ref(), self.fs.as_ref())
        {
            return Ok(writable);
        }
        // Checkpoints and GC, then every write and index reader, wait for the reopen.
        let _one_at_a_time = self.checkpoint_lock.lock();
        let mut ix = self.index.lock();
        // The old journal's writers must be gone before another journal cuts the torn tail
        // they left. Closing syncs what it wrote when it is not poisoned itself (the refusal
        // may have come from a checkpoint's index write); reads still going through it fail
        // cleanly (`Closed`).
        let _ = self.journal().close();
        let journal = match Journal::open(self.journal_config.clone(), self.fs.clone()) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(dir = %self.config.directory.display(), "reopening the journal after a full disk failed, will retry: {e}");
                return Ok(false);
            }
        };
        let mut fresh = match load_index(self.storage.as_ref(), &journal) {
            Ok(ix) => ix,
            Err(e) => {
                tracing::warn!(dir = %self.config.directory.display(), "reloading the index after a full disk failed, will retry: {e}");
                return Ok(false);
            }
        };
        fresh.keep_handles_of(&mut ix);
        *ix = fresh;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *self.journal.write() = Arc::new(journal);
        *self.poisoned.lock() = None;
        drop(ix);
        tracing::info!(dir = %self.config.directory.display(), "{} store reopened after its disk was full: writes are taken again", self.storage.kind());
        Ok(true)
    }

    pub(crate) fn stats(&self) -> KahaDbStats {
        let mut s = *self.counters.lock();
        let journal = self.journal();
        s.journal = journal.stats();
        s.journal_files = journal.file_ids().len();
        let ix = self.index.lock();
        s.index_pages = ix.pf.file_pages;
        s.index_page_reads = ix.pf.reads;
        s
    }

    pub(crate) fn size_on_disk(&self) -> u64 {
        self.journal().disk_size() + self.storage.size_on_disk()
    }

    pub(crate) fn stop_background(&self) {
        *self.stop.lock() = true;
        self.stop_cv.notify_all();
        if let Some(h) = self.background.lock().take() {
            let _ = h.join();
        }
    }

    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.stop_background();
        let checkpointed = if self.poisoned.lock().is_none() {
            self.checkpoint(self.config.cleanup_on_stop)
        } else {
            Ok(())
        };
        self.closed.store(true, Ordering::Release);
        let closed = self.journal().close().map_err(KahaError::from);
        checkpointed.and(closed)
    }
}

/// Opens a store: loads the checkpointed index and replays the journal after it, or rebuilds the
/// index from the whole journal when it is missing or corrupt.
pub(crate) fn open(
    config: KahaDbConfig,
    storage: Box<dyn IndexStorage>,
    fs: Arc<dyn FileSystem>,
) -> Result<Arc<Inner>> {
    if config.index_cache_size == 0 || config.journal_max_file_length < 4096 {
        return Err(KahaError::Config(
            "index_cache_size must be positive and journal_max_file_length at least 4096".into(),
        ));
    }
    let dir = config.directory.clone();
    fs.create_dir_durable(&dir)
        .map_err(|e| KahaError::io(format!("creating {}", dir.display()), e))?;
    let (journal_dir, prefix, suffix) = storage.journal_layout();
    let mut jc = JournalConfig::new(journal_dir, prefix, suffix);
    jc.max_file_length = config.journal_max_file_length;
    jc.max_write_batch_size = config.journal_max_write_batch_size;
    jc.sync = config.sync;
    jc.preallocate = config.preallocate;
    jc.leader_writes = config.leader_writes;
    jc.map_replay = config.mmap_replay;
    jc.map_reads = config.mmap_reads;
    jc.defer_delay = config.ack_sync_delay;
    jc.recovery = if config.ignore_missing_journal_files {
        RecoveryMode::SkipCorrupt
    } else {
        RecoveryMode::Strict
    };
    let journal = Journal::open(jc.clone(), fs.clone())?;
    let index = load_index(storage.as_ref(), &journal)?;

    let replayed = index.replayed;
    let inner = Arc::new(Inner {
        config,
        journal: RwLock::new(Arc::new(journal)),
        journal_config: jc,
        fs,
        index: Mutex::new(index),
        closed: AtomicBool::new(false),
        poisoned: Mutex::new(None),
        epoch: AtomicU64::new(0),
        checkpoint_lock: Mutex::new(()),
        stop: Mutex::new(false),
        stop_cv: Condvar::new(),
        background: Mutex::new(None),
        counters: Mutex::new(KahaDbStats {
            records_replayed_at_open: replayed,
            ..KahaDbStats::default()
        }),
        storage,
    });
    start_background(&inner)?;
    Ok(inner)
}

/// The index as the files hold it: the checkpoint and the journal after it, or (the storage's
/// own files being damaged) the whole journal.
fn load_index(storage: &dyn IndexStorage, journal: &Journal) -> Result<Index> {
    match load_and_replay(storage, journal) {
        Ok(ix) => Ok(ix),
        Err(e) => {
            if !storage.discard_damaged(&e)? {
                return Err(e);
            }
            load_and_replay(storage, journal)
        }
    }
}

fn load_and_replay(storage: &dyn IndexStorage, journal: &Journal) -> Result<Index> {
    let (mut ix, from) = storage.load(journal)?;
    let started = Instant::now();
    let mut n = 0u64;
    for record in journal.replay(from) {
        let (loc, bytes) = record?;
        let cmd = Command::decode(&bytes).map_err(|e| KahaError::BadRecord {
            location: loc.to_string(),
            reason: e.to_string(),
        })?;
        ix.apply(&cmd, loc)?;
        n += 1;
        if n.is_multiple_of(100_000) {
            tracing::info!(records = n, at = %loc, "replaying the journal");
        }
    }
    restore_prepared(&mut ix, journal)?;
    ix.replayed = n;
    if n > 0 {
        tracing::info!(
            records = n,
            skipped = ix.skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal replayed into the index"
        );
    }
    Ok(ix)
}

/// Prepared transactions in the checkpoint keep only their record's location: read their
/// operations back from the journal.
fn restore_prepared(ix: &mut Index, journal: &Journal) -> Result<()> {
    let missing: Vec<(store_api::Xid, Location)> = ix
        .cat
        .prepared
        .iter()
        .filter(|(x, _)| !ix.txs.contains(&store_api::TransactionId::Xa((*x).clone())))
        .map(|(x, l)| (x.clone(), *l))
        .collect();
    for (xid, loc) in missing {
        let bytes = journal.read(loc)?;
        match Command::decode(&bytes) {
            Ok(cmd @ Command::Prepare { .. }) => ix.apply(&cmd, loc)?,
            Ok(_) | Err(_) => {
                return Err(KahaError::BadRecord {
                    location: loc.to_string(),
                    reason: format!(
                        "the index says transaction {xid:?} was prepared here, but the record is not its prepare"
                    ),
                });
            }
        }
    }
    Ok(())
}

fn start_background(inner: &Arc<Inner>) -> Result<()> {
    let interval = inner.config.checkpoint_interval;
    if interval.is_zero() {
        return Ok(());
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let cleanup_every = inner.config.cleanup_interval;
    let tick = interval.min(Duration::from_millis(500));
    let handle = std::thread::Builder::new()
        .name("kahadb-checkpoint".into())
        .spawn(move || {
            let mut last_checkpoint = Instant::now();
            let mut last_cleanup = Instant::now();
            loop {
                let Some(inner) = weak.upgrade() else { return };
                {
                    let mut stop = inner.stop.lock();
                    if *stop {
                        return;
                    }
                    inner.stop_cv.wait_for(&mut stop, tick);
                    if *stop {
                        return;
                    }
                }
                let due = last_checkpoint.elapsed() >= interval
                    || inner.storage.checkpoint_due_early(&inner.index);
                if !due {
                    continue;
                }
                let cleanup = last_cleanup.elapsed() >= cleanup_every;
                if let Err(e) = inner.checkpoint(cleanup) {
                    tracing::error!("checkpoint failed: {e}");
                }
                last_checkpoint = Instant::now();
                if cleanup {
                    last_cleanup = Instant::now();
                }
            }
        })
        .map_err(|e| KahaError::io("starting the checkpoint thread", e))?;
    *inner.background.lock() = Some(handle);
    Ok(())
}

/// Checks that the ops of a transaction would all apply, in order, against the index now,
/// without changing it: the all-or-nothing half of commit and prepare.
pub(crate) fn check_ops(ix: &mut Index, ops: &[TxOp]) -> Result<(), StoreError> {
    store_api::tx_check::check_ops(ops, &mut IndexProbe(ix))
}

struct IndexProbe<'a>(&'a mut Index);

impl store_api::tx_check::StateProbe for IndexProbe<'_> {
    fn contains(&mut self, d: &Destination, id: &MessageId) -> Result<bool, StoreError> {
        Ok(self.0.lookup(d, id)?.is_some())
    }

    fn ackable(&mut self, d: &Destination, id: &MessageId) -> Result<bool, StoreError> {
        visible(self.0, d, id)
    }

    fn pending_for(
        &mut self,
        d: &Destination,
        key: &store_api::SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool, StoreError> {
        Ok(visible(self.0, d, id)? && self.0.is_pending_for(d, key, id)?)
    }

    fn subscriptions(
        &mut self,
        d: &Destination,
    ) -> Result<Vec<store_api::SubscriptionKey>, StoreError> {
        Ok(self.0.subscription_keys(d))
    }
}

/// Whether a message is stored and its add is durable.
pub(crate) fn visible(ix: &mut Index, d: &Destination, id: &MessageId) -> Result<bool, StoreError> {
    Ok(match ix.lookup(d, id)? {
        Some((ok, _)) => !ix.pending.get(d).is_some_and(|p| p.contains(&ok.sequence)),
        None => false,
    })
}
