//! The broker as this program runs it: broker-core's broker over the engine and the locker that
//! `engines` opens from the config file, with the whole file at hand for what the program reads
//! itself (the listeners, the users, the web console).

use std::ops::Deref;

use crate::config::BrokerConfig;

/// broker-core's [`broker_core::Broker`] (every call of which it answers, through `Deref`)
/// built from a `broker.toml`.
pub struct Broker {
    inner: broker_core::Broker,
    config: BrokerConfig,
}

impl Broker {
    /// A broker on the engine and the locker `config` names; `start()` it to serve.
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            inner: engines::broker(config.core(), &config.engine()),
            config,
        }
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
