//! The adapter and its queue and topic handles: reads go to the pool, every change to the
//! writer task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use store_api::codec::{self, Reader};
use store_api::{
    CursorPosition, Destination, MAX_PRIORITY, Message, MessageId, OpenTransactions, OrderKey,
    PersistenceAdapter, PreparedTransaction, QueueStore, Result, StoreError, SubscriptionInfo,
    SubscriptionKey, TopicStore, TransactionId, TxOp, Xid,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::JdbcError;
use crate::fence::Fence;
use crate::sql::{Arg, Dialect, Options, Pool, Row, redact};
use crate::statements::{MAX_TEXT, Statements};
use crate::writer::{BULK_ROWS, CheckpointBatch, Common, Done, Job, Work, WriterTask};

/// How to reach the database and shape the tables.
#[derive(Debug, Clone)]
pub struct JdbcConfig {
    /// `mysql://user:pass@host:3306/db`, `postgres://user@host/db` or `sqlite:path/to/file.db`.
    pub url: String,
    /// Connections for reads (the writer has its own).
    pub pool_size: u32,
    /// Prepended to every table and index name; identifier characters only.
    pub table_prefix: String,
    /// Create the tables (and the lock row) at open when they do not exist. Default true.
    pub create_tables_on_startup: bool,
    /// Most changes one database transaction carries (group commit).
    pub max_batch: usize,
    /// How long a read waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// The fence of the locker that guards this store, if any: writes are refused unless it is
    /// held, and under the lease locker each write transaction checks its epoch.
    pub fence: Option<Fence>,
}

impl JdbcConfig {
    pub fn new(url: impl Into<String>) -> Self {
        JdbcConfig {
            url: url.into(),
            pool_size: 8,
            table_prefix: String::new(),
            create_tables_on_startup: true,
            max_batch: 256,
            acquire_timeout: Duration::from_secs(30),
            fence: None,
        }
    }
}

/// Per-destination state this process keeps: the batch cursors. A handle outliving
/// `remove_destination` sees `removed` and fails with `NotFound`.
#[derive(Debug)]
struct DestState {
    destination: Destination,
    container: String,
    removed: AtomicBool,
    cursor: tokio::sync::Mutex<CursorPosition>,
    sub_cursors: tokio::sync::Mutex<HashMap<SubscriptionKey, CursorPosition>>,
}

#[derive(Debug)]
struct Shared {
    common: Arc<Common>,
    pool: Pool,
    writer: mpsc::UnboundedSender<Job>,
    closed: AtomicBool,
    registry: Mutex<HashMap<Destination, Arc<DestState>>>,
    /// Open transactions; a prepared one records the row holding it.
    transactions: Mutex<OpenTransactions<i64>>,
}

/// The JDBC message store.
#[derive(Debug, Clone)]
pub struct JdbcStore {
    shared: Arc<Shared>,
}

fn db(dialect: Dialect, doing: &str, e: sqlx::Error) -> StoreError {
    JdbcError::Database {
        dialect: dialect.name(),
        doing: doing.to_string(),
        source: e,
    }
    .into()
}

/// A destination's `CONTAINER` value back to the destination.
pub(crate) fn parse_container(c: &str) -> Option<Destination> {
    if let Some(n) = c.strip_prefix("queue://") {
        Some(Destination::queue(n))
    } else {
        c.strip_prefix("topic://").map(Destination::topic)
    }
}

/// Refuses text the columns cannot hold exactly.
fn check_text(what: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_TEXT {
        return Err(StoreError::InvalidArgument(format!(
            "{what} is longer than the {MAX_TEXT} characters its VARCHAR(250) column holds"
        )));
    }
    if s.contains('\0') {
        return Err(StoreError::InvalidArgument(format!(
            "{what} contains a NUL character, which PostgreSQL text cannot hold"
        )));
    }
    Ok(())
}

fn check_destination(d: &Destination) -> Result<()> {
    check_text(&format!("destination name `{d}`"), &d.to_string())
}

fn check_message(m: &Message, max_packet: Option<u64>) -> Result<()> {
    check_destination(&m.destination)?;
    check_text("a message's producer id", &m.id.producer)?;
    if let Some(max) = max_packet {
        // The row travels in one packet with its other columns: leave room for them.
        let size = m.size() + 2048;
        if size > max {
            return Err(StoreError::InvalidArgument(format!(
                "message {} of {} bytes does not fit the server's max_allowed_packet of {max} bytes; raise max_allowed_packet (see the README)",
                m.id,
                m.size()
            )));
        }
    }
    Ok(())
}

fn check_key(k: &SubscriptionKey) -> Result<()> {
    check_text("client id", &k.client_id)?;
    check_text("subscription name", &k.name)
}

impl JdbcStore {
    /// Connects, creates the tables when configured to, finishes work a crash interrupted, and
    /// starts the writer. Must run inside a tokio runtime.
    pub async fn open(config: JdbcConfig) -> Result<JdbcStore> {
        let options = Options::parse(&config.url)?;
        let dialect = options.dialect();
        let st = Statements::new(dialect, &config.table_prefix)?;
        if config.pool_size == 0 {
            return Err(JdbcError::Config("pool_size must be at least 1".into()).into());
        }
        let mut conn = options.connect().await.map_err(|e| {
            StoreError::from(JdbcError::Database {
                dialect: dialect.name(),
                doing: format!("connecting to {}", redact(&config.url)),
                source: e,
            })
        })?;
        if config.create_tables_on_startup {
            create_schema(&mut conn, &st).await?;
        }
        conn.execute(&st.ensure_sequence_row, &[])
            .await
            .map_err(|e| db(dialect, "creating the sequence row", e))?;
        let row = conn.fetch_one(&st.max_ids, &[]).await.map_err(|e| {
            db(
                dialect,
                "reading the highest sequence (are the tables there?)",
                e,
            )
        })?;
        let last = match row {
            Some(r) => {
                let a = r.i64(0).map_err(|e| db(dialect, "reading MAX(ID)", e))?;
                let b = r
                    .i64(1)
                    .map_err(|e| db(dialect, "reading MAX(LAST_ACKED_ID)", e))?;
                a.max(b).max(0)
            }
            None => 0,
        };
        let max_packet = if dialect == Dialect::MySql {
            conn.scalar(&st.sql("SELECT CAST(@@max_allowed_packet AS SIGNED)"), &[])
                .await
                .map_err(|e| db(dialect, "reading max_allowed_packet", e))?
                .map(|v| v.max(0) as u64)
        } else {
            None
        };
        let common = Arc::new(Common {
            commits: AtomicU64::new(0),
            message_statements: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            max_packet,
            st,
            last_sequence: AtomicU64::new(last as u64),
            sub_ids: Mutex::new(HashMap::new()),
            fence: config.fence.clone(),
        });
        let pool = options.pool(config.pool_size, config.acquire_timeout);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = WriterTask::new(common.clone(), options, conn, last + 1, config.max_batch);
        tokio::spawn(task.run(rx));
        let store = JdbcStore {
            shared: Arc::new(Shared {
                common,
                pool,
                writer: tx,
                closed: AtomicBool::new(false),
                registry: Mutex::new(HashMap::new()),
                transactions: Mutex::new(OpenTransactions::new()),
            }),
        };
        store.shared.submit(Work::Recover).await?;
        store.load_prepared().await?;
        Ok(store)
    }

    /// Database transactions the writer committed since open, and the changes (adds, acks,
    /// commits of transactions...) they carried: changes per commit is the group-commit
    /// factor.
    pub fn commit_stats(&self) -> (u64, u64) {
        let c = &self.shared.common;
        (
            c.commits.load(Ordering::Relaxed),
            c.changes.load(Ordering::Relaxed),
        )
    }

    /// Applies a journaled JDBC checkpoint (see [`CheckpointBatch`]) in one transaction.
    pub async fn apply_checkpoint(&self, batch: CheckpointBatch) -> Result<()> {
        self.shared.check_open()?;
        for (m, _) in &batch.adds {
            check_message(m, self.shared.common.max_packet)?;
        }
        self.shared
            .submit(Work::Checkpoint(Box::new(batch)))
            .await?;
        Ok(())
    }

    /// One page of every stored message's id in sequence order after `after`: `(sequence,
    /// destination, id)`. Rows that are not messages (prepared transactions) are skipped but
    /// still count towards `limit`, so an empty page means the end.
    pub async fn message_ids(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<(i64, Destination, MessageId)>, Option<i64>)> {
        let s = &self.shared;
        s.check_open()?;
        let rows = s
            .pool
            .fetch(
                &s.common.st.all_ids,
                &[
                    Arg::I64(after),
                    Arg::I64(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(|e| s.db("listing message ids", e))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in rows {
            let id = r.i64(0).map_err(|e| s.db("reading ID", e))?;
            last = Some(id);
            let c = r.string(1).map_err(|e| s.db("reading CONTAINER", e))?;
            let (Some(d), Some(p), Some(q)) = (
                parse_container(&c),
                r.opt_string(2).map_err(|e| s.db("reading MSGID_PROD", e))?,
                r.opt_i64(3).map_err(|e| s.db("reading MSGID_SEQ", e))?,
            ) else {
                continue;
            };
            out.push((id, d, MessageId::new(p, q as u64)));
        }
        Ok((out, last))
    }

    /// The journal position the last checkpoint recorded, if any.
    pub async fn journal_mark(&self) -> Result<Option<i64>> {
        let s = &self.shared;
        s.check_open()?;
        s.pool
            .scalar(&s.common.st.get_mark, &[])
            .await
            .map_err(|e| s.db("reading the checkpoint mark", e))
    }

    /// Statements on message rows that checkpoints ran since open.
    pub fn checkpoint_message_statements(&self) -> u64 {
        self.shared
            .common
            .message_statements
            .load(Ordering::Relaxed)
    }

    /// The highest sequence committed.
    pub fn last_sequence(&self) -> u64 {
        self.shared.common.last_sequence.load(Ordering::Acquire)
    }

    /// Checks that a message fits the columns and the server's packet limit, as an add would.
    pub fn validate_message(&self, m: &Message) -> Result<()> {
        check_message(m, self.shared.common.max_packet)
    }

    /// Checks names as the columns require.
    pub fn validate_names(&self, d: &Destination, key: Option<&SubscriptionKey>) -> Result<()> {
        check_destination(d)?;
        if let Some(k) = key {
            check_key(k)?;
        }
        Ok(())
    }

    /// The stored message's place in delivery order and encoded size.
    pub async fn message_key_size(
        &self,
        d: &Destination,
        id: &MessageId,
    ) -> Result<Option<(OrderKey, u64)>> {
        let s = &self.shared;
        s.check_open()?;
        let row = s
            .pool
            .fetch_one(
                &s.common.st.message_key_size,
                &[
                    Arg::Str(&id.producer),
                    Arg::I64(id.producer_seq as i64),
                    Arg::Str(&d.to_string()),
                ],
            )
            .await
            .map_err(|e| s.db("looking a message up", e))?;
        match row {
            Some(r) => {
                let seq = r.i64(0).map_err(|e| s.db("reading ID", e))?;
                let p = r.i64(1).map_err(|e| s.db("reading PRIORITY", e))?;
                let len = r.opt_i64(2).map_err(|e| s.db("reading LENGTH(MSG)", e))?;
                Ok(Some((
                    OrderKey {
                        priority: p.clamp(0, i64::from(MAX_PRIORITY)) as u8,
                        sequence: seq as u64,
                    },
                    len.unwrap_or(0).max(0) as u64,
                )))
            }
            None => Ok(None),
        }
    }

    /// How many subscriptions the stored topic message is pending for.
    pub async fn pending_refs(&self, d: &Destination, id: &MessageId) -> Result<u64> {
        let s = &self.shared;
        let Some((k, _)) = self.message_key_size(d, id).await? else {
            return Ok(0);
        };
        let n = s
            .pool
            .scalar(&s.common.st.pending_refs, &[Arg::I64(k.sequence as i64)])
            .await
            .map_err(|e| s.db("counting references", e))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Whether the stored topic message is pending for the subscription.
    pub async fn is_pending(
        &self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        self.shared.check_open()?;
        self.shared.pending_for(d, key, id).await
    }

    /// Up to `limit` stored messages of a queue (or, with `sub`, pending for a subscription) at
    /// one priority with a sequence above `after`, in sequence order.
    pub async fn page(
        &self,
        d: &Destination,
        sub: Option<&SubscriptionKey>,
        priority: u8,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let s = &self.shared;
        s.check_open()?;
        let sub_id = match sub {
            Some(k) => match s.sub_id(d, k).await? {
                Some(id) => Some(id),
                None => return Err(StoreError::NotFound(format!("subscription {k} on {d}"))),
            },
            None => None,
        };
        let c = d.to_string();
        s.page(
            &c,
            sub_id,
            |p| (p == priority).then_some(after as i64),
            limit,
        )
        .await
    }

    /// Up to `max` expired stored messages of a destination with their places in delivery
    /// order, first in delivery order.
    pub async fn expired_entries(
        &self,
        d: &Destination,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<(OrderKey, MessageId)>> {
        let s = &self.shared;
        s.check_open()?;
        s.expired_entries(&d.to_string(), now_ms, max).await
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.shared.common.st.dialect
    }

    /// Drops this store's tables. For tests and throwaway schemas; the store is closed first.
    pub async fn drop_tables(config: &JdbcConfig) -> Result<()> {
        let options = Options::parse(&config.url)?;
        let st = Statements::new(options.dialect(), &config.table_prefix)?;
        let mut conn = options
            .connect()
            .await
            .map_err(|e| db(st.dialect, "connecting", e))?;
        for ddl in st.drop_schema() {
            conn.raw(&ddl)
                .await
                .map_err(|e| db(st.dialect, "dropping tables", e))?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    async fn load_prepared(&self) -> Result<()> {
        let s = &self.shared;
        let st = &s.common.st;
        let mut after = 0i64;
        loop {
            let rows = s
                .pool
                .fetch(&st.prepared_rows, &[Arg::I64(after), Arg::I64(BULK_ROWS)])
                .await
                .map_err(|e| db(st.dialect, "loading prepared transactions", e))?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let id = row.i64(0).map_err(|e| db(st.dialect, "reading ID", e))?;
                after = id;
                let bytes = row.bytes(1).map_err(|e| db(st.dialect, "reading MSG", e))?;
                let corrupt = |reason: String| JdbcError::CorruptRow {
                    table: st.msgs.clone(),
                    id,
                    reason,
                };
                let mut r = Reader::new(&bytes);
                let (tx, ops) = (|| {
                    let tx = codec::read_transaction_id(&mut r)?;
                    let n = r.varint()?;
                    let mut ops = Vec::new();
                    for _ in 0..n {
                        ops.push(codec::read_tx_op(&mut r)?);
                    }
                    r.finish()?;
                    Ok::<_, store_api::DecodeError>((tx, ops))
                })()
                .map_err(|e| corrupt(format!("prepared transaction does not decode: {e}")))?;
                s.transactions.lock().restore_prepared(tx, ops, id);
            }
        }
    }
}

pub(crate) async fn create_schema(conn: &mut crate::sql::Conn, st: &Statements) -> Result<()> {
    let collation = if st.dialect == Dialect::MySql {
        let version = conn
            .fetch_one(&st.sql("SELECT VERSION()"), &[])
            .await
            .map_err(|e| db(st.dialect, "reading the server version", e))?
            .map(|r| r.string(0))
            .transpose()
            .map_err(|e| db(st.dialect, "reading the server version", e))?
            .unwrap_or_default();
        // MariaDB's `utf8mb4_bin` pads trailing spaces; its no-pad twin compares exactly, as
        // MySQL 8's `utf8mb4_0900_bin` does.
        if version.contains("MariaDB") {
            "utf8mb4_nopad_bin"
        } else {
            "utf8mb4_0900_bin"
        }
    } else {
        ""
    };
    for ddl in st.create_schema(collation) {
        conn.raw(&ddl)
            .await
            .map_err(|e| db(st.dialect, &format!("creating the schema ({ddl})"), e))?;
    }
    if conn.scalar(&st.lock_row_count(), &[]).await.ok().flatten() == Some(0) {
        // Two brokers starting on an empty database may both try: one insert wins, the
        // other's key violation is harmless.
        if let Err(e) = conn.execute(&st.insert_lock_row(), &[]).await
            && conn.scalar(&st.lock_row_count(), &[]).await.ok().flatten() != Some(1)
        {
            return Err(db(st.dialect, "inserting the lock row", e));
        }
    }
    // A lock table that ActiveMQ created has no EPOCH column: add it.
    let probe = st.sql(&format!("SELECT EPOCH FROM {} WHERE ID = 1", st.lock));
    if conn.fetch(&probe, &[]).await.is_err() {
        conn.raw(&st.add_epoch_column())
            .await
            .map_err(|e| db(st.dialect, "adding EPOCH to the lock table", e))?;
    }
    Ok(())
}

impl Shared {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    async fn submit(&self, work: Work) -> Result<Done> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { work, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn db(&self, doing: &str, e: sqlx::Error) -> StoreError {
        db(self.common.st.dialect, doing, e)
    }

    /// Decodes a `(ID, MSG)` row into the message with its sequence.
    fn message(&self, row: &Row) -> Result<Message> {
        let id = row.i64(0).map_err(|e| self.db("reading ID", e))?;
        let bytes = row.bytes(1).map_err(|e| self.db("reading MSG", e))?;
        let mut m = codec::decode(&bytes).map_err(|e| JdbcError::CorruptRow {
            table: self.common.st.msgs.clone(),
            id,
            reason: format!("MSG does not decode: {e}"),
        })?;
        m.sequence = id as u64;
        Ok(m)
    }

    async fn open_destination(&self, d: &Destination) -> Result<Arc<DestState>> {
        check_destination(d)?;
        if let Some(s) = self.registry.lock().get(d) {
            return Ok(s.clone());
        }
        self.submit(Work::EnsureDestination(d.clone())).await?;
        let state = Arc::new(DestState {
            destination: d.clone(),
            container: d.to_string(),
            removed: AtomicBool::new(false),
            cursor: tokio::sync::Mutex::new(CursorPosition::default()),
            sub_cursors: tokio::sync::Mutex::new(HashMap::new()),
        });
        Ok(self
            .registry
            .lock()
            .entry(d.clone())
            .or_insert(state)
            .clone())
    }

    /// Up to `max` messages of a queue (or of a subscription, with `sub`) in delivery order
    /// from `from`: one bounded, index-ordered query per priority, highest first.
    async fn page(
        &self,
        container: &str,
        sub: Option<i64>,
        from: impl Fn(u8) -> Option<i64>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let st = &self.common.st;
        let mut out = Vec::new();
        for p in (0..=MAX_PRIORITY).rev() {
            if out.len() >= max {
                break;
            }
            let Some(after) = from(p) else { continue };
            let limit = (max - out.len()).min(i64::MAX as usize) as i64;
            let rows = match sub {
                None => {
                    self.pool
                        .fetch(
                            &st.page,
                            &[
                                Arg::Str(container),
                                Arg::I64(i64::from(p)),
                                Arg::I64(after),
                                Arg::I64(limit),
                            ],
                        )
                        .await
                }
                Some(sub) => {
                    self.pool
                        .fetch(
                            &st.sub_page,
                            &[
                                Arg::I64(sub),
                                Arg::I64(i64::from(p)),
                                Arg::I64(after),
                                Arg::I64(limit),
                            ],
                        )
                        .await
                }
            }
            .map_err(|e| self.db("reading messages", e))?;
            for row in &rows {
                out.push(self.message(row)?);
            }
        }
        Ok(out)
    }

    async fn count_bytes(&self, sql: &crate::sql::Sql, args: &[Arg<'_>]) -> Result<(u64, u64)> {
        let row = self
            .pool
            .fetch_one(sql, args)
            .await
            .map_err(|e| self.db("counting", e))?;
        match row {
            Some(r) => {
                let n = r.i64(0).map_err(|e| self.db("reading a count", e))?;
                let b = r.i64(1).map_err(|e| self.db("reading a sum", e))?;
                Ok((n.max(0) as u64, b.max(0) as u64))
            }
            None => Ok((0, 0)),
        }
    }

    async fn message_key(&self, container: &str, id: &MessageId) -> Result<Option<OrderKey>> {
        let st = &self.common.st;
        let row = self
            .pool
            .fetch_one(
                &st.message_key,
                &[
                    Arg::Str(&id.producer),
                    Arg::I64(id.producer_seq as i64),
                    Arg::Str(container),
                ],
            )
            .await
            .map_err(|e| self.db("looking a message up", e))?;
        match row {
            Some(r) => {
                let seq = r.i64(0).map_err(|e| self.db("reading ID", e))?;
                let p = r.i64(1).map_err(|e| self.db("reading PRIORITY", e))?;
                Ok(Some(OrderKey {
                    priority: p.clamp(0, i64::from(MAX_PRIORITY)) as u8,
                    sequence: seq as u64,
                }))
            }
            None => Ok(None),
        }
    }

    async fn sub_id(&self, d: &Destination, key: &SubscriptionKey) -> Result<Option<i64>> {
        if let Some(id) = self.common.sub_ids.lock().get(&(d.clone(), key.clone())) {
            return Ok(Some(*id));
        }
        let st = &self.common.st;
        let c = d.to_string();
        let row = self
            .pool
            .fetch_one(
                &st.lookup_subscription,
                &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
            )
            .await
            .map_err(|e| self.db("looking a subscription up", e))?;
        match row {
            Some(r) => Ok(Some(
                r.i64(0).map_err(|e| self.db("reading LAST_ACKED_ID", e))?,
            )),
            None => Ok(None),
        }
    }

    async fn pending_for(
        &self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        let Some(sub) = self.sub_id(d, key).await? else {
            return Ok(false);
        };
        let Some(k) = self.message_key(&d.to_string(), id).await? else {
            return Ok(false);
        };
        let n = self
            .pool
            .scalar(
                &self.common.st.pending_exists,
                &[
                    Arg::I64(sub),
                    Arg::I64(i64::from(k.priority)),
                    Arg::I64(k.sequence as i64),
                ],
            )
            .await
            .map_err(|e| self.db("checking a pending message", e))?;
        Ok(n.unwrap_or(0) > 0)
    }

    async fn expired(&self, container: &str, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        Ok(self
            .expired_entries(container, now_ms, max)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    async fn expired_entries(
        &self,
        container: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<(OrderKey, MessageId)>> {
        let rows = self
            .pool
            .fetch(
                &self.common.st.expired,
                &[
                    Arg::Str(container),
                    Arg::I64(now_ms),
                    Arg::I64(max.min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(|e| self.db("finding expired messages", e))?;
        rows.iter()
            .map(|r| {
                let p = r.string(0).map_err(|e| self.db("reading MSGID_PROD", e))?;
                let s = r.i64(1).map_err(|e| self.db("reading MSGID_SEQ", e))?;
                let prio = r.i64(2).map_err(|e| self.db("reading PRIORITY", e))?;
                let seq = r.i64(3).map_err(|e| self.db("reading ID", e))?;
                Ok((
                    OrderKey {
                        priority: prio.clamp(0, i64::from(MAX_PRIORITY)) as u8,
                        sequence: seq as u64,
                    },
                    MessageId::new(p, s as u64),
                ))
            })
            .collect()
    }
}

#[async_trait]
impl PersistenceAdapter for JdbcStore {
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let (commits, changes) = self.commit_stats();
        vec![("database_commits", commits), ("database_changes", changes)]
    }

    fn kind(&self) -> &'static str {
        "jdbc"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        let s = &self.shared;
        s.check_open()?;
        let rows = s
            .pool
            .fetch(&s.common.st.destinations, &[])
            .await
            .map_err(|e| s.db("listing destinations", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let c = r.string(0).map_err(|e| s.db("reading CONTAINER", e))?;
            if let Some(d) = parse_container(&c) {
                out.push(d);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        self.shared.check_open()?;
        if !destination.is_queue() {
            return Err(StoreError::InvalidArgument(format!(
                "{destination} is not a queue"
            )));
        }
        let state = self.shared.open_destination(destination).await?;
        Ok(Arc::new(Handle {
            shared: self.shared.clone(),
            state,
        }))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        self.shared.check_open()?;
        if !destination.is_topic() {
            return Err(StoreError::InvalidArgument(format!(
                "{destination} is not a topic"
            )));
        }
        let state = self.shared.open_destination(destination).await?;
        Ok(Arc::new(Handle {
            shared: self.shared.clone(),
            state,
        }))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        check_destination(destination)?;
        let r = s.submit(Work::RemoveDestination(destination.clone())).await;
        if r.is_ok()
            && let Some(state) = s.registry.lock().remove(destination)
        {
            state.removed.store(true, Ordering::Release);
        }
        r.map(|_| ())
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.shared.check_open()?;
        self.shared.transactions.lock().begin(tx)
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        s.transactions.lock().check_enlist(tx)?;
        if store_api::tx_check::check_enlisted(&op)? {
            match &op {
                TxOp::QueueAck { destination, id } => {
                    if s.message_key(&destination.to_string(), id).await?.is_none() {
                        return Err(StoreError::NotFound(format!(
                            "message {id} in {destination}"
                        )));
                    }
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    if s.sub_id(destination, subscription).await?.is_none() {
                        return Err(StoreError::NotFound(format!(
                            "subscription {subscription} on {destination}"
                        )));
                    }
                    if !s.pending_for(destination, subscription, id).await? {
                        return Err(StoreError::NotFound(format!(
                            "message {id} is not pending for subscription {subscription} on {destination}"
                        )));
                    }
                }
                TxOp::Add(_) => {}
            }
        }
        match &op {
            TxOp::Add(m) => check_message(m, s.common.max_packet)?,
            TxOp::QueueAck { destination, .. } => check_destination(destination)?,
            TxOp::TopicAck {
                destination,
                subscription,
                ..
            } => {
                check_destination(destination)?;
                check_key(subscription)?;
            }
        }
        s.transactions.lock().enlist(tx, op)
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let id = TransactionId::Xa(xid.clone());
        let ops = s.transactions.lock().to_prepare(xid)?.to_vec();
        let row = match s.submit(Work::Prepare(xid.clone(), ops)).await? {
            Done::Id(row) => row,
            other => {
                return Err(StoreError::InvalidArgument(format!(
                    "prepare answered {other:?}"
                )));
            }
        };
        s.transactions.lock().mark_prepared(&id, row);
        Ok(())
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let (ops, row) = {
            let txs = s.transactions.lock();
            let t = txs.get(tx)?;
            (t.ops.clone(), t.prepared)
        };
        s.submit(Work::Commit(ops, row)).await?;
        // A concurrent rollback may have ended it meanwhile: nothing is left to forget then.
        let _ = s.transactions.lock().end(tx);
        Ok(())
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let row = s.transactions.lock().get(tx)?.prepared;
        if let Some(row) = row {
            s.submit(Work::RollbackPrepared(row)).await?;
        }
        let _ = s.transactions.lock().end(tx);
        Ok(())
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.shared.check_open()?;
        Ok(self.shared.transactions.lock().prepared())
    }

    async fn checkpoint(&self, _cleanup: bool) -> Result<()> {
        // Every commit is already durable in the database, and space is reclaimed as acks
        // arrive; there is nothing to do but check that the database answers.
        let s = &self.shared;
        s.check_open()?;
        s.pool
            .fetch(&s.common.st.sql("SELECT 1"), &[])
            .await
            .map_err(|e| s.db("checking the connection", e))?;
        Ok(())
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.shared.check_open()?;
        Ok(0)
    }

    async fn delete_all(&self) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        s.submit(Work::DeleteAll).await?;
        let removed: Vec<Arc<DestState>> = s.registry.lock().drain().map(|(_, v)| v).collect();
        for d in removed {
            d.removed.store(true, Ordering::Release);
        }
        s.transactions.lock().clear();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _ = s.submit(Work::Close).await;
        s.pool.close().await;
        Ok(())
    }
}

/// A queue or topic handle.
struct Handle {
    shared: Arc<Shared>,
    state: Arc<DestState>,
}

impl Handle {
    fn check(&self) -> Result<()> {
        self.shared.check_open()?;
        if self.state.removed.load(Ordering::Acquire) {
            return Err(StoreError::NotFound(format!(
                "destination {} was removed",
                self.state.destination
            )));
        }
        Ok(())
    }

    fn missing(&self, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!("message {id} in {}", self.state.destination))
    }

    fn no_subscription(&self, key: &SubscriptionKey) -> StoreError {
        StoreError::NotFound(format!("subscription {key} on {}", self.state.destination))
    }

    async fn add(&self, message: Message) -> Result<u64> {
        self.check()?;
        message.validate_for(&self.state.destination)?;
        check_message(&message, self.shared.common.max_packet)?;
        match self.shared.submit(Work::Add(message)).await? {
            Done::Id(seq) => Ok(seq as u64),
            other => Err(StoreError::InvalidArgument(format!(
                "add answered {other:?}"
            ))),
        }
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.check()?;
        let s = &self.shared;
        let row = s
            .pool
            .fetch_one(
                &s.common.st.get_message,
                &[
                    Arg::Str(&id.producer),
                    Arg::I64(id.producer_seq as i64),
                    Arg::Str(&self.state.container),
                ],
            )
            .await
            .map_err(|e| s.db("reading a message", e))?;
        match row {
            Some(r) => s.message(&r),
            None => Err(self.missing(id)),
        }
    }

    async fn purge(&self) -> Result<u64> {
        self.check()?;
        match self
            .shared
            .submit(Work::Purge(self.state.destination.clone()))
            .await?
        {
            Done::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn count_bytes(&self) -> Result<(u64, u64)> {
        self.check()?;
        let s = &self.shared;
        s.count_bytes(&s.common.st.count_bytes, &[Arg::Str(&self.state.container)])
            .await
    }

    async fn subscription_id(&self, key: &SubscriptionKey) -> Result<i64> {
        self.check()?;
        self.shared
            .sub_id(&self.state.destination, key)
            .await?
            .ok_or_else(|| self.no_subscription(key))
    }

    async fn browse_from(
        &self,
        sub: Option<i64>,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.shared
            .page(
                &self.state.container,
                sub,
                |p| match after {
                    None => Some(0),
                    Some(k) if p > k.priority => None,
                    Some(k) if p == k.priority => Some(k.sequence as i64),
                    Some(_) => Some(0),
                },
                max,
            )
            .await
    }

    async fn recover(
        &self,
        sub: Option<i64>,
        cursor: &mut CursorPosition,
        max: usize,
    ) -> Result<Vec<Message>> {
        let pos = *cursor;
        let batch = self
            .shared
            .page(
                &self.state.container,
                sub,
                |p| Some(pos.first_pending_at(p).sequence as i64 - 1),
                max,
            )
            .await?;
        for m in &batch {
            cursor.advance(OrderKey::of(m));
        }
        Ok(batch)
    }
}

#[async_trait]
impl QueueStore for Handle {
    fn destination(&self) -> &Destination {
        &self.state.destination
    }

    async fn add(&self, message: Message) -> Result<u64> {
        Handle::add(self, message).await
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        Handle::get(self, id).await
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.check()?;
        self.shared
            .submit(Work::QueueRemove(
                self.state.destination.clone(),
                id.clone(),
            ))
            .await
            .map(|_| ())
    }

    async fn purge(&self) -> Result<u64> {
        Handle::purge(self).await
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
        let key = self
            .shared
            .message_key(&self.state.container, id)
            .await?
            .ok_or_else(|| self.missing(id))?;
        let last = self.shared.common.last_sequence.load(Ordering::Acquire);
        self.state.cursor.lock().await.set_after(key, last);
        Ok(())
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.count_bytes().await?.0)
    }

    async fn bytes(&self) -> Result<u64> {
        Ok(self.count_bytes().await?.1)
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.check()?;
        self.shared
            .expired(&self.state.container, now_ms, max)
            .await
    }
}

#[async_trait]
impl TopicStore for Handle {
    fn destination(&self) -> &Destination {
        &self.state.destination
    }

    async fn add(&self, message: Message) -> Result<u64> {
        Handle::add(self, message).await
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        Handle::get(self, id).await
    }

    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        self.check()?;
        check_key(&info.key)?;
        if let Some(sel) = &info.selector {
            check_text("selector", sel)?;
        }
        self.shared
            .submit(Work::AddSubscription(
                self.state.destination.clone(),
                info,
                retroactive,
            ))
            .await
            .map(|_| ())
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.check()?;
        self.shared
            .submit(Work::DeleteSubscription(
                self.state.destination.clone(),
                key.clone(),
            ))
            .await?;
        self.state.sub_cursors.lock().await.remove(key);
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.check()?;
        let s = &self.shared;
        let rows = s
            .pool
            .fetch(
                &s.common.st.subscriptions,
                &[Arg::Str(&self.state.container)],
            )
            .await
            .map_err(|e| s.db("listing subscriptions", e))?;
        let mut out = rows
            .iter()
            .map(|r| {
                let client = r.string(0).map_err(|e| s.db("reading CLIENT_ID", e))?;
                let name = r.string(1).map_err(|e| s.db("reading SUB_NAME", e))?;
                let selector = r.opt_string(2).map_err(|e| s.db("reading SELECTOR", e))?;
                Ok(SubscriptionInfo::new(
                    SubscriptionKey::new(client, name),
                    selector,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.check()?;
        let s = &self.shared;
        let row = s
            .pool
            .fetch_one(
                &s.common.st.lookup_subscription,
                &[
                    Arg::Str(&self.state.container),
                    Arg::Str(&key.client_id),
                    Arg::Str(&key.name),
                ],
            )
            .await
            .map_err(|e| s.db("looking a subscription up", e))?;
        match row {
            Some(r) => Ok(Some(SubscriptionInfo::new(
                key.clone(),
                r.opt_string(1).map_err(|e| s.db("reading SELECTOR", e))?,
            ))),
            None => Ok(None),
        }
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.check()?;
        self.shared
            .submit(Work::TopicAck(
                self.state.destination.clone(),
                key.clone(),
                id.clone(),
            ))
            .await
            .map(|_| ())
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let sub = self.subscription_id(key).await?;
        self.browse_from(Some(sub), after, max).await
    }

    async fn recover_next(&self, key: &SubscriptionKey, max: usize) -> Result<Vec<Message>> {
        let sub = self.subscription_id(key).await?;
        let mut cursors = self.state.sub_cursors.lock().await;
        let cursor = cursors.entry(key.clone()).or_default();
        self.recover(Some(sub), cursor, max).await
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.subscription_id(key).await?;
        self.state.sub_cursors.lock().await.remove(key);
        Ok(())
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.subscription_id(key).await?;
        let d = &self.state.destination;
        if !self.shared.pending_for(d, key, id).await? {
            return Err(StoreError::NotFound(format!(
                "message {id} is not pending for subscription {key} on {d}"
            )));
        }
        let order = self
            .shared
            .message_key(&self.state.container, id)
            .await?
            .ok_or_else(|| self.missing(id))?;
        let last = self.shared.common.last_sequence.load(Ordering::Acquire);
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
        let sub = self.subscription_id(key).await?;
        let s = &self.shared;
        Ok(
            s.count_bytes(&s.common.st.sub_count_bytes, &[Arg::I64(sub)])
                .await?
                .0,
        )
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        let sub = self.subscription_id(key).await?;
        let s = &self.shared;
        Ok(
            s.count_bytes(&s.common.st.sub_count_bytes, &[Arg::I64(sub)])
                .await?
                .1,
        )
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.check()?;
        self.shared
            .submit(Work::TopicRemove(
                self.state.destination.clone(),
                id.clone(),
            ))
            .await
            .map(|_| ())
    }

    async fn purge(&self) -> Result<u64> {
        Handle::purge(self).await
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.count_bytes().await?.0)
    }

    async fn bytes(&self) -> Result<u64> {
        Ok(self.count_bytes().await?.1)
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.check()?;
        self.shared
            .expired(&self.state.container, now_ms, max)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::PREPARED_CONTAINER;

    #[test]
    fn containers_round_trip() {
        for d in [Destination::queue("a://b"), Destination::topic("t")] {
            assert_eq!(parse_container(&d.to_string()), Some(d));
        }
        assert_eq!(parse_container(PREPARED_CONTAINER), None);
    }
}
