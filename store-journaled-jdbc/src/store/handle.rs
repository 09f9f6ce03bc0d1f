//! A queue or topic handle: reads merge the overlay over the database page by page, changes
//! go through the journal ([`super::write`]) or, for those it does not carry, straight to the
//! database after a checkpoint.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use store_api::{
    CursorPosition, DeliveryOrder, Destination, DestinationStore, MAX_PRIORITY, Message, MessageId,
    OrderKey, QueueStore, Result, StoreError, SubscriptionInfo, SubscriptionKey, TopicStore, TxOp,
};

use super::{DestState, Inner};

/// A queue or topic handle.
pub(super) struct Handle {
    pub(super) inner: Arc<Inner>,
    pub(super) d: Destination,
    pub(super) state: Arc<DestState>,
    pub(super) queue: Option<Arc<dyn QueueStore>>,
    pub(super) topic: Option<Arc<dyn TopicStore>>,
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

    /// The database's store of this destination, queue or topic.
    fn db(&self) -> Result<Arc<dyn DestinationStore>> {
        match (&self.queue, &self.topic) {
            (Some(q), _) => Ok(q.clone()),
            (_, Some(t)) => Ok(t.clone()),
            _ => Err(StoreError::InvalidArgument(format!(
                "{} has no store in the database",
                self.d
            ))),
        }
    }

    fn t(&self) -> Result<&Arc<dyn TopicStore>> {
        self.topic
            .as_ref()
            .ok_or_else(|| StoreError::InvalidArgument(format!("{} is not a topic", self.d)))
    }

    fn missing(&self, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!("message {id} in {}", self.d))
    }

    /// The subscription's pending count (or, with `bytes`, its pending bytes) in the merged view:
    /// the database's, plus the overlay's adds for it, less the overlay's acks of database rows.
    async fn pending(&self, key: &SubscriptionKey, bytes: bool) -> Result<u64> {
        self.check()?;
        self.sub_exists(key).await?;
        let _v = self.inner.view.read().await;
        let t = self.t()?;
        let db = if bytes {
            t.pending_bytes(key).await?
        } else {
            t.pending_count(key).await?
        };
        let pick = |e: &(u64, u64)| if bytes { e.1 } else { e.0 };
        let ov = self.inner.overlay.lock();
        Ok(match ov.topic(&self.d) {
            Some(t) => {
                let add = t.add_pending.get(key).map_or(0, pick);
                let acked = t.db_acked.get(key).map_or(0, pick);
                (db + add).saturating_sub(acked)
            }
            None => db,
        })
    }

    /// A queue ack (journaled) or a topic-wide delete (written through to the database);
    /// `unwaited` as in `DestinationStore::remove_unwaited`.
    async fn remove_as(&self, id: &MessageId, unwaited: bool) -> Result<()> {
        self.check()?;
        if self.d.is_topic() {
            // The journal does not carry a topic removal: the database does it after a
            // checkpoint.
            let db = self.db()?;
            return self.inner.write_through(db.remove(id)).await;
        }
        self.journal_one(
            TxOp::QueueAck {
                destination: self.d.clone(),
                id: id.clone(),
            },
            unwaited,
        )
        .await
    }

    /// A subscription's ack; `unwaited` as in [`Handle::remove_as`].
    async fn acknowledge_as(
        &self,
        key: &SubscriptionKey,
        id: &MessageId,
        unwaited: bool,
    ) -> Result<()> {
        self.check()?;
        self.sub_exists(key).await?;
        self.journal_one(
            TxOp::TopicAck {
                destination: self.d.clone(),
                subscription: key.clone(),
                id: id.clone(),
            },
            unwaited,
        )
        .await
    }

    /// Journals one ack as its own record and waits until it is durable; `unwaited`: it may
    /// share a later write's fsync.
    async fn journal_one(&self, op: TxOp, unwaited: bool) -> Result<()> {
        let (completion, _) = self.inner.write(vec![op], true, unwaited).await?;
        self.inner.durable(completion).await
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
        order: DeliveryOrder,
        max: usize,
        mut seen: impl FnMut(OrderKey),
    ) -> Result<Vec<Message>> {
        let i = &self.inner;
        let mut out = Vec::new();
        for p in (0..=MAX_PRIORITY).rev() {
            // In arrival order each priority may give up to `max` (see `DeliveryOrder`).
            let Some(want) = order.range_limit(out.len(), max) else {
                break;
            };
            let base = out.len();
            let Some(mut after) = from(p) else { continue };
            loop {
                let need = want.saturating_sub(out.len() - base);
                if need == 0 {
                    break;
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
            let need = want.saturating_sub(out.len() - base);
            if need == 0 {
                continue;
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
            DeliveryOrder::Priority,
            max,
            |_| {},
        )
        .await
    }

    async fn recover(
        &self,
        sub: Option<&SubscriptionKey>,
        cursor: &mut CursorPosition,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let _v = self.inner.view.read().await;
        let pos = *cursor;
        let mut seen = Vec::new();
        let mut out = self
            .merged(
                sub,
                |p| Some(pos.first_pending_at(p).sequence - 1),
                order,
                max,
                |k| seen.push(k),
            )
            .await?;
        if order == DeliveryOrder::Arrival && out.len() > max {
            // What is cut off must stay pending: the cursor passes nothing beyond the last
            // message kept (hidden ones looked at past it are looked at again, harmlessly).
            order.finish(&mut out, OrderKey::of, max);
            let cutoff = out.last().map_or(0, |m| m.sequence);
            seen.retain(|k| k.sequence <= cutoff);
        } else {
            order.finish(&mut out, OrderKey::of, max);
        }
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
impl DestinationStore for Handle {
    fn destination(&self) -> &Destination {
        &self.d
    }

    async fn add(&self, message: Message) -> Result<u64> {
        self.check()?;
        message.validate_for(&self.d)?;
        self.inner.jdbc.journaled().validate_message(&message)?;
        let (completion, seqs) = self
            .inner
            .write(vec![TxOp::Add(message)], true, false)
            .await?;
        self.inner.durable(completion).await?;
        Ok(seqs.first().copied().unwrap_or(0))
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
            if let Some(t) = ov.topic(&self.d)
                && let Some(k) = t.by_id.get(id)
                && let Some(a) = t.adds.get(k)
            {
                return Ok(Message::clone(&a.message));
            }
            if self.d.is_topic() && ov.db_acked(&self.d, None, id) {
                return Err(self.missing(id));
            }
        }
        self.db()?.get(id).await
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.remove_as(id, false).await
    }

    async fn remove_unwaited(&self, id: &MessageId) -> Result<()> {
        self.remove_as(id, true).await
    }

    async fn purge(&self) -> Result<u64> {
        self.check()?;
        let db = self.db()?;
        self.inner.write_through(db.purge()).await
    }

    async fn count(&self) -> Result<u64> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let db = self.db()?.count().await?;
        let ov = self.inner.overlay.lock();
        Ok(match (ov.queue(&self.d), ov.topic(&self.d)) {
            (Some(q), _) => (db + q.adds.len() as u64).saturating_sub(q.removed.len() as u64),
            (_, Some(t)) => (db + t.adds.len() as u64).saturating_sub(t.released.0),
            _ => db,
        })
    }

    async fn bytes(&self) -> Result<u64> {
        self.check()?;
        let _v = self.inner.view.read().await;
        let db = self.db()?.bytes().await?;
        let ov = self.inner.overlay.lock();
        Ok(match (ov.queue(&self.d), ov.topic(&self.d)) {
            (Some(q), _) => (db + q.add_bytes).saturating_sub(q.removed_bytes),
            (_, Some(t)) => (db + t.add_bytes).saturating_sub(t.released.1),
            _ => db,
        })
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.check()?;
        self.expired_merged(now_ms, max).await
    }
}

#[async_trait]
impl QueueStore for Handle {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.check()?;
        self.browse_from(None, after, max).await
    }

    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        self.check()?;
        let mut cursor = self.state.cursor.lock().await;
        self.recover(None, &mut cursor, order, max).await
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
}

#[async_trait]
impl TopicStore for Handle {
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
        self.acknowledge_as(key, id, false).await
    }

    async fn acknowledge_unwaited(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.acknowledge_as(key, id, true).await
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

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.check()?;
        self.sub_exists(key).await?;
        let mut cursors = self.state.sub_cursors.lock().await;
        let cursor = cursors.entry(key.clone()).or_default();
        self.recover(Some(key), cursor, order, max).await
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
        self.pending(key, false).await
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.pending(key, true).await
    }
}
