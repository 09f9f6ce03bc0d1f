//! What the journaled JDBC engine (`store-journaled-jdbc`) needs from this store beyond the
//! `store-api` contract, and nothing else uses: [`JdbcStore::journaled`].
//!
//! That engine keeps recent changes in its own journal and an in-memory overlay, and moves them
//! here at each checkpoint. It needs three things the contract does not give:
//!
//! - **Batch apply.** [`JournaledAccess::apply_checkpoint`] applies a [`CheckpointBatch`] in one
//!   database transaction, with the journal position it reflects (the mark). It is idempotent:
//!   an add already stored and an ack of a row already gone are both skipped, so a journal
//!   replayed after a crash can be applied again. Messages keep the sequences the journal gave
//!   them; the store's own sequences continue above them.
//! - **Replay.** [`JournaledAccess::journal_mark`] is where replay starts;
//!   [`JournaledAccess::message_ids`] pages through every stored id (to fill the engine's filter
//!   of known ids) and [`JournaledAccess::last_sequence`] is where its sequences continue.
//! - **Raw access.** Reads the engine merges its overlay over: one priority's page of a queue or
//!   subscription ([`JournaledAccess::page`]), a message's place and size, its pending
//!   references, expired entries with their places; and the column checks an add or ack would
//!   make, so that a change the database would refuse is refused before it is journaled.
//!
//! Every call fails with `Closed` once the store is closed, like the contract's.

use std::sync::atomic::Ordering;

use store_api::{Destination, Message, MessageId, OrderKey, Result, StoreError, SubscriptionKey};

use crate::columns::{check_destination, check_key, check_message, parse_container};
use crate::sql::Arg;
use crate::store::{JdbcStore, Shared};
use crate::writer::Work;

pub use crate::writer::CheckpointBatch;

impl JdbcStore {
    /// The API only the journaled JDBC engine uses (see the [module](self) docs).
    pub fn journaled(&self) -> JournaledAccess<'_> {
        JournaledAccess {
            shared: &self.shared,
        }
    }
}

/// The journaled JDBC engine's access to a [`JdbcStore`], from [`JdbcStore::journaled`].
#[derive(Debug, Clone, Copy)]
pub struct JournaledAccess<'a> {
    shared: &'a Shared,
}

impl JournaledAccess<'_> {
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
        let Some(r) = s
            .find_message(&s.common.st.message_key_size, &d.to_string(), id)
            .await?
        else {
            return Ok(None);
        };
        let len = r.opt_i64(2).map_err(|e| s.db("reading LENGTH(MSG)", e))?;
        Ok(Some((s.order_key(&r)?, len.unwrap_or(0).max(0) as u64)))
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
            store_api::DeliveryOrder::Priority,
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
}
