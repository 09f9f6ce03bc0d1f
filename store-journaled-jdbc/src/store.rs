//! The adapter: writes go to the journal and the overlay, reads merge the overlay over the
//! database, checkpoints move the overlay into the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use store_api::tx_check::{StateProbe, check_enlisted, check_ops};
use store_api::{
    CursorPosition, Destination, MAX_PRIORITY, Message, MessageId, OpenTransactions, OrderKey,
    PersistenceAdapter, PreparedTransaction, QueueStore, Result, StoreError, SubscriptionInfo,
    SubscriptionKey, SyncPolicy, TopicStore, TransactionId, TxOp, Xid,
};
use store_jdbc::{JdbcConfig, JdbcStore};
use store_journal::fs::{FileSystem, RealFs};
use store_journal::{Journal, JournalConfig, Location};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::known::KnownIds;
use crate::overlay::Overlay;
use crate::records::Record;

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct JournaledJdbcConfig {
    /// Where the journal files (`journal-N.log`) live.
    pub journal_directory: PathBuf,
    /// The database behind the journal. It must not carry a locker's fence: see
    /// [`JournaledJdbcStore::open`].
    pub jdbc: JdbcConfig,
    /// How often the overlay is moved into the database. ActiveMQ's default, 5 minutes.
    pub checkpoint_interval: Duration,
    /// A checkpoint starts early once this many journal bytes were written since the last.
    pub checkpoint_journal_bytes: u64,
    /// While checkpoints fail (the database is away), writes are refused once the overlay holds
    /// this many bytes, so memory stays bounded.
    pub max_overlay_bytes: u64,
    pub max_file_length: u64,
    pub sync: SyncPolicy,
    pub preallocate: bool,
}

impl JournaledJdbcConfig {
    pub fn new(journal_directory: impl Into<PathBuf>, jdbc: JdbcConfig) -> Self {
        JournaledJdbcConfig {
            journal_directory: journal_directory.into(),
            jdbc,
            checkpoint_interval: Duration::from_secs(300),
            checkpoint_journal_bytes: 32 * 1024 * 1024,
            max_overlay_bytes: 256 * 1024 * 1024,
            max_file_length: 32 * 1024 * 1024,
            sync: SyncPolicy::Always,
            preallocate: true,
        }
    }
}

/// Cursors of one destination kept by this process.
#[derive(Debug, Default)]
struct DestState {
    removed: AtomicBool,
    cursor: tokio::sync::Mutex<CursorPosition>,
    sub_cursors: tokio::sync::Mutex<HashMap<SubscriptionKey, CursorPosition>>,
}

struct Inner {
    jdbc: JdbcStore,
    journal: Journal,
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
    poisoned: Mutex<Option<String>>,
    since_mark: AtomicU64,
    wake: Notify,
    checkpoints: AtomicU64,
    /// Ids the database may hold: an add whose id it rules out skips the duplicate lookup.
    known: Mutex<KnownIds>,
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

fn pack(l: Location) -> i64 {
    (i64::from(l.file) << 32) | i64::from(l.offset)
}

fn unpack(v: i64) -> Location {
    Location {
        file: (v >> 32) as u32,
        offset: (v & 0xffff_ffff) as u32,
    }
}

/// What the database says about one message, read before the write lock is taken.
#[derive(Debug, Clone, Copy, Default)]
struct DbFact {
    /// Its place and size, when the database stores it.
    stored: Option<(OrderKey, u64)>,
    /// Topic: subscriptions it is pending for.
    refs: u64,
}

/// Database facts a change needs, keyed by destination and id (and subscription).
#[derive(Debug, Default)]
struct Facts {
    messages: HashMap<(Destination, MessageId), DbFact>,
    pending: HashMap<(Destination, SubscriptionKey, MessageId), bool>,
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
        let (journal, records) = tokio::task::spawn_blocking(move || {
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
        })??;
        let known = warm_known_ids(&jdbc).await?;
        let inner = Arc::new(Inner {
            known: Mutex::new(known),
            last_seq: AtomicU64::new(jdbc.journaled().last_sequence()),
            jdbc,
            journal,
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
            wake: Notify::new(),
            checkpoints: AtomicU64::new(0),
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

    /// The database store underneath.
    pub fn jdbc(&self) -> &JdbcStore {
        &self.inner.jdbc
    }

    /// fsyncs of the journal since open.
    pub fn journal_fsyncs(&self) -> u64 {
        self.inner.journal.stats().fsyncs
    }

    /// Bytes written to the journal since open.
    pub fn journal_bytes(&self) -> u64 {
        self.inner.journal.stats().bytes
    }

    /// Checkpoints completed since open.
    pub fn checkpoints(&self) -> u64 {
        self.inner.checkpoints.load(Ordering::Relaxed)
    }
}

/// Fills the filter from every id the database holds, one bounded page at a time, sized for
/// twice what it finds (at least a million).
async fn warm_known_ids(jdbc: &JdbcStore) -> Result<KnownIds> {
    let mut capacity = 1 << 20;
    'fill: loop {
        let mut known = KnownIds::with_capacity(capacity);
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let (ids, last) = jdbc.journaled().message_ids(after, 10_000).await?;
            let Some(last) = last else {
                break 'fill Ok(known);
            };
            after = last;
            for (_, d, id) in ids {
                known.insert(&d, &id);
                n += 1;
            }
            if n * 2 > capacity {
                capacity *= 4;
                continue 'fill;
            }
        }
    }
}

async fn checkpoint_worker(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => i.config.checkpoint_interval,
        None => return,
    };
    loop {
        let wake = {
            let Some(i) = inner.upgrade() else { return };
            let i2 = i.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = i2.wake.notified() => {}
                }
            }
        };
        wake.await;
        let Some(i) = inner.upgrade() else { return };
        if i.closed.load(Ordering::Acquire) {
            return;
        }
        let _w = i.write.lock().await;
        if i.closed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = i.checkpoint_locked().await {
            warn!(target: "journaled-jdbc", "checkpoint failed, will retry: {e}");
        }
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(StoreError::Poisoned(why));
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
    fn journal(&self, rec: &Record) -> Result<store_journal::Completion> {
        let bytes = rec.encode();
        match self.journal.append(&[&bytes], false) {
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
            Err(e) => {
                let e = StoreError::from(e);
                *self.poisoned.lock() = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn durable(&self, c: Option<store_journal::Completion>) -> Result<()> {
        let Some(c) = c else { return Ok(()) };
        c.await.map_err(|e| {
            let e = StoreError::from(e);
            *self.poisoned.lock() = Some(e.to_string());
            e
        })
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

    /// Reads from the database what checking `ops` needs.
    async fn facts(&self, ops: &[TxOp]) -> Result<Facts> {
        let mut f = Facts::default();
        for op in ops {
            match op {
                TxOp::Add(m) => {
                    // Most adds are of ids the database has never seen: the filter says so
                    // without a query (a checkpoint adding ids bumps the generation).
                    if self.known.lock().may_contain(&m.destination, &m.id) {
                        self.fact(&mut f, &m.destination, &m.id, false).await?
                    } else {
                        f.messages
                            .insert((m.destination.clone(), m.id.clone()), DbFact::default());
                    }
                }
                TxOp::QueueAck { destination, id } => {
                    // An ack of an overlay add needs nothing from the database (a checkpoint
                    // moving it there bumps the generation, and the write starts over).
                    let in_overlay = self
                        .overlay
                        .lock()
                        .queue(destination)
                        .is_some_and(|q| q.by_id.contains_key(id));
                    if !in_overlay {
                        self.fact(&mut f, destination, id, false).await?
                    }
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    let in_overlay = self
                        .overlay
                        .lock()
                        .topic(destination)
                        .is_some_and(|t| t.by_id.contains_key(id));
                    if in_overlay {
                        continue;
                    }
                    self.fact(&mut f, destination, id, true).await?;
                    let k = (destination.clone(), subscription.clone(), id.clone());
                    if let std::collections::hash_map::Entry::Vacant(e) = f.pending.entry(k) {
                        e.insert(
                            self.jdbc
                                .journaled()
                                .is_pending(destination, subscription, id)
                                .await?,
                        );
                    }
                }
            }
        }
        Ok(f)
    }

    async fn fact(&self, f: &mut Facts, d: &Destination, id: &MessageId, refs: bool) -> Result<()> {
        let k = (d.clone(), id.clone());
        if f.messages.contains_key(&k) {
            return Ok(());
        }
        let stored = self.jdbc.journaled().message_key_size(d, id).await?;
        let refs = if refs && stored.is_some() {
            self.jdbc.journaled().pending_refs(d, id).await?
        } else {
            0
        };
        f.messages.insert(k, DbFact { stored, refs });
        Ok(())
    }

    /// Checks `ops` against the merged view, journals them as one record (one add, one ack, or
    /// a commit), applies them to the overlay, and returns the completion to wait for and the
    /// sequences given to adds. Retries when a checkpoint ran between reading the facts and
    /// taking the lock.
    async fn write(
        &self,
        ops: Vec<TxOp>,
        single: bool,
    ) -> Result<(Option<store_journal::Completion>, Vec<u64>)> {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let facts = self.facts(&ops).await?;
            let mut subs = HashMap::new();
            for op in &ops {
                if let TxOp::Add(m) = op
                    && m.destination.is_topic()
                    && !subs.contains_key(&m.destination)
                {
                    subs.insert(
                        m.destination.clone(),
                        self.subscriptions(&m.destination).await?,
                    );
                }
            }
            let _w = self.write.lock().await;
            self.check_writable()?;
            if self.generation.load(Ordering::Acquire) != generation {
                continue;
            }
            let mut ov = self.overlay.lock();
            check_ops(
                &ops,
                &mut Probe {
                    ov: &ov,
                    facts: &facts,
                    subs: &subs,
                },
            )?;
            let mut ops = ops;
            let mut seqs = Vec::new();
            for op in ops.iter_mut() {
                if let TxOp::Add(m) = op {
                    m.sequence = self.next_seq();
                    seqs.push(m.sequence);
                }
            }
            let rec = match (single, ops.as_slice()) {
                (true, [TxOp::Add(m)]) => Record::Add(m.clone()),
                (true, [TxOp::QueueAck { destination, id }]) => {
                    Record::QueueAck(destination.clone(), id.clone())
                }
                (
                    true,
                    [
                        TxOp::TopicAck {
                            destination,
                            subscription,
                            id,
                        },
                    ],
                ) => Record::TopicAck(destination.clone(), subscription.clone(), id.clone()),
                _ => Record::Commit(ops.clone()),
            };
            let keeps = ops.iter().any(|op| match op {
                TxOp::Add(m) => {
                    m.destination.is_queue()
                        || subs.get(&m.destination).is_some_and(|s| !s.is_empty())
                }
                _ => true,
            });
            if !keeps {
                // A topic add that no subscription needs: nothing to keep, nothing to journal.
                return Ok((None, seqs));
            }
            let completion = self.journal(&rec)?;
            for op in ops {
                apply(&mut ov, op, &facts, &subs);
            }
            return Ok((Some(completion), seqs));
        }
    }

    /// Applies a replayed record, skipping what no longer applies (the replay is idempotent).
    async fn replay(&self, rec: Record) -> Result<()> {
        let ops = match rec {
            Record::Add(m) => vec![TxOp::Add(m)],
            Record::QueueAck(destination, id) => vec![TxOp::QueueAck { destination, id }],
            Record::TopicAck(destination, subscription, id) => vec![TxOp::TopicAck {
                destination,
                subscription,
                id,
            }],
            Record::Commit(ops) => ops,
        };
        for op in ops {
            let facts = self.facts(std::slice::from_ref(&op)).await?;
            let mut subs = HashMap::new();
            if let TxOp::Add(m) = &op {
                self.last_seq.fetch_max(m.sequence, Ordering::AcqRel);
                if m.destination.is_topic() {
                    subs.insert(
                        m.destination.clone(),
                        self.subscriptions(&m.destination).await?,
                    );
                }
            }
            let mut ov = self.overlay.lock();
            let ok = check_ops(
                std::slice::from_ref(&op),
                &mut Probe {
                    ov: &ov,
                    facts: &facts,
                    subs: &subs,
                },
            )
            .is_ok();
            if ok {
                apply(&mut ov, op, &facts, &subs);
            }
        }
        Ok(())
    }

    /// Moves the overlay into the database in one transaction, then trims the journal. The
    /// caller holds the write lock.
    async fn checkpoint_locked(&self) -> Result<()> {
        if self.overlay.lock().is_empty() && self.since_mark.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.journal.sync().await.map_err(StoreError::from)?;
        let tail = self.journal.tail();
        let mut batch = self.overlay.lock().batch(pack(tail));
        batch.next_sequence = self.last_seq.load(Ordering::Acquire) as i64 + 1;
        let moved = batch.adds.len() + batch.queue_acks.len() + batch.topic_acks.len();
        let added: Vec<(Destination, MessageId)> = batch
            .adds
            .iter()
            .map(|(m, _)| (m.destination.clone(), m.id.clone()))
            .collect();
        {
            let _v = self.view.write().await;
            self.jdbc.journaled().apply_checkpoint(batch).await?;
            let mut known = self.known.lock();
            for (d, id) in &added {
                known.insert(d, id);
            }
            drop(known);
            *self.overlay.lock() = Overlay::default();
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.since_mark.store(0, Ordering::Release);
        }
        let old: Vec<u32> = self
            .journal
            .file_ids()
            .into_iter()
            .filter(|id| *id < tail.file)
            .collect();
        if let Err(e) = self.journal.delete_files(&old) {
            warn!(target: "journaled-jdbc", "could not delete checkpointed journal files: {e}");
        }
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "journaled-jdbc", "checkpoint moved {moved} changes; journal trimmed to file {}", tail.file);
        Ok(())
    }

    /// Runs a change the journal does not carry (subscriptions, purges, removals, XA): the
    /// overlay is checkpointed first, then the database does it.
    async fn write_through<T, F>(&self, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        self.check_writable()?;
        let _w = self.write.lock().await;
        self.checkpoint_locked().await?;
        let r = f.await;
        self.catch_up_seq();
        self.generation.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Adds the database is about to take outside a checkpoint (an XA commit): the filter
    /// learns their ids first, so it never rules one out wrongly.
    fn remember_adds(&self, ops: &[TxOp]) {
        let mut known = self.known.lock();
        for op in ops {
            if let TxOp::Add(m) = op {
                known.insert(&m.destination, &m.id);
            }
        }
    }

    fn dest(&self, d: &Destination) -> Arc<DestState> {
        self.dests.lock().entry(d.clone()).or_default().clone()
    }
}

/// The merged view for [`check_ops`].
struct Probe<'a> {
    ov: &'a Overlay,
    facts: &'a Facts,
    subs: &'a HashMap<Destination, Vec<SubscriptionKey>>,
}

impl Probe<'_> {
    fn db(&self, d: &Destination, id: &MessageId) -> DbFact {
        self.facts
            .messages
            .get(&(d.clone(), id.clone()))
            .copied()
            .unwrap_or_default()
    }
}

impl StateProbe for Probe<'_> {
    fn contains(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        let in_db = self.db(d, id).stored.is_some();
        Ok(if d.is_queue() {
            let q = self.ov.queue(d);
            q.is_some_and(|q| q.by_id.contains_key(id))
                || (in_db && !q.is_some_and(|q| q.removed.contains_key(id)))
        } else {
            self.ov.topic(d).is_some_and(|t| t.by_id.contains_key(id))
                || (in_db && !self.ov.db_acked(d, None, id))
        })
    }

    fn ackable(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        self.contains(d, id)
    }

    fn pending_for(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        if let Some(t) = self.ov.topic(d)
            && let Some(k) = t.by_id.get(id)
        {
            return Ok(t.adds.get(k).is_some_and(|a| a.pending.contains(key)));
        }
        let in_db = self
            .facts
            .pending
            .get(&(d.clone(), key.clone(), id.clone()))
            .copied()
            .unwrap_or(false);
        Ok(in_db && !self.ov.db_acked(d, Some(key), id))
    }

    fn subscriptions(&mut self, d: &Destination) -> Result<Vec<SubscriptionKey>> {
        Ok(self.subs.get(d).cloned().unwrap_or_default())
    }
}

/// Applies one checked operation to the overlay.
fn apply(
    ov: &mut Overlay,
    op: TxOp,
    facts: &Facts,
    subs: &HashMap<Destination, Vec<SubscriptionKey>>,
) {
    match op {
        TxOp::Add(m) => {
            let s = subs.get(&m.destination).cloned().unwrap_or_default();
            ov.add(m, &s);
        }
        TxOp::QueueAck { destination, id } => {
            if !ov.cancel_queue_add(&destination, &id)
                && let Some(DbFact {
                    stored: Some((key, size)),
                    ..
                }) = facts.messages.get(&(destination.clone(), id.clone()))
            {
                ov.remove_db(&destination, id, *key, *size);
            }
        }
        TxOp::TopicAck {
            destination,
            subscription,
            id,
        } => {
            if !ov.ack_topic_add(&destination, &subscription, &id)
                && let Some(DbFact {
                    stored: Some((key, size)),
                    refs,
                }) = facts.messages.get(&(destination.clone(), id.clone()))
            {
                ov.ack_topic_db(&destination, &subscription, &id, *key, *size, *refs);
            }
        }
    }
}

#[async_trait]
impl PersistenceAdapter for JournaledJdbcStore {
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let journal = self.inner.journal.stats();
        vec![
            ("journal_fsyncs", journal.fsyncs),
            ("journal_fsync_micros", journal.fsync_micros),
            ("journal_bytes", journal.bytes),
            ("checkpoints", self.checkpoints()),
        ]
    }

    fn kind(&self) -> &'static str {
        "journaled-jdbc"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.inner.check_open()?;
        self.inner.jdbc.destinations().await
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        let i = &self.inner;
        i.check_open()?;
        let db = i.jdbc.queue_store(destination).await?;
        Ok(Arc::new(Handle {
            inner: i.clone(),
            d: destination.clone(),
            state: i.dest(destination),
            queue: Some(db),
            topic: None,
        }))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        let i = &self.inner;
        i.check_open()?;
        let db = i.jdbc.topic_store(destination).await?;
        Ok(Arc::new(Handle {
            inner: i.clone(),
            d: destination.clone(),
            state: i.dest(destination),
            queue: None,
            topic: Some(db),
        }))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        i.write_through(i.jdbc.remove_destination(destination))
            .await?;
        i.subs.lock().remove(destination);
        if let Some(s) = i.dests.lock().remove(destination) {
            s.removed.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let prepared = i.jdbc.prepared_transactions().await?;
        let in_db = matches!(tx, TransactionId::Xa(x) if prepared.iter().any(|p| &p.xid == x));
        if in_db {
            return Err(StoreError::Duplicate(format!("transaction {tx}")));
        }
        i.txs.lock().begin(tx)
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let known = i.txs.lock().contains(tx);
        if !known && tx.is_xa() {
            return i.jdbc.enlist(tx, op).await;
        }
        i.txs.lock().check_enlist(tx)?;
        match &op {
            TxOp::Add(m) => i.jdbc.journaled().validate_message(m)?,
            TxOp::QueueAck { destination, .. } => {
                i.jdbc.journaled().validate_names(destination, None)?
            }
            TxOp::TopicAck {
                destination,
                subscription,
                ..
            } => i
                .jdbc
                .journaled()
                .validate_names(destination, Some(subscription))?,
        }
        if check_enlisted(&op)? {
            let _v = i.view.read().await;
            let facts = i.facts(std::slice::from_ref(&op)).await?;
            let mut subs = HashMap::new();
            if let TxOp::TopicAck { destination, .. } = &op {
                subs.insert(destination.clone(), i.subscriptions(destination).await?);
                if let TxOp::TopicAck { subscription, .. } = &op
                    && !subs[destination].contains(subscription)
                {
                    return Err(StoreError::NotFound(format!(
                        "subscription {subscription} on {destination}"
                    )));
                }
            }
            let ov = i.overlay.lock();
            check_ops(
                std::slice::from_ref(&op),
                &mut Probe {
                    ov: &ov,
                    facts: &facts,
                    subs: &subs,
                },
            )?;
        }
        i.txs.lock().enlist(tx, op)
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let id = TransactionId::Xa(xid.clone());
        let known = i.txs.lock().contains(&id);
        if !known {
            return i.jdbc.prepare(xid).await;
        }
        let ops = i.txs.lock().to_prepare(xid)?.to_vec();
        // Prepared transactions are the database's: checkpoint, then hand it over whole.
        i.write_through(async {
            i.jdbc.begin(&id).await?;
            let r = async {
                for op in ops {
                    i.jdbc.enlist(&id, op).await?;
                }
                i.jdbc.prepare(xid).await
            }
            .await;
            if r.is_err() {
                let _ = i.jdbc.rollback(&id).await;
            }
            r
        })
        .await?;
        i.txs.lock().mark_prepared(&id, ());
        Ok(())
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let local = i
            .txs
            .lock()
            .find(tx)
            .map(|t| (t.is_prepared(), t.ops.clone()));
        match local {
            Some((false, ops)) => {
                let (completion, _) = i.write(ops, false).await?;
                i.durable(completion).await?;
            }
            Some((true, ops)) => {
                i.remember_adds(&ops);
                i.write_through(i.jdbc.commit(tx)).await?;
            }
            None => {
                if let TransactionId::Xa(xid) = tx {
                    for p in i.jdbc.prepared_transactions().await? {
                        if &p.xid == xid {
                            i.remember_adds(&p.ops);
                        }
                    }
                }
                i.write_through(i.jdbc.commit(tx)).await?;
            }
        }
        let _ = i.txs.lock().end(tx);
        Ok(())
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let local = i.txs.lock().find(tx).map(|t| t.is_prepared());
        match local {
            Some(false) => {}
            Some(true) | None => i.jdbc.rollback(tx).await?,
        }
        let _ = i.txs.lock().end(tx);
        Ok(())
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.inner.check_open()?;
        self.inner.jdbc.prepared_transactions().await
    }

    async fn checkpoint(&self, _cleanup: bool) -> Result<()> {
        let i = &self.inner;
        i.check_writable()?;
        let _w = i.write.lock().await;
        i.checkpoint_locked().await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.inner.check_open()?;
        Ok(self.inner.journal.disk_size())
    }

    async fn delete_all(&self) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        i.write_through(i.jdbc.delete_all()).await?;
        i.subs.lock().clear();
        i.txs.lock().clear();
        for (_, s) in i.dests.lock().drain() {
            s.removed.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let i = &self.inner;
        if i.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // A clean shutdown checkpoints, so the next open replays nothing.
        let r = {
            let _w = i.write.lock().await;
            let r = if i.poisoned.lock().is_none() {
                i.checkpoint_locked().await
            } else {
                Ok(())
            };
            i.closed.store(true, Ordering::Release);
            r
        };
        i.wake.notify_one();
        let journal = {
            let j = i.clone();
            tokio::task::spawn_blocking(move || j.journal.close())
        };
        let _ = journal.await;
        i.jdbc.close().await?;
        r
    }
}

/// A queue or topic handle.
struct Handle {
    inner: Arc<Inner>,
    d: Destination,
    state: Arc<DestState>,
    queue: Option<Arc<dyn QueueStore>>,
    topic: Option<Arc<dyn TopicStore>>,
}

impl Handle {
    fn check(&self) -> Result<()> {
        self.inner.check_open()?;
        if self.state.removed.load(Ordering::Acquire) {
            return Err(StoreError::NotFound(format!(
                "destination {} was removed",
                self.d
            )));
        }
        Ok(())
    }

    fn q(&self) -> Result<&Arc<dyn QueueStore>> {
        self.queue
            .as_ref()
            .ok_or_else(|| StoreError::InvalidArgument(format!("{} is not a queue", self.d)))
    }

    fn t(&self) -> Result<&Arc<dyn TopicStore>> {
        self.topic
            .as_ref()
            .ok_or_else(|| StoreError::InvalidArgument(format!("{} is not a topic", self.d)))
    }

    fn missing(&self, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!("message {id} in {}", self.d))
    }

    async fn add(&self, message: Message) -> Result<u64> {
        self.check()?;
        message.validate_for(&self.d)?;
        self.inner.jdbc.journaled().validate_message(&message)?;
        let (completion, seqs) = self.inner.write(vec![TxOp::Add(message)], true).await?;
        self.inner.durable(completion).await?;
        Ok(seqs.first().copied().unwrap_or(0))
    }

    async fn sub_exists(&self, key: &SubscriptionKey) -> Result<()> {
        if self.inner.subscriptions(&self.d).await?.contains(key) {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "subscription {key} on {}",
                self.d
            )))
        }
    }

    /// Up to `max` messages in delivery order from per-priority positions `from(p)` (None:
    /// skip the priority): the database first, then the overlay, whose sequences are all
    /// higher. Returns the messages and, per priority, the last sequence looked at.
    async fn merged(
        &self,
        sub: Option<&SubscriptionKey>,
        from: impl Fn(u8) -> Option<u64>,
        max: usize,
        mut seen: impl FnMut(OrderKey),
    ) -> Result<Vec<Message>> {
        let i = &self.inner;
        let mut out = Vec::new();
        for p in (0..=MAX_PRIORITY).rev() {
            let Some(mut after) = from(p) else { continue };
            loop {
                let need = max.saturating_sub(out.len());
                if need == 0 {
                    return Ok(out);
                }
                let rows = i
                    .jdbc
                    .journaled()
                    .page(&self.d, sub, p, after, need)
                    .await?;
                let n = rows.len();
                {
                    let ov = i.overlay.lock();
                    for m in rows {
                        let key = OrderKey::of(&m);
                        after = after.max(key.sequence);
                        seen(key);
                        let hidden = if self.d.is_queue() {
                            ov.queue(&self.d)
                                .is_some_and(|q| q.removed.contains_key(&m.id))
                        } else {
                            ov.db_acked(&self.d, sub, &m.id)
                        };
                        if !hidden {
                            out.push(m);
                        }
                    }
                }
                if n < need {
                    break;
                }
            }
            let need = max.saturating_sub(out.len());
            if need == 0 {
                return Ok(out);
            }
            let lo = OrderKey {
                priority: p,
                sequence: after.saturating_add(1),
            };
            let hi = OrderKey {
                priority: p,
                sequence: u64::MAX,
            };
            let ov = i.overlay.lock();
            if self.d.is_queue() {
                if let Some(q) = ov.queue(&self.d) {
                    for (k, m) in q.adds.range(lo..=hi).take(need) {
                        seen(*k);
                        out.push(Message::clone(m));
                    }
                }
            } else if let Some(t) = ov.topic(&self.d) {
                let mut taken = 0;
                for (k, a) in t.adds.range(lo..=hi) {
                    if taken == need {
                        break;
                    }
                    if sub.is_none_or(|s| a.pending.contains(s)) {
                        seen(*k);
                        out.push(Message::clone(&a.message));
                        taken += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn browse_from(
        &self,
        sub: Option<&SubscriptionKey>,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let _v = self.inner.view.read().await;
        self.merged(
            sub,
            |p| match after {
                None => Some(0),
                Some(k) if p > k.priority => None,
                Some(k) if p == k.priority => Some(k.sequence),
                Some(_) => Some(0),
            },
            max,
            |_| {},
        )
        .await
    }

    async fn recover(
        &self,
        sub: Option<&SubscriptionKey>,
        cursor: &mut CursorPosition,
        max: usize,
    ) -> Result<Vec<Message>> {
        let _v = self.inner.view.read().await;
        let pos = *cursor;
        let mut seen = Vec::new();
        let out = self
            .merged(
                sub,
                |p| Some(pos.first_pending_at(p).sequence - 1),
                max,
                |k| seen.push(k),
            )
            .await?;
        for k in seen {
            cursor.advance(k);
        }
        Ok(out)
    }

    async fn expired_merged(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        let i = &self.inner;
        let _v = i.view.read().await;
        let hidden = {
            let ov = i.overlay.lock();
            match (ov.queue(&self.d), ov.topic(&self.d)) {
                (Some(q), _) => q.removed.len(),
                (_, Some(t)) => t.released.0 as usize,
                _ => 0,
            }
        };
        let db = i
            .jdbc
            .journaled()
            .expired_entries(&self.d, now_ms, max.saturating_add(hidden))
            .await?;
        let ov = i.overlay.lock();
        let mut all: Vec<(OrderKey, MessageId)> = db
            .into_iter()
            .filter(|(_, id)| {
                if self.d.is_queue() {
                    !ov.queue(&self.d)
                        .is_some_and(|q| q.removed.contains_key(id))
                } else {
                    !ov.db_acked(&self.d, None, id)
                }
            })
            .collect();
        let expired = |m: &Message| m.expiration != 0 && m.expiration <= now_ms;
        if let Some(q) = ov.queue(&self.d) {
            all.extend(
                q.adds
                    .iter()
                    .filter(|(_, m)| expired(m))
                    .map(|(k, m)| (*k, m.id.clone())),
            );
        }
        if let Some(t) = ov.topic(&self.d) {
            all.extend(
                t.adds
                    .iter()
                    .filter(|(_, a)| expired(&a.message))
                    .map(|(k, a)| (*k, a.message.id.clone())),
            );
        }
        all.sort_by_key(|(k, _)| *k);
        all.truncate(max);
        Ok(all.into_iter().map(|(_, id)| id).collect())
    }

    /// The message's key in the merged view, if it is there (and, with `sub`, pending for it).
    async fn key_of(
        &self,
        sub: Option<&SubscriptionKey>,
        id: &MessageId,
    ) -> Result<Option<OrderKey>> {
        let i = &self.inner;
        {
            let ov = i.overlay.lock();
            if let Some(q) = ov.queue(&self.d) {
                if let Some(k) = q.by_id.get(id) {
                    return Ok(Some(*k));
                }
                if q.removed.contains_key(id) {
                    return Ok(None);
                }
            }
            if let Some(t) = ov.topic(&self.d) {
                if let Some(k) = t.by_id.get(id) {
                    let pending = t
                        .adds
                        .get(k)
                        .is_some_and(|a| sub.is_none_or(|s| a.pending.contains(s)));
                    return Ok(pending.then_some(*k));
                }
                if ov.db_acked(&self.d, sub, id) {
                    return Ok(None);
                }
            }
        }
        if let Some(s) = sub
            && !i.jdbc.journaled().is_pending(&self.d, s, id).await?
        {
            return Ok(None);
        }
        Ok(i.jdbc
            .journaled()
            .message_key_size(&self.d, id)
            .await?
            .map(|(k, _)| k))
    }
}

#[async_trait]
impl QueueStore for Handle {
    fn destination(&self) -> &Destination {
        &self.d
    }

    async fn add(&self, message: Message) -> Result<u64> {
        Handle::add(self, message).await
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.check()?;
        let _v = self.inner.view.read().await;
        {
            let ov = self.inner.overlay.lock();
            if let Some(q) = ov.queue(&self.d) {
                if let Some(k) = q.by_id.get(id)
                    && let Some(m) = q.adds.get(k)
                {
                    return Ok(Message::clone(m));
                }
                if q.removed.contains_key(id) {
                    return Err(self.missing(id));
                }
            }
        }
        self.q()?.get(id).await
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.check()?;
        let (completion, _) = self
            .inner
            .write(
                vec![TxOp::QueueAck {
                    destination: self.d.clone(),
                    id: id.clone(),
                }],
                true,
            )
            .await?;
        self.inner.durable(completion).await
    }

    async fn purge(&self) -> Result<u64> {
        self.check()?;
        let q = self.q()?.clone();
        self.inner.write_through(q.purge()).await
    }

    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.check()?;
        self.browse_from(None, after, max).await
    }

    async fn recover_next(&self, max: usize) -> Result<Vec<Message>> {
        self.check()?;
        let mut cursor = self.state.cursor.lock().await;
        self.recover(None, &mut cursor, max).await
    }

    async fn reset_cursor(&self) -> Result<()> {
        self.check()?;
        self.state.cursor.lock().await.reset();
        Ok(())
    }

    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let key = self
            .key_of(None, id)
            .await?
            .ok_or_else(|| self.missing(id))?;
        let last = self.inner.last_seq.load(Ordering::Acquire);
        self.state.cursor.lock().await.set_after(key, last);
        Ok(())
    }

    async fn count(&self) -> Result<u64> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let db = self.q()?.count().await?;
        let ov = self.inner.overlay.lock();
        Ok(match ov.queue(&self.d) {
            Some(q) => (db + q.adds.len() as u64).saturating_sub(q.removed.len() as u64),
            None => db,
        })
    }

    async fn bytes(&self) -> Result<u64> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let db = self.q()?.bytes().await?;
        let ov = self.inner.overlay.lock();
        Ok(match ov.queue(&self.d) {
            Some(q) => (db + q.add_bytes).saturating_sub(q.removed_bytes),
            None => db,
        })
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.check()?;
        self.expired_merged(now_ms, max).await
    }
}

#[async_trait]
impl TopicStore for Handle {
    fn destination(&self) -> &Destination {
        &self.d
    }

    async fn add(&self, message: Message) -> Result<u64> {
        Handle::add(self, message).await
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.check()?;
        let _v = self.inner.view.read().await;
        {
            let ov = self.inner.overlay.lock();
            if let Some(t) = ov.topic(&self.d)
                && let Some(k) = t.by_id.get(id)
                && let Some(a) = t.adds.get(k)
            {
                return Ok(Message::clone(&a.message));
            }
            if ov.db_acked(&self.d, None, id) {
                return Err(self.missing(id));
            }
        }
        self.t()?.get(id).await
    }

    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        self.check()?;
        let t = self.t()?.clone();
        let i = &self.inner;
        i.write_through(t.add_subscription(info, retroactive))
            .await?;
        i.subs.lock().remove(&self.d);
        Ok(())
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.check()?;
        let t = self.t()?.clone();
        let i = &self.inner;
        let r = i.write_through(t.delete_subscription(key)).await;
        i.subs.lock().remove(&self.d);
        r?;
        self.state.sub_cursors.lock().await.remove(key);
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.check()?;
        self.t()?.subscriptions().await
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.check()?;
        self.t()?.lookup_subscription(key).await
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.check()?;
        self.sub_exists(key).await?;
        let (completion, _) = self
            .inner
            .write(
                vec![TxOp::TopicAck {
                    destination: self.d.clone(),
                    subscription: key.clone(),
                    id: id.clone(),
                }],
                true,
            )
            .await?;
        self.inner.durable(completion).await
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.check()?;
        self.sub_exists(key).await?;
        self.browse_from(Some(key), after, max).await
    }

    async fn recover_next(&self, key: &SubscriptionKey, max: usize) -> Result<Vec<Message>> {
        self.check()?;
        self.sub_exists(key).await?;
        let mut cursors = self.state.sub_cursors.lock().await;
        let cursor = cursors.entry(key.clone()).or_default();
        self.recover(Some(key), cursor, max).await
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.check()?;
        self.sub_exists(key).await?;
        self.state.sub_cursors.lock().await.remove(key);
        Ok(())
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.check()?;
        self.sub_exists(key).await?;
        let _v = self.inner.view.read().await;
        let order = self.key_of(Some(key), id).await?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "message {id} is not pending for subscription {key} on {}",
                self.d
            ))
        })?;
        let last = self.inner.last_seq.load(Ordering::Acquire);
        self.state
            .sub_cursors
            .lock()
            .await
            .entry(key.clone())
            .or_default()
            .set_after(order, last);
        Ok(())
    }

    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.check()?;
        self.sub_exists(key).await?;
        let _v = self.inner.view.read().await;
        let db = self.t()?.pending_count(key).await?;
        let ov = self.inner.overlay.lock();
        Ok(match ov.topic(&self.d) {
            Some(t) => {
                let add = t.add_pending.get(key).map_or(0, |e| e.0);
                let acked = t.db_acked.get(key).map_or(0, |e| e.0);
                (db + add).saturating_sub(acked)
            }
            None => db,
        })
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.check()?;
        self.sub_exists(key).await?;
        let _v = self.inner.view.read().await;
        let db = self.t()?.pending_bytes(key).await?;
        let ov = self.inner.overlay.lock();
        Ok(match ov.topic(&self.d) {
            Some(t) => {
                let add = t.add_pending.get(key).map_or(0, |e| e.1);
                let acked = t.db_acked.get(key).map_or(0, |e| e.1);
                (db + add).saturating_sub(acked)
            }
            None => db,
        })
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.check()?;
        let t = self.t()?.clone();
        self.inner.write_through(t.remove(id)).await
    }

    async fn purge(&self) -> Result<u64> {
        self.check()?;
        let t = self.t()?.clone();
        self.inner.write_through(t.purge()).await
    }

    async fn count(&self) -> Result<u64> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let db = self.t()?.count().await?;
        let ov = self.inner.overlay.lock();
        Ok(match ov.topic(&self.d) {
            Some(t) => (db + t.adds.len() as u64).saturating_sub(t.released.0),
            None => db,
        })
    }

    async fn bytes(&self) -> Result<u64> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let db = self.t()?.bytes().await?;
        let ov = self.inner.overlay.lock();
        Ok(match ov.topic(&self.d) {
            Some(t) => (db + t.add_bytes).saturating_sub(t.released.1),
            None => db,
        })
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.check()?;
        self.expired_merged(now_ms, max).await
    }
}
