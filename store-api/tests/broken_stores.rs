//! The kit proves it can fail: deliberately broken stores (the reference model with one fault
//! each) must be caught by the scenarios, and the commonest faults by the model-based test too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use store_api::testkit::{self, Mode, ModelFactory, ModelTestConfig, StoreFactory};
use store_api::{
    DeliveryOrder, Destination, DestinationStore, Message, MessageId, OrderKey, Pending,
    PersistenceAdapter, PreparedTransaction, QueueStore, Result, SubscriptionInfo, SubscriptionKey,
    TopicStore, TransactionId, TxOp, Xid,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A queue ack removes the message after the one named.
    AckRemovesWrongMessage,
    /// Rollback commits instead.
    RollbackLeaks,
    /// Every batch after the first loses its first message.
    CursorSkips,
    /// Prepared transactions are lost at reopen.
    PreparedLostOnReopen,
    /// A durable ack drops the message for every subscription.
    DurableAckReleasesForAll,
    /// Removed messages' bytes are never released.
    BytesNotReleased,
    /// Retroactive subscriptions see nothing old.
    RetroactiveIgnored,
    /// Commit applies operations one by one and stops at the first failure.
    CommitNotAtomic,
    /// `submit_add` only places the message when its `Pending` is awaited.
    SubmitPlacesLate,
}

struct BrokenFactory {
    inner: ModelFactory,
    fault: Fault,
    leaked: Arc<Mutex<HashMap<Destination, u64>>>,
}

impl BrokenFactory {
    fn new(fault: Fault) -> Self {
        BrokenFactory {
            inner: ModelFactory::default(),
            fault,
            leaked: Arc::default(),
        }
    }
}

#[async_trait]
impl StoreFactory for BrokenFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        let inner = self.inner.open().await?;
        if self.fault == Fault::PreparedLostOnReopen {
            for p in inner.prepared_transactions().await? {
                inner.rollback(&TransactionId::Xa(p.xid)).await?;
            }
        }
        Ok(Arc::new(Broken {
            inner,
            fault: self.fault,
            leaked: self.leaked.clone(),
            batches: Arc::default(),
            enlisted: Mutex::default(),
        }))
    }

    fn durable(&self) -> bool {
        true
    }
}

struct Broken {
    inner: Arc<dyn PersistenceAdapter>,
    fault: Fault,
    leaked: Arc<Mutex<HashMap<Destination, u64>>>,
    batches: Arc<Mutex<HashMap<Destination, u64>>>,
    enlisted: Mutex<HashMap<TransactionId, Vec<TxOp>>>,
}

#[async_trait]
impl PersistenceAdapter for Broken {
    fn kind(&self) -> &'static str {
        "broken"
    }
    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.inner.destinations().await
    }
    async fn queue_store(&self, d: &Destination) -> Result<Arc<dyn QueueStore>> {
        Ok(Arc::new(BrokenQueue {
            inner: self.inner.queue_store(d).await?,
            fault: self.fault,
            leaked: self.leaked.clone(),
            batches: self.batches.clone(),
        }))
    }
    async fn topic_store(&self, d: &Destination) -> Result<Arc<dyn TopicStore>> {
        Ok(Arc::new(BrokenTopic {
            inner: self.inner.topic_store(d).await?,
            fault: self.fault,
        }))
    }
    async fn remove_destination(&self, d: &Destination) -> Result<()> {
        self.inner.remove_destination(d).await
    }
    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.inner.begin(tx).await
    }
    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.inner.enlist(tx, op.clone()).await?;
        self.enlisted.lock().entry(tx.clone()).or_default().push(op);
        Ok(())
    }
    async fn prepare(&self, xid: &Xid) -> Result<()> {
        self.inner.prepare(xid).await
    }
    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        if self.fault != Fault::CommitNotAtomic {
            return self.inner.commit(tx).await;
        }
        let ops = self.enlisted.lock().remove(tx).unwrap_or_default();
        for op in ops {
            match op {
                TxOp::Add(m) => {
                    let d = m.destination.clone();
                    if d.is_queue() {
                        self.inner.queue_store(&d).await?.add(m).await?;
                    } else {
                        self.inner.topic_store(&d).await?.add(m).await?;
                    }
                }
                TxOp::QueueAck { destination, id } => {
                    self.inner
                        .queue_store(&destination)
                        .await?
                        .remove(&id)
                        .await?
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    self.inner
                        .topic_store(&destination)
                        .await?
                        .acknowledge(&subscription, &id)
                        .await?
                }
            }
        }
        self.inner.rollback(tx).await
    }
    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        if self.fault == Fault::RollbackLeaks && self.inner.commit(tx).await.is_ok() {
            return Ok(());
        }
        self.inner.rollback(tx).await
    }
    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.inner.prepared_transactions().await
    }
    async fn checkpoint(&self, cleanup: bool) -> Result<()> {
        self.inner.checkpoint(cleanup).await
    }
    async fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk().await
    }
    async fn delete_all(&self) -> Result<()> {
        self.leaked.lock().clear();
        self.inner.delete_all().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct BrokenQueue {
    inner: Arc<dyn QueueStore>,
    fault: Fault,
    leaked: Arc<Mutex<HashMap<Destination, u64>>>,
    /// Batches returned per queue, shared by every handle to it.
    batches: Arc<Mutex<HashMap<Destination, u64>>>,
}

#[async_trait]
impl DestinationStore for BrokenQueue {
    fn destination(&self) -> &Destination {
        self.inner.destination()
    }
    async fn add(&self, m: Message) -> Result<u64> {
        self.inner.add(m).await
    }
    async fn submit_add(&self, m: Message) -> Result<Pending<u64>> {
        if self.fault != Fault::SubmitPlacesLate {
            return self.inner.submit_add(m).await;
        }
        let inner = Arc::clone(&self.inner);
        Ok(Pending::new(async move { inner.add(m).await }))
    }
    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.inner.get(id).await
    }
    async fn remove(&self, id: &MessageId) -> Result<()> {
        let target = self.inner.get(id).await?;
        let mut victim = target.id.clone();
        if self.fault == Fault::AckRemovesWrongMessage
            && let Some(next) = self
                .inner
                .browse(Some(OrderKey::of(&target)), 1)
                .await?
                .pop()
        {
            victim = next.id;
        }
        if self.fault == Fault::BytesNotReleased {
            *self
                .leaked
                .lock()
                .entry(self.destination().clone())
                .or_default() += target.size();
        }
        self.inner.remove(&victim).await
    }
    async fn purge(&self) -> Result<u64> {
        self.inner.purge().await
    }
    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }
    async fn bytes(&self) -> Result<u64> {
        let leaked = self
            .leaked
            .lock()
            .get(self.destination())
            .copied()
            .unwrap_or(0);
        Ok(self.inner.bytes().await? + leaked)
    }
    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.inner.expired(now_ms, max).await
    }
}

#[async_trait]
impl QueueStore for BrokenQueue {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.inner.browse(after, max).await
    }
    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        let mut batch = self.inner.recover_next_ordered(order, max).await?;
        let mut batches = self.batches.lock();
        let n = batches.entry(self.destination().clone()).or_default();
        *n += 1;
        if self.fault == Fault::CursorSkips && *n > 1 && !batch.is_empty() {
            batch.remove(0);
        }
        Ok(batch)
    }
    async fn reset_cursor(&self) -> Result<()> {
        self.inner.reset_cursor().await
    }
    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        self.inner.set_cursor_after(id).await
    }
}

struct BrokenTopic {
    inner: Arc<dyn TopicStore>,
    fault: Fault,
}

#[async_trait]
impl DestinationStore for BrokenTopic {
    fn destination(&self) -> &Destination {
        self.inner.destination()
    }
    async fn add(&self, m: Message) -> Result<u64> {
        self.inner.add(m).await
    }
    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.inner.get(id).await
    }
    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.inner.remove(id).await
    }
    async fn purge(&self) -> Result<u64> {
        self.inner.purge().await
    }
    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }
    async fn bytes(&self) -> Result<u64> {
        self.inner.bytes().await
    }
    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.inner.expired(now_ms, max).await
    }
}

#[async_trait]
impl TopicStore for BrokenTopic {
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        let retroactive = retroactive && self.fault != Fault::RetroactiveIgnored;
        self.inner.add_subscription(info, retroactive).await
    }
    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.inner.delete_subscription(key).await
    }
    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.inner.subscriptions().await
    }
    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.inner.lookup_subscription(key).await
    }
    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.inner.acknowledge(key, id).await?;
        if self.fault == Fault::DurableAckReleasesForAll {
            let _ = self.inner.remove(id).await;
        }
        Ok(())
    }
    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.inner.browse_subscription(key, after, max).await
    }
    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.inner.recover_next_ordered(key, order, max).await
    }
    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.inner.reset_cursor(key).await
    }
    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.inner.set_cursor_after(key, id).await
    }
    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.inner.pending_count(key).await
    }
    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.inner.pending_bytes(key).await
    }
}

/// Runs every scenario against the broken store and returns the names of those that caught it.
fn caught_by_scenarios(fault: Fault) -> Vec<&'static str> {
    let failed = testkit::run_all(Mode::Reopen, || BrokenFactory::new(fault));
    failed.iter().map(|(name, _)| *name).collect()
}

fn assert_caught(fault: Fault, expected_scenario: &str) {
    let caught = caught_by_scenarios(fault);
    assert!(
        caught.contains(&expected_scenario),
        "{fault:?} was not caught by `{expected_scenario}`; caught by {caught:?}"
    );
}

fn assert_model_test_catches(fault: Fault) {
    let config = ModelTestConfig {
        cases: 64,
        max_ops: 80,
        ..ModelTestConfig::default()
    };
    let result = testkit::try_model_test(|| BrokenFactory::new(fault), config, 0x5eed);
    assert!(
        result.is_err(),
        "the model-based test did not catch {fault:?}"
    );
}

#[test]
fn the_model_itself_passes_every_scenario() {
    let failed = testkit::run_all(Mode::Reopen, ModelFactory::default);
    assert!(failed.is_empty(), "the reference model fails: {failed:?}");
}

#[test]
fn ack_that_removes_the_wrong_message_is_caught() {
    assert_caught(
        Fault::AckRemovesWrongMessage,
        "ack_removes_exactly_that_message",
    );
    assert_model_test_catches(Fault::AckRemovesWrongMessage);
}

#[test]
fn rollback_that_leaks_is_caught() {
    assert_caught(Fault::RollbackLeaks, "rollback_leaves_no_trace");
    assert_model_test_catches(Fault::RollbackLeaks);
}

#[test]
fn cursor_that_skips_is_caught() {
    assert_caught(Fault::CursorSkips, "cursor_batches_honour_max_and_order");
    assert_caught(
        Fault::CursorSkips,
        "concurrent_adds_never_skipped_by_cursor",
    );
    assert_model_test_catches(Fault::CursorSkips);
}

#[test]
fn prepared_transaction_lost_at_reopen_is_caught() {
    assert_caught(
        Fault::PreparedLostOnReopen,
        "prepared_transaction_survives_reopen_and_commits",
    );
}

#[test]
fn durable_ack_that_releases_for_everyone_is_caught() {
    assert_caught(
        Fault::DurableAckReleasesForAll,
        "topic_message_kept_until_every_subscription_acks",
    );
    assert_model_test_catches(Fault::DurableAckReleasesForAll);
}

#[test]
fn bytes_not_released_is_caught() {
    assert_caught(Fault::BytesNotReleased, "count_and_bytes_are_exact");
    assert_model_test_catches(Fault::BytesNotReleased);
}

#[test]
fn ignored_retroactive_flag_is_caught() {
    assert_caught(
        Fault::RetroactiveIgnored,
        "retroactive_subscription_sees_all_kept_messages",
    );
}

#[test]
fn non_atomic_commit_is_caught() {
    assert_caught(Fault::CommitNotAtomic, "failed_commit_changes_nothing");
}

#[test]
fn submit_that_places_late_is_caught() {
    assert_caught(Fault::SubmitPlacesLate, "submitted_adds_keep_their_order");
}
