//! One destination forwarded over a bridge: a broker-core consumer on it here, each message
//! it receives sent to the remote broker with a response required, and acked here only once
//! the remote answered that it stored it. A crash of either side at any point leaves the
//! message here, unacked, to be sent again: never lost, at worst sent twice (flagged
//! redelivered the second time, since it went back to the destination here first).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use broker_core::{AckMode, BrokerError, Connection, Consumer, Destination, Received, Session};
use openwire::{BrokerId, Command, MessageId, ProducerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use super::BROKER_PATH_PROPERTY;
use super::link::{Answer, Link};

/// A running forwarder; [`Forwarder::stop`] ends it.
pub struct Forwarder {
    consumer: Arc<Consumer>,
    task: JoinHandle<()>,
}

/// What every forwarder of a bridge shares.
#[derive(Clone)]
pub struct Shared {
    pub broker: Arc<crate::Broker>,
    pub link: Link,
    pub producer: ProducerId,
    pub local_id: Arc<str>,
    pub prefetch: u32,
    /// A forwarder that cannot go on says why here; the bridge then reconnects.
    pub failures: mpsc::Sender<String>,
    /// Counts the messages stored by the remote broker and acked here.
    pub status: Arc<super::status::BridgeStatus>,
}

/// The selector that keeps from a bridge the messages that came from its remote broker (their
/// broker path holds its id): what stops a message going back where it came from, while it
/// stays for the other consumers here.
pub fn loop_selector(remote_id: &str) -> String {
    let p = BROKER_PATH_PROPERTY;
    let r = remote_id.replace('\'', "''");
    format!(
        "{p} IS NULL OR NOT ({p} = '{r}' OR {p} LIKE '{r},%' OR {p} LIKE '%,{r}' OR {p} LIKE '%,{r},%')"
    )
}

impl Forwarder {
    /// Consumes `destination` here for the remote broker; `network_path` is what this
    /// consumer's advisories carry (the brokers the demand came through).
    pub async fn start(
        connection: &Connection,
        destination: Destination,
        network_path: Vec<String>,
        shared: Shared,
    ) -> Result<Forwarder, BrokerError> {
        let session = connection.session(AckMode::Individual)?;
        session.set_network_path(network_path);
        let remote = &shared.link.remote_broker_id;
        // A queue's dispatcher keeps back what came from `remote` by itself, and lets it go
        // back under `replay_when_no_consumers`; the selector does it everywhere else
        // (topics, wildcards), and for the queues without replay too.
        let replay = destination.is_queue()
            && !broker_core::destination_filter::has_wildcard_chars(&destination.name)
            && session.replays_when_no_consumers(&destination);
        if destination.is_queue() {
            session.set_forwards_to(remote);
        }
        let selector = (!replay).then(|| loop_selector(remote));
        let consumer = Arc::new(
            session
                .consumer_with_prefetch(destination.clone(), selector.as_deref(), shared.prefetch)
                .await?,
        );
        let task = tokio::spawn(run(session, Arc::clone(&consumer), shared));
        Ok(Forwarder { consumer, task })
    }

    /// Stops taking messages; those in flight are acked as their answers come (or go back
    /// when the link is gone), then the session closes and gives back the rest.
    pub async fn stop(self) {
        self.consumer.close().await;
        let _ = self.task.await;
    }
}

async fn run(session: Session, consumer: Arc<Consumer>, shared: Shared) {
    let (tx, mut rx) =
        mpsc::channel::<(Received, oneshot::Receiver<Answer>)>(shared.prefetch.max(1) as usize);
    let sender = {
        let shared = shared.clone();
        let consumer = Arc::clone(&consumer);
        async move {
            while let Ok(Some(received)) = consumer.receive().await {
                let id = shared.link.next_command_id();
                let Some(cmd) = outgoing(&shared, &received, id) else {
                    // Left delivered and unacked: it goes back when the session closes.
                    continue;
                };
                let Some(answer) = shared.link.request(id, &cmd).await else {
                    break;
                };
                if tx.send((received, answer)).await.is_err() {
                    break;
                }
            }
        }
    };
    let acker = {
        let shared = shared.clone();
        let session = session.clone();
        async move {
            while let Some((received, answer)) = rx.recv().await {
                match answer.await {
                    // Acked without waiting for this store's fsync: the acks of a stream share
                    // them (broker-core redelivers a message whose ack the store then fails;
                    // the session's close waits for those in flight).
                    Ok(Ok(())) => {
                        if let Err(e) = session
                            .submit_acknowledge(&received, broker_core::AckWait::NoReceipt)
                            .await
                        {
                            let _ = shared
                                .failures
                                .try_send(format!("local ack of a forwarded message: {e}"));
                            break;
                        }
                        shared.status.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        let _ = shared.failures.try_send(format!(
                            "the remote broker refused message {}: {e}",
                            received.id()
                        ));
                        break;
                    }
                    // The link is gone: the bridge knows.
                    Err(_) => break,
                }
            }
        }
    };
    tokio::join!(sender, acker);
    consumer.close().await;
    session.close().await;
}

/// The message as the remote broker gets it: its id kept (so the remote can tell a resend),
/// this broker appended to its broker path.
fn outgoing(shared: &Shared, received: &Received, command_id: i32) -> Option<Command> {
    let m = received.message();
    let id = MessageId {
        text_view: None,
        producer_id: Some(ProducerId {
            connection_id: m.id.producer.to_string(),
            session_id: 0,
            value: 0,
        }),
        producer_sequence_id: i64::try_from(m.id.producer_seq).unwrap_or(i64::MAX),
        broker_sequence_id: 0,
    };
    let broker = &shared.broker;
    let mut o = match crate::openwire::convert::dispatched(m, id, &|d| broker.is_temporary(d)) {
        Ok(o) => o,
        Err(e) => {
            warn!("cannot forward message {}: {e}", m.id);
            return None;
        }
    };
    o.producer_id = Some(shared.producer.clone());
    o.command_id = command_id;
    o.response_required = true;
    o.broker_path.get_or_insert_with(Vec::new).push(BrokerId {
        value: shared.local_id.to_string(),
    });
    Some(Command::Message(Box::new(o)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use broker_core::{Body, Selector, Value};

    fn with_path(path: Option<&str>) -> broker_core::Message {
        let mut m = broker_core::Message::new(
            broker_core::MessageId::new("p", 1),
            Destination::queue("q"),
            Body::Empty,
        );
        if let Some(p) = path {
            m.properties
                .insert(BROKER_PATH_PROPERTY.into(), Value::String(p.into()));
        }
        m
    }

    #[test]
    fn the_loop_selector_keeps_back_what_came_from_the_remote() {
        let s = Selector::parse(&loop_selector("ID:b-1")).unwrap();
        assert!(s.matches(&with_path(None)));
        assert!(s.matches(&with_path(Some("ID:a-1"))));
        assert!(s.matches(&with_path(Some("ID:b-12,ID:a"))));
        assert!(!s.matches(&with_path(Some("ID:b-1"))));
        assert!(!s.matches(&with_path(Some("ID:a,ID:b-1"))));
        assert!(!s.matches(&with_path(Some("ID:b-1,ID:a"))));
        assert!(!s.matches(&with_path(Some("ID:a,ID:b-1,ID:c"))));
    }
}
