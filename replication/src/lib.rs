//! A replicated store: high availability without shared storage, as ActiveMQ's
//! `replicatedLevelDB` offered it, over any local engine.
//!
//! Apache ZooKeeper elects one master among the brokers of a group ([`node`]); the master
//! serves clients from its local engine and ships every store write (the store-api operation,
//! [`op`], in commit order with a log position, [`log`]) to the slaves over TCP ([`frame`],
//! [`server`]); a synced write is answered once a quorum (`replicas / 2 + 1`, the master
//! included) has it on disk (or in memory, per [`SyncMode`]). Slaves apply the records to their
//! own local engine ([`apply`], [`follower`]) and acknowledge; one that was away or is new
//! catches up from the master's backlog, or by a full copy ([`snapshot`]) when the master no
//! longer has its range. Every record carries the master's epoch, claimed once through
//! ZooKeeper: slaves refuse any other, so a deposed master can never reach a quorum.
//!
//! What a master keeps serving without a quorum: reads and deliveries of stored messages; every
//! write waits up to the quorum timeout, then fails with an error saying how many replicas
//! answered (the write stays in the master's store, like a send whose receipt was lost).

pub mod apply;
pub mod error;
pub mod follower;
pub mod frame;
pub mod log;
pub mod member;
pub mod node;
pub mod op;
pub mod position;
pub mod server;
pub mod snapshot;
pub mod store;

pub use error::{ReplicationError, Result};
pub use node::{Master, Node, NodeConfig};
pub use store::ReplicatedStore;

/// When a replicated write counts as done (ActiveMQ's `sync` of `replicatedLevelDB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// A quorum has it on disk (each slave acknowledges once its local engine synced it).
    #[default]
    QuorumDisk,
    /// A quorum has it: the master on disk, the slaves in memory (acknowledged on receipt).
    QuorumMem,
    /// The master's disk alone; slaves follow asynchronously.
    LocalDisk,
}

impl SyncMode {
    /// Parses ActiveMQ's names (`quorum_disk`, `quorum_mem`, `local_disk`).
    pub fn parse(s: &str) -> Option<SyncMode> {
        match s {
            "quorum_disk" => Some(SyncMode::QuorumDisk),
            "quorum_mem" => Some(SyncMode::QuorumMem),
            "local_disk" => Some(SyncMode::LocalDisk),
            _ => None,
        }
    }
}
