//! The store's reads, each a bounded query on the pool: a page of a queue or subscription in
//! delivery order, counts and bytes, a message's place, a subscription's id, expired entries.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use store_api::codec;
use store_api::{
    CursorPosition, DeliveryOrder, Destination, MAX_PRIORITY, Message, MessageId, OrderKey, Result,
    StoreError, SubscriptionKey,
};

use super::{DestState, Shared};
use crate::activemq::SubState;
use crate::columns::{check_destination, parse_container};
use crate::error::JdbcError;
use crate::sql::{Arg, Row};
use crate::writer::Work;

impl Shared {
    /// Decodes a `(ID, MSG)` row of `container` into the message with its sequence.
    pub(crate) fn message(&self, row: &Row, container: &str) -> Result<Message> {
        let id = row.i64(0).map_err(|e| self.db("reading ID", e))?;
        let bytes = row.bytes(1).map_err(|e| self.db("reading MSG", e))?;
        let corrupt = |reason: String| JdbcError::CorruptRow {
            table: self.common.st.msgs.clone(),
            id,
            reason,
        };
        let mut m = if self.common.openwire() {
            let d = parse_container(container)
                .ok_or_else(|| corrupt(format!("CONTAINER `{container}` is no destination")))?;
            crate::activemq::decode(&bytes, d).map_err(corrupt)?
        } else {
            codec::decode(&bytes).map_err(|e| corrupt(format!("MSG does not decode: {e}")))?
        };
        m.sequence = id as u64;
        Ok(m)
    }

    pub(crate) async fn open_destination(&self, d: &Destination) -> Result<Arc<DestState>> {
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
    pub(crate) async fn page(
        &self,
        container: &str,
        sub: Option<i64>,
        from: impl Fn(u8) -> Option<i64>,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let st = &self.common.st;
        let mut out = Vec::new();
        for p in (0..=MAX_PRIORITY).rev() {
            let Some(want) = order.range_limit(out.len(), max) else {
                break;
            };
            let Some(after) = from(p) else { continue };
            let limit = want.min(i64::MAX as usize) as i64;
            let (sql, of) = match sub {
                None => (&st.page, Arg::Str(container)),
                Some(sub) => (&st.sub_page, Arg::I64(sub)),
            };
            let rows = self
                .pool
                .fetch(
                    sql,
                    &[of, Arg::I64(i64::from(p)), Arg::I64(after), Arg::I64(limit)],
                )
                .await
                .map_err(|e| self.db("reading messages", e))?;
            for row in &rows {
                out.push(self.message(row, container)?);
            }
        }
        order.finish(&mut out, OrderKey::of, max);
        Ok(out)
    }

    pub(crate) async fn count_bytes(
        &self,
        sql: &crate::sql::Sql,
        args: &[Arg<'_>],
    ) -> Result<(u64, u64)> {
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

    pub(crate) async fn message_key(
        &self,
        container: &str,
        id: &MessageId,
    ) -> Result<Option<OrderKey>> {
        self.find_message(&self.common.st.message_key, container, id)
            .await?
            .map(|r| self.order_key(&r))
            .transpose()
    }

    /// The row `sql` selects for a stored message by id and container.
    pub(crate) async fn find_message(
        &self,
        sql: &crate::sql::Sql,
        container: &str,
        id: &MessageId,
    ) -> Result<Option<Row>> {
        let producer = self.common.producer_column(id);
        self.pool
            .fetch_one(
                sql,
                &[
                    Arg::Str(&producer),
                    Arg::I64(id.producer_seq as i64),
                    Arg::Str(container),
                ],
            )
            .await
            .map_err(|e| self.db("looking a message up", e))
    }

    /// A message's place in delivery order from a row starting `ID, PRIORITY`.
    pub(crate) fn order_key(&self, row: &Row) -> Result<OrderKey> {
        let seq = row.i64(0).map_err(|e| self.db("reading ID", e))?;
        let p = row.i64(1).map_err(|e| self.db("reading PRIORITY", e))?;
        Ok(OrderKey {
            priority: p.clamp(0, i64::from(MAX_PRIORITY)) as u8,
            sequence: seq as u64,
        })
    }

    pub(crate) async fn sub_id(
        &self,
        d: &Destination,
        key: &SubscriptionKey,
    ) -> Result<Option<i64>> {
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

    pub(crate) async fn pending_for(
        &self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        if self.common.openwire() {
            let c = d.to_string();
            let Some(state) = self.ow_sub(&c, key).await? else {
                return Ok(false);
            };
            return Ok(match self.message_key(&c, id).await? {
                Some(k) => state.is_pending(k.sequence as i64, k.priority),
                None => false,
            });
        }
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

    pub(crate) async fn expired(
        &self,
        container: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<MessageId>> {
        Ok(self
            .expired_entries(container, now_ms, max)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    pub(crate) async fn expired_entries(
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
                let p = self.common.producer_of_column(p);
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

    /// The openwire format: a subscription's state, cached or loaded from committed rows.
    pub(crate) async fn ow_sub(
        &self,
        container: &str,
        key: &SubscriptionKey,
    ) -> Result<Option<SubState>> {
        if let Some(s) = self.common.ow.sub(container, key) {
            return Ok(Some(s));
        }
        let rows = self
            .pool
            .fetch(
                &self.common.st.ow_sub_marks,
                &[
                    Arg::Str(container),
                    Arg::Str(&key.client_id),
                    Arg::Str(&key.name),
                ],
            )
            .await
            .map_err(|e| self.db("reading a subscription's marks", e))?;
        let marks = rows
            .iter()
            .map(|r| Ok((r.i64(0)?, r.opt_i64(1)?.unwrap_or(-1))))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| self.db("reading LAST_ACKED_ID", e))?;
        Ok(SubState::from_rows(&marks).map(|s| self.common.ow.loaded(container, key, s)))
    }

    /// The openwire format: up to `max` of a subscription's pending messages in delivery order
    /// from `from`, one bounded query per priority and page, skipping held acks.
    pub(crate) async fn ow_sub_page(
        &self,
        container: &str,
        state: &SubState,
        from: impl Fn(u8) -> Option<i64>,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let st = &self.common.st;
        let mut out = Vec::new();
        for p in (0..=MAX_PRIORITY).rev() {
            let Some(want) = order.range_limit(out.len(), max) else {
                break;
            };
            let Some(from) = from(p) else { continue };
            let mut after = from.max(state.mark(p));
            let base = out.len();
            // A page that fills without filling `out` skipped a held ack: at most that many.
            for _ in 0..=state.acked.len() {
                let have = out.len() - base;
                if have >= want {
                    break;
                }
                let limit = (want - have).min(i64::MAX as usize) as i64;
                let rows = self
                    .pool
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
                    .map_err(|e| self.db("reading messages", e))?;
                for row in &rows {
                    let id = row.i64(0).map_err(|e| self.db("reading ID", e))?;
                    after = id;
                    if !state.acked.contains_key(&id) {
                        out.push(self.message(row, container)?);
                    }
                }
                if (rows.len() as i64) < limit {
                    break;
                }
            }
        }
        order.finish(&mut out, OrderKey::of, max);
        Ok(out)
    }

    /// The openwire format: count and bytes of a container's messages (or of those pending
    /// for a subscription), from the writer's measurement of the container: `MSG` is not this
    /// store's encoding, whose length is the unit of bytes, so the writer decodes each row
    /// once and keeps the sizes up to date with its adds and deletes.
    pub(crate) async fn ow_totals(
        &self,
        container: &str,
        sub: Option<(&SubscriptionKey, &SubState)>,
    ) -> Result<(u64, u64)> {
        let sub = sub.map(|(_, s)| s);
        // A rolled-back write drops the measurements; a second ask measures again.
        for _ in 0..3 {
            if let Some(t) = self.common.ow.totals(container, sub) {
                return Ok(t);
            }
            self.submit(Work::Measure(container.to_owned())).await?;
        }
        self.common
            .ow
            .totals(container, sub)
            .ok_or_else(|| StoreError::Backend {
                backend: "jdbc",
                source: format!("the messages of {container} could not be measured").into(),
            })
    }
}
