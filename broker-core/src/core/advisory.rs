//! Advisory messages, as ActiveMQ's `AdvisoryBroker`: what happens in the broker, published
//! on `ActiveMQ.Advisory.*` topics that any client of any protocol can subscribe to.
//!
//! - `ActiveMQ.Advisory.Consumer.Queue.<name>` / `.Topic.<name>`: a consumer started or
//!   stopped (`consumerCount` after it, `consumerId`);
//! - `ActiveMQ.Advisory.Producer.Queue.<name>` / `.Topic.<name>`: a producer (`producerCount`,
//!   `producerId`);
//! - `ActiveMQ.Advisory.Queue` / `ActiveMQ.Advisory.Topic`: a destination created or deleted;
//! - `ActiveMQ.Advisory.Connection`: a connection opened or closed;
//! - `ActiveMQ.Advisory.Expired.Queue.<name>` / `.Topic.<name>`: a message expired
//!   (`orignalMessageId`, ActiveMQ's spelling);
//! - `ActiveMQ.Advisory.MessageDLQd.Queue.<name>` / `.Topic.<name>`: a message moved to a dead
//!   letter queue;
//! - `ActiveMQ.Advisory.SlowConsumer.Topic.<name>`: a non-durable subscriber fell behind.
//!
//! Each is a non-persistent message of type `Advisory` with `originBrokerName` and
//! `originBrokerId`, and the event in properties. ActiveMQ also puts the command behind the
//! event (a `ConsumerInfo`, ...) in the message for its Java client; here the properties carry
//! what it says (`event` = `started`/`stopped`/`created`/`deleted`, `destination`,
//! `connectionId`, `clientId`), the same for every protocol. An advisory is built only when
//! its topic has a subscriber, so a broker nobody watches pays a map lookup per event.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use store_api::{Body, Destination, DestinationKind, Message, MessageId, Value};
use tokio::sync::mpsc;

use super::{Core, now_ms};

/// Where advisory topics start.
pub const ADVISORY_PREFIX: &str = "ActiveMQ.Advisory.";

/// Something the broker tells its watchers.
pub(crate) enum Advisory<'a> {
    Consumer {
        destination: &'a Destination,
        consumer_id: String,
        connection_id: &'a str,
        /// A network bridge's consumer: the brokers its demand came through.
        network_path: Option<&'a [String]>,
        started: bool,
        count: usize,
    },
    Producer {
        destination: &'a Destination,
        producer_id: &'a str,
        connection_id: &'a str,
        started: bool,
        count: usize,
    },
    Destination {
        destination: &'a Destination,
        created: bool,
    },
    Connection {
        connection_id: &'a str,
        client_id: Option<&'a str>,
        started: bool,
    },
    Expired {
        destination: &'a Destination,
        message: &'a MessageId,
    },
    DeadLettered {
        destination: &'a Destination,
        message: &'a MessageId,
        dead_letter_queue: &'a Destination,
    },
    SlowConsumer {
        destination: &'a Destination,
    },
}

fn kind(d: &Destination) -> &'static str {
    match d.kind {
        DestinationKind::Queue => "Queue",
        DestinationKind::Topic => "Topic",
    }
}

/// Whether `d` is itself an advisory topic (no advisories about advisories).
pub(crate) fn is_advisory(d: &Destination) -> bool {
    d.name.starts_with(ADVISORY_PREFIX)
}

impl Advisory<'_> {
    /// The destination the event is about, if any.
    fn subject(&self) -> Option<&Destination> {
        match self {
            Advisory::Consumer { destination, .. }
            | Advisory::Producer { destination, .. }
            | Advisory::Destination { destination, .. }
            | Advisory::Expired { destination, .. }
            | Advisory::DeadLettered { destination, .. }
            | Advisory::SlowConsumer { destination } => Some(destination),
            Advisory::Connection { .. } => None,
        }
    }

    fn topic(&self) -> String {
        match self {
            Advisory::Consumer { destination, .. } => {
                format!(
                    "{ADVISORY_PREFIX}Consumer.{}.{}",
                    kind(destination),
                    destination.name
                )
            }
            Advisory::Producer { destination, .. } => {
                format!(
                    "{ADVISORY_PREFIX}Producer.{}.{}",
                    kind(destination),
                    destination.name
                )
            }
            Advisory::Destination { destination, .. } => {
                format!("{ADVISORY_PREFIX}{}", kind(destination))
            }
            Advisory::Connection { .. } => format!("{ADVISORY_PREFIX}Connection"),
            Advisory::Expired { destination, .. } => {
                format!(
                    "{ADVISORY_PREFIX}Expired.{}.{}",
                    kind(destination),
                    destination.name
                )
            }
            Advisory::DeadLettered { destination, .. } => format!(
                "{ADVISORY_PREFIX}MessageDLQd.{}.{}",
                kind(destination),
                destination.name
            ),
            Advisory::SlowConsumer { destination } => format!(
                "{ADVISORY_PREFIX}SlowConsumer.{}.{}",
                kind(destination),
                destination.name
            ),
        }
    }

    fn properties(&self, p: &mut std::collections::BTreeMap<String, Value>) {
        let s = |v: &str| Value::String(v.to_owned());
        let count = |n: usize| Value::I32(i32::try_from(n).unwrap_or(i32::MAX));
        let event = |yes: bool, a: &str, b: &str| s(if yes { a } else { b });
        if let Some(d) = self.subject() {
            p.insert("destination".into(), s(&d.to_string()));
        }
        match self {
            Advisory::Consumer {
                consumer_id,
                connection_id,
                network_path,
                started,
                count: n,
                ..
            } => {
                p.insert("event".into(), event(*started, "started", "stopped"));
                p.insert("consumerId".into(), s(consumer_id));
                if let Some(path) = network_path {
                    p.insert("networkSubscription".into(), Value::Bool(true));
                    p.insert("brokerPath".into(), s(&path.join(",")));
                }
                p.insert("connectionId".into(), s(connection_id));
                p.insert("consumerCount".into(), count(*n));
            }
            Advisory::Producer {
                producer_id,
                connection_id,
                started,
                count: n,
                ..
            } => {
                p.insert("event".into(), event(*started, "started", "stopped"));
                p.insert("producerId".into(), s(producer_id));
                p.insert("connectionId".into(), s(connection_id));
                p.insert("producerCount".into(), count(*n));
            }
            Advisory::Destination { created, .. } => {
                p.insert("event".into(), event(*created, "created", "deleted"));
            }
            Advisory::Connection {
                connection_id,
                client_id,
                started,
            } => {
                p.insert("event".into(), event(*started, "started", "stopped"));
                p.insert("connectionId".into(), s(connection_id));
                if let Some(c) = client_id {
                    p.insert("clientId".into(), s(c));
                }
            }
            Advisory::Expired { message, .. } => {
                p.insert("event".into(), s("expired"));
                p.insert("orignalMessageId".into(), s(&message.to_string()));
            }
            Advisory::DeadLettered {
                message,
                dead_letter_queue,
                ..
            } => {
                p.insert("event".into(), s("dead-lettered"));
                p.insert("orignalMessageId".into(), s(&message.to_string()));
                p.insert("deadLetterQueue".into(), s(&dead_letter_queue.to_string()));
            }
            Advisory::SlowConsumer { .. } => {
                p.insert("event".into(), s("slow"));
            }
        }
    }
}

/// Advisories waiting for the task that publishes them.
pub(crate) struct Advisories {
    tx: mpsc::Sender<Message>,
    rx: Mutex<Option<mpsc::Receiver<Message>>>,
}

impl Default for Advisories {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(4096);
        Advisories {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// A consumer as its "started" advisory described it, while it lives: what a new watcher of
/// the consumer advisories is told about the consumers that started before it (ActiveMQ's
/// `AdvisoryBroker` replays them too; a network bridge needs them to see existing demand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConsumer {
    pub destination: Destination,
    /// As in its advisories' `consumerId`.
    pub consumer_id: String,
    pub connection_id: String,
    /// A network bridge's consumer: the brokers its demand came through.
    pub network_path: Option<Vec<String>>,
}

/// The live consumers by broker-core id.
#[derive(Default)]
pub(crate) struct LiveConsumers(Mutex<HashMap<u64, LiveConsumer>>);

impl LiveConsumers {
    pub fn add(&self, id: u64, c: LiveConsumer) {
        self.0.lock().insert(id, c);
    }

    pub fn remove(&self, id: u64) {
        self.0.lock().remove(&id);
    }

    pub fn all(&self) -> Vec<LiveConsumer> {
        let mut v: Vec<(u64, LiveConsumer)> =
            self.0.lock().iter().map(|(k, c)| (*k, c.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, c)| c).collect()
    }
}

/// Producers per destination, for `producerCount`.
#[derive(Default)]
pub(crate) struct ProducerCounts(Mutex<HashMap<Destination, usize>>);

impl ProducerCounts {
    pub fn add(&self, d: &Destination) -> usize {
        let mut m = self.0.lock();
        let n = m.entry(d.clone()).or_insert(0);
        *n += 1;
        *n
    }

    /// Producers on `d` now.
    pub fn count(&self, d: &Destination) -> usize {
        self.0.lock().get(d).copied().unwrap_or(0)
    }

    pub fn remove(&self, d: &Destination) -> usize {
        let mut m = self.0.lock();
        let Some(n) = m.get_mut(d) else {
            return 0;
        };
        *n = n.saturating_sub(1);
        let left = *n;
        if left == 0 {
            m.remove(d);
        }
        left
    }
}

impl Core {
    /// Publishes `a` on its advisory topic if anyone subscribes to it; never waits (the send
    /// runs on its own task) and never fails the caller.
    pub(crate) fn advise(self: &Arc<Self>, a: Advisory<'_>) {
        if a.subject()
            .is_some_and(|d| is_advisory(d) || super::scheduler::is_jobs(d))
            || self.is_closed()
        {
            return;
        }
        let topic = a.topic();
        if !self.has_subscribers(&topic) {
            return;
        }
        let mut m = Message::new(
            MessageId::new(format!("ID:{}-advisory", self.incarnation), self.next_id()),
            Destination::topic(topic),
            Body::Empty,
        );
        m.persistent = false;
        m.timestamp = now_ms();
        m.message_type = Some("Advisory".into());
        m.properties.insert(
            "originBrokerName".into(),
            Value::String(self.config.broker.name.clone()),
        );
        m.properties.insert(
            "originBrokerId".into(),
            Value::String(self.incarnation.clone()),
        );
        a.properties(&mut m.properties);
        // One task sends them all, in the order they happened; a backlog past the queue's
        // bound is dropped rather than held (they are non-persistent notices).
        if self.advisories.tx.try_send(m).is_err() {
            tracing::debug!("advisory dropped: the advisory queue is full");
        }
    }

    /// The task that publishes advisories in order; ends with the core.
    pub(crate) async fn run_advisories(core: Weak<Core>) {
        let Some(mut rx) = core.upgrade().and_then(|c| c.advisories.rx.lock().take()) else {
            return;
        };
        while let Some(m) = rx.recv().await {
            let Some(c) = core.upgrade() else {
                return;
            };
            if c.is_closed() {
                return;
            }
            if let Err(e) = c.send(m).await {
                tracing::debug!("advisory not sent: {e}");
            }
        }
    }

    /// Whether a message sent to topic `name` would reach anyone now.
    fn has_subscribers(&self, name: &str) -> bool {
        if let Some(t) = self.topics.lock().get(name)
            && (!t.subscribers.lock().is_empty() || !t.durable.lock().is_empty())
        {
            return true;
        }
        !self.wildcard_subscribers_of(name).is_empty()
    }

    /// Consumers of `d` now: a queue's, or a topic's subscribers (durable ones connected).
    pub(crate) fn consumer_count(&self, d: &Destination) -> usize {
        if d.is_queue() {
            return self
                .queues
                .lock()
                .get(&d.name)
                .map_or(0, |q| q.consumer_count());
        }
        self.topics.lock().get(&d.name).map_or(0, |t| {
            t.subscribers.lock().len()
                + t.durable
                    .lock()
                    .values()
                    .filter(|s| s.consumer_count() > 0)
                    .count()
        })
    }
}
