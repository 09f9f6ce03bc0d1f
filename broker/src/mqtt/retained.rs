//! Retained messages, one per MQTT topic, kept in the store as the messages of one hidden
//! queue ([`RETAINED_QUEUE`]) the way broker-core's scheduler keeps its jobs: every engine
//! stores them with the durability and recovery it has for queues, with no store-contract
//! change. The MQTT topic is a property of each message.
//!
//! Replacing a topic's retained message sends the new one (durable before the publisher's
//! PUBACK) and then acks the old one off the queue, so a crash in between leaves both; at
//! start the queue is read in order and, per topic, the last one wins and the others are
//! acked away then. The acks go through one exclusive consumer of the queue that holds every
//! retained message unacked (up to broker-core's maximum prefetch, 32766 topics: past that,
//! replaced messages stay in the queue until a restart clears them). The index (topic →
//! message) is in memory, as ActiveMQ keeps its retained messages in memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use broker_core::{
    AckMode, Body, Connection, Destination, Message, MessageId, OrderKey, Outgoing, Received,
    Session, Value,
};
use bytes::Bytes;
use parking_lot::Mutex;
use tracing::warn;

use crate::Broker;

/// The hidden queue of retained messages.
pub const RETAINED_QUEUE: &str = "ActiveMQ.MQTT.Retained";
/// The property naming a retained message's MQTT topic.
const TOPIC_PROPERTY: &str = "ActiveMQ.MQTT.RetainedTopic";
/// Messages read per page at start.
const PAGE: usize = 500;

/// One topic's retained message as the door sends it.
#[derive(Debug, Clone)]
pub struct Entry {
    id: MessageId,
    pub qos: mqtt_codec::QoS,
    pub payload: Bytes,
}

impl Entry {
    fn of(m: &Message) -> Entry {
        Entry {
            id: m.id.clone(),
            qos: super::mapping::message_qos(m),
            payload: super::mapping::payload(m),
        }
    }
}

#[derive(Default)]
struct Index {
    by_topic: HashMap<String, Entry>,
    /// The queue's messages as the consumer received them, to ack when replaced.
    handles: HashMap<MessageId, Received>,
    /// Replaced messages not received yet: acked when they arrive.
    stale: HashSet<MessageId>,
}

/// The retained messages of the broker's MQTT door.
pub struct Retained {
    broker: Arc<Broker>,
    index: Arc<Mutex<Index>>,
    session: Session,
    _connection: Connection,
}

impl Retained {
    /// Reads the queue and starts the consumer that holds its messages.
    pub async fn open(broker: Arc<Broker>) -> broker_core::Result<Arc<Retained>> {
        let mut index = Index::default();
        let mut after: Option<OrderKey> = None;
        loop {
            let page = broker.browse_after(RETAINED_QUEUE, after, PAGE).await?;
            for m in &page {
                let Some(Value::String(topic)) = m.properties.get(TOPIC_PROPERTY) else {
                    index.stale.insert(m.id.clone());
                    continue;
                };
                if let Some(old) = index.by_topic.insert(topic.clone(), Entry::of(m)) {
                    index.stale.insert(old.id.clone());
                }
            }
            match page.last() {
                Some(m) if page.len() == PAGE => after = Some(OrderKey::of(m)),
                _ => break,
            }
        }
        let connection = broker.connect_from(None, "mqtt", "retained").await?;
        let session = connection.session(AckMode::Individual)?;
        let consumer = session
            .exclusive_consumer(
                Destination::queue(RETAINED_QUEUE),
                None,
                Some(broker_core::MAX_PREFETCH),
            )
            .await?;
        let index = Arc::new(Mutex::new(index));
        let retained = Arc::new(Retained {
            broker,
            index: Arc::clone(&index),
            session: session.clone(),
            _connection: connection,
        });
        tokio::spawn(async move {
            while let Ok(Some(r)) = consumer.receive().await {
                let stale = {
                    let mut i = index.lock();
                    if i.stale.remove(r.id()) {
                        true
                    } else {
                        i.handles.insert(r.id().clone(), r.clone());
                        false
                    }
                };
                if stale && let Err(e) = session.acknowledge(&r).await {
                    warn!("cannot remove a replaced retained message: {e}");
                }
            }
        });
        Ok(retained)
    }

    /// Makes `payload` the retained message of `topic` (an empty one clears it); returns once
    /// the store has it.
    pub async fn set(
        &self,
        topic: &str,
        qos: mqtt_codec::QoS,
        payload: Bytes,
    ) -> broker_core::Result<()> {
        let new = if payload.is_empty() {
            None
        } else {
            let out = Outgoing::new(Body::Bytes(payload.clone()))
                .persistent(true)
                .property(TOPIC_PROPERTY, Value::String(topic.to_owned()))
                .property(
                    super::mapping::QOS_PROPERTY,
                    Value::I32(i32::from(qos.bits())),
                );
            let id = self
                .broker
                .send(Destination::queue(RETAINED_QUEUE), out)
                .await?;
            Some(Entry { id, qos, payload })
        };
        let old = {
            let mut i = self.index.lock();
            let old = match new {
                Some(m) => i.by_topic.insert(topic.to_owned(), m),
                None => i.by_topic.remove(topic),
            };
            old.and_then(|o| match i.handles.remove(&o.id) {
                Some(h) => Some(h),
                None => {
                    i.stale.insert(o.id.clone());
                    None
                }
            })
        };
        if let Some(h) = old {
            self.session.acknowledge(&h).await?;
        }
        Ok(())
    }

    /// The retained messages whose topic `filter` matches, with their topics.
    pub fn matching(&self, filter: &str) -> Vec<(String, Entry)> {
        self.index
            .lock()
            .by_topic
            .iter()
            .filter(|(t, _)| mqtt_codec::topic::matches(filter, t))
            .map(|(t, e)| (t.clone(), e.clone()))
            .collect()
    }
}
