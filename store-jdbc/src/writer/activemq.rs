//! The writer's changes in the openwire format (see [`crate::activemq`]): adds checked for
//! duplicates by query (ActiveMQ's `MIDX` is not unique), durable subscriptions as marks in
//! `ACTIVEMQ_ACKS`, and topic messages deleted once no subscription needs them.

use store_api::SubscriptionKey;
use store_api::{Destination, MAX_PRIORITY, Message, MessageId, StoreError, SubscriptionInfo};

use super::{BULK_ROWS, Common, Done, Step, WriterTask, seq_arg};
use crate::activemq::SubState;
use crate::sql::{Arg, Conn};

/// Message ids one query of the mark's walk reads.
const WALK_ROWS: i64 = 256;

fn priority(p: i64) -> u8 {
    p.clamp(0, i64::from(MAX_PRIORITY)) as u8
}

/// A subscription's state: cached, or loaded from its rows (inside the writer's transaction).
pub(super) async fn sub_state(
    conn: &mut Conn,
    common: &Common,
    container: &str,
    key: &SubscriptionKey,
) -> Result<Option<SubState>, sqlx::Error> {
    if let Some(s) = common.ow.sub(container, key) {
        return Ok(Some(s));
    }
    let rows = conn
        .fetch(
            &common.st.ow_sub_marks,
            &[
                Arg::Str(container),
                Arg::Str(&key.client_id),
                Arg::Str(&key.name),
            ],
        )
        .await?;
    let marks = rows
        .iter()
        .map(|r| Ok((r.i64(0)?, r.opt_i64(1)?.unwrap_or(-1))))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(SubState::from_rows(&marks).map(|s| common.ow.loaded(container, key, s)))
}

/// The keys of a container's durable subscriptions.
pub(super) async fn subscriptions(
    conn: &mut Conn,
    common: &Common,
    container: &str,
) -> Result<Vec<SubscriptionKey>, sqlx::Error> {
    let rows = conn
        .fetch(&common.st.subscriptions, &[Arg::Str(container)])
        .await?;
    rows.iter()
        .map(|r| Ok(SubscriptionKey::new(r.string(0)?, r.string(1)?)))
        .collect()
}

/// Every subscription's state of a container.
async fn all_states(
    conn: &mut Conn,
    common: &Common,
    container: &str,
) -> Result<Vec<SubState>, sqlx::Error> {
    let mut out = Vec::new();
    for key in subscriptions(conn, common, container).await? {
        if let Some(s) = sub_state(conn, common, container, &key).await? {
            out.push(s);
        }
    }
    Ok(out)
}

impl WriterTask {
    /// An add whose sequence is taken: refused when the id is stored in the destination, not
    /// kept when a topic has no subscription (ActiveMQ does not store those either).
    pub(super) async fn ow_add(&mut self, conn: &mut Conn, m: Message) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        let c = m.destination.to_string();
        let producer = common.producer_column(&m.id);
        let found = conn
            .fetch_one(
                &st.message_key,
                &[Arg::Str(&producer), seq_arg(&m.id), Arg::Str(&c)],
            )
            .await?;
        if found.is_some() {
            return Ok(Err(StoreError::Duplicate(format!(
                "message {} in {}",
                m.id, m.destination
            ))));
        }
        self.next_id += 1;
        let id = m.sequence as i64;
        if m.destination.is_topic() && subscriptions(conn, &common, &c).await?.is_empty() {
            return Ok(Ok(Done::Id(id)));
        }
        self.insert_rows(conn, &[&m]).await?;
        common.ow.row_added(&c, id, m.priority, m.size());
        Ok(Ok(Done::Id(id)))
    }

    pub(super) async fn ow_add_subscription(
        &mut self,
        conn: &mut Conn,
        d: &Destination,
        info: &SubscriptionInfo,
        retroactive: bool,
    ) -> Step {
        let common = self.common.clone();
        let c = d.to_string();
        // ActiveMQ's marks: -1 sees every kept message; otherwise the highest id so far.
        let mark = if retroactive { -1 } else { self.next_id - 1 };
        let n = conn
            .execute(
                &common.st.insert_subscription,
                &[
                    Arg::Str(&c),
                    Arg::Str(&info.key.client_id),
                    Arg::Str(&info.key.name),
                    Arg::OptStr(info.selector.as_deref()),
                    Arg::I64(mark),
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
        common.ow.store(&c, &info.key, SubState::new(mark));
        Ok(Ok(Done::Unit))
    }

    pub(super) async fn ow_topic_ack(
        &mut self,
        conn: &mut Conn,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        let Some(mut state) = sub_state(conn, &common, &c, key).await? else {
            return Ok(Err(StoreError::NotFound(format!(
                "subscription {key} on {d}"
            ))));
        };
        let not_pending = || {
            StoreError::NotFound(format!(
                "message {id} is not pending for subscription {key} on {d}"
            ))
        };
        let producer = common.producer_column(id);
        let Some(row) = conn
            .fetch_one(
                &st.message_key,
                &[Arg::Str(&producer), seq_arg(id), Arg::Str(&c)],
            )
            .await?
        else {
            return Ok(Err(not_pending()));
        };
        let (mid, p) = (row.i64(0)?, priority(row.i64(1)?));
        if !state.is_pending(mid, p) {
            return Ok(Err(not_pending()));
        }
        state.acked.insert(mid, p);
        let before = state.marks;
        self.walk_mark(conn, &c, &mut state, p).await?;
        if state.marks != before {
            let mark = state.mark(p);
            if state.per_priority {
                conn.execute(
                    &st.ow_set_priority_mark,
                    &[
                        Arg::I64(mark),
                        Arg::Str(&c),
                        Arg::Str(&key.client_id),
                        Arg::Str(&key.name),
                        Arg::I64(i64::from(p)),
                    ],
                )
                .await?;
            } else {
                conn.execute(
                    &st.ow_set_mark,
                    &[
                        Arg::I64(mark),
                        Arg::Str(&c),
                        Arg::Str(&key.client_id),
                        Arg::Str(&key.name),
                    ],
                )
                .await?;
            }
        }
        state.prune();
        common.ow.store(&c, key, state);
        // The message goes once no subscription needs it.
        let states = all_states(conn, &common, &c).await?;
        if states.iter().all(|s| !s.is_pending(mid, p)) {
            conn.execute(&st.delete_message_by_id, &[Arg::I64(mid)])
                .await?;
            common.ow.message_gone(&c, Some(mid));
        }
        Ok(Ok(Done::Unit))
    }

    /// Moves the mark of `p` (every priority's, for a single-row subscription) over the
    /// messages right after it that are acknowledged.
    async fn walk_mark(
        &mut self,
        conn: &mut Conn,
        container: &str,
        state: &mut SubState,
        p: u8,
    ) -> Result<(), sqlx::Error> {
        let st = &self.common.st;
        // Every full page moves the mark over WALK_ROWS held acks, so this many pages cover them.
        let pages = state.acked.len() / WALK_ROWS as usize + 1;
        for _ in 0..pages {
            let mark = state.mark(p);
            let rows = if state.per_priority {
                conn.fetch(
                    &st.ow_ids_after_priority,
                    &[
                        Arg::Str(container),
                        Arg::I64(i64::from(p)),
                        Arg::I64(mark),
                        Arg::I64(WALK_ROWS),
                    ],
                )
                .await?
            } else {
                conn.fetch(
                    &st.ow_ids_after,
                    &[Arg::Str(container), Arg::I64(mark), Arg::I64(WALK_ROWS)],
                )
                .await?
            };
            let full = rows.len() as i64 == WALK_ROWS;
            for r in &rows {
                let id = r.i64(0)?;
                if !state.acked.contains_key(&id) {
                    return Ok(());
                }
                state.set_mark(p, id);
            }
            if !full {
                return Ok(());
            }
        }
        Ok(())
    }

    pub(super) async fn ow_topic_remove(
        &mut self,
        conn: &mut Conn,
        d: &Destination,
        id: &MessageId,
    ) -> Step {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        let producer = common.producer_column(id);
        let Some(row) = conn
            .fetch_one(
                &st.message_key,
                &[Arg::Str(&producer), seq_arg(id), Arg::Str(&c)],
            )
            .await?
        else {
            return Ok(Err(super::rows::missing(d, id)));
        };
        let mid = row.i64(0)?;
        conn.execute(&st.delete_message_by_id, &[Arg::I64(mid)])
            .await?;
        common.ow.message_gone(&c, Some(mid));
        Ok(Ok(Done::Unit))
    }

    /// Deletes a subscription's rows, then the messages no other subscription needs.
    pub(super) async fn ow_delete_subscription(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
    ) -> Result<(), StoreError> {
        let common = self.common.clone();
        let c = d.to_string();
        let mut conn = self.begin_tx().await?;
        let r = conn
            .execute(
                &common.st.ow_delete_subscription,
                &[Arg::Str(&c), Arg::Str(&key.client_id), Arg::Str(&key.name)],
            )
            .await;
        let n = self.end_tx(conn, r).await?;
        common.ow.forget(&c, key);
        common.sub_ids.lock().remove(&(d.clone(), key.clone()));
        if n == 0 {
            return Err(StoreError::NotFound(format!("subscription {key} on {d}")));
        }
        self.ow_release(d).await
    }

    /// Measures a container once: each row decoded for its size. From then on the writer's
    /// adds and deletes keep the measurement.
    pub(super) async fn ow_measure(&mut self, container: &str) -> Result<(), StoreError> {
        if self.common.ow.is_measured(container) {
            return Ok(());
        }
        let common = self.common.clone();
        let st = &common.st;
        let Some(d) = crate::columns::parse_container(container) else {
            return Err(StoreError::InvalidArgument(format!(
                "`{container}` is no destination"
            )));
        };
        let mut measured = crate::activemq::Measured::default();
        let mut after = i64::MIN;
        loop {
            let mut conn = self.begin_tx().await?;
            let r = conn
                .fetch(
                    &st.ow_rows_after,
                    &[Arg::Str(container), Arg::I64(after), Arg::I64(BULK_ROWS)],
                )
                .await;
            let rows = self.end_tx(conn, r).await?;
            let Some(last) = rows.last() else { break };
            after = last.i64(0).map_err(|e| super::db(st, "reading ID", e))?;
            for row in &rows {
                let read = || -> Result<(i64, Vec<u8>, i64), sqlx::Error> {
                    Ok((row.i64(0)?, row.bytes(1)?, row.i64(2)?))
                };
                let (id, bytes, p) = read().map_err(|e| super::db(st, "reading a message", e))?;
                let m = crate::activemq::decode(&bytes, d.clone()).map_err(|reason| {
                    crate::error::JdbcError::CorruptRow {
                        table: st.msgs.clone(),
                        id,
                        reason,
                    }
                })?;
                let size = m.size();
                measured.rows.insert(id, (priority(p), size));
                measured.bytes += size;
            }
        }
        common.ow.set_measured(container, measured);
        Ok(())
    }

    /// At open: every topic's messages that no subscription needs are deleted.
    pub(super) async fn ow_recover(&mut self) -> Result<(), StoreError> {
        let common = self.common.clone();
        let mut conn = self.begin_tx().await?;
        let r = async {
            let rows = conn.fetch(&common.st.ow_destinations, &[]).await?;
            rows.iter()
                .map(|r| r.opt_string(0))
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }
        .await;
        let topics: Vec<Destination> = self
            .end_tx(conn, r)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|c| crate::columns::parse_container(&c))
            .filter(Destination::is_topic)
            .collect();
        for d in topics {
            self.ow_release(&d).await?;
        }
        Ok(())
    }

    /// Deletes a topic's messages that no subscription needs, in bounded transactions.
    pub(super) async fn ow_release(&mut self, d: &Destination) -> Result<(), StoreError> {
        let common = self.common.clone();
        let st = &common.st;
        let c = d.to_string();
        let mut conn = self.begin_tx().await?;
        let r = all_states(&mut conn, &common, &c).await;
        let states = self.end_tx(conn, r).await?;
        if states.is_empty() {
            self.purge(d).await?;
            return Ok(());
        }
        let mut after = i64::MIN;
        loop {
            let mut conn = self.begin_tx().await?;
            let r = async {
                let rows = conn
                    .fetch(
                        &st.ow_ids_after,
                        &[Arg::Str(&c), Arg::I64(after), Arg::I64(BULK_ROWS)],
                    )
                    .await?;
                let mut last = None;
                for r in &rows {
                    let (id, p) = (r.i64(0)?, priority(r.i64(1)?));
                    last = Some(id);
                    if states.iter().all(|s| !s.is_pending(id, p)) {
                        conn.execute(&st.delete_message_by_id, &[Arg::I64(id)])
                            .await?;
                        common.ow.message_gone(&c, Some(id));
                    }
                }
                Ok(last)
            }
            .await;
            match self.end_tx(conn, r).await? {
                Some(last) => after = last,
                None => return Ok(()),
            }
        }
    }
}
