//! The adapter's state and its opening: the database and the journal underneath, the overlay
//! of changes journaled since the last checkpoint, the locks that order writers, readers and
//! checkpoints. Writing a change is in [`write`], checkpoints and replay in [`checkpoint`], the
//! contract's adapter in [`adapter`], the queue and topic handles in [`handle`].

mod adapter;
mod checkpoint;
mod handle;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use store_api::{
    CursorPosition, Destination, OpenTransactions, PersistenceAdapter, Result, StoreError,
    SubscriptionKey, WriteRefusal,
};
use store_jdbc::JdbcStore;
use store_journal::fs::{FileSystem, RealFs};
use store_journal::{Journal, JournalConfig};
use tokio::sync::Notify;
use tracing::info;

use crate::config::JournaledJdbcConfig;
use crate::known::KnownIds;
use crate::overlay::Overlay;
use crate::records::Record;
use checkpoint::{checkpoint_worker, unpack, warm_known_ids};

/// Cursors of one destination kept by this process.
#[derive(Debug, Default)]
struct DestState {
    removed: AtomicBool,
    cursor: tokio::sync::Mutex<CursorPosition>,
    sub_cursors: tokio::sync::Mutex<HashMap<SubscriptionKey, CursorPosition>>,
}

struct Inner {
    jdbc: JdbcStore,
    /// Replaced (never otherwise changed) when the store reopens its journal in place after a
    /// full disk ([`Inner::resume_writes`]).
    journal: RwLock<Arc<Journal>>,
    journal_config: JournalConfig,
    fs: Arc<dyn FileSystem>,
    config: JournaledJdbcConfig,
    /// Held while a change is checked, journaled and applied to the overlay, and for a whole
    /// checkpoint. Never held while waiting for a journal fsync.
    write: tokio::sync::Mutex<()>,
    /// Readers share it; a checkpoint takes it alone while the database commits and the overlay
    /// empties, so no reader sees a message twice or not at all.
    view: tokio::sync::RwLock<()>,
    overlay: Mutex<Overlay>,
    /// Bumped by each checkpoint: a fact read from the database before it is stale after it.
    generation: AtomicU64,
    last_seq: AtomicU64,
    /// Transactions begun here. A prepared one was handed to the database's own XA support
    /// (prepared transactions are the database's); one prepared before a restart is known only
    /// to the database.
    txs: Mutex<OpenTransactions>,
    subs: Mutex<HashMap<Destination, Vec<SubscriptionKey>>>,
    dests: Mutex<HashMap<Destination, Arc<DestState>>>,
    closed: AtomicBool,
    /// Why writes are refused (a journal write or fsync failed), and whether for want of space.
    poisoned: Mutex<Option<WriteRefusal>>,
    since_mark: AtomicU64,
    /// Its own `Arc`: the checkpoint worker waits on it holding no strong reference to the
    /// store, so a store dropped without `close` goes at once, not at the next interval.
    wake: Arc<Notify>,
    checkpoints: AtomicU64,
    /// Ids the database may hold: an add whose id it rules out skips the duplicate lookup.
    known: Mutex<KnownIds>,
    /// Last field, so dropped last: set once the journal's writer threads are joined and the
    /// database handle is gone, which is when a dropped store can no longer write anything.
    gone: GoneSignal,
}

/// Sets its flag when dropped.
struct GoneSignal(Arc<AtomicBool>);

impl Drop for GoneSignal {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Tells whether a store (every clone of it, and its checkpoint worker's last checkpoint) has
/// been dropped all the way: what a test simulating a crash waits for before it pulls the
/// power, instead of sleeping for long enough.
#[derive(Debug, Clone)]
pub struct DropProbe(Arc<AtomicBool>);

impl DropProbe {
    pub fn gone(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The journaled JDBC store.
#[derive(Clone)]
pub struct JournaledJdbcStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JournaledJdbcStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournaledJdbcStore")
            .field("journal", &self.inner.config.journal_directory)
            .finish()
    }
}

impl JournaledJdbcStore {
    /// Opens the database and the journal, replays what the journal holds past the last
    /// checkpoint into the database, and starts the checkpoint worker.
    ///
    /// Refuses a database locker: up to a checkpoint interval of acknowledged messages lives
    /// only in this machine's journal, so a slave that took the lock over could not see them.
    pub async fn open(config: JournaledJdbcConfig) -> Result<JournaledJdbcStore> {
        JournaledJdbcStore::open_with_fs(config, Arc::new(RealFs)).await
    }

    /// [`JournaledJdbcStore::open`] with the journal on a given file system (the fault-injecting
    /// one in tests).
    pub async fn open_with_fs(
        config: JournaledJdbcConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<JournaledJdbcStore> {
        if config.jdbc.fence.is_some() {
            return Err(StoreError::InvalidArgument(
                "journaled-jdbc cannot run under a database locker (master/slave): acknowledged messages live in this broker's local journal until a checkpoint, so a slave that took over the lock would not see them. Use the plain jdbc engine for master/slave".into(),
            ));
        }
        let jdbc = JdbcStore::open(config.jdbc.clone()).await?;
        let mut jc = JournalConfig::new(&config.journal_directory, "journal-", ".log");
        jc.max_file_length = config.max_file_length;
        jc.sync = config.sync;
        jc.preallocate = config.preallocate;
        let mark = jdbc
            .journaled()
            .journal_mark()
            .await?
            .map(unpack)
            .unwrap_or_default();
        let (journal, records) = open_journal(jc.clone(), Arc::clone(&fs), mark).await?;
        let known = warm_known_ids(&jdbc).await?;
        let inner = Arc::new(Inner {
            known: Mutex::new(known),
            last_seq: AtomicU64::new(jdbc.journaled().last_sequence()),
            jdbc,
            journal: RwLock::new(Arc::new(journal)),
            journal_config: jc,
            fs,
            config,
            write: tokio::sync::Mutex::new(()),
            view: tokio::sync::RwLock::new(()),
            overlay: Mutex::new(Overlay::default()),
            generation: AtomicU64::new(0),
            txs: Mutex::new(OpenTransactions::new()),
            subs: Mutex::new(HashMap::new()),
            dests: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            since_mark: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            checkpoints: AtomicU64::new(0),
            gone: GoneSignal(Arc::new(AtomicBool::new(false))),
        });
        let replayed = records.len();
        for rec in records {
            inner.replay(rec).await?;
        }
        if replayed > 0 {
            info!(target: "journaled-jdbc", "replayed {replayed} journal records past the checkpoint mark");
        }
        // Recovery ends with a checkpoint: the replayed changes go into the database.
        inner.since_mark.store(1, Ordering::Release);
        {
            let _w = inner.write.lock().await;
            inner.checkpoint_locked().await?;
        }
        tokio::spawn(checkpoint_worker(Arc::downgrade(&inner)));
        Ok(JournaledJdbcStore { inner })
    }

    /// A probe that says when this store has been dropped all the way.
    pub fn drop_probe(&self) -> DropProbe {
        DropProbe(self.inner.gone.0.clone())
    }

    /// The database store underneath.
    pub fn jdbc(&self) -> &JdbcStore {
        &self.inner.jdbc
    }

    /// fsyncs of the journal since open.
    pub fn journal_fsyncs(&self) -> u64 {
        self.inner.journal().stats().fsyncs
    }

    /// Bytes written to the journal since open.
    pub fn journal_bytes(&self) -> u64 {
        self.inner.journal().stats().bytes
    }

    /// Checkpoints completed since open.
    pub fn checkpoints(&self) -> u64 {
        self.inner.checkpoints.load(Ordering::Relaxed)
    }
}

/// Opens the journal and reads every record past `mark`, off the async threads.
async fn open_journal(
    jc: JournalConfig,
    fs: Arc<dyn FileSystem>,
    mark: store_journal::Location,
) -> Result<(Journal, Vec<Record>)> {
    tokio::task::spawn_blocking(move || {
        let journal = Journal::open(jc, fs)?;
        let mut records = Vec::new();
        for r in journal.replay(mark) {
            let (loc, bytes) = r?;
            let rec = Record::decode(&bytes).map_err(|e| StoreError::Corrupt {
                file: None,
                offset: None,
                reason: format!("journal record at {loc} does not decode: {e}"),
            })?;
            records.push(rec);
        }
        Ok::<_, StoreError>((journal, records))
    })
    .await
    .map_err(|e| StoreError::Backend {
        backend: "journaled-jdbc",
        source: Box::new(e),
    })?
}

impl Inner {
    fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.journal.read())
    }

    fn refusal(&self) -> Option<WriteRefusal> {
        if let Some(r) = self.poisoned.lock().clone() {
            return Some(r);
        }
        // The journal's writer can fail on its own (preallocating the next file, say): the
        // store refuses from then on all the same, and says why.
        let journal = self.journal().refusal()?;
        let e = journal.to_error();
        self.poison(&e);
        self.poisoned.lock().clone()
    }

    /// Refuses writes from now on; `disk_full` when the journal found its file system full,
    /// which [`Inner::resume_writes`] can get over once space is freed.
    fn poison(&self, e: &StoreError) -> StoreError {
        let journal = self.journal().refusal();
        let disk_full = matches!(e, StoreError::DiskFull { .. })
            || journal.as_ref().is_some_and(|r| r.disk_full.is_some());
        let mut p = self.poisoned.lock();
        if p.is_none() {
            tracing::error!(target: "journaled-jdbc", dir = %self.config.journal_directory.display(), disk_full, "journaled JDBC store refuses writes: {e}");
            *p = Some(WriteRefusal {
                disk_full: disk_full.then(|| self.config.journal_directory.clone()),
                reason: e.to_string(),
            });
        }
        match &*p {
            Some(r) if r.disk_full.is_some() => r.to_error(),
            _ => StoreError::Poisoned(e.to_string()),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(r) = self.refusal() {
            return Err(r.to_error());
        }
        if self.overlay.lock().bytes > self.config.max_overlay_bytes {
            return Err(StoreError::Backend {
                backend: "journaled-jdbc",
                source: format!(
                    "{} bytes wait for a checkpoint into the database, which keeps failing; writes resume once it succeeds",
                    self.overlay.lock().bytes
                )
                .into(),
            });
        }
        Ok(())
    }

    fn next_seq(&self) -> u64 {
        self.last_seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn catch_up_seq(&self) {
        self.last_seq
            .fetch_max(self.jdbc.journaled().last_sequence(), Ordering::AcqRel);
    }

    /// Enqueues a record; the returned completion resolves once it is durable.
    /// Journals `rec`; `unwaited`: an ack no client waits for, which may share a later
    /// write's fsync (`Journal::append_deferred`).
    fn append(&self, rec: &Record, unwaited: bool) -> Result<store_journal::Completion> {
        let bytes = rec.encode();
        let appended = if unwaited {
            self.journal().append_deferred(&[&bytes])
        } else {
            self.journal().append(&[&bytes], false)
        };
        match appended {
            Ok(a) => {
                let total = self
                    .since_mark
                    .fetch_add(bytes.len() as u64, Ordering::AcqRel)
                    + bytes.len() as u64;
                if total >= self.config.checkpoint_journal_bytes {
                    self.wake.notify_one();
                }
                Ok(a.completion)
            }
            Err(e) => Err(self.poison(&StoreError::from(e))),
        }
    }

    async fn durable(&self, c: Option<store_journal::Completion>) -> Result<()> {
        let Some(c) = c else { return Ok(()) };
        c.await.map_err(|e| self.poison(&StoreError::from(e)))
    }

    async fn subscriptions(&self, d: &Destination) -> Result<Vec<SubscriptionKey>> {
        if let Some(s) = self.subs.lock().get(d) {
            return Ok(s.clone());
        }
        let t = self.jdbc.topic_store(d).await?;
        let keys: Vec<SubscriptionKey> = t
            .subscriptions()
            .await?
            .into_iter()
            .map(|s| s.key)
            .collect();
        self.subs.lock().insert(d.clone(), keys.clone());
        Ok(keys)
    }

    fn dest(&self, d: &Destination) -> Arc<DestState> {
        self.dests.lock().entry(d.clone()).or_default().clone()
    }
}
