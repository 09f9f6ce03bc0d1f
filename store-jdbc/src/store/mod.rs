//! The adapter: opening the store (schema, recovery, the writer task) and the state its
//! handles share. Reads go to the pool ([`reads`]), every change to the writer task; the
//! contract's adapter is in [`adapter`], the queue and topic handles in [`handle`].

mod adapter;
mod handle;
mod reads;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use store_api::codec::{self, Reader};
use store_api::{
    CursorPosition, Destination, OpenTransactions, Result, StoreError, SubscriptionKey,
};
use tokio::sync::{mpsc, oneshot};

use crate::activemq::OwState;
use crate::config::{JdbcConfig, MessageFormat};
use crate::error::JdbcError;
use crate::sql::{Arg, Dialect, Options, Pool, redact};
use crate::statements::Statements;
use crate::writer::{BULK_ROWS, Common, Done, Job, Work, WriterTask};

/// Per-destination state this process keeps: the batch cursors. A handle outliving
/// `remove_destination` sees `removed` and fails with `NotFound`.
#[derive(Debug)]
pub(crate) struct DestState {
    destination: Destination,
    container: String,
    removed: AtomicBool,
    cursor: tokio::sync::Mutex<CursorPosition>,
    sub_cursors: tokio::sync::Mutex<HashMap<SubscriptionKey, CursorPosition>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) common: Arc<Common>,
    pub(crate) pool: Pool,
    writer: mpsc::UnboundedSender<Job>,
    closed: AtomicBool,
    registry: Mutex<HashMap<Destination, Arc<DestState>>>,
    /// Open transactions; a prepared one records the row holding it.
    transactions: Mutex<OpenTransactions<i64>>,
}

/// The JDBC message store.
#[derive(Debug, Clone)]
pub struct JdbcStore {
    pub(crate) shared: Arc<Shared>,
}

fn db(dialect: Dialect, doing: &str, e: sqlx::Error) -> StoreError {
    JdbcError::Database {
        dialect: dialect.name(),
        doing: doing.to_string(),
        source: e,
    }
    .into()
}

impl JdbcStore {
    /// Connects, creates the tables when configured to, finishes work a crash interrupted, and
    /// starts the writer. Must run inside a tokio runtime.
    pub async fn open(config: JdbcConfig) -> Result<JdbcStore> {
        let options = Options::parse(&config.url)?;
        let dialect = options.dialect();
        let st = Statements::new(dialect, &config.table_prefix, config.message_format)?;
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
        if config.message_format == MessageFormat::Native {
            conn.execute(&st.ensure_sequence_row, &[])
                .await
                .map_err(|e| db(dialect, "creating the sequence row", e))?;
        }
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
            ow: OwState::default(),
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
        if config.message_format == MessageFormat::Native {
            store.load_prepared().await?;
        }
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

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.shared.common.st.dialect
    }

    /// Drops this store's tables. For tests and throwaway schemas; the store is closed first.
    pub async fn drop_tables(config: &JdbcConfig) -> Result<()> {
        let options = Options::parse(&config.url)?;
        let st = Statements::new(
            options.dialect(),
            &config.table_prefix,
            config.message_format,
        )?;
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
    if st.format == MessageFormat::OpenWire {
        // ActiveMQ's schema exactly: no fencing column (the lease locker is refused).
        return Ok(());
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
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) async fn submit(&self, work: Work) -> Result<Done> {
        self.enqueue(work)?.await
    }

    /// Queues `work` for the writer, which applies jobs in the order they were queued, and
    /// returns what resolves once it is committed.
    pub(crate) fn enqueue(
        &self,
        work: Work,
    ) -> Result<impl std::future::Future<Output = Result<Done>> + Send + 'static> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { work, reply })
            .map_err(|_| StoreError::Closed)?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    pub(crate) fn db(&self, doing: &str, e: sqlx::Error) -> StoreError {
        db(self.common.st.dialect, doing, e)
    }
}
