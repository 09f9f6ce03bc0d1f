//! The LevelDB engine, on RocksDB (LevelDB's maintained successor): ActiveMQ's fifth
//! persistence option, "usually for clusters", behind the same contract as every engine.
//!
//! Records live in column families by kind (`FORMAT.md` gives every key and value): message
//! entries and bodies keyed by destination, priority and sequence (RocksDB's byte order is
//! delivery order), subscriptions, the exact set of messages pending for each subscription,
//! prepared XA transactions, and the last sequence. A topic message's body is stored once,
//! however many subscriptions have it pending; each of them holds a small pending key.
//!
//! **Writes.** Every store call that changes something, and every commit, is one `WriteBatch`,
//! appended under one lock so that the index held in memory and RocksDB's log agree on the
//! order of writes. Under `sync = true` the call returns once a `SyncWAL` covered its batch;
//! one sync thread serves every writer that arrived meanwhile (group commit, counted in the
//! `leveldb_writes` and `leveldb_wal_syncs` metrics). A failed write or sync poisons the store
//! until reopened. A change is visible to readers as soon as it is appended, before its sync.
//!
//! **Open** replays RocksDB's log (a torn final record is cut; damage anywhere else fails the
//! open with an error naming the file, never a silent loss) and rebuilds the index from the
//! small records, without reading bodies. `repair = true` runs RocksDB's repair first.

mod apply;
mod batch;
mod config;
mod diagnose;
mod error;
mod handle;
mod index;
mod journal;
mod keys;
mod recovery;
mod store;
mod transaction;

pub use config::LevelDbConfig;
pub use error::{LevelDbError, Result};
pub use store::LevelDbStore;
