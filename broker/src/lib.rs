//! The `broker` program's library: the config file, the broker it builds (broker-core over the
//! engine and locker `engines` opens), STOMP over TCP, TLS and WebSocket in front of it, its
//! users, the web console, a STOMP and an OpenWire client (for the CLI tools and the tests),
//! and the broker URL syntax.
//!
//! STOMP follows ActiveMQ's conventions so that clients written for ActiveMQ's STOMP connector
//! work unchanged: `/queue/<name>` and `/topic/<name>`, `persistent:true` for persistent sends
//! (the default is non-persistent, as in ActiveMQ), `priority`, `expires`, `selector`,
//! `client-id` on CONNECT with `activemq.subscriptionName` on SUBSCRIBE for durable
//! subscriptions, `activemq.prefetchSize`, and `browser:true` for queue browsers.

pub mod client;
pub mod config;
pub mod import;
pub mod listener;
pub mod mqtt;
pub mod network;
pub mod openwire;
pub mod openwire_client;
mod outbound;
mod pipeline;
mod program;
pub mod stomp;
pub mod tls;
pub mod url;
pub mod users;
pub mod web;

pub use config::BrokerConfig;
pub use pipeline::PipelineGauge;
pub use program::Broker;
