//! Per-destination policies, as ActiveMQ's `policyEntry`: `[[policy.entries]]` in
//! `broker.toml`, each naming a `queue` or a `topic` (ActiveMQ's wildcards allowed) and
//! overriding some of `[policy]`'s settings for the destinations it matches.
//!
//! ```toml
//! [[policy.entries]]
//! queue = "orders.>"
//! maximum_redeliveries = 3
//! redelivery_delay_ms = 1000
//! use_exponential_backoff = true
//! dead_letter_strategy = "individual"     # DLQ per destination: ActiveMQ.DLQ.Queue.orders.x
//! gc_inactive_destinations = true
//! inactive_timeout_before_gc_ms = 60000
//! prioritized_messages = false            # arrival order, as ActiveMQ's default
//! ```
//!
//! When several entries match a destination the most specific one applies, as in ActiveMQ's
//! `PolicyMap`: an exact name before any wildcard, then the pattern with more literal
//! elements. A key an entry leaves out comes from `[policy]`.

use std::time::Duration;

use serde::Deserialize;
use store_api::{Destination, DestinationKind};

use crate::config::{ConfigError, ExpiredPolicy, PolicySection};
use crate::destination_filter::DestinationFilter;

/// Where a message that ran out of deliveries (or expired) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterStrategy {
    /// One queue for every destination (`[policy] dead_letter_queue`, `ActiveMQ.DLQ`).
    #[default]
    Shared,
    /// A queue per destination: `dead_letter_queue_prefix` + its name (ActiveMQ's
    /// `individualDeadLetterStrategy`, whose prefixes are `ActiveMQ.DLQ.Queue.` and
    /// `ActiveMQ.DLQ.Topic.`; a topic's messages go to a queue too, as its
    /// `useQueueForTopicMessages` default).
    Individual,
}

/// One `[[policy.entries]]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub queue: Option<String>,
    pub topic: Option<String>,
    pub maximum_redeliveries: Option<u32>,
    pub redelivery_delay_ms: Option<u64>,
    pub use_exponential_backoff: Option<bool>,
    pub backoff_multiplier: Option<f64>,
    pub maximum_redelivery_delay_ms: Option<u64>,
    pub dead_letter_strategy: Option<DeadLetterStrategy>,
    pub dead_letter_queue_prefix: Option<String>,
    pub expired: Option<ExpiredPolicy>,
    pub gc_inactive_destinations: Option<bool>,
    pub inactive_timeout_before_gc_ms: Option<u64>,
    /// ActiveMQ's per-destination `memoryLimit`, for queues: the bytes of messages the queue
    /// may hold in memory (its paged-in window and its non-persistent messages), within
    /// `limits.memory_bytes`. A non-persistent send to a queue at its limit waits (or fails,
    /// per `[policy] send_fail_if_no_space`) as at the broker's limit; persistent messages
    /// wait in the store and are paged in under it.
    pub memory_limit_bytes: Option<u64>,
    /// Queues only: a message a network bridge brought here may be forwarded back to the
    /// broker it came from once no consumer of the queue is left here (ActiveMQ's
    /// `conditionalNetworkBridgeFilterFactory` `replayWhenNoConsumers`).
    pub replay_when_no_consumers: Option<bool>,
    /// ... and only this long after it arrived here (ActiveMQ's `replayDelay`).
    pub replay_delay_ms: Option<u64>,
    /// ActiveMQ's `prioritizedMessages`: false delivers in arrival order whatever the
    /// messages' priorities (they keep their priority header).
    pub prioritized_messages: Option<bool>,
}

/// The policy one destination runs under: `[policy]` with its best entry applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DestinationPolicy {
    pub maximum_redeliveries: u32,
    pub redelivery_delay: Duration,
    pub use_exponential_backoff: bool,
    pub backoff_multiplier: f64,
    /// Zero: no cap.
    pub maximum_redelivery_delay: Duration,
    /// The queue its dead letters go to.
    pub dead_letter_queue: Destination,
    pub expired: ExpiredPolicy,
    /// Removed after this long with no consumer and no message; `None`: kept.
    pub gc_after: Option<Duration>,
    /// The queue's own memory limit (`memory_limit_bytes`); `None`: only the broker's.
    pub memory_limit: Option<u64>,
    /// A network consumer may take back to its broker a message that came from there, once
    /// this queue has no other consumer, `replay_delay` after it arrived (see `dispatch`).
    /// Always false for a topic.
    pub replay_when_no_consumers: bool,
    pub replay_delay: Duration,
    /// By priority then arrival (true), or by arrival only: the order of the dispatcher's
    /// window and of the store cursor it pages from.
    pub prioritized_messages: bool,
}

impl DestinationPolicy {
    /// The order the store's batch cursor is read in for this destination.
    pub fn delivery_order(&self) -> store_api::DeliveryOrder {
        if self.prioritized_messages {
            store_api::DeliveryOrder::Priority
        } else {
            store_api::DeliveryOrder::Arrival
        }
    }
}

impl DestinationPolicy {
    /// How long a message waits before its `attempt`-th redelivery (1 for the first), as
    /// ActiveMQ's `RedeliveryPolicy`: the delay, multiplied by the back-off per attempt after
    /// the first when exponential, capped by the maximum.
    pub fn redelivery_delay(&self, attempt: u32) -> Duration {
        let base = self.redelivery_delay.as_secs_f64();
        let mut d = base;
        if self.use_exponential_backoff && attempt > 1 {
            d = base
                * self
                    .backoff_multiplier
                    .powi(i32::try_from(attempt - 1).unwrap_or(i32::MAX));
        }
        let mut delay = Duration::try_from_secs_f64(d).unwrap_or(Duration::MAX);
        if !self.maximum_redelivery_delay.is_zero() {
            delay = delay.min(self.maximum_redelivery_delay);
        }
        delay
    }
}

/// The parsed entries, resolved per destination.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    global: PolicySection,
    entries: Vec<(DestinationKind, DestinationFilter, PolicyEntry)>,
}

/// How specific a pattern is: an exact name first, then more literal elements, then longer.
fn specificity(pattern: &str) -> (bool, usize, usize) {
    let literal = pattern
        .split('.')
        .filter(|e| *e != "*" && *e != ">")
        .count();
    (
        !crate::destination_filter::has_wildcard_chars(pattern),
        literal,
        pattern.len(),
    )
}

impl Policies {
    /// Parses `[policy]` and its entries; an entry naming neither or both of `queue` and
    /// `topic`, a malformed pattern or a bad value is an error naming it.
    pub fn new(global: &PolicySection) -> Result<Policies, ConfigError> {
        let mut entries = Vec::new();
        for (i, e) in global.entries.iter().enumerate() {
            let key = |k: &str| format!("policy.entries[{i}].{k}");
            let (kind, pattern) = match (&e.queue, &e.topic) {
                (Some(q), None) => (DestinationKind::Queue, q),
                (None, Some(t)) => (DestinationKind::Topic, t),
                _ => {
                    return Err(ConfigError::new(
                        format!("policy.entries[{i}]"),
                        "needs exactly one of `queue` and `topic`",
                    ));
                }
            };
            let which = if kind == DestinationKind::Queue {
                "queue"
            } else {
                "topic"
            };
            let filter = DestinationFilter::parse(pattern)
                .map_err(|err| ConfigError::new(key(which), err.to_string()))?;
            if let Some(m) = e.backoff_multiplier
                && !(m.is_finite() && m >= 1.0)
            {
                return Err(ConfigError::new(
                    key("backoff_multiplier"),
                    "must be a number of 1 or more",
                ));
            }
            match e.memory_limit_bytes {
                Some(0) => {
                    return Err(ConfigError::new(
                        key("memory_limit_bytes"),
                        "must be above 0 (leave it out for no limit of its own)",
                    ));
                }
                _ if kind == DestinationKind::Topic && e.replay_when_no_consumers.is_some() => {
                    return Err(ConfigError::new(
                        key("replay_when_no_consumers"),
                        "applies to queues only (a topic's messages are forwarded to every broker with subscribers as they arrive)",
                    ));
                }
                Some(_) if kind == DestinationKind::Topic => {
                    return Err(ConfigError::new(
                        key("memory_limit_bytes"),
                        "applies to queues only here (a topic's subscribers are bounded by limits.max_pending_non_durable)",
                    ));
                }
                _ => {}
            }
            if let Some(p) = &e.dead_letter_queue_prefix
                && p.trim().is_empty()
            {
                return Err(ConfigError::new(
                    key("dead_letter_queue_prefix"),
                    "must not be empty",
                ));
            }
            entries.push((kind, filter, e.clone()));
        }
        // Most specific first: the first match is the one that applies.
        entries.sort_by(|a, b| {
            let pa = a.2.queue.as_deref().or(a.2.topic.as_deref()).unwrap_or("");
            let pb = b.2.queue.as_deref().or(b.2.topic.as_deref()).unwrap_or("");
            specificity(pb).cmp(&specificity(pa))
        });
        Ok(Policies {
            global: global.clone(),
            entries,
        })
    }

    fn entry_for(&self, d: &Destination) -> Option<&PolicyEntry> {
        self.entries
            .iter()
            .find(|(kind, filter, _)| *kind == d.kind && filter.matches(&d.name))
            .map(|(_, _, e)| e)
    }

    /// The policy `d` runs under.
    pub fn resolve(&self, d: &Destination) -> DestinationPolicy {
        let g = &self.global;
        let e = self.entry_for(d).cloned().unwrap_or_default();
        let strategy = e.dead_letter_strategy.unwrap_or(g.dead_letter_strategy);
        let dead_letter_queue = match strategy {
            DeadLetterStrategy::Shared => Destination::queue(g.dead_letter_queue.as_str()),
            DeadLetterStrategy::Individual => {
                let prefix = e.dead_letter_queue_prefix.unwrap_or_else(|| {
                    if d.is_queue() {
                        "ActiveMQ.DLQ.Queue.".into()
                    } else {
                        "ActiveMQ.DLQ.Topic.".into()
                    }
                });
                Destination::queue(format!("{prefix}{}", d.name))
            }
        };
        let gc = e
            .gc_inactive_destinations
            .unwrap_or(g.gc_inactive_destinations);
        DestinationPolicy {
            maximum_redeliveries: e.maximum_redeliveries.unwrap_or(g.maximum_redeliveries),
            redelivery_delay: Duration::from_millis(
                e.redelivery_delay_ms.unwrap_or(g.redelivery_delay_ms),
            ),
            use_exponential_backoff: e
                .use_exponential_backoff
                .unwrap_or(g.use_exponential_backoff),
            backoff_multiplier: e.backoff_multiplier.unwrap_or(g.backoff_multiplier),
            maximum_redelivery_delay: Duration::from_millis(
                e.maximum_redelivery_delay_ms
                    .unwrap_or(g.maximum_redelivery_delay_ms),
            ),
            dead_letter_queue,
            expired: e.expired.unwrap_or(g.expired),
            gc_after: gc.then(|| {
                Duration::from_millis(
                    e.inactive_timeout_before_gc_ms
                        .unwrap_or(g.inactive_timeout_before_gc_ms),
                )
            }),
            memory_limit: e.memory_limit_bytes.filter(|_| d.is_queue()),
            replay_when_no_consumers: d.is_queue()
                && e.replay_when_no_consumers
                    .unwrap_or(g.replay_when_no_consumers),
            replay_delay: Duration::from_millis(e.replay_delay_ms.unwrap_or(g.replay_delay_ms)),
            prioritized_messages: e.prioritized_messages.unwrap_or(g.prioritized_messages),
        }
    }

    /// Whether `d` is a dead letter queue (its own dead letters are not dead-lettered again):
    /// the shared one, or one an individual strategy names.
    pub fn is_dead_letter_queue(&self, d: &Destination) -> bool {
        if !d.is_queue() {
            return false;
        }
        if *d.name == *self.global.dead_letter_queue {
            return true;
        }
        let individual = self.global.dead_letter_strategy == DeadLetterStrategy::Individual
            || self
                .entries
                .iter()
                .any(|(_, _, e)| e.dead_letter_strategy == Some(DeadLetterStrategy::Individual));
        if !individual {
            return false;
        }
        let mut prefixes: Vec<&str> = vec!["ActiveMQ.DLQ.Queue.", "ActiveMQ.DLQ.Topic."];
        prefixes.extend(
            self.entries
                .iter()
                .filter_map(|(_, _, e)| e.dead_letter_queue_prefix.as_deref()),
        );
        prefixes.iter().any(|p| d.name.starts_with(p))
    }

    /// Whether any destination may be garbage-collected.
    pub fn any_gc(&self) -> bool {
        self.global.gc_inactive_destinations
            || self
                .entries
                .iter()
                .any(|(_, _, e)| e.gc_inactive_destinations == Some(true))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policies(toml: &str) -> Policies {
        let p: PolicySection = crate::config::from_toml(toml).unwrap();
        Policies::new(&p).unwrap()
    }

    #[test]
    fn the_most_specific_entry_applies_and_the_rest_comes_from_policy() {
        let p = policies(
            r#"
            maximum_redeliveries = 4
            [[entries]]
            queue = ">"
            maximum_redeliveries = 1
            [[entries]]
            queue = "orders.>"
            maximum_redeliveries = 2
            [[entries]]
            queue = "orders.eu"
            maximum_redeliveries = 3
            dead_letter_strategy = "individual"
            [[entries]]
            topic = "orders.>"
            expired = "discard"
            "#,
        );
        let q = |n: &str| p.resolve(&Destination::queue(n));
        assert_eq!(q("orders.eu").maximum_redeliveries, 3);
        assert_eq!(q("orders.us").maximum_redeliveries, 2);
        assert_eq!(q("other").maximum_redeliveries, 1);
        assert_eq!(
            q("orders.eu").dead_letter_queue,
            Destination::queue("ActiveMQ.DLQ.Queue.orders.eu")
        );
        assert_eq!(
            q("orders.us").dead_letter_queue,
            Destination::queue("ActiveMQ.DLQ")
        );
        let t = p.resolve(&Destination::topic("orders.x"));
        assert_eq!(t.expired, ExpiredPolicy::Discard);
        assert_eq!(
            t.maximum_redeliveries, 4,
            "queue entries do not apply to topics"
        );
        assert!(p.is_dead_letter_queue(&Destination::queue("ActiveMQ.DLQ.Queue.orders.eu")));
        assert!(p.is_dead_letter_queue(&Destination::queue("ActiveMQ.DLQ")));
        assert!(!p.is_dead_letter_queue(&Destination::queue("orders.eu")));
    }

    #[test]
    fn redelivery_delays_back_off_up_to_the_cap() {
        let p = policies(
            r#"
            [[entries]]
            queue = "slow"
            redelivery_delay_ms = 100
            use_exponential_backoff = true
            backoff_multiplier = 2.0
            maximum_redelivery_delay_ms = 500
            "#,
        );
        let d = p.resolve(&Destination::queue("slow"));
        let ms: Vec<u128> = (1..=5).map(|a| d.redelivery_delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 500, 500]);
        let plain = p.resolve(&Destination::queue("fast"));
        assert_eq!(plain.redelivery_delay(3), Duration::ZERO);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_key() {
        for (toml, key) in [
            (
                "[[entries]]\nmaximum_redeliveries = 1\n",
                "policy.entries[0]",
            ),
            (
                "[[entries]]\nqueue = \"a\"\ntopic = \"b\"\n",
                "policy.entries[0]",
            ),
            (
                "[[entries]]\nqueue = \"a.>.b\"\n",
                "policy.entries[0].queue",
            ),
            (
                "[[entries]]\nqueue = \"a\"\nbackoff_multiplier = 0.5\n",
                "policy.entries[0].backoff_multiplier",
            ),
            (
                "[[entries]]\nqueue = \"a\"\nmemory_limit_bytes = 0\n",
                "policy.entries[0].memory_limit_bytes",
            ),
            (
                "[[entries]]\ntopic = \"a\"\nmemory_limit_bytes = 1024\n",
                "policy.entries[0].memory_limit_bytes",
            ),
            (
                "[[entries]]\ntopic = \"a\"\nreplay_when_no_consumers = true\n",
                "policy.entries[0].replay_when_no_consumers",
            ),
        ] {
            let p: PolicySection = crate::config::from_toml(toml).unwrap();
            let e = Policies::new(&p).unwrap_err();
            assert_eq!(e.key, key, "{toml}: {e}");
        }
    }

    #[test]
    fn prioritized_messages_defaults_on_and_an_entry_turns_it_off() {
        let p = policies(
            r#"
            [[entries]]
            queue = "fifo.>"
            prioritized_messages = false
            [[entries]]
            topic = "fifo.>"
            prioritized_messages = false
            "#,
        );
        let order = |d: Destination| p.resolve(&d).delivery_order();
        assert_eq!(
            order(Destination::queue("fifo.a")),
            store_api::DeliveryOrder::Arrival
        );
        assert_eq!(
            order(Destination::topic("fifo.a")),
            store_api::DeliveryOrder::Arrival
        );
        assert_eq!(
            order(Destination::queue("other")),
            store_api::DeliveryOrder::Priority
        );
        let off = policies("prioritized_messages = false\n");
        assert!(!off.resolve(&Destination::queue("q")).prioritized_messages);
        let e = crate::config::from_toml::<PolicySection>(
            "[[entries]]\nqueue = \"a\"\nprioritized_messages = \"no\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "entries[0].prioritized_messages", "{e}");
        let e =
            crate::config::from_toml::<PolicySection>("prioritized_messages = 0\n").unwrap_err();
        assert_eq!(e.key, "prioritized_messages", "{e}");
    }

    #[test]
    fn replay_is_for_queues_with_activemqs_delay() {
        let p = policies(
            r#"
            [[entries]]
            queue = "orders.>"
            replay_when_no_consumers = true
            [[entries]]
            queue = "orders.slow"
            replay_delay_ms = 100
            "#,
        );
        let orders = p.resolve(&Destination::queue("orders.x"));
        assert!(orders.replay_when_no_consumers);
        assert_eq!(orders.replay_delay, Duration::from_secs(5));
        // The more specific entry sets only the delay: the rest comes from [policy].
        let slow = p.resolve(&Destination::queue("orders.slow"));
        assert!(!slow.replay_when_no_consumers);
        assert_eq!(slow.replay_delay, Duration::from_millis(100));
        assert!(
            !p.resolve(&Destination::queue("other"))
                .replay_when_no_consumers
        );
        let all = policies("replay_when_no_consumers = true\n");
        assert!(
            all.resolve(&Destination::queue("q"))
                .replay_when_no_consumers
        );
        assert!(
            !all.resolve(&Destination::topic("t"))
                .replay_when_no_consumers
        );
    }
}
