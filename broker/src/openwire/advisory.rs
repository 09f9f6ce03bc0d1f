//! Broker-core's advisory messages as ActiveMQ's Java client knows them: besides the
//! properties every protocol gets (`consumerCount`, `event`, ...), an ActiveMQ advisory carries
//! the command behind the event in its `dataStructure` (a `ConsumerInfo` when a consumer
//! starts, a `RemoveInfo` naming it when it stops, ...), which is what `AdvisorySupport` users
//! and monitoring code read with `ActiveMQMessage.getDataStructure()`.
//!
//! The command is rebuilt here from the advisory's topic and properties, so broker-core keeps
//! one protocol-neutral advisory and only this door pays for the Java shape.

use broker_core::{Message, Value};
use openwire::{
    BrokerId, Command, ConnectionId, ConnectionInfo, ConsumerId, ConsumerInfo, DataStructure,
    DestinationInfo, ProducerId, ProducerInfo, RemoveInfo, RemoveTarget,
};

/// Where advisory topics start (broker-core's prefix, ActiveMQ's name).
const PREFIX: &str = "ActiveMQ.Advisory.";

/// The command ActiveMQ would put in this advisory, if it is one this broker rebuilds.
pub fn data_structure(m: &Message) -> Option<DataStructure> {
    if m.destination.is_queue() || m.message_type.as_deref() != Some("Advisory") {
        return None;
    }
    let rest = m.destination.name.strip_prefix(PREFIX)?;
    let text = |key: &str| match m.properties.get(key) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let started = matches!(text("event"), Some("started" | "created"));
    let command = if let Some(subject) = rest.strip_prefix("Consumer.") {
        let id = consumer_id(text("consumerId")?);
        if started {
            let network = matches!(
                m.properties.get("networkSubscription"),
                Some(Value::Bool(true))
            );
            Command::ConsumerInfo(Box::new(consumer_info(
                id,
                subject_destination(subject)?,
                network.then(|| text("brokerPath").unwrap_or("")),
            )))
        } else {
            remove(RemoveTarget::Consumer(id))
        }
    } else if let Some(subject) = rest.strip_prefix("Producer.") {
        let id = producer_id(text("producerId")?);
        if started {
            Command::ProducerInfo(ProducerInfo {
                producer_id: id,
                destination: Some(subject_destination(subject)?),
                ..ProducerInfo::default()
            })
        } else {
            remove(RemoveTarget::Producer(id))
        }
    } else if rest == "Queue" || rest == "Topic" {
        let destination = text("destination")?;
        let destination = if let Some(name) = destination.strip_prefix("queue://") {
            openwire::Destination::queue(name)
        } else {
            openwire::Destination::topic(destination.strip_prefix("topic://")?)
        };
        Command::DestinationInfo(DestinationInfo {
            destination,
            operation_type: if started {
                DestinationInfo::ADD
            } else {
                DestinationInfo::REMOVE
            },
            ..DestinationInfo::default()
        })
    } else if rest == "Connection" {
        let id = ConnectionId::new(text("connectionId")?);
        if started {
            Command::ConnectionInfo(ConnectionInfo {
                connection_id: id,
                client_id: text("clientId").map(str::to_owned),
                ..ConnectionInfo::default()
            })
        } else {
            remove(RemoveTarget::Connection(id))
        }
    } else {
        // Expired, MessageDLQd, SlowConsumer: ActiveMQ sends the message or consumer there;
        // the properties say what happened.
        return None;
    };
    Some(DataStructure::Command(command))
}

/// A started consumer's ConsumerInfo; a network bridge's carries its broker path.
fn consumer_info(
    id: ConsumerId,
    destination: openwire::Destination,
    network_path: Option<&str>,
) -> ConsumerInfo {
    ConsumerInfo {
        consumer_id: id,
        destination: Some(destination),
        network_subscription: network_path.is_some(),
        broker_path: network_path.map(|p| {
            p.split(',')
                .filter(|b| !b.is_empty())
                .map(|b| BrokerId {
                    value: b.to_owned(),
                })
                .collect()
        }),
        ..ConsumerInfo::default()
    }
}

/// Whether `d` names consumer advisory topics (`ActiveMQ.Advisory.Consumer.Queue.>`, ...):
/// a new consumer of those is told of the consumers already there, as ActiveMQ's
/// `AdvisoryBroker` does, which is how a network bridge learns of existing demand.
pub fn watches_consumers(d: &openwire::Destination) -> bool {
    !d.kind.is_queue()
        && d.physical_name
            .split(',')
            .any(|n| n.starts_with("ActiveMQ.Advisory.Consumer."))
}

/// The "started" advisories of the live consumers whose advisory topic `watched` (a topic
/// name, wildcards and commas allowed) covers, as messages for its consumer.
pub fn replay(watched: &str, live: &[broker_core::LiveConsumer]) -> Vec<openwire::Message> {
    let filters: Vec<broker_core::destination_filter::DestinationFilter> = watched
        .split(',')
        .filter_map(|n| broker_core::destination_filter::DestinationFilter::parse(n).ok())
        .collect();
    let producer = ProducerId {
        connection_id: "ID:broker-advisory-replay".into(),
        session_id: 0,
        value: 0,
    };
    let mut out = Vec::new();
    for (seq, c) in live.iter().enumerate() {
        let kind = if c.destination.is_queue() {
            "Queue"
        } else {
            "Topic"
        };
        let topic = format!("{PREFIX}Consumer.{kind}.{}", c.destination.name);
        if c.destination.name.starts_with(PREFIX) || !filters.iter().any(|f| f.matches(&topic)) {
            continue;
        }
        let Some(subject) = topic
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix("Consumer."))
        else {
            continue;
        };
        let Some(destination) = subject_destination(subject) else {
            continue;
        };
        let path = c.network_path.as_ref().map(|p| p.join(","));
        let info = consumer_info(consumer_id(&c.consumer_id), destination, path.as_deref());
        let mut m = openwire::Message::new(openwire::MessageKind::Plain);
        m.producer_id = Some(producer.clone());
        m.message_id = Some(openwire::MessageId {
            text_view: None,
            producer_id: Some(producer.clone()),
            producer_sequence_id: seq as i64 + 1,
            broker_sequence_id: 0,
        });
        m.destination = Some(openwire::Destination::topic(&topic));
        m.persistent = false;
        m.jms_type = Some("Advisory".into());
        m.data_structure = Some(Box::new(DataStructure::Command(Command::ConsumerInfo(
            Box::new(info),
        ))));
        out.push(m);
    }
    out
}

fn remove(target: RemoveTarget) -> Command {
    Command::RemoveInfo(RemoveInfo {
        object_id: target,
        ..RemoveInfo::default()
    })
}

/// `Queue.orders` / `Topic.prices.>` after `Consumer.` or `Producer.`.
fn subject_destination(subject: &str) -> Option<openwire::Destination> {
    if let Some(name) = subject.strip_prefix("Queue.") {
        Some(openwire::Destination::queue(name))
    } else {
        subject
            .strip_prefix("Topic.")
            .map(openwire::Destination::topic)
    }
}

/// An id `connection:session:value` as OpenWire writes it (`ID:host-1234-5:1:1:1`): the last
/// two parts are numbers, the rest is the connection. Another protocol's id (a STOMP
/// subscription has no session) stays whole as the connection part.
fn split_id(id: &str) -> (String, i64, i64) {
    let mut parts = id.rsplitn(3, ':');
    let (Some(value), Some(session), Some(connection)) = (parts.next(), parts.next(), parts.next())
    else {
        return (id.to_owned(), 0, 0);
    };
    match (session.parse(), value.parse()) {
        (Ok(s), Ok(v)) => (connection.to_owned(), s, v),
        _ => (id.to_owned(), 0, 0),
    }
}

fn consumer_id(id: &str) -> ConsumerId {
    let (connection_id, session_id, value) = split_id(id);
    ConsumerId {
        connection_id,
        session_id,
        value,
    }
}

fn producer_id(id: &str) -> ProducerId {
    let (connection_id, session_id, value) = split_id(id);
    ProducerId {
        connection_id,
        session_id,
        value,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use broker_core::{Body, Destination, MessageId};

    fn advisory(topic: &str, props: &[(&str, &str)]) -> Message {
        let mut m = Message::new(
            MessageId::new("p", 1),
            Destination::topic(topic),
            Body::Empty,
        );
        m.message_type = Some("Advisory".into());
        for (k, v) in props {
            m.properties
                .insert((*k).into(), Value::String((*v).to_owned()));
        }
        m
    }

    #[test]
    fn a_started_consumer_is_its_consumer_info() {
        let m = advisory(
            "ActiveMQ.Advisory.Consumer.Queue.orders.eu",
            &[("event", "started"), ("consumerId", "ID:h-1-2:3:4:5")],
        );
        let Some(DataStructure::Command(Command::ConsumerInfo(c))) = data_structure(&m) else {
            panic!("not a ConsumerInfo");
        };
        assert_eq!(c.consumer_id.connection_id, "ID:h-1-2:3");
        assert_eq!((c.consumer_id.session_id, c.consumer_id.value), (4, 5));
        assert_eq!(
            c.destination,
            Some(openwire::Destination::queue("orders.eu"))
        );
    }

    #[test]
    fn a_bridge_consumer_carries_its_broker_path_and_live_ones_are_replayed() {
        let m = advisory(
            "ActiveMQ.Advisory.Consumer.Queue.q",
            &[
                ("event", "started"),
                ("consumerId", "c:1"),
                ("brokerPath", "ID:a,ID:b"),
            ],
        );
        let mut m = m;
        m.properties
            .insert("networkSubscription".into(), Value::Bool(true));
        let Some(DataStructure::Command(Command::ConsumerInfo(c))) = data_structure(&m) else {
            panic!("not a ConsumerInfo");
        };
        assert!(c.network_subscription);
        let path: Vec<_> = c
            .broker_path
            .unwrap()
            .into_iter()
            .map(|b| b.value)
            .collect();
        assert_eq!(path, ["ID:a", "ID:b"]);

        let live = vec![
            broker_core::LiveConsumer {
                destination: Destination::queue("orders"),
                consumer_id: "ID:x:1:2".into(),
                connection_id: "ID:x".into(),
                network_path: None,
            },
            broker_core::LiveConsumer {
                destination: Destination::topic("prices"),
                consumer_id: "stomp-3".into(),
                connection_id: "stomp".into(),
                network_path: Some(vec!["ID:z".into()]),
            },
        ];
        let queues = replay("ActiveMQ.Advisory.Consumer.Queue.>", &live);
        assert_eq!(queues.len(), 1);
        let both = replay(
            "ActiveMQ.Advisory.Consumer.Queue.>,ActiveMQ.Advisory.Consumer.Topic.>",
            &live,
        );
        assert_eq!(both.len(), 2);
        let Some(DataStructure::Command(Command::ConsumerInfo(c))) =
            both[1].data_structure.as_deref()
        else {
            panic!("not a ConsumerInfo");
        };
        assert_eq!(c.destination, Some(openwire::Destination::topic("prices")));
        assert!(c.network_subscription);
    }

    #[test]
    fn a_stopped_producer_is_a_remove_info_naming_it() {
        let m = advisory(
            "ActiveMQ.Advisory.Producer.Topic.t",
            &[("event", "stopped"), ("producerId", "stomp-7")],
        );
        let Some(DataStructure::Command(Command::RemoveInfo(r))) = data_structure(&m) else {
            panic!("not a RemoveInfo");
        };
        let RemoveTarget::Producer(p) = r.object_id else {
            panic!("not a producer");
        };
        assert_eq!(
            (p.connection_id.as_str(), p.session_id, p.value),
            ("stomp-7", 0, 0)
        );
    }

    #[test]
    fn destinations_and_connections_are_rebuilt_and_others_are_left_alone() {
        let created = advisory(
            "ActiveMQ.Advisory.Queue",
            &[("event", "created"), ("destination", "queue://a.b")],
        );
        let Some(DataStructure::Command(Command::DestinationInfo(d))) = data_structure(&created)
        else {
            panic!("not a DestinationInfo");
        };
        assert_eq!(d.destination, openwire::Destination::queue("a.b"));
        assert_eq!(d.operation_type, DestinationInfo::ADD);
        let closed = advisory(
            "ActiveMQ.Advisory.Connection",
            &[("event", "stopped"), ("connectionId", "ID:x")],
        );
        assert!(matches!(
            data_structure(&closed),
            Some(DataStructure::Command(Command::RemoveInfo(_)))
        ));
        let expired = advisory("ActiveMQ.Advisory.Expired.Queue.q", &[("event", "expired")]);
        assert_eq!(data_structure(&expired), None);
        let mut plain = advisory("ActiveMQ.Advisory.Queue", &[("event", "created")]);
        plain.message_type = None;
        assert_eq!(data_structure(&plain), None);
    }
}
