//! OpenWire, the ActiveMQ Java client's protocol, in front of broker-core: the same
//! destinations, users, sessions and transactions as STOMP (`crate::stomp`), so that a
//! message sent by either protocol is received by the other.
//!
//! The codec is the `openwire` crate; [`convert`] maps messages both ways and
//! [`connection`] serves one client.

mod advisory;
mod connection;
pub mod convert;
pub(crate) mod takeover;

pub use connection::serve;
