//! The message-store contract of the broker: the message model and its binary encoding, the
//! store traits every engine implements, the error type, and (behind the `testkit` feature) the
//! conformance kit every engine must pass.
//!
//! # Guarantees every engine gives
//!
//! The conformance kit ([`testkit`]) checks each of these by a named scenario; a persistent
//! engine is checked again across close and reopen.
//!
//! **Messages.** A stored message reads back exactly as added (every header, property and body
//! kind, empty to 16 MiB bodies, any Unicode), with the `sequence` the store assigned.
//! Sequences are strictly increasing per store, across destinations and reopens. A priority above
//! 9, or a message addressed to another destination, is `InvalidArgument`; a second add of an id
//! stored in the same destination is `Duplicate`.
//!
//! **Queues.** Delivery order is priority high to low, then sequence (FIFO within a priority);
//! the batch cursor can also be read in arrival (sequence) order ([`DeliveryOrder`]).
//! `remove` deletes exactly the message named; `get`/`remove` of an unknown id is `NotFound`, never
//! a panic. `count` and `bytes` are exact at every moment (bytes = sum of [`Message::size`]).
//! `browse` pages statelessly by [`OrderKey`]. The batch cursor (`recover_next`) returns every
//! message at most once between resets and never skips one, however adds and removes interleave;
//! `reset_cursor` rewinds it, `set_cursor_after` moves it. Expired messages are found by
//! `expired`.
//!
//! **Topics.** A message is pending for every durable subscription that exists when it is added.
//! A non-retroactive subscription sees only later messages; a retroactive one also every message
//! kept when it was created. Acks are per subscription, exact and in any order. A message is kept
//! until every subscription it is pending for has acked it or was deleted; then it is released
//! (`count`/`bytes` of the topic drop). A message added with no subscription is not kept.
//!
//! **Transactions.** Operations enlisted in a transaction are invisible until commit; commit applies
//! all or nothing (a failing commit changes nothing); rollback leaves no trace. A prepared XA
//! transaction survives close and reopen (a local or unprepared one does not) and can then be
//! committed or rolled back.
//!
//! **Destinations.** A destination exists from its first `queue_store`/`topic_store` call until
//! `remove_destination`, and persistent engines keep it across reopen. `delete_all` empties the
//! store.
//!
//! **Durability.** Under [`SyncPolicy::Always`] an Ok from a write means it is on stable storage;
//! concurrent writers share fsyncs. A producer may pipeline with `submit_add`: the message's place in
//! its destination is fixed when that returns, it becomes visible to readers only once durable,
//! and adds submitted one after another keep that order. After a failed fsync the engine is `Poisoned` until reopened.
//! A write that fails because the file system is full is `DiskFull` (naming the directory),
//! and so is every write after it until space is freed; an engine that can then reopens itself
//! from its files ([`PersistenceAdapter::resume_writes`]) and takes writes again, having lost
//! nothing that was acknowledged.
//! After `close`, every call is `Closed`.
//!
//! # Encoding
//!
//! [`codec`] documents the byte layout; decoding arbitrary bytes returns a value or an error,
//! never a panic, and `decode(encode(m)) == m`.

pub mod codec;
pub mod error;
pub mod message;
pub mod open_transactions;
pub mod order;
pub mod pending;
pub mod store;
pub mod sync_policy;
pub mod transaction;
pub mod tx_check;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{DecodeError, ErrorKind, Result, StoreError, WriteRefusal, is_disk_full};
pub use message::{
    Body, DEFAULT_PRIORITY, Destination, DestinationKind, MAX_PRIORITY, Message, MessageId, Value,
};
pub use open_transactions::{OpenTransaction, OpenTransactions};
pub use order::{CursorPosition, DeliveryOrder, OrderKey};
pub use pending::Pending;
pub use store::{DestinationStore, PersistenceAdapter, QueueStore, TopicStore};
pub use sync_policy::SyncPolicy;
pub use transaction::{
    PreparedTransaction, SubscriptionInfo, SubscriptionKey, TransactionId, TxOp, Xid,
};
