//! The broker as this program runs it: broker-core's broker over the engine and the locker that
//! `engines` opens from the config file, with the whole file at hand for what the program reads
//! itself (the listeners, the users, the web console).

use std::ops::Deref;
use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::pipeline::PipelineGauge;

/// broker-core's [`broker_core::Broker`] (every call of which it answers, through `Deref`)
/// built from a `broker.toml`.
pub struct Broker {
    inner: broker_core::Broker,
    config: BrokerConfig,
    pipelined: Arc<PipelineGauge>,
    /// See [`Broker::broker_id`].
    broker_id: std::sync::OnceLock<String>,
    network: crate::network::status::Network,
}

impl Broker {
    /// A broker on the engine and the locker `config` names; `start()` it to serve.
    pub fn new(config: BrokerConfig) -> Broker {
        Broker::with_core(engines::broker(config.core(), &config.engine()), config)
    }

    /// A broker-core broker built by the caller (over a store of its own: an embedding, or a
    /// test's store on a simulated disk), with the rest of `config` for the program's part.
    pub fn with_core(inner: broker_core::Broker, config: BrokerConfig) -> Broker {
        Broker {
            inner,
            config,
            pipelined: Arc::default(),
            broker_id: std::sync::OnceLock::new(),
            network: crate::network::status::Network::default(),
        }
    }

    /// The message bytes the connections' pipelining windows hold (see `[transports]
    /// pipeline_window_bytes`).
    pub fn pipelined(&self) -> &Arc<PipelineGauge> {
        &self.pipelined
    }

    /// The id this broker goes by in OpenWire's `BrokerInfo` and in the broker paths of a
    /// network of brokers: kept in `broker.id` under the data directory, so it stays the
    /// same across restarts (a message forwarded before a restart still names it).
    pub fn broker_id(&self) -> &str {
        self.broker_id
            .get_or_init(|| crate::network::broker_id::load_or_create(&self.config))
    }

    /// The network bridges' state, and the messages other brokers' bridges sent here.
    pub fn network(&self) -> &crate::network::status::Network {
        &self.network
    }

    /// The whole config file (broker-core's own part is [`broker_core::Broker::config`]).
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }
}

impl Deref for Broker {
    type Target = broker_core::Broker;

    fn deref(&self) -> &broker_core::Broker {
        &self.inner
    }
}
