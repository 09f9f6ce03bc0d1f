//! The broker's life cycle: the states a master/slave pair moves through.

use std::fmt;

/// Where the broker is in its life. A broker moves only forward through these:
/// `Created → WaitingForLock → Recovering → Serving → (LockLost →) Stopped`; every transition
/// is logged. Only a `Serving` broker accepts connections, and a broker that loses its lock
/// leaves `Serving` (closing every connection and its store) before anything else is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    Created,
    /// A slave: another broker holds the lock.
    WaitingForLock,
    /// The lock is held; the store is being opened and recovered.
    Recovering,
    /// The master: accepting connections.
    Serving,
    /// The lock was lost; the broker is shutting down.
    LockLost,
    Stopping,
    Stopped,
}

impl fmt::Display for BrokerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokerState::Created => "created",
            BrokerState::WaitingForLock => "waiting for the lock (slave)",
            BrokerState::Recovering => "recovering",
            BrokerState::Serving => "serving (master)",
            BrokerState::LockLost => "lock lost",
            BrokerState::Stopping => "stopping",
            BrokerState::Stopped => "stopped",
        })
    }
}
