//! The LevelDB engine, on RocksDB (LevelDB's maintained successor): ActiveMQ's fifth
//! persistence option, "usually for clusters", behind the same contract as every engine.
//!
//! Records live in column families by kind (`FORMAT.md` gives every key and value): message
//! entries keyed by destination, priority and sequence (RocksDB's byte order is delivery
//! order), subscriptions, the exact set of messages pending for each subscription, prepared XA
//! transactions, and the last sequence. Message bodies are written once, to the journal, and
//! the entries say where (`record.rs`; a transaction that also acks keeps its bodies inline). A topic message's body is stored once, however many
//! subscriptions have it pending; each of them holds a small pending key.
//!
//! **Writes** go first to the engine's own journal (`store-journal`: preallocated files, group
//! commit, one `fdatasync` shared by every writer that arrived meanwhile), as ActiveMQ's
//! LevelDB store keeps its own log in front of LevelDB, and then to RocksDB without a sync.
//! Every store call that changes something, and every commit, is one `WriteBatch` and one
//! journal record, appended under one lock so that the index held in memory, the journal and
//! RocksDB agree on the order of writes; the batches reach RocksDB right after, merged
//! (`apply.rs`). Under `sync = true` the call returns once the journal's fsync covered its
//! record. A failed write poisons the store until reopened. A change is visible to readers as
//! soon as it is appended, before its sync.
//!
//! **Open** lets RocksDB recover a consistent prefix of the batches, applies the journal's
//! records past it (`journal.rs` gives the argument), and rebuilds the index from the small
//! records without reading bodies. `repair = true` runs RocksDB's repair first.

mod apply;
mod batch;
mod bodies;
mod config;
mod diagnose;
mod error;
mod handle;
mod index;
mod journal;
mod keys;
mod record;
mod recovery;
mod store;
mod transaction;

pub use config::LevelDbConfig;
pub use error::{LevelDbError, Result};
pub use store::LevelDbStore;
