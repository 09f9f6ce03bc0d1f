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
//!
//! The task's loop and the batch transaction are here; the connection, its lock checks and the
//! sequence reservation in [`connection`]; what each change does to the rows in [`rows`]; the
//! work that runs alone in [`bulk`]; the journaled engine's checkpoint in [`checkpoint`].

mod activemq;
mod bulk;
mod checkpoint;
mod connection;
mod rows;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use store_api::codec;
use store_api::{
    Destination, Message, MessageId, StoreError, SubscriptionInfo, SubscriptionKey, TxOp, Xid,
};
use tokio::sync::{mpsc, oneshot};

use crate::activemq::OwState;
use crate::config::MessageFormat;
use crate::error::JdbcError;
use crate::fence::Fence;
use crate::sql::{Arg, Conn, Options};
use crate::statements::Statements;

pub use checkpoint::CheckpointBatch;

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
    /// The openwire format's subscription states and measured totals.
    pub ow: OwState,
}

impl Common {
    pub fn openwire(&self) -> bool {
        self.st.format == MessageFormat::OpenWire
    }

    /// `MSGID_PROD` for a message id: the producer itself, or in the openwire format the
    /// `ProducerId.toString()` ActiveMQ writes for it.
    pub fn producer_column<'a>(&self, id: &'a MessageId) -> std::borrow::Cow<'a, str> {
        if self.openwire() {
            openwire::store::producer_column(&id.producer).into()
        } else {
            std::borrow::Cow::Borrowed(&id.producer)
        }
    }

    /// The store producer of a `MSGID_PROD` value.
    pub fn producer_of_column(&self, column: String) -> String {
        if self.openwire() {
            openwire::store::producer_of_column(&column)
        } else {
            column
        }
    }

    /// `MSG` for a message.
    pub fn encode(&self, m: &Message) -> Result<Vec<u8>, StoreError> {
        if self.openwire() {
            crate::activemq::encode(m)
        } else {
            Ok(codec::encode(m))
        }
    }
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
    /// The openwire format: measure a container's messages (count and bytes).
    Measure(String),
    Close,
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
                | Work::Measure(_)
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
            // The openwire format has no unique index to find a duplicate with, so its adds
            // check one by one.
            if adds.len() >= 2 && !common.openwire() {
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
                self.common.ow.rolled_back();
                // Roll back; a connection that cannot even do that is dropped and reopened
                // for the next batch.
                if conn.raw("ROLLBACK").await.is_ok() && is_statement_error(&e) {
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }
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
