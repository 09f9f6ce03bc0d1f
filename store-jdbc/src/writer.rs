//! The one writer: a task that owns a dedicated connection and applies every change, so that
//! database commits happen in sequence order (no reader can ever see sequence N+1 committed
//! while N is not: ActiveMQ's AMQ-5266 "stuck messages" cannot happen) and concurrent callers
//! share one database transaction (group commit).
//!
//! Callers send a [`Job`] and wait for its reply. The task takes whatever jobs are queued, up to
//! `max_batch`, runs them in one transaction and answers each after the commit. A job that
//! fails on its own terms (a duplicate add, an ack of a message that is gone) changes nothing
//! and fails alone; a database error fails the batch, whose jobs are then retried one per
//! transaction so that only the job at fault fails. Jobs that touch many rows (purge,
//! subscription and destination removal) run alone, in bounded transactions of
//! [`BULK_ROWS`] rows, never one statement over a whole table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use parking_lot::Mutex;
use store_api::codec::{self, Writer};
use store_api::{
    Destination, Message, MessageId, StoreError, SubscriptionInfo, SubscriptionKey, TxOp, Xid,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::error::JdbcError;
use crate::fence::Fence;
use crate::sql::{Arg, Conn, Options};
use crate::statements::Statements;

/// Rows one bulk transaction touches at most.
pub const BULK_ROWS: i64 = 1000;

/// What the store and its writer share.
#[derive(Debug)]
pub(crate) struct Common {
    pub st: Statements,
    /// The highest sequence committed.
    pub last_sequence: AtomicU64,
    /// Subscription ids (`ACTIVEMQ_ACKS.LAST_ACKED_ID`) known to this process.
    pub sub_ids: Mutex<HashMap<(Destination, SubscriptionKey), i64>>,
    pub fence: Option<Fence>,
    /// Statements on message rows run by journaled JDBC checkpoints.
    pub message_statements: AtomicU64,
    /// Database transactions committed by the writer, and the changes they carried.
    pub commits: AtomicU64,
    pub changes: AtomicU64,
    /// The largest statement the server takes (MySQL's `max_allowed_packet`), if limited.
    pub max_packet: Option<u64>,
}

/// A change to make.
#[derive(Debug)]
pub(crate) enum Work {
    EnsureDestination(Destination),
    Add(Message),
    QueueRemove(Destination, MessageId),
    TopicAck(Destination, SubscriptionKey, MessageId),
    TopicRemove(Destination, MessageId),
    AddSubscription(Destination, SubscriptionInfo, bool),
    Commit(Vec<TxOp>, Option<i64>),
    Prepare(Xid, Vec<TxOp>),
    RollbackPrepared(i64),
    // Bulk work, run alone.
    Purge(Destination),
    DeleteSubscription(Destination, SubscriptionKey),
    RemoveDestination(Destination),
    DeleteAll,
    Recover,
    Checkpoint(Box<CheckpointBatch>),
    Close,
}

/// What the journaled JDBC engine moves into the database at a checkpoint, applied in one
/// transaction and idempotently: an add already present and an ack of a row already gone are
/// both fine, so a replayed journal can be applied again.
#[derive(Debug, Default)]
pub struct CheckpointBatch {
    /// Messages with the sequence they were given; for a topic message, the subscriptions it
    /// is still pending for.
    pub adds: Vec<(Message, Vec<SubscriptionKey>)>,
    pub queue_acks: Vec<(Destination, MessageId)>,
    pub topic_acks: Vec<(Destination, SubscriptionKey, MessageId)>,
    /// The journal position the database reflects once this commits.
    pub mark: i64,
    /// Sequences below this were handed out by the journaled engine: the database's own
    /// (subscription ids, XA commits) continue above.
    pub next_sequence: i64,
}

impl Work {
    fn is_bulk(&self) -> bool {
        matches!(
            self,
            Work::Purge(_)
                | Work::DeleteSubscription(..)
                | Work::RemoveDestination(_)
                | Work::DeleteAll
                | Work::Recover
                | Work::Checkpoint(_)
                | Work::Close
        )
    }
}

/// What a job gives back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Done {
    Unit,
    /// A sequence (an add) or a row id (a prepared transaction).
    Id(i64),
    Count(u64),
}

pub(crate) struct Job {
    pub work: Work,
    pub reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// A job's outcome inside a transaction: `Err` is a database failure that aborts the
/// transaction; `Ok(Err)` is the job's own failure, which left nothing behind.
type Step = Result<Result<Done, StoreError>, sqlx::Error>;

pub(crate) struct WriterTask {
    common: Arc<Common>,
    options: Options,
    conn: Option<Conn>,
    /// Whether `conn` has had the fence's idle-transaction limit applied.
    conn_limited: bool,
    next_id: i64,
    /// Sequences below this are reserved in the sequence row (committed).
    reserved: i64,
    /// A reservation made by the open transaction, kept if it commits.
    reserved_in_tx: Option<i64>,
    max_batch: usize,
    /// Multi-row statements by row count.
    multi: HashMap<(bool, usize), crate::sql::Sql>,
}

/// Rows one multi-row insert carries at most, and the bytes after which a chunk closes (a
/// MySQL statement must fit `max_allowed_packet`).
const MULTI_ROWS: usize = 64;
const MULTI_BYTES: usize = 1024 * 1024;

/// Sequences reserved per update of the sequence row.
const RESERVE: i64 = 10_000;

fn db(st: &Statements, doing: &str, e: sqlx::Error) -> StoreError {
    JdbcError::Database {
        dialect: st.dialect.name(),
        doing: doing.to_string(),
        source: e,
    }
    .into()
}

fn seq_arg(id: &MessageId) -> Arg<'_> {
    // Producer sequences are u64; the column is a signed BIGINT, so the bits are kept as they
    // are (equality is all the column is used for).
    Arg::I64(id.producer_seq as i64)
}

impl WriterTask {
    pub(crate) fn new(
        common: Arc<Common>,
        options: Options,
        conn: Conn,
        next_id: i64,
        max_batch: usize,
    ) -> Self {
        WriterTask {
            common,
            options,
            conn: Some(conn),
            conn_limited: false,
            next_id,
            reserved: next_id,
            reserved_in_tx: None,
            max_batch: max_batch.max(1),
            multi: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut stash: Option<Job> = None;
        loop {
            let first = match stash.take() {
                Some(j) => j,
                None => match rx.recv().await {
                    Some(j) => j,
                    None => break,
                },
            };
            if first.work.is_bulk() {
                let closing = matches!(first.work, Work::Close);
                let result = self.bulk(&first.work).await;
                let _ = first.reply.send(result);
                if closing {
                    break;
                }
                continue;
            }
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(j) if j.work.is_bulk() => {
                        stash = Some(j);
                        break;
                    }
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.batch(batch).await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Runs jobs in one transaction and answers each.
    async fn batch(&mut self, batch: Vec<Job>) {
        let works: Vec<&Work> = batch.iter().map(|j| &j.work).collect();
        match self.transaction(&works).await {
            Ok(results) => {
                for (job, r) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(r);
                }
            }
            Err(e) if batch.len() > 1 && is_statement_error(&e) => {
                // One job's statement failed the whole transaction: run each alone so that
                // only that job fails.
                for job in batch {
                    let r = match self.transaction(&[&job.work]).await {
                        Ok(mut r) => r.pop().unwrap_or(Ok(Done::Unit)),
                        Err(e) => Err(e),
                    };
                    let _ = job.reply.send(r);
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.reply.send(Err(e));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(same_error(&e)));
                }
            }
        }
    }

    /// One database transaction over `works`: the per-job results, or the error that rolled it
    /// all back.
    async fn transaction(
        &mut self,
        works: &[&Work],
    ) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        self.check_lock_held()?;
        let mut conn = self.begin().await?;
        let outcome: Result<Vec<Result<Done, StoreError>>, StoreError> = async {
            self.check_epoch(&mut conn).await?;
            let mut results: Vec<Option<Result<Done, StoreError>>> =
                works.iter().map(|_| None).collect();
            // Queue adds of the batch go in multi-row inserts; any duplicate among them sends
            // them back through the one-by-one path below, which reports it exactly.
            let adds: Vec<usize> = works
                .iter()
                .enumerate()
                .filter(|(_, w)| matches!(w, Work::Add(m) if m.destination.is_queue()))
                .map(|(i, _)| i)
                .collect();
            if adds.len() >= 2 {
                let msgs: Vec<&Message> = adds
                    .iter()
                    .filter_map(|i| match works[*i] {
                        Work::Add(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                let ids = self
                    .add_many(&mut conn, &msgs)
                    .await
                    .map_err(|e| db(st, "writing", e))?;
                if let Some(ids) = ids {
                    for (i, id) in adds.iter().zip(ids) {
                        results[*i] = Some(Ok(Done::Id(id)));
                    }
                }
            }
            for (i, w) in works.iter().enumerate() {
                if results[i].is_none() {
                    let r = self
                        .apply(&mut conn, w)
                        .await
                        .map_err(|e| db(st, "writing", e))?;
                    results[i] = Some(r);
                }
            }
            let results: Vec<Result<Done, StoreError>> = results
                .into_iter()
                .map(|r| r.unwrap_or(Ok(Done::Unit)))
                .collect();
            conn.raw("COMMIT")
                .await
                .map_err(|e| db(st, "committing", e))?;
            Ok(results)
        }
        .await;
        self.settle(outcome.is_ok());
        match outcome {
            Ok(results) => {
                self.conn = Some(conn);
                self.common.commits.fetch_add(1, Ordering::Relaxed);
                self.common
                    .changes
                    .fetch_add(works.len() as u64, Ordering::Relaxed);
                self.common
                    .last_sequence
                    .fetch_max((self.next_id - 1).max(0) as u64, Ordering::AcqRel);
                Ok(results)
            }
            Err(e) => {
                // Roll back; a connection that cannot even do that is dropped and reopened
                // for the next batch.
                if conn.raw("ROLLBACK").await.is_ok() && is_statement_error(&e) {
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }

    fn check_lock_held(&self) -> Result<(), StoreError> {
        match &self.common.fence {
            Some(f) if !f.is_held() => Err(JdbcError::LockLost(
                "this broker no longer holds the master lock; writes are refused".into(),
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// Inside the transaction: the lock row still carries this broker's epoch. The row is read
    /// with a share lock, so a rival's take-over (an update of the row) waits for this
    /// transaction, and a transaction that starts after it sees the new epoch and fails.
    async fn check_epoch(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let Some(fence) = &self.common.fence else {
            return Ok(());
        };
        let Some(held) = fence.epoch() else {
            return Ok(());
        };
        let st = &self.common.st;
        let found = conn
            .scalar(&st.lock_epoch_check, &[])
            .await
            .map_err(|e| db(st, "checking the fencing epoch", e))?;
        if found != Some(held) {
            fence.revoke();
            return Err(JdbcError::Fenced { held, found }.into());
        }
        Ok(())
    }

    /// The writer's connection, opened again if the last one was dropped. Before its first
    /// transaction it gets the fence's idle-transaction limit, so that a master frozen inside a
    /// transaction (which share-locks the lock row) cannot hold off the slave past its lease.
    async fn connection(&mut self) -> Result<Conn, StoreError> {
        let st = &self.common.st;
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                self.conn_limited = false;
                self.options
                    .connect()
                    .await
                    .map_err(|e| db(st, "reconnecting the writer", e))?
            }
        };
        if !self.conn_limited {
            if let Some(limit) = self
                .common
                .fence
                .as_ref()
                .and_then(|f| f.idle_transaction_limit())
            {
                let applied = conn
                    .limit_idle_transactions(limit)
                    .await
                    .map_err(|e| db(st, "limiting idle transactions", e))?;
                if !applied {
                    warn!(
                        target: "store",
                        "this {} server cannot end idle transactions: a master frozen inside one holds off the slave until the server drops its connection",
                        st.dialect.name()
                    );
                }
            }
            self.conn_limited = true;
        }
        Ok(conn)
    }

    /// A connection with a transaction begun on it. A kept connection that the server closed
    /// while it sat idle (its idle timeout — eight hours by default on MySQL and MariaDB — a
    /// restart, a DBA's `KILL`, a network blip) fails at `BEGIN`, before anything of the batch
    /// was sent; it is replaced once, so that the first write after such a gap does not fail
    /// while the database is answering.
    async fn begin(&mut self) -> Result<Conn, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let kept = self.conn.is_some();
        let mut conn = self.connection().await?;
        match conn.raw(st.begin).await {
            Ok(()) => return Ok(conn),
            Err(e) if !kept || matches!(e, sqlx::Error::Database(_)) => {
                return Err(db(st, "beginning a transaction", e));
            }
            Err(e) => info!(
                target: "store",
                "the writer's {} connection was closed while idle ({e}); reconnecting",
                st.dialect.name()
            ),
        }
        drop(conn);
        let mut conn = self.connection().await?;
        conn.raw(st.begin)
            .await
            .map_err(|e| db(st, "beginning a transaction", e))?;
        Ok(conn)
    }

    /// The next sequence, reserving a range in the sequence row (inside the open transaction)
    /// when the reserved one runs out.
    async fn reserve(&mut self, conn: &mut Conn) -> Result<i64, sqlx::Error> {
        let id = self.next_id;
        if id >= self.reserved_in_tx.unwrap_or(self.reserved) {
            let upto = id + RESERVE;
            conn.execute(&self.common.st.reserve_sequences, &[Arg::I64(upto)])
                .await?;
            self.reserved_in_tx = Some(upto);
        }
        Ok(id)
    }

    async fn take_id(&mut self, conn: &mut Conn) -> Result<i64, sqlx::Error> {
        let id = self.reserve(conn).await?;
        self.next_id += 1;
        Ok(id)
    }

    /// After a commit: the transaction's reservation holds. After a rollback it does not.
    fn settle(&mut self, committed: bool) {
        if let Some(r) = self.reserved_in_tx.take()
            && committed
        {
            self.reserved = r;
        }
    }

    /// Queue adds in multi-row inserts inside a savepoint: their sequences, or None (and
    /// nothing written) when any of them is a duplicate.
    async fn add_many(
        &mut self,
        conn: &mut Conn,
        msgs: &[&Message],
    ) -> Result<Option<Vec<i64>>, sqlx::Error> {
        let mut rows = Vec::with_capacity(msgs.len());
        for m in msgs {
            let id = self.take_id(conn).await?;
            let mut m = Message::clone(m);
            m.sequence = id as u64;
            rows.push(m);
        }
        let mut ensured: Vec<&Destination> = Vec::new();
        conn.raw("SAVEPOINT many").await?;
        for m in &rows {
            if !ensured.contains(&&m.destination) {
                ensure_destination(conn, &self.common.st, &m.destination).await?;
                ensured.push(&m.destination);
            }
        }
        let refs: Vec<&Message> = rows.iter().collect();
        let (inserted, _) = self.insert_rows(conn, &refs).await?;
        if inserted != rows.len() as u64 {
            conn.raw("ROLLBACK TO SAVEPOINT many").await?;
            conn.raw("RELEASE SAVEPOINT many").await?;
            return Ok(None);
        }
        conn.raw("RELEASE SAVEPOINT many").await?;
        Ok(Some(rows.iter().map(|m| m.sequence as i64).collect()))
    }

    /// Inserts messages with their sequences as IDs, in multi-row statements; returns the rows
    /// inserted and the statements run.
    async fn insert_rows(
        &mut self,
        conn: &mut Conn,
        rows: &[&Message],
    ) -> Result<(u64, u64), sqlx::Error> {
        let mut inserted = 0;
        let mut statements = 0;
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 0;
            let mut encoded = Vec::new();
            while end < rows.len()
                && end - start < MULTI_ROWS
                && (bytes < MULTI_BYTES || end == start)
            {
                let e = codec::encode(rows[end]);
                bytes += e.len();
                encoded.push((rows[end].destination.to_string(), e));
                end += 1;
            }
            let chunk = &rows[start..end];
            let sql = self
                .multi
                .entry((false, chunk.len()))
                .or_insert_with(|| self.common.st.insert_messages(chunk.len()))
                .clone();
            let mut args = Vec::with_capacity(chunk.len() * 7);
            for (m, (c, e)) in chunk.iter().zip(&encoded) {
                args.extend([
                    Arg::I64(m.sequence as i64),
                    Arg::Str(&m.id.producer),
                    seq_arg(&m.id),
                    Arg::Str(c),
                    Arg::I64(m.expiration),
                    Arg::I64(i64::from(m.priority)),
                    Arg::Bytes(e),
                ]);
            }
            inserted += conn.execute(&sql, &args).await?;
            statements += 1;
            start = end;
        }
        Ok((inserted, statements))
    }

    /// Pending rows `(sub, priority, message)` in multi-row statements; returns the statements.
    async fn insert_pendings(
        &mut self,
        conn: &mut Conn,
        rows: &[(i64, i64, i64)],
    ) -> Result<u64, sqlx::Error> {
        let mut statements = 0;
        for chunk in rows.chunks(MULTI_ROWS * 4) {
            let sql = self
                .multi
                .entry((true, chunk.len()))
                .or_insert_with(|| self.common.st.insert_pendings(chunk.len()))
                .clone();
            let args: Vec<Arg<'_>> = chunk
                .iter()
                .flat_map(|(s, p, m)| [Arg::I64(*s), Arg::I64(*p), Arg::I64(*m)])
                .collect();
            conn.execute(&sql, &args).await?;
            statements += 1;
        }
        Ok(statements)
    }

    async fn apply(&mut self, conn: &mut Conn, work: &Work) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        match work {
            Work::EnsureDestination(d) => {
                ensure_destination(conn, st, d).await?;
                Ok(Ok(Done::Unit))
            }
            Work::Add(m) => self.add(conn, m.clone()).await,
            Work::QueueRemove(d, id) => queue_remove(conn, st, d, id).await,
            Work::TopicAck(d, key, id) => self.topic_ack(conn, d, key, id).await,
            Work::TopicRemove(d, id) => {
                let c = d.to_string();
                let Some(row) = conn
                    .fetch_one(
                        &st.message_key,
                        &[Arg::Str(&id.producer), seq_arg(id), Arg::Str(&c)],
                    )
                    .await?
                else {
                    return Ok(Err(missing(d, id)));
                };
                let mid = row.i64(0)?;
                conn.execute(&st.delete_pending_of_message, &[Arg::I64(mid)])
                    .await?;
                conn.execute(&st.delete_message_by_id, &[Arg::I64(mid)])
                    .await?;
                Ok(Ok(Done::Unit))
            }
            Work::AddSubscription(d, info, retroactive) => {
                let c = d.to_string();
                let sub_id = self.take_id(conn).await?;
                let n = conn
                    .execute(
                        &st.insert_subscription,
                        &[
                            Arg::Str(&c),
                            Arg::Str(&info.key.client_id),
                            Arg::Str(&info.key.name),
                            Arg::OptStr(info.selector.as_deref()),
                            Arg::I64(sub_id),
                            Arg::Str(&c),
                        ],
                    )
                    .await?;
                if n == 0 {
                    return Ok(Err(StoreError::Duplicate(format!(
                        "subscription {} on {d}",
                        info.key
                    ))));
                }
                if *retroactive {
                    conn.execute(
                        &st.insert_pending_retroactive,
                        &[Arg::I64(sub_id), Arg::Str(&c)],
                    )
                    .await?;
                }
                Ok(Ok(Done::Unit))
            }
            Work::Commit(ops, prepared_row) => {
                conn.raw("SAVEPOINT tx").await?;
                let r = self.apply_ops(conn, ops).await?;
                if r.is_err() {
                    conn.raw("ROLLBACK TO SAVEPOINT tx").await?;
                } else if let Some(row) = prepared_row {
                    conn.execute(&st.delete_message_by_id, &[Arg::I64(*row)])
                        .await?;
                }
                conn.raw("RELEASE SAVEPOINT tx").await?;
                Ok(r.map(|()| Done::Unit))
            }
            Work::Prepare(xid, ops) => {
                // Applying the operations and rolling them back is the check that each would
                // succeed now, with the same code that will apply them at commit.
                conn.raw("SAVEPOINT tx").await?;
                let r = self.apply_ops(conn, ops).await?;
                conn.raw("ROLLBACK TO SAVEPOINT tx").await?;
                conn.raw("RELEASE SAVEPOINT tx").await?;
                if let Err(e) = r {
                    return Ok(Err(e));
                }
                let row = self.take_id(conn).await?;
                let id = store_api::TransactionId::Xa(xid.clone());
                let mut w = Writer::new();
                codec::write_transaction_id(&mut w, &id);
                w.varint(ops.len() as u64);
                for op in ops {
                    codec::write_tx_op(&mut w, op);
                }
                let mut xid_bytes = Writer::new();
                codec::write_transaction_id(&mut xid_bytes, &id);
                let xid_text = format!(
                    "+{}",
                    base64::engine::general_purpose::STANDARD.encode(xid_bytes.into_inner())
                );
                conn.execute(
                    &st.insert_prepared,
                    &[
                        Arg::I64(row),
                        Arg::Bytes(&w.into_inner()),
                        Arg::Str(&xid_text),
                    ],
                )
                .await?;
                Ok(Ok(Done::Id(row)))
            }
            Work::RollbackPrepared(row) => {
                conn.execute(&st.delete_message_by_id, &[Arg::I64(*row)])
                    .await?;
                Ok(Ok(Done::Unit))
            }
            Work::Purge(_)
            | Work::DeleteSubscription(..)
            | Work::RemoveDestination(_)
            | Work::DeleteAll
            | Work::Recover
            | Work::Checkpoint(_)
            | Work::Close => Ok(Err(StoreError::InvalidArgument(
                "bulk work inside a batch".into(),
            ))),
        }
    }

    async fn apply_ops(
        &mut self,
        conn: &mut Conn,
        ops: &[TxOp],
    ) -> Result<Result<(), StoreError>, sqlx::Error> {
        let common = self.common.clone();
        let st = &common.st;
        for op in ops {
            let r = match op {
                TxOp::Add(m) => {
                    ensure_destination(conn, st, &m.destination).await?;
                    self.add(conn, m.clone()).await?
                }
                TxOp::QueueAck { destination, id } => {
                    queue_remove(conn, st, destination, id).await?
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => self.topic_ack(conn, destination, subscription, id).await?,
            };
            if let Err(e) = r {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn add(&mut self, conn: &mut Conn, mut m: Message) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        let id = self.reserve(conn).await?;
        m.sequence = id as u64;
        let (n, _) = self.insert_rows(conn, &[&m]).await?;
        let c = m.destination.to_string();
        if n == 0 {
            return Ok(Err(StoreError::Duplicate(format!(
                "message {} in {}",
                m.id, m.destination
            ))));
        }
        self.next_id += 1;
        if m.destination.is_topic() {
            let subs = conn
                .execute(
                    &st.insert_pending_for_subs,
                    &[Arg::I64(i64::from(m.priority)), Arg::I64(id), Arg::Str(&c)],
                )
                .await?;
            if subs == 0 {
                // No subscription needs it: a topic keeps nothing for nobody.
                conn.execute(&st.delete_message_by_id, &[Arg::I64(id)])
                    .await?;
            }
        }
        Ok(Ok(Done::Id(id)))
    }

    async fn topic_ack(
        &mut self,
        conn: &mut Conn,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        let Some(sub_id) = sub_id(conn, &common, d, key).await? else {
            return Ok(Err(StoreError::NotFound(format!(
                "subscription {key} on {d}"
            ))));
        };
        let c = d.to_string();
        let not_pending = || {
            StoreError::NotFound(format!(
                "message {id} is not pending for subscription {key} on {d}"
            ))
        };
        let Some(row) = conn
            .fetch_one(
                &st.message_key,
                &[Arg::Str(&id.producer), seq_arg(id), Arg::Str(&c)],
            )
            .await?
        else {
            return Ok(Err(not_pending()));
        };
        let (mid, priority) = (row.i64(0)?, row.i64(1)?);
        let n = conn
            .execute(
                &st.delete_pending,
                &[Arg::I64(sub_id), Arg::I64(priority), Arg::I64(mid)],
            )
            .await?;
        if n == 0 {
            return Ok(Err(not_pending()));
        }
        conn.execute(&st.delete_if_unreferenced, &[Arg::I64(mid), Arg::I64(mid)])
            .await?;
        Ok(Ok(Done::Unit))
    }

    /// Work that runs alone, in its own bounded transactions.
    async fn bulk(&mut self, work: &Work) -> Result<Done, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        match work {
            Work::Close => Ok(Done::Unit),
            Work::Recover => {
                // Finish subscription deletions a crash interrupted.
                let mut conn = self.begin_tx().await?;
                let r = async {
                    let rows = conn.fetch(&st.deleting_subscriptions, &[]).await?;
                    rows.iter()
                        .map(|r| Ok((r.string(0)?, r.i64(1)?)))
                        .collect::<Result<Vec<_>, sqlx::Error>>()
                }
                .await;
                for (c, sub) in self.end_tx(conn, r).await? {
                    self.drain_subscription(&c, sub).await?;
                }
                Ok(Done::Unit)
            }
            Work::Purge(d) => self.purge(d).await.map(Done::Count),
            Work::Checkpoint(batch) => self.checkpoint(batch).await.map(Done::Count),
            Work::DeleteSubscription(d, key) => {
                self.delete_subscription(d, key).await?;
                Ok(Done::Unit)
            }
            Work::RemoveDestination(d) => {
                let c = d.to_string();
                let mut conn = self.begin_tx().await?;
                let r = conn
                    .scalar(
                        &st.marker_exists,
                        &[Arg::Str(&c), Arg::Str(&c), Arg::Str(&c)],
                    )
                    .await;
                if self.end_tx(conn, r).await?.unwrap_or(0) == 0 {
                    return Err(StoreError::NotFound(format!("destination {d}")));
                }
                self.remove_destination(d).await?;
                Ok(Done::Unit)
            }
            Work::DeleteAll => {
                let mut conn = self.begin_tx().await?;
                let r = async {
                    let rows = conn.fetch(&st.destinations, &[]).await?;
                    rows.iter()
                        .map(|r| r.string(0))
                        .collect::<Result<Vec<_>, _>>()
                }
                .await;
                for c in self.end_tx(conn, r).await? {
                    if let Some(d) = crate::columns::parse_container(&c) {
                        self.remove_destination(&d).await?;
                    }
                }
                // Prepared transactions: a handful of rows.
                loop {
                    let mut conn = self.begin_tx().await?;
                    let r = async {
                        let rows = conn
                            .fetch(&st.prepared_rows, &[Arg::I64(0), Arg::I64(BULK_ROWS)])
                            .await?;
                        for r in &rows {
                            conn.execute(&st.delete_message_by_id, &[Arg::I64(r.i64(0)?)])
                                .await?;
                        }
                        Ok(rows.len())
                    }
                    .await;
                    if self.end_tx(conn, r).await? == 0 {
                        break;
                    }
                }
                common.sub_ids.lock().clear();
                Ok(Done::Unit)
            }
            _ => Err(StoreError::InvalidArgument("not bulk work".into())),
        }
    }

    /// Applies a journaled JDBC checkpoint in one transaction; returns the statements on
    /// message rows it ran.
    async fn checkpoint(&mut self, b: &CheckpointBatch) -> Result<u64, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let mut conn = self.begin_tx().await?;
        let mut max_seq = 0i64;
        let r = async {
            let mut stmts = 0u64;
            let mut ensured: Vec<&Destination> = Vec::new();
            // Acks first: an id acked and added again within the cycle is a new message.
            for (d, id) in &b.queue_acks {
                queue_remove(&mut conn, st, d, id).await?.ok();
                stmts += 1;
            }
            for (d, key, id) in &b.topic_acks {
                // One already applied (a replay) is NotFound here, which is fine.
                self.topic_ack(&mut conn, d, key, id).await?.ok();
                stmts += 3;
            }
            for (m, _) in &b.adds {
                let d = &m.destination;
                if !ensured.contains(&d) {
                    ensure_destination(&mut conn, st, d).await?;
                    ensured.push(d);
                }
                max_seq = max_seq.max(m.sequence as i64);
            }
            // Multi-row inserts; if any row was already there (a replay), undo and fall back
            // to one row at a time, which skips exactly those.
            let mut done = b.adds.is_empty();
            if !done {
                conn.raw("SAVEPOINT cp").await?;
                let msgs: Vec<&Message> = b.adds.iter().map(|(m, _)| m).collect();
                let (n, s1) = self.insert_rows(&mut conn, &msgs).await?;
                if n == msgs.len() as u64 {
                    let mut rows = Vec::new();
                    for (m, subs) in &b.adds {
                        for key in subs {
                            if let Some(sub) =
                                sub_id(&mut conn, &common, &m.destination, key).await?
                            {
                                rows.push((sub, i64::from(m.priority), m.sequence as i64));
                            }
                        }
                    }
                    let s2 = self.insert_pendings(&mut conn, &rows).await?;
                    stmts += s1 + s2;
                    conn.raw("RELEASE SAVEPOINT cp").await?;
                    done = true;
                } else {
                    conn.raw("ROLLBACK TO SAVEPOINT cp").await?;
                    conn.raw("RELEASE SAVEPOINT cp").await?;
                }
            }
            for (m, subs) in b.adds.iter().filter(|_| !done) {
                let (n, _) = self.insert_rows(&mut conn, &[m]).await?;
                stmts += 1;
                if n == 0 || !m.destination.is_topic() {
                    continue; // already there: a replay
                }
                let mut rows = Vec::new();
                for key in subs {
                    if let Some(sub) = sub_id(&mut conn, &common, &m.destination, key).await? {
                        rows.push((sub, i64::from(m.priority), m.sequence as i64));
                    }
                }
                stmts += self.insert_pendings(&mut conn, &rows).await?;
            }
            conn.execute(&st.ensure_mark_row, &[]).await?;
            conn.execute(&st.set_mark, &[Arg::I64(b.mark)]).await?;
            self.next_id = self.next_id.max(max_seq + 1).max(b.next_sequence);
            self.reserve(&mut conn).await?;
            Ok(stmts)
        }
        .await;
        let stmts = self.end_tx(conn, r).await?;
        common
            .message_statements
            .fetch_add(stmts, Ordering::Relaxed);
        self.common
            .last_sequence
            .fetch_max((self.next_id - 1).max(0) as u64, Ordering::AcqRel);
        Ok(stmts)
    }

    /// Starts a transaction of its own (with the lock checks) for bulk work.
    async fn begin_tx(&mut self) -> Result<Conn, StoreError> {
        self.check_lock_held()?;
        let mut conn = self.begin().await?;
        match self.check_epoch(&mut conn).await {
            Ok(()) => Ok(conn),
            Err(e) => {
                if conn.raw("ROLLBACK").await.is_ok() {
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }

    /// Commits the transaction [`WriterTask::begin_tx`] started when `r` is Ok, rolls it back
    /// otherwise, and keeps the connection if it still works.
    async fn end_tx<T>(
        &mut self,
        mut conn: Conn,
        r: Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let r = match r {
            Ok(v) => conn
                .raw("COMMIT")
                .await
                .map(|()| v)
                .map_err(|e| db(st, "committing", e)),
            Err(e) => Err(db(st, "writing", e)),
        };
        self.settle(r.is_ok());
        match r {
            Ok(v) => {
                self.conn = Some(conn);
                Ok(v)
            }
            Err(e) => {
                if conn.raw("ROLLBACK").await.is_ok() {
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }

    /// Deletes a destination's messages in bounded transactions; returns how many.
    async fn purge(&mut self, d: &Destination) -> Result<u64, StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        let mut total = 0;
        loop {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let ids = conn
                    .fetch(&st.first_ids, &[Arg::Str(&c), Arg::I64(BULK_ROWS)])
                    .await?;
                let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
                    return Ok(0);
                };
                let (lo, hi) = (first.i64(0)?, last.i64(0)?);
                if d.is_topic() {
                    conn.execute(
                        &st.delete_pending_of_topic_range,
                        &[Arg::I64(lo), Arg::I64(hi), Arg::Str(&c)],
                    )
                    .await?;
                }
                conn.execute(
                    &st.delete_id_range,
                    &[Arg::Str(&c), Arg::I64(lo), Arg::I64(hi)],
                )
                .await
            }
            .await;
            let n = self.end_tx(conn, r).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Hides the subscription at once (one transaction), then drains it.
    async fn delete_subscription(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
    ) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        common.sub_ids.lock().remove(&(d.clone(), key.clone()));
        let mut conn = self.begin_tx().await?;
        let r = async {
            let row = conn
                .fetch_one(
                    &st.lookup_subscription,
                    &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let sub = row.i64(0)?;
            conn.execute(
                &st.mark_subscription_deleting,
                &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
            )
            .await?;
            Ok(Some(sub))
        }
        .await;
        match self.end_tx(conn, r).await? {
            Some(sub) => self.drain_subscription(&c, sub).await,
            None => Err(StoreError::NotFound(format!("subscription {key} on {d}"))),
        }
    }

    /// Removes a subscription marked as being deleted: its pending rows and the messages only
    /// it kept, in bounded transactions, then its row.
    async fn drain_subscription(&mut self, container: &str, sub: i64) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        loop {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let rows = conn
                    .fetch(&st.sub_first_pending, &[Arg::I64(sub), Arg::I64(BULK_ROWS)])
                    .await?;
                if rows.is_empty() {
                    conn.execute(&st.delete_subscription_row, &[Arg::I64(sub)])
                        .await?;
                    return Ok(true);
                }
                let mut ranges: Vec<(i64, i64, i64)> = Vec::new();
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for r in &rows {
                    let (p, m) = (r.i64(0)?, r.i64(1)?);
                    lo = lo.min(m);
                    hi = hi.max(m);
                    match ranges.last_mut() {
                        Some((rp, _, rhi)) if *rp == p => *rhi = m,
                        _ => ranges.push((p, m, m)),
                    }
                }
                for (p, a, b) in ranges {
                    conn.execute(
                        &st.delete_pending_range,
                        &[Arg::I64(sub), Arg::I64(p), Arg::I64(a), Arg::I64(b)],
                    )
                    .await?;
                }
                conn.execute(
                    &st.delete_unreferenced_range,
                    &[Arg::Str(container), Arg::I64(lo), Arg::I64(hi)],
                )
                .await?;
                Ok(false)
            }
            .await;
            if self.end_tx(conn, r).await? {
                return Ok(());
            }
        }
    }

    async fn remove_destination(&mut self, d: &Destination) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        self.purge(d).await?;
        let c = d.to_string();
        if d.is_topic() {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let rows = conn.fetch(&st.subscriptions, &[Arg::Str(&c)]).await?;
                rows.iter()
                    .map(|r| Ok(SubscriptionKey::new(r.string(0)?, r.string(1)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            }
            .await;
            for key in self.end_tx(conn, r).await? {
                match self.delete_subscription(d, &key).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut conn = self.begin_tx().await?;
        let r = conn.execute(&st.delete_markers, &[Arg::Str(&c)]).await;
        self.end_tx(conn, r).await?;
        common.sub_ids.lock().retain(|(dest, _), _| dest != d);
        Ok(())
    }
}

async fn ensure_destination(
    conn: &mut Conn,
    st: &Statements,
    d: &Destination,
) -> Result<(), sqlx::Error> {
    let c = d.to_string();
    conn.execute(
        &st.ensure_destination,
        &[Arg::Str(&c), Arg::Str(&c), Arg::Str(&c)],
    )
    .await
    .map(|_| ())
}

async fn queue_remove(conn: &mut Conn, st: &Statements, d: &Destination, id: &MessageId) -> Step {
    let c = d.to_string();
    let n = conn
        .execute(
            &st.delete_message,
            &[Arg::Str(&id.producer), seq_arg(id), Arg::Str(&c)],
        )
        .await?;
    Ok(if n == 0 {
        Err(missing(d, id))
    } else {
        Ok(Done::Unit)
    })
}

/// The subscription's id, from the cache or the database.
pub(crate) async fn sub_id(
    conn: &mut Conn,
    common: &Common,
    d: &Destination,
    key: &SubscriptionKey,
) -> Result<Option<i64>, sqlx::Error> {
    let cache_key = (d.clone(), key.clone());
    if let Some(id) = common.sub_ids.lock().get(&cache_key) {
        return Ok(Some(*id));
    }
    let c = d.to_string();
    let row = conn
        .fetch_one(
            &common.st.lookup_subscription,
            &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id = row.i64(0)?;
    common.sub_ids.lock().insert(cache_key, id);
    Ok(Some(id))
}

fn missing(d: &Destination, id: &MessageId) -> StoreError {
    StoreError::NotFound(format!("message {id} in {d}"))
}

/// True for an error a statement raised (the database refused it), false for a lost
/// connection or a protocol failure, after which the connection is not trusted.
fn is_statement_error(e: &StoreError) -> bool {
    match e {
        StoreError::Backend { source, .. } => matches!(
            source.downcast_ref::<JdbcError>(),
            Some(JdbcError::Database {
                source: sqlx::Error::Database(_),
                ..
            })
        ),
        _ => false,
    }
}

/// The error every job of a failed batch gets.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::InvalidArgument(m) => StoreError::InvalidArgument(m.clone()),
        StoreError::Closed => StoreError::Closed,
        StoreError::Backend { backend, source } => StoreError::Backend {
            backend,
            source: source.to_string().into(),
        },
        other => StoreError::Backend {
            backend: "jdbc",
            source: other.to_string().into(),
        },
    }
}
