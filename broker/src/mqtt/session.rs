//! The subscriptions of one MQTT connection and the QoS 1/2 deliveries in flight to its
//! client.
//!
//! Each MQTT subscription has its own broker-core session: AUTO for QoS 0 (nothing to wait
//! for), INDIVIDUAL for QoS 1 and 2, whose messages are acked in the store on PUBACK or
//! PUBCOMP. A QoS 1/2 subscription's consumer runs on credit (prefetch 0, as STOMP's
//! client-ack subscriptions): broker-core hands it a message only while fewer than
//! `max_inflight` of its messages wait for the client, so a slow client holds a bounded number
//! of messages and the rest wait in the store. With cleanSession=false a QoS 1/2 subscription
//! is a durable subscription named `mqtt:<qos>:<filter>` of the client id (ActiveMQ's default
//! subscription strategy), kept across disconnects and restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use broker_core::{AckMode, BrokerError, Connection, Consumer, Received, Session};
use mqtt_codec::{Packet, Publish, QoS};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::mapping;
use crate::outbound::OutSender;

/// The durable subscription names of a filter: one per JMS topic it maps to.
pub fn durable_names(qos: QoS, filter: &str) -> [String; 2] {
    [
        format!("mqtt:{}:{filter}", qos.bits()),
        format!("mqtt-parent:{}:{filter}", qos.bits()),
    ]
}

/// The (QoS, filter) a durable subscription name of [`durable_names`] stands for; `None` for
/// other names (the parent-level one included: it comes with its filter).
pub fn parse_durable_name(name: &str) -> Option<(QoS, String)> {
    let rest = name.strip_prefix("mqtt:")?;
    let (qos, filter) = rest.split_once(':')?;
    let qos = QoS::from_bits(qos.parse().ok()?, "durable subscription").ok()?;
    Some((qos, filter.to_owned()))
}

/// Whether a durable subscription name is one of this door's.
pub fn is_mqtt_durable(name: &str) -> bool {
    name.starts_with("mqtt:") || name.starts_with("mqtt-parent:")
}

/// A delivery waiting for PUBACK (QoS 1) or PUBREC then PUBCOMP (QoS 2).
pub struct Inflight {
    pub qos: QoS,
    /// PUBREC came (QoS 2): PUBREL was sent, PUBCOMP is awaited.
    pub released: bool,
    /// The store message to ack and the subscription credit to give back; `None` for a
    /// retained message (nothing to ack).
    pub ack: Option<(Received, Session, Arc<Semaphore>)>,
}

/// The packet ids of this connection's outbound QoS 1/2 PUBLISHes.
pub struct Outbox {
    inflight: Mutex<(u16, HashMap<u16, Inflight>)>,
    /// One permit per free packet id (65535 at most in flight).
    ids: Semaphore,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            inflight: Mutex::new((0, HashMap::new())),
            ids: Semaphore::new(usize::from(u16::MAX)),
        }
    }
}

impl Outbox {
    /// A free packet id for `entry`; waits while all 65535 are in flight. `None` once closed.
    pub async fn allocate(&self, entry: Inflight) -> Option<u16> {
        self.ids.acquire().await.ok()?.forget();
        let mut g = self.inflight.lock();
        let (next, map) = &mut *g;
        loop {
            *next = next.wrapping_add(1);
            if *next != 0 && !map.contains_key(next) {
                break;
            }
        }
        map.insert(*next, entry);
        Some(*next)
    }

    /// Marks a QoS 2 delivery released (PUBREC); false for an unknown id.
    pub fn release(&self, id: u16) -> bool {
        match self.inflight.lock().1.get_mut(&id) {
            Some(e) if e.qos == QoS::ExactlyOnce => {
                e.released = true;
                true
            }
            _ => false,
        }
    }

    /// Ends a delivery (PUBACK, PUBCOMP); its id is free again.
    pub fn complete(&self, id: u16) -> Option<Inflight> {
        let e = self.inflight.lock().1.remove(&id)?;
        self.ids.add_permits(1);
        Some(e)
    }

    pub fn close(&self) {
        self.ids.close();
    }
}

/// How much a subscription may have delivered and not yet acknowledged: `max_inflight` for QoS
/// 1/2 (credit), `topic_prefetch` for QoS 0 (broker-core's own prefetch).
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub max_inflight: usize,
    pub topic_prefetch: u32,
}

/// One MQTT subscription (one topic filter).
pub struct Subscription {
    pub qos: QoS,
    pub durable: bool,
    session: Session,
    /// Each consumer with its pump and, for QoS 1/2, its own credit: a filter with `#` has
    /// two consumers (`a.>` and `a`), and one budget shared by two pumps starved one of them,
    /// since a pump takes all the credit there is while it waits for its next message.
    consumers: Vec<Part>,
}

/// One broker-core consumer of a subscription, the task moving its messages to the client,
/// and its credit (QoS 1/2).
struct Part {
    consumer: Arc<Consumer>,
    pump: JoinHandle<()>,
    credits: Option<Arc<Semaphore>>,
}

/// Where a subscription's messages go: the connection's outbound packet ids and queue, and
/// whether CONNACK went out (nothing may precede it).
pub(crate) struct Wiring {
    pub outbox: Arc<Outbox>,
    pub out: OutSender,
    pub connacked: watch::Receiver<bool>,
}

impl Subscription {
    /// Subscribes `filter` at `qos` on `connection`, durable when asked (QoS 1/2 only).
    pub(crate) async fn open(
        connection: &Connection,
        filter: &str,
        qos: QoS,
        durable: bool,
        flow: Flow,
        wiring: &Wiring,
    ) -> Result<Subscription, BrokerError> {
        let durable = durable && qos != QoS::AtMostOnce;
        let mode = if qos == QoS::AtMostOnce {
            AckMode::Auto
        } else {
            AckMode::Individual
        };
        let session = connection.session(mode)?;
        let prefetch = if qos == QoS::AtMostOnce {
            flow.topic_prefetch
        } else {
            0
        };
        let names = durable_names(qos, filter);
        let mut sub = Subscription {
            qos,
            durable,
            session: session.clone(),
            consumers: Vec::new(),
        };
        for (topic, name) in mapping::filter_to_jms(filter).into_iter().zip(names) {
            let opened = if durable {
                session
                    .durable_subscriber_with_prefetch(topic, &name, None, Some(prefetch))
                    .await
            } else {
                session.consumer_with_prefetch(topic, None, prefetch).await
            };
            let consumer = match opened {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    sub.close().await;
                    return Err(e);
                }
            };
            let credits =
                (qos != QoS::AtMostOnce).then(|| Arc::new(Semaphore::new(flow.max_inflight)));
            let pump = tokio::spawn(pump(
                wiring.connacked.clone(),
                Arc::clone(&consumer),
                qos,
                session.clone(),
                credits.clone(),
                Arc::clone(&wiring.outbox),
                wiring.out.clone(),
            ));
            sub.consumers.push(Part {
                consumer,
                pump,
                credits,
            });
        }
        Ok(sub)
    }

    /// Stops delivering; messages delivered and not acked go back (redelivered with DUP to
    /// the next subscriber of a durable subscription).
    pub async fn close(self) {
        for part in &self.consumers {
            if let Some(c) = &part.credits {
                c.close();
            }
        }
        for Part {
            consumer, mut pump, ..
        } in self.consumers
        {
            consumer.close().await;
            if tokio::time::timeout(Duration::from_secs(1), &mut pump)
                .await
                .is_err()
            {
                pump.abort();
            }
        }
        self.session.close().await;
    }
}

/// Moves one consumer's messages to the client at min(subscription QoS, message QoS).
async fn pump(
    mut connacked: watch::Receiver<bool>,
    consumer: Arc<Consumer>,
    sub_qos: QoS,
    session: Session,
    credits: Option<Arc<Semaphore>>,
    outbox: Arc<Outbox>,
    out: OutSender,
) {
    // Nothing before CONNACK; an error means the connection ended before it.
    if connacked.wait_for(|sent| *sent).await.is_err() {
        return;
    }
    loop {
        let Some(batch) = crate::outbound::next_batch(&consumer, credits.as_deref()).await else {
            return;
        };
        for _ in 0..batch {
            let received = match consumer.receive().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    debug!("MQTT subscription receive ended: {e}");
                    return;
                }
            };
            let m = received.message();
            let qos = sub_qos.min(mapping::message_qos(m));
            let mut publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: mapping::jms_to_topic(&m.destination.name),
                packet_id: None,
                payload: mapping::payload(m),
            };
            if qos == QoS::AtMostOnce {
                // Nothing will come back for it: done in the store once handed to the writer.
                if let Some(c) = &credits {
                    if let Err(e) = session.acknowledge(&received).await {
                        warn!("ack of a QoS 0 delivery failed: {e}");
                    }
                    c.add_permits(1);
                }
            } else {
                let Some(c) = &credits else { return };
                publish.dup = received.redelivered();
                let entry = Inflight {
                    qos,
                    released: false,
                    ack: Some((received, session.clone(), Arc::clone(c))),
                };
                let Some(id) = outbox.allocate(entry).await else {
                    return;
                };
                publish.packet_id = Some(id);
            }
            let id = publish.packet_id;
            match Packet::Publish(publish).to_bytes() {
                Ok(bytes) => {
                    if !out.send(bytes).await {
                        return;
                    }
                }
                Err(e) => {
                    // A topic name over 65535 bytes: MQTT cannot carry it. Consumed rather
                    // than redelivered forever.
                    warn!("a message cannot be sent over MQTT: {e}; dropped");
                    if let Some((received, session, credits)) =
                        id.and_then(|id| outbox.complete(id)).and_then(|e| e.ack)
                    {
                        if let Err(e) = session.acknowledge(&received).await {
                            warn!("ack of an undeliverable message failed: {e}");
                        }
                        credits.add_permits(1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_carry_qos_and_filter() {
        let [main, parent] = durable_names(QoS::ExactlyOnce, "a/+/#");
        assert_eq!(main, "mqtt:2:a/+/#");
        assert_eq!(
            parse_durable_name(&main),
            Some((QoS::ExactlyOnce, "a/+/#".to_owned()))
        );
        // A filter may itself hold ':'.
        assert_eq!(
            parse_durable_name("mqtt:1:x:y"),
            Some((QoS::AtLeastOnce, "x:y".to_owned()))
        );
        assert_eq!(parse_durable_name(&parent), None);
        assert!(is_mqtt_durable(&parent));
        assert!(!is_mqtt_durable("orders"));
        assert_eq!(parse_durable_name("mqtt:3:x"), None);
    }
}
