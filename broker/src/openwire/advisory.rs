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
    Command, ConnectionId, ConnectionInfo, ConsumerId, ConsumerInfo, DataStructure,
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
            Command::ConsumerInfo(Box::new(ConsumerInfo {
                consumer_id: id,
                destination: Some(subject_destination(subject)?),
                ..ConsumerInfo::default()
            }))
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
