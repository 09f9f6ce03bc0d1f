//! The reference model behind the store traits, so the kit can run against it (and against
//! deliberately broken wrappers of it) exactly as against an engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::StoreFactory;
use super::model::Model;
use crate::error::{Result, StoreError};
use crate::message::{Destination, Message, MessageId};
use crate::order::{DeliveryOrder, OrderKey};
use crate::store::{DestinationStore, PersistenceAdapter, QueueStore, TopicStore};
use crate::transaction::{
    PreparedTransaction, SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid,
};

/// An adapter over a [`Model`]. Several opens of one [`ModelFactory`] share the model, which
/// makes it behave like a persistent engine across close and reopen.
pub struct ModelStore {
    model: Arc<Mutex<Model>>,
    closed: Arc<AtomicBool>,
}

impl ModelStore {
    fn with<T>(&self, f: impl FnOnce(&mut Model) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        f(&mut self.model.lock())
    }

    fn handle(&self, d: &Destination) -> Result<ModelDestination> {
        let generation = self.with(|m| Ok(m.open_destination(d)))?;
        Ok(ModelDestination {
            model: self.model.clone(),
            closed: self.closed.clone(),
            destination: d.clone(),
            generation,
        })
    }
}

/// Opens [`ModelStore`]s over one shared model; `durable` because the model outlives a close.
#[derive(Default)]
pub struct ModelFactory {
    model: Arc<Mutex<Model>>,
    opened: AtomicBool,
}

#[async_trait]
impl StoreFactory for ModelFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        if self.opened.swap(true, Ordering::AcqRel) {
            self.model.lock().reopen();
        }
        Ok(Arc::new(ModelStore {
            model: self.model.clone(),
            closed: Arc::new(AtomicBool::new(false)),
        }))
    }

    fn durable(&self) -> bool {
        true
    }
}

fn check_kind(d: &Destination, queue: bool) -> Result<()> {
    if d.is_queue() == queue {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "{d} is not a {}",
            if queue { "queue" } else { "topic" }
        )))
    }
}

#[async_trait]
impl PersistenceAdapter for ModelStore {
    fn kind(&self) -> &'static str {
        "model"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.with(|m| Ok(m.destinations()))
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        check_kind(destination, true)?;
        Ok(Arc::new(self.handle(destination)?))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        check_kind(destination, false)?;
        Ok(Arc::new(self.handle(destination)?))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        self.with(|m| m.remove_destination(destination))
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.with(|m| m.begin(tx))
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.with(|m| m.enlist(tx, op))
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        self.with(|m| m.prepare(xid))
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        self.with(|m| m.commit(tx))
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        self.with(|m| m.rollback(tx))
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.with(|m| Ok(m.prepared_transactions()))
    }

    async fn checkpoint(&self, _cleanup: bool) -> Result<()> {
        self.with(|_| Ok(()))
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.with(|_| Ok(0))
    }

    async fn delete_all(&self) -> Result<()> {
        self.with(|m| {
            m.delete_all();
            Ok(())
        })
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

/// A queue or topic handle onto the model.
pub struct ModelDestination {
    model: Arc<Mutex<Model>>,
    closed: Arc<AtomicBool>,
    destination: Destination,
    generation: u64,
}

impl ModelDestination {
    fn with<T>(&self, f: impl FnOnce(&mut Model, &Destination, u64) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        f(&mut self.model.lock(), &self.destination, self.generation)
    }
}

#[async_trait]
impl DestinationStore for ModelDestination {
    fn destination(&self) -> &Destination {
        &self.destination
    }

    async fn add(&self, message: Message) -> Result<u64> {
        self.with(|m, d, g| m.add(d, g, message))
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        self.with(|m, d, g| m.get(d, g, id))
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.with(|m, d, g| m.remove(d, g, id))
    }

    async fn purge(&self) -> Result<u64> {
        self.with(|m, d, g| m.purge(d, g))
    }

    async fn count(&self) -> Result<u64> {
        self.with(|m, d, g| m.count(d, g))
    }

    async fn bytes(&self) -> Result<u64> {
        self.with(|m, d, g| m.bytes(d, g))
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        self.with(|m, d, g| m.expired(d, g, now_ms, max))
    }
}

#[async_trait]
impl QueueStore for ModelDestination {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        self.with(|m, d, g| m.browse(d, g, after, max))
    }

    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        self.with(|m, d, g| m.recover_next(d, g, order, max))
    }

    async fn reset_cursor(&self) -> Result<()> {
        self.with(|m, d, g| m.reset_cursor(d, g))
    }

    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        self.with(|m, d, g| m.set_cursor_after(d, g, id))
    }
}

#[async_trait]
impl TopicStore for ModelDestination {
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        self.with(|m, d, g| m.add_subscription(d, g, info, retroactive))
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        self.with(|m, d, g| m.delete_subscription(d, g, key))
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        self.with(|m, d, g| m.subscriptions(d, g))
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        self.with(|m, d, g| m.lookup_subscription(d, g, key))
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.with(|m, d, g| m.acknowledge(d, g, key, id))
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.with(|m, d, g| m.browse_subscription(d, g, key, after, max))
    }

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        self.with(|m, d, g| m.recover_next_subscription(d, g, key, order, max))
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        self.with(|m, d, g| m.reset_subscription_cursor(d, g, key))
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.with(|m, d, g| m.set_subscription_cursor_after(d, g, key, id))
    }

    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.with(|m, d, g| m.pending_count(d, g, key))
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.with(|m, d, g| m.pending_bytes(d, g, key))
    }
}
