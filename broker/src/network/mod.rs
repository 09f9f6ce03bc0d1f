//! A network of brokers: store-and-forward bridges to other brokers over OpenWire, as
//! ActiveMQ's `DemandForwardingBridge`.
//!
//! A bridge of broker A to broker B is an OpenWire client of B. It watches B's consumer
//! advisories; for each destination with a consumer there (that its filters permit, whose
//! broker path does not hold A and is shorter than `network_ttl`) it consumes the
//! destination on A and sends each message to B, acking it on A only once B answered that it
//! stored it. Loops are stopped by broker paths: every forwarded message and every consumer
//! opened for a bridge carries the ids of the brokers it came through.

pub mod broker_id;
pub mod config;

pub use config::NetworkConnector;

/// The property a message's broker path is kept in while it is in this broker (OpenWire
/// carries it in `Message.brokerPath`; other protocols see it as a header/property): the
/// ids of the brokers it was forwarded from, comma-separated, oldest first.
pub const BROKER_PATH_PROPERTY: &str = "JMSXBrokerPath";
