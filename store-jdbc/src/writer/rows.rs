//! The changes a batch carries, each applied inside the batch's transaction: adds (many queue
//! adds in multi-row inserts), acks, subscriptions, and the commit and prepare of a
//! transaction's operations.

use base64::Engine as _;
use store_api::codec::{self, Writer};
use store_api::{Destination, Message, MessageId, StoreError, SubscriptionKey, TxOp};

use super::{Common, Done, MULTI_BYTES, MULTI_ROWS, Step, Work, WriterTask, seq_arg};
use crate::sql::{Arg, Conn};
use crate::statements::Statements;

impl WriterTask {
    /// Queue adds in multi-row inserts inside a savepoint: their sequences, or None (and
    /// nothing written) when any of them is a duplicate.
    pub(super) async fn add_many(
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
    pub(super) async fn insert_rows(
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
                let e = self
                    .common
                    .encode(rows[end])
                    .map_err(|e| sqlx::Error::Encode(e.to_string().into()))?;
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
            let producers: Vec<_> = chunk
                .iter()
                .map(|m| self.common.producer_column(&m.id))
                .collect();
            let mut args = Vec::with_capacity(chunk.len() * 7);
            for ((m, (c, e)), p) in chunk.iter().zip(&encoded).zip(&producers) {
                args.extend([
                    Arg::I64(m.sequence as i64),
                    Arg::Str(p),
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
    pub(super) async fn insert_pendings(
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

    pub(super) async fn apply(&mut self, conn: &mut Conn, work: &Work) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        match work {
            Work::EnsureDestination(d) => {
                ensure_destination(conn, st, d).await?;
                Ok(Ok(Done::Unit))
            }
            Work::Add(m) => self.add(conn, m.clone()).await,
            Work::QueueRemove(d, id) => queue_remove(conn, &common, d, id).await,
            Work::TopicAck(d, key, id) => self.topic_ack(conn, d, key, id).await,
            Work::TopicRemove(d, id) if common.openwire() => self.ow_topic_remove(conn, d, id).await,
            Work::AddSubscription(d, info, retroactive) if common.openwire() => {
                self.ow_add_subscription(conn, d, info, *retroactive).await
            }
            Work::Prepare(..) if common.openwire() => Ok(Err(StoreError::InvalidArgument(
                "XA prepare is not available with message_format = \"openwire\": ActiveMQ's schema keeps a prepared transaction in its own encoding, which this engine does not write; use the native format for XA".into(),
            ))),
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
                // The openwire format's memory of what the operations touch, put back if the
                // savepoint is.
                let saved = common.openwire().then(|| {
                    let touched = touched_containers(ops);
                    let snapshot = common.ow.snapshot(&touched);
                    (touched, snapshot)
                });
                conn.raw("SAVEPOINT tx").await?;
                let r = self.apply_ops(conn, ops).await?;
                if r.is_err() {
                    conn.raw("ROLLBACK TO SAVEPOINT tx").await?;
                    if let Some((touched, snapshot)) = saved {
                        common.ow.restore(&touched, snapshot);
                    }
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
            // The loop runs bulk work alone (`Work::is_bulk`), never in a batch.
            _ => Ok(Err(StoreError::InvalidArgument(
                "bulk work inside a batch".into(),
            ))),
        }
    }

    pub(super) async fn apply_ops(
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
                    queue_remove(conn, &common, destination, id).await?
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

    pub(super) async fn add(&mut self, conn: &mut Conn, mut m: Message) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        let id = self.reserve(conn).await?;
        m.sequence = id as u64;
        if common.openwire() {
            return self.ow_add(conn, m).await;
        }
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

    pub(super) async fn topic_ack(
        &mut self,
        conn: &mut Conn,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        if common.openwire() {
            return self.ow_topic_ack(conn, d, key, id).await;
        }
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
}

pub(super) async fn ensure_destination(
    conn: &mut Conn,
    st: &Statements,
    d: &Destination,
) -> Result<(), sqlx::Error> {
    let c = d.to_string();
    conn.execute(
        &st.ensure_destination,
        &[Arg::Str(&c), Arg::Str(&c), Arg::Str(&c), Arg::Str(&c)],
    )
    .await
    .map(|_| ())
}

pub(super) async fn queue_remove(
    conn: &mut Conn,
    common: &Common,
    d: &Destination,
    id: &MessageId,
) -> Step {
    let c = d.to_string();
    let producer = common.producer_column(id);
    if common.openwire() {
        // By ID, so that the measurement of the queue loses exactly this row.
        let Some(row) = conn
            .fetch_one(
                &common.st.message_key,
                &[Arg::Str(&producer), seq_arg(id), Arg::Str(&c)],
            )
            .await?
        else {
            return Ok(Err(missing(d, id)));
        };
        let mid = row.i64(0)?;
        conn.execute(&common.st.delete_message_by_id, &[Arg::I64(mid)])
            .await?;
        common.ow.message_gone(&c, Some(mid));
        return Ok(Ok(Done::Unit));
    }
    let n = conn
        .execute(
            &common.st.delete_message,
            &[Arg::Str(&producer), seq_arg(id), Arg::Str(&c)],
        )
        .await?;
    Ok(if n == 0 {
        Err(missing(d, id))
    } else {
        Ok(Done::Unit)
    })
}

/// The subscription's id, from the cache or the database.
pub(super) async fn sub_id(
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

/// The containers a transaction's operations change.
fn touched_containers(ops: &[TxOp]) -> Vec<String> {
    let mut out: Vec<String> = ops
        .iter()
        .map(|op| match op {
            TxOp::Add(m) => m.destination.to_string(),
            TxOp::QueueAck { destination, .. } | TxOp::TopicAck { destination, .. } => {
                destination.to_string()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(super) fn missing(d: &Destination, id: &MessageId) -> StoreError {
    StoreError::NotFound(format!("message {id} in {d}"))
}
