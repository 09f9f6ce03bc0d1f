//! The journaled JDBC store: a fast local journal in front of the JDBC store, checkpointed
//! into the database (ActiveMQ's `JournalPersistenceAdapter`).
//!
//! Every add, ack and local-transaction commit is one record in the shared `store-journal`
//! (`journal-N.log`, group commit) and is acknowledged once durable per the sync policy. The
//! change is also applied to an in-memory overlay ([`overlay`]) that readers merge over the
//! database at once. A checkpoint (every `checkpoint_interval`, 5 minutes by default; early
//! once the journal holds `checkpoint_journal_bytes` since the last one; and at a clean close)
//! moves the overlay into the database in one transaction ([`store_jdbc::journaled::CheckpointBatch`]),
//! recording the journal position it reflects (the mark, in `ACTIVEMQ_ACKS`), then deletes the
//! journal files before it. An add acked within one cycle never reaches the database.
//!
//! Open replays the journal from the mark into the overlay (idempotently: an add already in the
//! database and an ack of a row already gone are skipped) and checkpoints it.
//!
//! What the journal does not carry goes straight to the database after a checkpoint:
//! subscriptions, purges, destination removal, topic message removal and XA prepare (a prepared
//! transaction is the database's, so it survives the loss of this machine's disk).
//!
//! The record format is in [`records`]. This engine refuses a database locker: see
//! `JournaledJdbcStore::open`.
//!
//! Everything but the record format is behind the default feature `engine`, so that the fuzz
//! target `journaled_record` builds the decoder without the database drivers.

#[cfg(feature = "engine")]
mod config;
#[cfg(feature = "engine")]
mod known;
#[cfg(feature = "engine")]
pub mod overlay;
pub mod records;
#[cfg(feature = "engine")]
mod store;

#[cfg(feature = "engine")]
pub use config::JournaledJdbcConfig;
#[cfg(feature = "engine")]
pub use store::{DropProbe, JournaledJdbcStore};
