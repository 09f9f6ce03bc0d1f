//! A queue or topic handle: reads on the pool, changes through the writer, the batch cursors
//! kept in this process.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use store_api::{
    CursorPosition, DeliveryOrder, Destination, DestinationStore, Message, MessageId, OrderKey,
    Pending, QueueStore, Result, StoreError, SubscriptionInfo, SubscriptionKey, TopicStore,
};

use super::{DestState, Shared};
use crate::activemq::SubState;
use crate::columns::{check_key, check_message, check_text};
use crate::sql::Arg;
use crate::writer::{Done, Work};

/// A queue or topic handle.
pub(super) struct Handle {
    pub(super) shared: Arc<Shared>,
    pub(super) state: Arc<DestState>,
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

    async fn count_bytes(&self) -> Result<(u64, u64)> {
        self.check()?;
        let s = &self.shared;
        if s.common.openwire() {
            return s.ow_totals(&self.state.container, None).await;
        }
        s.count_bytes(&s.common.st.count_bytes, &[Arg::Str(&self.state.container)])
            .await
    }

    async fn pending_count_bytes(&self, key: &SubscriptionKey) -> Result<(u64, u64)> {
        if self.shared.common.openwire() {
            let state = self.ow_state(key).await?;
            return self
                .shared
                .ow_totals(&self.state.container, Some((key, &state)))
                .await;
        }
        let sub = self.subscription_id(key).await?;
        let s = &self.shared;
        s.count_bytes(&s.common.st.sub_count_bytes, &[Arg::I64(sub)])
            .await
    }

    /// The openwire format: the subscription's acknowledgement state.
    async fn ow_state(&self, key: &SubscriptionKey) -> Result<SubState> {
        self.check()?;
        self.shared
            .ow_sub(&self.state.container, key)
            .await?
            .ok_or_else(|| self.no_subscription(key))
    }

    /// A subscription's messages from `from` in the openwire format, else `None`.
    async fn ow_page(
        &self,
        key: &SubscriptionKey,
        from: impl Fn(u8) -> Option<i64>,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Option<Vec<Message>>> {
        if !self.shared.common.openwire() {
            return Ok(None);
        }
        let state = self.ow_state(key).await?;
        self.shared
            .ow_sub_page(&self.state.container, &state, from, order, max)
            .await
            .map(Some)
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
                DeliveryOrder::Priority,
                max,
            )
            .await
    }

    async fn recover(
        &self,
        sub: Option<i64>,
        cursor: &mut CursorPosition,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let pos = *cursor;
        let batch = self
            .shared
            .page(
                &self.state.container,
                sub,
                |p| Some(pos.first_pending_at(p).sequence as i64 - 1),
                order,
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
impl DestinationStore for Handle {
    fn destination(&self) -> &Destination {
        &self.state.destination
    }

    async fn add(&self, message: Message) -> Result<u64> {
        self.submit_add(message).await?.await
    }

    /// The writer applies jobs in queue order, so queueing is what fixes the message's place;
    /// a duplicate id is found by the database, when the write is applied.
    async fn submit_add(&self, message: Message) -> Result<Pending<u64>> {
        self.check()?;
        message.validate_for(&self.state.destination)?;
        check_message(&message, self.shared.common.max_packet)?;
        let done = self.shared.enqueue(Work::Add(message))?;
        Ok(Pending::new(async move {
            match done.await? {
                Done::Id(seq) => Ok(seq as u64),
                other => Err(StoreError::InvalidArgument(format!(
                    "add answered {other:?}"
                ))),
            }
        }))
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.check()?;
        let s = &self.shared;
        let row = s
            .find_message(&s.common.st.get_message, &self.state.container, id)
            .await?;
        match row {
            Some(r) => s.message(&r, &self.state.container),
            None => Err(self.missing(id)),
        }
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.check()?;
        let d = self.state.destination.clone();
        let work = if d.is_queue() {
            Work::QueueRemove(d, id.clone())
        } else {
            Work::TopicRemove(d, id.clone())
        };
        self.shared.submit(work).await.map(|_| ())
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
        let key = self
            .shared
            .message_key(&self.state.container, id)
            .await?
            .ok_or_else(|| self.missing(id))?;
        let last = self.shared.common.last_sequence.load(Ordering::Acquire);
        self.state.cursor.lock().await.set_after(key, last);
        Ok(())
    }
}

#[async_trait]
impl TopicStore for Handle {
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
        let from = |p: u8| match after {
            None => Some(0),
            Some(k) if p > k.priority => None,
            Some(k) if p == k.priority => Some(k.sequence as i64),
            Some(_) => Some(0),
        };
        if let Some(page) = self
            .ow_page(key, from, DeliveryOrder::Priority, max)
            .await?
        {
            return Ok(page);
        }
        let sub = self.subscription_id(key).await?;
        self.browse_from(Some(sub), after, max).await
    }

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        if self.shared.common.openwire() {
            self.ow_state(key).await?;
            let mut cursors = self.state.sub_cursors.lock().await;
            let cursor = cursors.entry(key.clone()).or_default();
            let pos = *cursor;
            let from = |p: u8| Some(pos.first_pending_at(p).sequence as i64 - 1);
            let batch = self
                .ow_page(key, from, order, max)
                .await?
                .unwrap_or_default();
            for m in &batch {
                cursor.advance(OrderKey::of(m));
            }
            return Ok(batch);
        }
        let sub = self.subscription_id(key).await?;
        let mut cursors = self.state.sub_cursors.lock().await;
        let cursor = cursors.entry(key.clone()).or_default();
        self.recover(Some(sub), cursor, order, max).await
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
        Ok(self.pending_count_bytes(key).await?.0)
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        Ok(self.pending_count_bytes(key).await?.1)
    }
}
