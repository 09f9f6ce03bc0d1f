//! A network of brokers: store-and-forward bridges to other brokers over OpenWire, as
//! ActiveMQ's `DemandForwardingBridge`.
//!
//! A bridge of broker A to broker B is an OpenWire client of B. It watches B's consumer
//! advisories; for each destination with a consumer there (that its filters permit, whose
//! broker path does not hold A and is shorter than `network_ttl`) it consumes the
//! destination on A and sends each message to B, acking it on A only once B answered that it
//! stored it. Loops are stopped by broker paths: every forwarded message and every consumer
//! opened for a bridge carries the ids of the brokers it came through.
//!
//! The remote brokers are listed (`static:`) or discovered on a multicast group
//! (`multicast://`, see [`discovery`]).

mod bridge;
pub mod broker_id;
pub mod config;
pub mod discovery;
mod duplex;
mod forward;
mod link;
pub mod status;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

pub use config::NetworkConnector;

/// The property a message's broker path is kept in while it is in this broker (OpenWire
/// carries it in `Message.brokerPath`; other protocols see it as a header/property): the
/// ids of the brokers it was forwarded from, comma-separated, oldest first.
pub use broker_core::BROKER_PATH_PROPERTY;

/// Starts a bridge per remote broker of each static `[[network_connectors]]` entry, and a
/// listener for each multicast one (which bridges to each broker it discovers, except those
/// advertising one of `own_services`, this broker's); they run until `shutdown` turns true.
pub fn start(
    broker: &Arc<crate::Broker>,
    shutdown: &watch::Receiver<bool>,
    own_services: &[String],
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (i, c) in broker.config().network_connectors.iter().enumerate() {
        let key = format!("network_connectors[{i}]");
        // Validated with the config; a config built in code that is not is skipped, loudly.
        let (discovery, filters) = match (c.discovery(), c.filters(&key)) {
            (Ok(r), Ok(f)) => (r, f),
            (Err(e), _) => {
                warn!("{key}.uri: {e}; connector not started");
                continue;
            }
            (_, Err(e)) => {
                warn!("{e}; connector not started");
                continue;
            }
        };
        let connector = Arc::new(c.clone());
        let filters = Arc::new(filters);
        let remotes = match discovery {
            config::Discovery::Static(r) => r,
            config::Discovery::Multicast(uri) => {
                let d = discovery::Discovery {
                    uri,
                    connector,
                    filters,
                    own_services: own_services.iter().cloned().collect(),
                };
                tasks.push(tokio::spawn(discovery::discover(
                    d,
                    Arc::clone(broker),
                    shutdown.clone(),
                )));
                continue;
            }
        };
        for remote in remotes {
            let status = broker.network().register(&c.name, &remote.address);
            let spec = bridge::Spec {
                connector: Arc::clone(&connector),
                filters: Arc::clone(&filters),
                remote,
                status,
            };
            tasks.push(tokio::spawn(bridge::run(
                spec,
                Arc::clone(broker),
                shutdown.clone(),
            )));
        }
    }
    tasks
}
