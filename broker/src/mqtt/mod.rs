//! MQTT 3.1.1: the server side of a connection, as ActiveMQ 5.17's MQTT transport. The packet
//! codec is its own crate, `mqtt-codec` (pure, no I/O, fuzzed without the broker).
//!
//! - [`mapping`]: MQTT topics and QoS onto broker-core's topics and persistence;
//! - [`retained`]: retained messages, kept in the store as a hidden queue;
//! - [`session`]: subscriptions and the QoS 1/2 deliveries in flight to a client;
//! - [`connection`]: one connection, packets in, broker-core calls, packets out.

pub mod connection;
pub mod mapping;
pub mod retained;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

pub use mqtt_codec as codec;

use crate::stomp::server::ServerContext;

/// What every MQTT connection shares.
pub struct MqttContext {
    pub server: Arc<ServerContext>,
    pub retained: Arc<retained::Retained>,
    /// QoS 1/2 messages one subscription may have delivered and not yet acknowledged.
    pub max_inflight: usize,
    /// The connected client ids, each with the switch that closes its connection (a second
    /// CONNECT with the same id takes over, [MQTT-3.1.4-2]).
    pub clients: Mutex<HashMap<String, (u64, watch::Sender<bool>)>>,
}
