//! The store: opening RocksDB with the engine's column families, the one lock that orders
//! every change, and the adapter half of the contract (destinations, transactions, checkpoint).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use rocksdb::{BlockBasedOptions, Cache, DB, DBRecoveryMode, Options, ReadOptions};
use store_api::{
    Destination, Message, OrderKey, PersistenceAdapter, PreparedTransaction, QueueStore, Result,
    StoreError, TopicStore, TransactionId, TxOp, Xid,
};
use store_journal::{Completion, Journal, Location};

use crate::apply::{Applier, ApplyThread};
use crate::batch::Batch;
use crate::config::LevelDbConfig;
use crate::error::LevelDbError;
use crate::handle::Handle;
use crate::index::Index;
use crate::journal::Collector;
use crate::keys::{self, Cf};
use crate::transaction::IndexProbe;

/// An open database and its index. Gone after `close`, which drops the database so that the
/// directory can be opened again (RocksDB holds a lock file while open).
pub(crate) struct Open {
    pub(crate) db: Arc<DB>,
    pub(crate) index: Index,
    /// The journal file the last write went to: a write to a later one wakes the collector.
    last_file: u32,
    /// The index was rebuilt after the journal refused a write (see `heal_index`).
    journal_failure_healed: bool,
}

/// How a write waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// As `sync` says: for the journal's fsync under `sync = true`, not at all otherwise.
    Policy,
    /// For an fsync whatever `sync` says (XA prepares).
    Forced,
    /// An acknowledgement no client waits for: under `sync = true` durable before it completes,
    /// but it may wait `ack_sync_delay` to share the fsync of a write someone waits for.
    Deferred,
}

pub(crate) struct Shared {
    pub(crate) config: LevelDbConfig,
    /// Every change takes this lock, applies itself to the index, appends its batch to the
    /// journal and queues it for RocksDB before releasing it, so the index, the journal and
    /// RocksDB agree on one order of writes (an ack never precedes the add it acknowledges).
    pub(crate) state: Mutex<Option<Open>>,
    journal: Arc<Journal>,
    collector: Collector,
    applier: Arc<Applier>,
    apply_thread: ApplyThread,
    writes: AtomicU64,
    replayed: u64,
}

/// Waits for the journal's fsync covering a write, when the write asked for one.
pub(crate) struct Pending(Option<Durable>);

/// A write's journal fsync, and its batch's place in RocksDB.
pub(crate) struct Durable {
    completion: Completion,
    applier: Arc<Applier>,
    db: Arc<DB>,
    at: Location,
}

impl Pending {
    /// Resolves once the journal's fsync covered the write and its batch is in RocksDB (see
    /// `Applier::wait_applied` for why the second).
    pub(crate) async fn durable(self) -> Result<()> {
        let Some(d) = self.0 else {
            return Ok(());
        };
        if let Err(e) = d.completion.await {
            // The journal did not write the record (a full disk, say), but the index holds
            // the change and RocksDB may: rebuild the index at the next call, without
            // messages whose bodies the journal never wrote.
            d.applier.mark_stale();
            return Err(e.into());
        }
        Ok(d.applier.wait_applied(&d.db, d.at).await?)
    }
}

impl Shared {
    /// Runs a change: `f` checks, then updates the index and fills the batch; under the lock
    /// the batch is appended to the journal and queued for RocksDB, which the apply thread
    /// writes it to (see apply.rs). The returned [`Pending`] resolves once the
    /// journal holds it durably, per `wait`.
    pub(crate) fn write<T>(
        &self,
        wait: Wait,
        f: impl FnOnce(&mut Index, &mut Batch<'_>) -> Result<T>,
    ) -> Result<(T, Pending)> {
        let mut guard = self.state.lock();
        let open = guard.as_mut().ok_or(StoreError::Closed)?;
        self.heal_index(open);
        if let Some(refusal) = self.refusal() {
            return Err(StoreError::Poisoned(refusal.reason));
        }
        let db = open.db.clone();
        let mut batch = Batch::new(&db, open.index.legacy_bodies);
        let out = f(&mut open.index, &mut batch)?;
        if batch.is_empty() {
            return Ok((out, Pending(None)));
        }
        let written = batch.finish().and_then(|b| {
            let appended = match wait {
                Wait::Policy => self.journal.append(&[b.data()], false),
                Wait::Forced => self.journal.append(&[b.data()], true),
                Wait::Deferred => self.journal.append_deferred(&[b.data()]),
            }?;
            let at = appended.locations[0];
            let full = self.applier.push(b.data(), at)?;
            Ok((at, appended.completion, full))
        });
        let (at, completion, full) = match written {
            Ok(w) => w,
            Err(e) => {
                // The journal refused the batch (a full disk, say), but the index already
                // holds the change: rebuild it from what the database has, so reads see only
                // stored messages, and refuse every later write until the store is reopened.
                if matches!(e, LevelDbError::Journal(_)) {
                    // The journal reports its own refusal.
                    self.applier.mark_stale();
                } else {
                    self.applier.fail(&e.to_string());
                }
                self.heal_index(open);
                return Err(StoreError::Poisoned(e.to_string()));
            }
        };
        self.writes.fetch_add(1, Ordering::Relaxed);
        if at.file != open.last_file {
            open.last_file = at.file;
            self.collector.wake();
        }
        drop(guard);
        if full {
            self.apply(&db)?;
        }
        let waits = self.config.sync || wait == Wait::Forced;
        if waits {
            Ok((
                out,
                Pending(Some(Durable {
                    completion,
                    applier: self.applier.clone(),
                    db,
                    at,
                })),
            ))
        } else {
            // Dropping it writes the group this append may have taken, without waiting.
            drop(completion);
            Ok((out, Pending(None)))
        }
    }

    /// Writes the queued batches to RocksDB now, waiting for the apply thread if it is at it.
    /// A failure is recorded by the applier (writes refused, index to rebuild).
    fn apply(&self, db: &DB) -> Result<()> {
        self.applier.apply_all(db)?;
        Ok(())
    }

    /// After a failed write, rebuilds the index from what RocksDB holds (keeping open
    /// transactions and the handles' cursors), so reads see only stored messages.
    fn heal_index(&self, open: &mut Open) {
        // A write the journal failed may have been made without anyone waiting for it (under
        // `sync = false`): its message is in the index, its body never written.
        let journal_failed = !open.journal_failure_healed && self.journal.refusal().is_some();
        if !self.applier.take_stale() && !journal_failed {
            return;
        }
        open.journal_failure_healed |= journal_failed;
        // Records queued before the failure (their journal writes went through) reach RocksDB
        // first, or the rebuilt index and its body counts would miss them. An error here is
        // RocksDB's own refusal, recorded by the applier.
        let _ = self.apply(&open.db);
        let transactions = std::mem::take(&mut open.index.transactions);
        let written = self.journal.written();
        match crate::recovery::load(&open.db, self.config.verify_checksums, written) {
            Ok(mut index) => {
                self.applier
                    .set_bodies(std::mem::take(&mut index.body_files));
                index.transactions = transactions;
                index.keep_handles_of(&open.index);
                open.index = index;
            }
            Err(e) => tracing::error!("leveldb: rebuilding the index after a failed write: {e}"),
        }
    }

    /// Why writes are refused: RocksDB failed a write, or the journal a write or fsync.
    /// `disk_full` stays unset even when the disk filled up: the store does not reopen itself
    /// in place (the batches RocksDB took after the journal's failure are sorted out by the
    /// reopen's replay), so the broker says a restart is needed.
    fn refusal(&self) -> Option<store_api::WriteRefusal> {
        let reason = match self.applier.refusal() {
            Some(reason) => reason,
            None => self.journal.refusal()?.reason,
        };
        Some(store_api::WriteRefusal {
            disk_full: None,
            reason,
        })
    }

    /// Closes what `open` was taken from the state: the collector, then the journal (writers
    /// waiting for an fsync are answered, and writes made without one under `sync = false`
    /// are synced, so a clean close loses nothing), then RocksDB, flushed so that the next
    /// open replays nothing.
    fn close(&self, open: Open) -> Result<()> {
        // An error here is also in `refused`, reported below.
        let _ = self.apply(&open.db);
        self.apply_thread.stop();
        self.collector.stop();
        let journal = self.journal.close();
        if let Some(why) = self.applier.refusal() {
            // RocksDB refuses to sync a log whose writer failed; the journal holds the rest.
            drop(open);
            return Err(StoreError::Poisoned(why));
        }
        let flushed = open
            .db
            .flush_wal(true)
            .and_then(|()| {
                for cf in Cf::ALL {
                    if let Some(h) = open.db.cf_handle(cf.name()) {
                        open.db.flush_cf(h)?;
                    }
                }
                Ok(())
            })
            .map_err(|e| LevelDbError::rocks("flushing at close", e));
        drop(open);
        journal?;
        flushed?;
        Ok(())
    }

    /// Runs `f` on the index and the database (reads, and cursor moves, which are not stored).
    pub(crate) fn read<'s, T>(
        &'s self,
        f: impl FnOnce(&mut Index, &Reads<'_, 's>) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.state.lock();
        let open = guard.as_mut().ok_or(StoreError::Closed)?;
        let db = open.db.clone();
        // What the index shows must be in RocksDB before it is read. A failure refuses later
        // writes and marks the index for the rebuild just below.
        let _ = self.apply(&db);
        self.heal_index(open);
        let reads = Reads {
            db: &db,
            journal: &self.journal,
            applier: &self.applier,
            verify: self.config.verify_checksums,
        };
        f(&mut open.index, &reads)
    }
}

/// Reading bodies: where RocksDB's `messages` record says, in the journal (or, for a store
/// written before bodies stayed in the journal, the `bodies` column family). Under the store's
/// lock a body is only located; the journal is read once the lock is released
/// ([`Located::load`]), since that read may wait for the record's write and fsync and writers
/// must not wait for it.
pub(crate) struct Reads<'a, 's> {
    db: &'a DB,
    journal: &'s Journal,
    applier: &'s Applier,
    verify: bool,
}

/// A message body located under the store's lock.
pub(crate) enum Located<'s> {
    Ready(Message),
    Journal {
        journal: &'s Journal,
        r: keys::BodyRef,
        destination: Destination,
        sequence: u64,
        /// Keeps the collector from deleting the file until the body is read: its message may
        /// be acknowledged meanwhile (see `Applier::pin_files`).
        _pin: parking_lot::RwLockReadGuard<'s, ()>,
    },
}

impl Located<'_> {
    /// The message: its body read from the journal, and checked, where it lies there.
    pub(crate) fn load(self) -> Result<Message> {
        match self {
            Located::Ready(m) => Ok(m),
            Located::Journal {
                journal,
                r,
                destination,
                sequence,
                _pin,
            } => {
                let bytes = journal
                    .read_part(r.at, r.start, r.len)
                    .map_err(LevelDbError::from)?;
                if crc32fast::hash(&bytes) != r.crc {
                    return Err(LevelDbError::Corrupt {
                        file: Some(journal.config().path_of(r.at.file)),
                        reason: format!(
                            "the body of sequence {sequence} in {destination} (record at {}, {} \
                             bytes from {}) does not match its checksum",
                            r.at, r.len, r.start
                        ),
                    }
                    .into());
                }
                Ok(keys::read_body(&bytes)?)
            }
        }
    }

    /// Every message of `located`, in order.
    pub(crate) fn load_all(located: Vec<Located<'_>>) -> Result<Vec<Message>> {
        located.into_iter().map(Located::load).collect()
    }
}

impl<'s> Reads<'_, 's> {
    pub(crate) fn body(&self, d: &Destination, order: OrderKey) -> Result<Located<'s>> {
        let key = keys::message(d, order);
        let missing = |cf: Cf| LevelDbError::BadRecord {
            what: "message body",
            cf: cf.name(),
            reason: format!("the body of sequence {} in {d} is missing", order.sequence),
        };
        let Some(value) = self.get(Cf::Messages, &key)? else {
            return Err(missing(Cf::Messages).into());
        };
        let r = match keys::body_at(&value)?.1 {
            keys::BodyAt::Journal(r) => r,
            keys::BodyAt::Inline(from) => {
                return Ok(Located::Ready(keys::read_body(&value[from..])?));
            }
            keys::BodyAt::BodiesCf => {
                return match self.get(Cf::Bodies, &key)? {
                    Some(v) => Ok(Located::Ready(keys::read_body(&v)?)),
                    None => Err(missing(Cf::Bodies).into()),
                };
            }
        };
        Ok(Located::Journal {
            journal: self.journal,
            r,
            destination: d.clone(),
            sequence: order.sequence,
            _pin: self.applier.pin_files(),
        })
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        let h = self
            .db
            .cf_handle(cf.name())
            .ok_or(LevelDbError::MissingColumnFamily(cf.name()))?;
        let mut opts = ReadOptions::default();
        opts.set_verify_checksums(self.verify);
        Ok(self
            .db
            .get_pinned_cf_opt(h, key, &opts)
            .map_err(|e| LevelDbError::rocks("reading a message", e))?)
    }

    pub(crate) fn bodies(
        &self,
        d: &Destination,
        orders: impl IntoIterator<Item = OrderKey>,
    ) -> Result<Vec<Located<'s>>> {
        orders.into_iter().map(|o| self.body(d, o)).collect()
    }
}

fn options(config: &LevelDbConfig) -> Result<Options, LevelDbError> {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_paranoid_checks(config.paranoid_checks);
    // RocksDB's log is written without syncs and buffered (`manual_wal_flush`); the journal is
    // what makes a write durable. After a crash RocksDB replays its log up to the first damaged
    // or missing record (a consistent prefix of the batches) and the journal supplies the rest
    // (see journal.rs), so point-in-time recovery is the right mode here.
    o.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    o.set_manual_wal_flush(true);
    // RocksDB reserves 4 MiB for each new MANIFEST; on a small disk (and after a full disk,
    // when the reopen writes a new one) that is no more than a journal file.
    o.set_manifest_preallocation_size(
        usize::try_from(config.log_size)
            .unwrap_or(usize::MAX)
            .min(4 << 20),
    );
    // Bounds RocksDB's own replay at open: past this, the memtables that pin old logs (the
    // small column families fill slowly) are flushed.
    o.set_max_total_wal_size(
        config
            .log_size
            .min(4 * config.index_write_buffer_size as u64)
            .max(1 << 20),
    );
    // RocksDB's info log (`LOG`) lives on the same disk; once a write to it has failed (a full
    // disk), Debian's librocksdb, built with assertions, aborts the process at the next line
    // it logs. Only fatal lines are written; the engine's own errors carry the details.
    o.set_log_level(rocksdb::LogLevel::Fatal);
    o.set_keep_log_file_num(2);
    o.set_write_buffer_size(config.index_write_buffer_size);
    let cache = Cache::new_lru_cache(config.index_cache_size)
        .map_err(|e| LevelDbError::rocks("creating the block cache", e))?;
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    o.set_block_based_table_factory(&table);
    Ok(o)
}

/// The LevelDB engine: RocksDB in `config.directory`, layout in `FORMAT.md`.
#[derive(Clone)]
pub struct LevelDbStore {
    shared: Arc<Shared>,
}

impl LevelDbStore {
    /// Opens (creating if new) and recovers the store. Blocking: RocksDB replays its log and
    /// the index is rebuilt from the database.
    pub fn open(config: LevelDbConfig) -> Result<Self, LevelDbError> {
        std::fs::create_dir_all(&config.directory).map_err(|source| LevelDbError::Io {
            path: config.directory.clone(),
            source,
        })?;
        // RocksDB syncs its own directory for the files it creates, but not the directory's
        // entry in its parent: without this a power loss can take the whole store.
        if let Some(parent) = config.directory.parent() {
            let parent = if parent.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                parent
            };
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|source| LevelDbError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let opts = options(&config)?;
        let started = std::time::Instant::now();
        if config.repair {
            tracing::warn!(
                "leveldb: repairing {} before opening, as configured; damaged records are dropped",
                config.directory.display()
            );
            DB::repair(&opts, &config.directory)
                .map_err(|e| LevelDbError::rocks("repairing the database", e))?;
        }
        let names = Cf::ALL.iter().map(|c| c.name());
        let db = DB::open_cf(&opts, &config.directory, names).map_err(
            |e| match LevelDbError::rocks("opening the database", e) {
                LevelDbError::Corrupt { file: None, reason } => LevelDbError::Corrupt {
                    file: crate::diagnose::damaged_log(opts.clone(), &config.directory),
                    reason,
                },
                other => other,
            },
        )?;
        let db = Arc::new(db);
        let rocksdb_opened = started.elapsed();
        let journal = Arc::new(crate::journal::open(&config)?);
        let messages_cf = crate::record::messages_cf_id(&db)?;
        let (applied_to, replayed) = crate::journal::replay(&db, &journal, messages_cf)?;
        let applier = Arc::new(Applier::new(applied_to, messages_cf));
        let journal_replayed = started.elapsed();
        let mut index = crate::recovery::load(&db, config.verify_checksums, journal.written())?;
        crate::journal::drop_unwritten(&db, std::mem::take(&mut index.unwritten))?;
        crate::journal::check_body_files(&journal, &index.body_files)?;
        applier.set_bodies(std::mem::take(&mut index.body_files));
        crate::journal::collect(&applier, &db, &journal)?;
        let opened = started.elapsed();
        // What ActiveMQ's stores log at start ("Recovery replayed N operations from the
        // journal in X seconds"), with the share of each step.
        tracing::info!(
            "leveldb: opened {} in {:.3} s (RocksDB {:.3} s, {replayed} journal records \
             replayed in {:.3} s, index of {} messages built in {:.3} s)",
            config.directory.display(),
            opened.as_secs_f64(),
            rocksdb_opened.as_secs_f64(),
            (journal_replayed - rocksdb_opened).as_secs_f64(),
            index.message_count(),
            (opened - journal_replayed).as_secs_f64(),
        );
        let io = |source| LevelDbError::Io {
            path: config.directory.clone(),
            source,
        };
        let collector =
            Collector::start(db.clone(), journal.clone(), applier.clone()).map_err(io)?;
        let apply_thread = ApplyThread::start(applier.clone(), db.clone()).map_err(io)?;
        Ok(LevelDbStore {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(Some(Open {
                    db,
                    index,
                    last_file: applied_to.file,
                    journal_failure_healed: false,
                })),
                journal,
                collector,
                applier,
                apply_thread,
                writes: AtomicU64::new(0),
                replayed,
            }),
        })
    }

    pub fn directory(&self) -> &Path {
        &self.shared.config.directory
    }

    fn handle(&self, d: &Destination) -> Result<Arc<Handle>> {
        let (incarnation, pending) = self
            .shared
            .write(Wait::Policy, |index, batch| Ok(index.create(d, batch)))?;
        // Creating a destination needs no sync of its own: a message added to it carries its
        // destination record in the same batch.
        drop(pending);
        Ok(Arc::new(Handle::new(
            self.shared.clone(),
            d.clone(),
            incarnation,
        )))
    }
}

#[async_trait]
impl PersistenceAdapter for LevelDbStore {
    fn kind(&self) -> &'static str {
        "leveldb"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.shared
            .read(|index, _| Ok(index.destinations.keys().cloned().collect()))
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        destination.expect_queue()?;
        Ok(self.handle(destination)?)
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        destination.expect_topic()?;
        Ok(self.handle(destination)?)
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Policy, |index, batch| {
            if index.remove_destination(destination, batch) {
                Ok(())
            } else {
                Err(StoreError::NotFound(format!("destination {destination}")))
            }
        })?;
        pending.durable().await
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.shared.read(|index, _| index.transactions.begin(tx))
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.shared.read(|index, _| {
            index.transactions.check_enlist(tx)?;
            if store_api::tx_check::check_enlisted(&op)? {
                store_api::tx_check::check_ops(std::slice::from_ref(&op), &mut IndexProbe(index))?;
            }
            index.transactions.enlist(tx, op)
        })
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Forced, |index, batch| {
            let ops = index.transactions.to_prepare(xid)?;
            store_api::tx_check::check_ops(ops, &mut IndexProbe(index))?;
            batch.put(
                Cf::Transactions,
                &keys::transaction(xid),
                &keys::ops_value(ops),
            );
            index
                .transactions
                .mark_prepared(&TransactionId::Xa(xid.clone()), ());
            Ok(())
        })?;
        pending.durable().await
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Policy, |index, batch| {
            let open = index.transactions.get(tx)?;
            let (ops, prepared) = (open.ops.clone(), open.is_prepared());
            store_api::tx_check::check_ops(&ops, &mut IndexProbe(index))?;
            crate::transaction::apply(index, ops, batch);
            if let (true, TransactionId::Xa(xid)) = (prepared, tx) {
                batch.delete(Cf::Transactions, &keys::transaction(xid));
            }
            index.transactions.end(tx).map(|_| ())
        })?;
        pending.durable().await
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Policy, |index, batch| {
            let ended = index.transactions.end(tx)?;
            if let (true, TransactionId::Xa(xid)) = (ended.is_prepared(), tx) {
                batch.delete(Cf::Transactions, &keys::transaction(xid));
            }
            Ok(())
        })?;
        pending.durable().await
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.shared
            .read(|index, _| Ok(index.transactions.prepared()))
    }

    /// Flushes every memtable to SST files, so RocksDB's log to replay at the next open is
    /// short (RocksDB syncs its closed logs first, so column families flushed one by one stay
    /// consistent), then lets the collector delete journal files; with `cleanup`, also
    /// compacts, dropping deleted records.
    async fn checkpoint(&self, cleanup: bool) -> Result<()> {
        let db = self
            .shared
            .state
            .lock()
            .as_ref()
            .map(|o| o.db.clone())
            .ok_or(StoreError::Closed)?;
        if let Some(refusal) = self.shared.refusal() {
            return Err(StoreError::Poisoned(refusal.reason));
        }
        // Flushes write and fsync SST files: off the async workers, and without the lock, so
        // writers go on meanwhile.
        let flushed = tokio::task::spawn_blocking(move || {
            for cf in Cf::ALL {
                let h = db
                    .cf_handle(cf.name())
                    .ok_or(LevelDbError::MissingColumnFamily(cf.name()))?;
                db.flush_cf(h)
                    .map_err(|e| LevelDbError::rocks("flushing a memtable", e))?;
                if cleanup {
                    db.compact_range_cf::<&[u8], &[u8]>(h, None, None);
                }
            }
            Ok::<_, LevelDbError>(())
        })
        .await
        .map_err(|e| StoreError::Backend {
            backend: "leveldb",
            source: Box::new(e),
        })?;
        self.shared.collector.wake();
        Ok(flushed?)
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.shared.read(|_, _| Ok(()))?;
        let dir = &self.shared.config.directory;
        let io = |source| LevelDbError::Io {
            path: dir.clone(),
            source,
        };
        let mut total = self.shared.journal.disk_size();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let meta = entry.and_then(|e| e.metadata()).map_err(io)?;
            if meta.is_file() {
                total += meta.len();
            }
        }
        Ok(total)
    }

    /// Reported, not healed: after a failed write the store refuses writes until it is
    /// reopened (which replays what the journal took), so the broker says a restart is needed.
    fn write_refusal(&self) -> Option<store_api::WriteRefusal> {
        self.shared.refusal()
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let j = self.shared.journal.stats();
        vec![
            ("leveldb_writes", self.shared.writes.load(Ordering::Relaxed)),
            ("leveldb_journal_fsyncs", j.fsyncs),
            ("leveldb_journal_fsync_micros", j.fsync_micros),
            ("leveldb_records_replayed_at_open", self.shared.replayed),
        ]
    }

    async fn delete_all(&self) -> Result<()> {
        let ((), pending) = self.shared.write(Wait::Policy, |index, batch| {
            index.delete_all(batch);
            Ok(())
        })?;
        pending.durable().await
    }

    async fn close(&self) -> Result<()> {
        let Some(open) = self.shared.state.lock().take() else {
            return Ok(());
        };
        // Joining the collector, the journal's last fsync and RocksDB's flushes all block.
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.close(open))
            .await
            .map_err(|e| StoreError::Backend {
                backend: "leveldb",
                source: Box::new(e),
            })?
    }
}

#[cfg(test)]
mod tests {
    use store_api::{Body, MessageId};

    use super::*;
    use crate::keys::Entry;

    /// A body located under the store's lock is read after it: its message acknowledged and
    /// its file emptied meanwhile, the collector waits for the read before deleting the file.
    #[test]
    fn a_file_holding_a_body_being_read_is_deleted_only_after_the_read() {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = LevelDbConfig::new(dir.path());
        config.log_size = 64 * 1024;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = LevelDbStore::open(config).expect("open");
        let d = Destination::queue("q");
        let first = dir.path().join("journal").join("log-1.dat");
        let message = |n: u64| {
            Message::new(
                MessageId::new("p", n),
                d.clone(),
                Body::Bytes(vec![n as u8; 4096].into()),
            )
        };
        let queue = rt.block_on(store.queue_store(&d)).expect("queue");
        rt.block_on(queue.add(message(0))).expect("add");
        let order = store
            .shared
            .read(
                |index, _| match index.destinations.get(&d).map(|x| &x.index) {
                    Some(crate::index::DestIndex::Queue(q)) => {
                        Ok(*q.messages.by_order.keys().next().expect("one message"))
                    }
                    _ => panic!("the queue is there"),
                },
            )
            .expect("order");
        let located = store
            .shared
            .read(|_, reads| reads.body(&d, order))
            .expect("located");
        // The journal moves on to later files, and every message in file 1 is acknowledged.
        for n in 1..40 {
            rt.block_on(queue.add(message(n))).expect("add");
        }
        for n in 0..30 {
            rt.block_on(queue.remove(&MessageId::new("p", n)))
                .expect("remove");
        }
        let shared = store.shared.clone();
        let collector = std::thread::spawn(move || {
            let db = shared
                .state
                .lock()
                .as_ref()
                .map(|o| o.db.clone())
                .expect("open");
            crate::journal::collect(&shared.applier, &db, &shared.journal)
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(first.exists(), "deleted under a body being read");
        assert_eq!(located.load().expect("read").body, message(0).body);
        collector.join().expect("collector").expect("collect");
        assert!(!first.exists(), "deleted once the read is done");
        rt.block_on(store.close()).expect("close");
    }

    /// A store written before bodies stayed in the journal: its `messages` values end after
    /// the expiration and its bodies are in the `bodies` column family.
    #[test]
    fn a_store_with_bodies_in_rocksdb_opens_reads_and_deletes_them() {
        let dir = tempfile::tempdir().expect("dir");
        let config = || LevelDbConfig::new(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let d = Destination::queue("old");
        let old = |n: u64| {
            let mut m = Message::new(
                MessageId::new("before", n),
                d.clone(),
                Body::Text(format!("old body {n}")),
            );
            m.sequence = n + 1;
            m
        };
        // Open once to create the column families, then write the old layout directly.
        rt.block_on(LevelDbStore::open(config()).expect("open").close())
            .expect("close");
        {
            let names = Cf::ALL.iter().map(|c| c.name());
            let db = DB::open_cf(&options(&config()).expect("options"), dir.path(), names)
                .expect("raw open");
            let cf = |c: Cf| db.cf_handle(c.name()).expect("cf");
            let mut b = rocksdb::WriteBatch::default();
            b.put_cf(cf(Cf::Destinations), keys::destination(&d), b"");
            for n in 0..3 {
                let m = old(n);
                let key = keys::message(&d, OrderKey::of(&m));
                let entry = Entry {
                    id: m.id.clone(),
                    size: m.size(),
                    expiration: 0,
                };
                b.put_cf(cf(Cf::Messages), &key, keys::entry_value(&entry));
                b.put_cf(cf(Cf::Bodies), &key, store_api::codec::encode(&m));
            }
            b.put_cf(cf(Cf::Meta), keys::LAST_SEQUENCE, 3u64.to_le_bytes());
            db.write(b).expect("write");
            db.flush_wal(true).expect("sync");
        }
        rt.block_on(async {
            let store = LevelDbStore::open(config()).expect("reopen");
            let queue = store.queue_store(&d).await.expect("queue");
            for n in 0..3 {
                let m = queue.get(&MessageId::new("before", n)).await.expect("get");
                assert_eq!(m.body, Body::Text(format!("old body {n}")));
            }
            let mut new = Message::new(
                MessageId::new("after", 0),
                d.clone(),
                Body::Text("new".into()),
            );
            new.sequence = 0;
            queue.add(new).await.expect("add");
            queue
                .remove(&MessageId::new("before", 1))
                .await
                .expect("remove");
            store.close().await.expect("close");
            let store = LevelDbStore::open(config()).expect("reopen");
            let queue = store.queue_store(&d).await.expect("queue");
            let ids: Vec<String> = queue
                .browse(None, 10)
                .await
                .expect("browse")
                .iter()
                .map(|m| m.id.to_string())
                .collect();
            assert_eq!(ids.len(), 3, "{ids:?}");
            assert_eq!(
                queue
                    .get(&MessageId::new("after", 0))
                    .await
                    .expect("new")
                    .body,
                Body::Text("new".into())
            );
            store.close().await.expect("close");
        });
        // The removed message's body went with it.
        let names = Cf::ALL.iter().map(|c| c.name());
        let db = DB::open_cf(&options(&config()).expect("options"), dir.path(), names)
            .expect("raw open");
        let bodies = db.cf_handle(Cf::Bodies.name()).expect("cf");
        let left = db.iterator_cf(bodies, rocksdb::IteratorMode::Start).count();
        assert_eq!(
            left, 2,
            "the removed message's body is deleted from `bodies`"
        );
    }
}
