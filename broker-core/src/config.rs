//! The core's part of `broker.toml`: `[broker]`, `[limits]` and `[policy]`, and the way every
//! part of the file is read so that each error names its key.
//!
//! The file as a whole (with `[persistence]` and `[locker]`, read by the `engines` crate, and
//! `[transports]` and `[[users]]`, read by the `broker` program) is put together by the
//! program; each crate validates the sections it owns, with [`ConfigError`] for all of them.
//! Unknown keys, wrong types and impossible combinations are errors that name the key
//! (`limits.memory_bytes`), so a typo is never silently ignored.
//!
//! ```toml
//! [broker]
//! name = "localhost"
//! data_directory = "data"
//! use_virtual_topics = true
//! virtual_topic_name = "VirtualTopic.>"
//! virtual_topic_prefix = "Consumer.*."
//! virtual_topic_postfix = ""
//! scheduler_support = true
//!
//! [limits]
//! memory_bytes = 67108864
//! temp_bytes = 53687091200
//!
//! [policy]
//! maximum_redeliveries = 6
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::destination_filter::DestinationFilter;

/// A config that cannot be used, naming the key at fault (empty for a syntax error, whose
/// reason carries the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{reason}", .source_name.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), if .key.is_empty() { String::new() } else { format!("{}: ", .key) })]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub source_name: Option<String>,
    /// The dotted key, e.g. `persistence.kahadb.sync`.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    /// An error naming `key` (empty for none).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            source_name: None,
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Parses TOML into `T`; an error names the key at fault (the path serde was at), or carries
/// the line for a syntax error.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::new("", e.to_string().trim_end().to_owned()))?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::new(
            if key == "." { String::new() } else { key },
            e.into_inner().message().to_owned(),
        )
    })
}

/// Reads a config file and parses it with `parse`; errors name the file.
pub fn from_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: Some(name.clone()),
        key: String::new(),
        reason: format!("cannot read: {e}"),
    })?;
    parse(&text).map_err(|mut e| {
        e.source_name = Some(name);
        e
    })
}

/// What the core reads: the broker's name, its limits and its policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreConfig {
    pub broker: BrokerSection,
    pub limits: LimitsSection,
    pub policy: PolicySection,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// `brokerName`: names the broker in logs, message ids and the lock.
    pub name: String,
    /// Where the file engines keep their directories by default.
    pub data_directory: PathBuf,
    /// `useVirtualTopics`: a send to a topic matching `virtual_topic_name` is also copied to
    /// every existing queue matching `virtual_topic_prefix` + topic + `virtual_topic_postfix`.
    /// true.
    pub use_virtual_topics: bool,
    /// The default `virtualTopic`'s `name`: which topics are virtual. `VirtualTopic.>`.
    pub virtual_topic_name: String,
    /// Its `prefix`, a wildcard naming the consumer queues. `Consumer.*.`.
    pub virtual_topic_prefix: String,
    /// Its `postfix`. Empty.
    pub virtual_topic_postfix: String,
    /// `schedulerSupport`: a send with `AMQ_SCHEDULED_DELAY`, `AMQ_SCHEDULED_PERIOD` or
    /// `AMQ_SCHEDULED_REPEAT` is delivered when due. true (ActiveMQ's default is false).
    pub scheduler_support: bool,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            name: "localhost".into(),
            data_directory: PathBuf::from("data"),
            use_virtual_topics: true,
            virtual_topic_name: "VirtualTopic.>".into(),
            virtual_topic_prefix: "Consumer.*.".into(),
            virtual_topic_postfix: String::new(),
            scheduler_support: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// `memoryUsage`: message bytes held in memory across all destinations. 64 MiB.
    pub memory_bytes: u64,
    /// `maxPageSize`: messages paged in from the store per destination at most. 200.
    pub max_page_size: usize,
    /// Messages dispatched to a queue consumer ahead of its acks. 1000.
    pub queue_prefetch: u32,
    /// The same for topic subscribers. 32766.
    pub topic_prefetch: u32,
    /// Messages a slow non-durable topic subscriber may have waiting before the oldest are
    /// discarded (ActiveMQ's pending message limit). 10 000.
    pub max_pending_non_durable: usize,
    /// Nodes (literals, identifiers, operators, IN-list elements) a consumer's selector may
    /// have; a bigger one is refused at subscribe. ActiveMQ has no such limit. 10 000.
    pub max_selector_nodes: usize,
    /// Consumers (STOMP subscriptions, OpenWire consumers) one connection may have open at
    /// once. ActiveMQ has no such cap; 1000 is far above what a client uses (one per
    /// destination it listens to) and keeps one connection from holding unbounded
    /// subscription state. 1000.
    pub max_consumers_per_connection: usize,
    /// Transactions one connection may have open at once. 100.
    pub max_transactions_per_connection: usize,
    /// Messages sent in a connection's open transactions and not yet committed. 10 000.
    pub max_transacted_sends_per_connection: usize,
    /// The bytes of those messages (they are held in memory until commit, and count against
    /// `memory_bytes`). 16 MiB.
    pub max_transacted_bytes_per_connection: u64,
    /// Destinations that do not exist yet which one connection may create (by sending to or
    /// subscribing to them) per second. 100.
    pub max_destinations_created_per_second: u32,
    /// `storeUsage`: bytes of the messages the store keeps, over every destination; a
    /// persistent send past it is held (or refused, per `[policy]`) until consumers drain it.
    /// 100 GiB, ActiveMQ's default.
    pub store_bytes: u64,
    /// How often the store's use is measured. 1000.
    pub store_usage_check_interval_ms: u64,
    /// `tempUsage`: bytes of non-persistent messages spooled to `<data_directory>/tmp_storage`
    /// when memory is full (see `temp_store`); a send past it waits or fails as one past
    /// `memory_bytes` did. 0 turns spooling off: such a send waits for memory instead.
    /// 50 GiB, ActiveMQ's default.
    pub temp_bytes: u64,
    /// Connections open at once over every protocol (ActiveMQ's transport
    /// `maximumConnections`, 1000 in its shipped config). 1000.
    pub max_connections: usize,
    /// Producers one connection may have open at once (a STOMP connection has one per
    /// destination and transaction it sends to). ActiveMQ has no such cap. 1000.
    pub max_producers_per_connection: usize,
    /// Connections one user may have open at once, over every protocol (ActiveMQ has no
    /// such cap). 1000, the overall cap: lower it so one user's runaway clients cannot take
    /// every connection.
    pub max_connections_per_user: usize,
    /// Queues and topics that may exist at once; a client's send or subscription that would
    /// create one more is refused (ActiveMQ has no such cap). 100000.
    pub max_destinations: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            memory_bytes: 64 * 1024 * 1024,
            max_page_size: 200,
            queue_prefetch: 1000,
            topic_prefetch: 32766,
            max_pending_non_durable: 10_000,
            max_selector_nodes: crate::selector::DEFAULT_MAX_NODES,
            max_consumers_per_connection: 1000,
            max_transactions_per_connection: 100,
            max_transacted_sends_per_connection: 10_000,
            max_transacted_bytes_per_connection: 16 * 1024 * 1024,
            max_destinations_created_per_second: 100,
            store_bytes: 100 * 1024 * 1024 * 1024,
            store_usage_check_interval_ms: 1000,
            temp_bytes: 50 * 1024 * 1024 * 1024,
            max_connections: 1000,
            max_producers_per_connection: 1000,
            max_connections_per_user: 1000,
            max_destinations: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiredPolicy {
    /// Persistent expired messages go to the dead letter queue (ActiveMQ's default).
    #[default]
    DeadLetter,
    Discard,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Deliveries after the first before a message goes to the dead letter queue. 6.
    pub maximum_redeliveries: u32,
    pub dead_letter_queue: String,
    pub expired: ExpiredPolicy,
    /// How often stored messages are checked for expiry. 30 000.
    pub expire_check_interval_ms: u64,
    /// With memory full, fail non-persistent sends instead of waiting for room. false.
    pub send_fail_if_no_space: bool,
    /// How long a non-persistent send waits for memory before it fails. 30 000.
    pub send_timeout_ms: u64,
    /// Wait before a message is delivered again after a failed delivery (a rollback, a NACK,
    /// a consumer gone with it unacked), as ActiveMQ's `redeliveryDelay`. 0.
    pub redelivery_delay_ms: u64,
    /// Multiply the wait by `backoff_multiplier` at each further redelivery. false.
    pub use_exponential_backoff: bool,
    /// 5, ActiveMQ's `backOffMultiplier`.
    pub backoff_multiplier: f64,
    /// A cap on the wait; 0 for none.
    pub maximum_redelivery_delay_ms: u64,
    /// `shared` (every dead letter to `dead_letter_queue`) or `individual` (one per
    /// destination). shared.
    pub dead_letter_strategy: crate::policy::DeadLetterStrategy,
    /// Remove a queue with no consumer and no message, or a topic with no subscriber (durable
    /// or not) and no producer, for `inactive_timeout_before_gc_ms` (ActiveMQ's
    /// `gcInactiveDestinations`). false.
    pub gc_inactive_destinations: bool,
    /// 60 000, as ActiveMQ's `inactiveTimoutBeforeGC`.
    pub inactive_timeout_before_gc_ms: u64,
    /// How often inactive destinations are looked for (ActiveMQ's
    /// `schedulePeriodForDestinationPurge`). 5000.
    pub gc_check_interval_ms: u64,
    /// A network bridge may forward a queue's message back to the broker it came from when
    /// this broker has no consumer of the queue left (ActiveMQ's
    /// `conditionalNetworkBridgeFilterFactory` `replayWhenNoConsumers`). Queues only. false.
    pub replay_when_no_consumers: bool,
    /// With `replay_when_no_consumers`, a message goes back only this long after it arrived
    /// here (ActiveMQ's `replayDelay`). 5000.
    pub replay_delay_ms: u64,
    /// Deliver a queue's (and a durable subscription's) messages by JMS priority, 9 first and
    /// FIFO within a priority; false: in arrival order whatever their priority (ActiveMQ's
    /// `prioritizedMessages`, whose default is false). true.
    pub prioritized_messages: bool,
    /// Per-destination overrides (`[[policy.entries]]`, see `policy`).
    pub entries: Vec<crate::policy::PolicyEntry>,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            maximum_redeliveries: 6,
            dead_letter_queue: "ActiveMQ.DLQ".into(),
            expired: ExpiredPolicy::DeadLetter,
            expire_check_interval_ms: 30_000,
            send_fail_if_no_space: false,
            send_timeout_ms: 30_000,
            redelivery_delay_ms: 0,
            use_exponential_backoff: false,
            backoff_multiplier: 5.0,
            maximum_redelivery_delay_ms: 0,
            dead_letter_strategy: crate::policy::DeadLetterStrategy::Shared,
            gc_inactive_destinations: false,
            inactive_timeout_before_gc_ms: 60_000,
            gc_check_interval_ms: 5_000,
            replay_when_no_consumers: false,
            replay_delay_ms: 5_000,
            prioritized_messages: true,
            entries: Vec::new(),
        }
    }
}

impl CoreConfig {
    pub fn memory_limit(&self) -> u64 {
        self.limits.memory_bytes
    }

    pub fn expire_check_interval(&self) -> Duration {
        Duration::from_millis(self.policy.expire_check_interval_ms)
    }

    /// Checks `[limits]` and `[policy]`.
    pub fn validate_limits_and_policy(&self) -> Result<(), ConfigError> {
        if self.limits.memory_bytes < 64 * 1024 {
            return Err(ConfigError::new(
                "limits.memory_bytes",
                "must be at least 65536",
            ));
        }
        for (key, v) in [
            ("limits.max_page_size", self.limits.max_page_size as u64),
            (
                "limits.queue_prefetch",
                u64::from(self.limits.queue_prefetch),
            ),
            (
                "limits.topic_prefetch",
                u64::from(self.limits.topic_prefetch),
            ),
            (
                "limits.max_pending_non_durable",
                self.limits.max_pending_non_durable as u64,
            ),
            (
                "limits.max_selector_nodes",
                self.limits.max_selector_nodes as u64,
            ),
            ("limits.store_bytes", self.limits.store_bytes),
            (
                "limits.store_usage_check_interval_ms",
                self.limits.store_usage_check_interval_ms,
            ),
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.max_connections_per_user",
                self.limits.max_connections_per_user as u64,
            ),
            (
                "limits.max_destinations",
                self.limits.max_destinations as u64,
            ),
            (
                "limits.max_producers_per_connection",
                self.limits.max_producers_per_connection as u64,
            ),
            (
                "limits.max_consumers_per_connection",
                self.limits.max_consumers_per_connection as u64,
            ),
            (
                "limits.max_transactions_per_connection",
                self.limits.max_transactions_per_connection as u64,
            ),
            (
                "limits.max_transacted_sends_per_connection",
                self.limits.max_transacted_sends_per_connection as u64,
            ),
            (
                "limits.max_transacted_bytes_per_connection",
                self.limits.max_transacted_bytes_per_connection,
            ),
            (
                "limits.max_destinations_created_per_second",
                u64::from(self.limits.max_destinations_created_per_second),
            ),
            (
                "policy.expire_check_interval_ms",
                self.policy.expire_check_interval_ms,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::new(key, "must be above 0"));
            }
        }
        for (key, v) in [
            ("limits.queue_prefetch", self.limits.queue_prefetch),
            ("limits.topic_prefetch", self.limits.topic_prefetch),
        ] {
            if v > crate::MAX_PREFETCH {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "must be at most {} (ActiveMQ's maximum prefetch)",
                        crate::MAX_PREFETCH
                    ),
                ));
            }
        }
        if self.policy.dead_letter_queue.trim().is_empty() {
            return Err(ConfigError::new(
                "policy.dead_letter_queue",
                "must not be empty",
            ));
        }
        if !(self.policy.backoff_multiplier.is_finite() && self.policy.backoff_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "policy.backoff_multiplier",
                "must be a number of 1 or more",
            ));
        }
        if self.policy.gc_check_interval_ms == 0 {
            return Err(ConfigError::new(
                "policy.gc_check_interval_ms",
                "must be greater than 0",
            ));
        }
        crate::policy::Policies::new(&self.policy)?;
        Ok(())
    }
}

impl BrokerSection {
    /// Checks `[broker]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("broker.name", "must not be empty"));
        }
        if self.use_virtual_topics {
            self.virtual_topic_filter()?;
            // The consumer-queue filter for a sample topic: a prefix or postfix that makes it
            // malformed (`Consumer.>.`) is refused now rather than at the first send.
            self.virtual_queue_filter("VirtualTopic.x")
                .map_err(|e| ConfigError::new("broker.virtual_topic_prefix", e.to_string()))?;
        }
        Ok(())
    }

    /// The topics that are virtual.
    pub(crate) fn virtual_topic_filter(&self) -> Result<DestinationFilter, ConfigError> {
        DestinationFilter::parse(&self.virtual_topic_name)
            .map_err(|e| ConfigError::new("broker.virtual_topic_name", e.to_string()))
    }

    /// The queues that take a copy of what is sent to virtual topic `topic`.
    pub(crate) fn virtual_queue_filter(
        &self,
        topic: &str,
    ) -> Result<DestinationFilter, crate::destination_filter::DestinationNameError> {
        DestinationFilter::parse(&format!(
            "{}{topic}{}",
            self.virtual_topic_prefix, self.virtual_topic_postfix
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn virtual_topics_default_to_activemq_naming() {
        let b = BrokerSection::default();
        assert!(b.use_virtual_topics);
        assert!(
            b.virtual_topic_filter()
                .unwrap()
                .matches("VirtualTopic.Orders")
        );
        let queues = b.virtual_queue_filter("VirtualTopic.Orders").unwrap();
        assert!(queues.matches("Consumer.A.VirtualTopic.Orders"));
        assert!(!queues.matches("Consumer.A.B.VirtualTopic.Orders"));
        assert!(!queues.matches("VirtualTopic.Orders"));
    }

    #[test]
    fn bad_virtual_topic_settings_name_their_key() {
        let b: BrokerSection = from_toml("virtual_topic_prefix = \"Consumer.>.\"").unwrap();
        let e = b.validate().unwrap_err();
        assert_eq!(e.key, "broker.virtual_topic_prefix", "{e}");
        let b: BrokerSection = from_toml("virtual_topic_name = \"Virtual*\"").unwrap();
        assert_eq!(b.validate().unwrap_err().key, "broker.virtual_topic_name");
        let e = from_toml::<BrokerSection>("virtual_topics = true").unwrap_err();
        assert_eq!(e.key, "virtual_topics", "{e}");
        // Off, the settings are not used and so not checked.
        let b: BrokerSection =
            from_toml("use_virtual_topics = false\nvirtual_topic_name = \"a.>.b\"").unwrap();
        assert!(b.validate().is_ok());
    }
}
