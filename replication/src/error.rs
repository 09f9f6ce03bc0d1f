//! The replication crate's errors: ZooKeeper, the replication connection, the local engine.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;

/// What went wrong while electing, replicating or applying.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// A ZooKeeper call failed (the ensemble is unreachable, the session expired, ...).
    #[error("ZooKeeper {what}: {source}")]
    ZooKeeper {
        what: String,
        #[source]
        source: zookeeper_client::Error,
    },
    /// Bytes from a replication peer (or the position file) do not decode.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// A socket or file operation failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The position file is damaged.
    #[error("replication position file {}: {reason}", .path.display())]
    PositionFile { path: PathBuf, reason: String },
    /// The local engine refused an operation the master had applied.
    #[error("the local store: {0}")]
    Store(#[from] store_api::StoreError),
    /// A peer with a newer election epoch exists: this node's role is over.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The configuration cannot work (`replicas` below 1, an address that does not parse).
    #[error("replication config: {0}")]
    Config(String),
}

impl ReplicationError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ReplicationError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn zk(what: impl Into<String>, source: zookeeper_client::Error) -> Self {
        ReplicationError::ZooKeeper {
            what: what.into(),
            source,
        }
    }
}

impl From<store_api::DecodeError> for ReplicationError {
    fn from(e: store_api::DecodeError) -> Self {
        ReplicationError::Protocol(e.to_string())
    }
}
