//! The broker's error type.

use store_api::StoreError;

use crate::config::ConfigError;
use crate::selector::SelectorError;
use crate::state::BrokerState;

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// What a broker operation can fail with. Each is an answer to the caller; none stops the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A destination name that is a malformed wildcard or composite.
    #[error(transparent)]
    DestinationName(#[from] crate::destination_filter::DestinationNameError),
    /// A consumer's selector does not parse.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// The broker is not the master, or is stopping.
    #[error("the broker is not serving (it is {0})")]
    NotServing(BrokerState),
    /// The connection, session, producer or consumer was closed.
    #[error("the {0} is closed")]
    Closed(&'static str),
    /// A call that JMS does not allow here (an ack in a transacted session, a durable
    /// subscription without a client id, a client id already connected, ...).
    #[error("{0}")]
    Invalid(String),
    /// A destination that cannot be used: a temporary destination deleted or another
    /// connection's to consume from (JMS's `InvalidDestinationException`).
    #[error("{0}")]
    InvalidDestination(String),
    /// Another connection uses this client id.
    #[error("client id {0:?} is already connected")]
    ClientIdInUse(String),
    /// The connection's user may not do this to this destination (`[[authorization]]`); the
    /// text names the user, the operation and the destination, as ActiveMQ's
    /// `SecurityException`s do.
    #[error("{0}")]
    NotAuthorized(String),
    /// The temp store (non-persistent messages spooled to disk) failed to write or read.
    #[error(transparent)]
    TempStore(#[from] crate::temp_store::TempStoreError),
    /// Memory is full and the policy is to fail sends rather than wait.
    #[error("resource limit: {0}")]
    ResourceLimit(String),
    /// A per-connection cap was reached; `key` is the config key that sets it. The
    /// connection keeps what it has; only this call is refused.
    #[error("{what}: the limit is {limit} ({key})")]
    ConnectionLimit {
        what: String,
        limit: u64,
        key: &'static str,
    },
    /// A task of the broker's own failed (a bug, or the runtime stopping under it).
    #[error("internal error: {0}")]
    Internal(String),
    /// The store or the lock could not be opened or taken.
    #[error("{what}: {reason}")]
    Startup { what: String, reason: String },
}
