//! The traits of the contract: the adapter, queue stores and topic stores.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::message::{Destination, Message, MessageId};
use crate::order::OrderKey;
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

    /// Deletes every destination, message, subscription and transaction; the store stays open.
    async fn delete_all(&self) -> Result<()>;

    /// Flushes and releases the store. Every later call on it or its handles fails with `Closed`.
    async fn close(&self) -> Result<()>;
}

/// The messages of one queue, in delivery order (priority high to low, then sequence).
#[async_trait]
pub trait QueueStore: Send + Sync {
    fn destination(&self) -> &Destination;

    /// Stores a message and returns the sequence assigned to it. Returns once durable per the
    /// engine's sync policy. `Duplicate` if a message with that id is stored in this queue.
    async fn add(&self, message: Message) -> Result<u64>;

    /// The stored message with that id, or `NotFound`.
    async fn get(&self, id: &MessageId) -> Result<Message>;

    /// Acknowledges (deletes) exactly that message, or `NotFound`.
    async fn remove(&self, id: &MessageId) -> Result<()>;

    /// Deletes every message; returns how many.
    async fn purge(&self) -> Result<u64>;

    /// Up to `max` messages in delivery order strictly after `after` (from the start if `None`).
    /// Stateless: this is how to browse and how to page with a key you keep.
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>>;

    /// The batch cursor: up to `max` messages not yet returned since the last reset, in delivery
    /// order. A message added at any time is returned by some later call; none is returned twice;
    /// none is skipped, even while adds and removes interleave with the iteration.
    async fn recover_next(&self, max: usize) -> Result<Vec<Message>>;

    /// Rewinds the batch cursor to the beginning.
    async fn reset_cursor(&self) -> Result<()>;

    /// Moves the batch cursor after `id`: messages before it in delivery order count as returned.
    async fn set_cursor_after(&self, id: &MessageId) -> Result<()>;

    /// Exact number of stored messages (committed ones only).
    async fn count(&self) -> Result<u64>;

    /// Exact sum of [`Message::size`] over stored messages.
    async fn bytes(&self) -> Result<u64>;

    /// Up to `max` ids of stored messages whose expiration is non-zero and at or before `now_ms`.
    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>>;
}

/// The messages of one topic that durable subscriptions still need, and the subscriptions.
///
/// A message added is pending for every subscription that exists at that moment; it is kept
/// until each of them has acknowledged it (or was deleted), and then its space is released. A
/// message added while no subscription exists is not kept.
#[async_trait]
pub trait TopicStore: Send + Sync {
    fn destination(&self) -> &Destination;

    /// Stores a message for the current subscriptions; returns its sequence. `Duplicate` if a
    /// message with that id is still kept in this topic.
    async fn add(&self, message: Message) -> Result<u64>;

    /// A message still kept by some subscription, or `NotFound`.
    async fn get(&self, id: &MessageId) -> Result<Message>;

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

    /// Up to `max` messages pending for the subscription, in delivery order after `after`.
    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>>;

    /// The subscription's batch cursor, with the guarantees of [`QueueStore::recover_next`].
    async fn recover_next(&self, key: &SubscriptionKey, max: usize) -> Result<Vec<Message>>;

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()>;

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()>;

    /// Exact number of messages pending for the subscription.
    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64>;

    /// Exact sum of [`Message::size`] over messages pending for the subscription.
    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64>;

    /// Drops a message for every subscription (expiry, administrative delete). `NotFound` if not
    /// kept.
    async fn remove(&self, id: &MessageId) -> Result<()>;

    /// Drops every kept message for every subscription; returns how many messages.
    async fn purge(&self) -> Result<u64>;

    /// Exact number of messages kept (pending for at least one subscription).
    async fn count(&self) -> Result<u64>;

    /// Exact sum of [`Message::size`] over kept messages (each counted once).
    async fn bytes(&self) -> Result<u64>;

    /// Up to `max` ids of kept messages that have expired at `now_ms`.
    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>>;
}
