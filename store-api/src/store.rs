//! The traits of the contract: the adapter, and the per-destination stores (what queues and
//! topics share, then each one's own delivery).

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Result, WriteRefusal};
use crate::message::{Destination, Message, MessageId};
use crate::order::{DeliveryOrder, OrderKey};
use crate::pending::Pending;
use crate::transaction::{
    PreparedTransaction, SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid,
};

/// One store per broker: the factory for per-destination stores and the owner of transactions.
/// The broker holds it as `Arc<dyn PersistenceAdapter>`, chosen at run time from config.
#[async_trait]
pub trait PersistenceAdapter: Send + Sync + 'static {
    /// The engine's short name: `memory`, `kahadb`, `amq`, `jdbc`, `journaled-jdbc`.
    fn kind(&self) -> &'static str;

    /// Every destination created and not removed, sorted.
    async fn destinations(&self) -> Result<Vec<Destination>>;

    /// The store of a queue, creating the destination if new. Every call for one destination
    /// returns a handle onto the same state (one cursor per queue).
    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>>;

    /// The store of a topic, creating the destination if new.
    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>>;

    /// Deletes a destination with its messages and subscriptions. Handles to it fail with
    /// `NotFound` afterwards.
    async fn remove_destination(&self, destination: &Destination) -> Result<()>;

    /// Starts a transaction. `Duplicate` if the id is already in use.
    async fn begin(&self, tx: &TransactionId) -> Result<()>;

    /// Adds an operation to an open transaction. Nothing is visible until commit. An ack must name
    /// a message that is stored now (`NotFound` otherwise); a prepared transaction takes no more
    /// operations (`InvalidArgument`).
    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()>;

    /// XA phase one: makes the transaction durable so it survives a crash and reopen.
    async fn prepare(&self, xid: &Xid) -> Result<()>;

    /// Applies every operation of the transaction at once, or none: if any ack's message is gone
    /// or any add is a duplicate, the error is returned and nothing changes (the transaction stays
    /// open and can be rolled back).
    async fn commit(&self, tx: &TransactionId) -> Result<()>;

    /// Discards the transaction; it leaves no trace.
    async fn rollback(&self, tx: &TransactionId) -> Result<()>;

    /// XA transactions prepared and not yet ended, sorted by xid.
    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>>;

    /// Makes the engine's index durable and, with `cleanup`, reclaims space. A no-op where
    /// there is nothing to do.
    async fn checkpoint(&self, cleanup: bool) -> Result<()>;

    /// Bytes the store occupies on disk (0 for engines that keep nothing on local disk).
    async fn size_on_disk(&self) -> Result<u64>;

    /// The engine's own counters for monitoring, as `(name, value)` pairs with names in
    /// snake case (`journal_fsyncs`, `journal_files`, `database_commits`, ...). Cheap: no I/O.
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Why the store refuses writes now (an earlier write or fsync failed), or `None` while it
    /// takes them. Cheap: no I/O. The broker polls it to report the store's state.
    fn write_refusal(&self) -> Option<WriteRefusal> {
        None
    }

    /// After a refusal that can pass (a full disk, [`WriteRefusal::disk_full`]): if there is
    /// space again, reopens the engine from its files in place, as at open (so nothing stored
    /// is lost and no half-written record survives), keeping every handle, cursor and
    /// subscription valid, and takes writes again. Returns whether writes are taken now.
    /// Operations in flight meanwhile fail cleanly; a local transaction not yet prepared is
    /// lost (its commit is `NotFound`). The default (engines that never refuse, or cannot
    /// recover in place) only reports.
    async fn resume_writes(&self) -> Result<bool> {
        Ok(self.write_refusal().is_none())
    }

    /// Deletes every destination, message, subscription and transaction; the store stays open.
    async fn delete_all(&self) -> Result<()>;

    /// Flushes and releases the store. Every later call on it or its handles fails with `Closed`.
    async fn close(&self) -> Result<()>;
}

/// What queue and topic stores share: the messages a destination keeps, each added once and
/// read, dropped or counted by id. [`QueueStore`] and [`TopicStore`] add delivery (the queue's
/// cursor; the topic's subscriptions and theirs). Object safe: the broker holds handles as
/// `Arc<dyn QueueStore>` and `Arc<dyn TopicStore>`, and calls these methods through either.
///
/// A topic keeps a message only while some durable subscription still has it pending; "kept"
/// below means stored in a queue, or kept for a subscription in a topic.
#[async_trait]
pub trait DestinationStore: Send + Sync {
    fn destination(&self) -> &Destination;

    /// Stores a message and returns the sequence assigned to it. Returns once durable per the
    /// engine's sync policy. A topic message is stored for the current subscriptions (and not
    /// kept at all when there is none). `Duplicate` if a message with that id is kept here.
    async fn add(&self, message: Message) -> Result<u64>;

    /// [`add`](Self::add) in two steps, for a producer that pipelines. When this returns Ok the
    /// message has its place: an add submitted after this returned (by this caller or any
    /// other) sorts after it at equal priority, and an invalid message has been refused here (a
    /// `Duplicate` here or by the `Pending`, as the engine finds it). The [`Pending`] resolves with the sequence once the message
    /// is durable per the sync policy; readers (`recover_next`, `browse`, `get`, `count`) see it
    /// only from then on, and if the write fails they never do. The caller drives the
    /// `Pending` to completion.
    ///
    /// The default does the whole add before returning: correct for every engine, pipelining
    /// for none. Engines with group commit override it so that what one connection has in
    /// flight shares an fsync.
    async fn submit_add(&self, message: Message) -> Result<Pending<u64>> {
        let sequence = self.add(message).await?;
        Ok(Pending::ready(Ok(sequence)))
    }

    /// The kept message with that id, or `NotFound`.
    async fn get(&self, id: &MessageId) -> Result<Message>;

    /// Deletes exactly that message, or `NotFound` if it is not kept. On a queue this is the
    /// ack; on a topic it drops the message for every subscription (expiry, administrative
    /// delete).
    async fn remove(&self, id: &MessageId) -> Result<()>;

    /// [`remove`](Self::remove) as the ack of a message no client waits for (no receipt, no
    /// response): the same result and durability when it returns, but an engine with group
    /// commit may hold it a moment (its `ack_sync_delay`) for a write someone does wait for,
    /// and share that one's fsync instead of taking one of its own. The default is `remove`.
    async fn remove_unwaited(&self, id: &MessageId) -> Result<()> {
        self.remove(id).await
    }

    /// Deletes every kept message (for every subscription of a topic); returns how many.
    async fn purge(&self) -> Result<u64>;

    /// Exact number of kept messages (committed ones only; a topic counts each message once,
    /// however many subscriptions have it pending).
    async fn count(&self) -> Result<u64>;

    /// Exact sum of [`Message::size`] over kept messages (each counted once).
    async fn bytes(&self) -> Result<u64>;

    /// Up to `max` ids of kept messages whose expiration is non-zero and at or before `now_ms`.
    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>>;
}

/// The messages of one queue, in delivery order (priority high to low, then sequence).
/// [`DestinationStore::remove`] is the ack.
#[async_trait]
pub trait QueueStore: DestinationStore {
    /// Up to `max` messages in delivery order strictly after `after` (from the start if `None`).
    /// Stateless: this is how to browse and how to page with a key you keep.
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>>;

    /// The batch cursor: up to `max` messages not yet returned since the last reset, in delivery
    /// order. A message added at any time is returned by some later call; none is returned twice;
    /// none is skipped, even while adds and removes interleave with the iteration.
    async fn recover_next(&self, max: usize) -> Result<Vec<Message>> {
        self.recover_next_ordered(DeliveryOrder::Priority, max)
            .await
    }

    /// [`recover_next`](Self::recover_next) in `order`: in [`DeliveryOrder::Arrival`], the
    /// `max` lowest sequences not yet returned, whatever their priorities (a destination whose
    /// policy turns prioritized messages off). Same cursor, same guarantees.
    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>>;

    /// Rewinds the batch cursor to the beginning.
    async fn reset_cursor(&self) -> Result<()>;

    /// Moves the batch cursor after `id`: messages before it in delivery order count as returned.
    async fn set_cursor_after(&self, id: &MessageId) -> Result<()>;
}

/// The messages of one topic that durable subscriptions still need, and the subscriptions.
///
/// A message added is pending for every subscription that exists at that moment; it is kept
/// until each of them has acknowledged it (or was deleted), and then its space is released. A
/// message added while no subscription exists is not kept.
#[async_trait]
pub trait TopicStore: DestinationStore {
    /// Creates a durable subscription (`Duplicate` if it exists). A retroactive one starts with
    /// every kept message pending; otherwise it sees only messages added later.
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()>;

    /// Deletes a subscription and releases messages only it kept. `NotFound` if absent.
    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()>;

    /// Every subscription, sorted by key.
    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>>;

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>>;

    /// Acknowledges one message for one subscription, in any order. `NotFound` if the
    /// subscription does not exist or the message is not pending for it.
    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()>;

    /// [`acknowledge`](Self::acknowledge) for an ack no client waits for, as
    /// [`DestinationStore::remove_unwaited`]. The default is `acknowledge`.
    async fn acknowledge_unwaited(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.acknowledge(key, id).await
    }

    /// Up to `max` messages pending for the subscription, in delivery order after `after`.
    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>>;

    /// The subscription's batch cursor, with the guarantees of [`QueueStore::recover_next`].
    async fn recover_next(&self, key: &SubscriptionKey, max: usize) -> Result<Vec<Message>> {
        self.recover_next_ordered(key, DeliveryOrder::Priority, max)
            .await
    }

    /// The subscription's batch cursor in `order` (see [`QueueStore::recover_next_ordered`]).
    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>>;

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()>;

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()>;

    /// Exact number of messages pending for the subscription.
    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64>;

    /// Exact sum of [`Message::size`] over messages pending for the subscription.
    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64>;
}
