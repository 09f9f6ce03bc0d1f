//! The other direction of a duplex bridge (`duplex = true`): over the same connection, this
//! broker's own demand pulls messages from the remote broker. For each consumer here (learnt
//! from this broker's consumer advisories, the live ones first), the bridge consumes the
//! destination on the remote broker as a network subscription, stores each message it is given
//! here, and acks it there only once it is stored: the same no-loss rule as the forwarding
//! direction. The remote broker needs no notion of duplex: to it this is a consumer whose
//! selector keeps back what came from here, and whose advisories name the brokers its demand
//! came through.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use broker_core::{AckMode, Connection, Destination, Message, Session, Value};
use openwire::{
    AckType, BrokerId, Command, ConsumerId, ConsumerInfo, MessageAck, MessageDispatch, RemoveInfo,
    RemoveTarget,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::config::{Filters, NetworkConnector};
use super::forward::loop_selector;
use super::link::Link;
use super::status::BridgeStatus;

/// The session of the duplex consumers on the remote broker (1 holds the advisories).
pub const SESSION: i64 = 2;

/// A local consumer started or stopped, from this broker's advisories.
pub struct LocalEvent {
    consumer_id: String,
    started: bool,
    destination: Option<Destination>,
    network_path: Vec<String>,
}

/// Watches this broker's consumer advisories: the live consumers first, then each event.
pub async fn watch_local(
    broker: &Arc<crate::Broker>,
    local: &Connection,
) -> Result<(mpsc::Receiver<LocalEvent>, JoinHandle<()>), broker_core::BrokerError> {
    let session = local.session(AckMode::Auto)?;
    // Subscribed before the live consumers are listed: none is missed in between.
    let consumer = session
        .consumer(Destination::topic("ActiveMQ.Advisory.Consumer.>"), None)
        .await?;
    let (tx, rx) = mpsc::channel(1024);
    for c in broker.live_consumers()? {
        let _ = tx
            .send(LocalEvent {
                consumer_id: c.consumer_id,
                started: true,
                destination: Some(c.destination),
                network_path: c.network_path.unwrap_or_default(),
            })
            .await;
    }
    let task = tokio::spawn(async move {
        let _session = session;
        while let Ok(Some(r)) = consumer.receive().await {
            if let Some(e) = event_of(r.message())
                && tx.send(e).await.is_err()
            {
                break;
            }
        }
    });
    Ok((rx, task))
}

fn event_of(m: &Message) -> Option<LocalEvent> {
    let text = |k: &str| match m.properties.get(k) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let destination = text("destination").and_then(|d| {
        d.strip_prefix("queue://")
            .map(Destination::queue)
            .or_else(|| d.strip_prefix("topic://").map(Destination::topic))
    });
    Some(LocalEvent {
        consumer_id: text("consumerId")?.to_owned(),
        started: text("event")? == "started",
        destination,
        network_path: text("brokerPath")
            .map(|p| {
                p.split(',')
                    .filter(|b| !b.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The local demand and the remote subscriptions serving it.
pub struct Pull {
    connector: Arc<NetworkConnector>,
    filters: Arc<Filters>,
    link: Link,
    local_id: Arc<str>,
    broker: Arc<crate::Broker>,
    status: Arc<BridgeStatus>,
    next: i64,
    consumers: HashMap<String, Destination>,
    subscriptions: HashMap<Destination, Subscription>,
    by_remote: HashMap<ConsumerId, Destination>,
}

struct Subscription {
    local_consumers: HashSet<String>,
    remote: ConsumerId,
    to_store: mpsc::Sender<MessageDispatch>,
    task: JoinHandle<()>,
}

impl Pull {
    pub fn new(
        connector: Arc<NetworkConnector>,
        filters: Arc<Filters>,
        link: Link,
        local_id: Arc<str>,
        broker: Arc<crate::Broker>,
        status: Arc<BridgeStatus>,
    ) -> Pull {
        Pull {
            connector,
            filters,
            link,
            local_id,
            broker,
            status,
            next: 0,
            consumers: HashMap::new(),
            subscriptions: HashMap::new(),
            by_remote: HashMap::new(),
        }
    }

    pub async fn on_local(&mut self, e: LocalEvent, local: &Connection) {
        if e.started {
            self.add(e, local).await;
        } else {
            self.remove(&e.consumer_id).await;
        }
    }

    async fn add(&mut self, e: LocalEvent, local: &Connection) {
        let Some(d) = e.destination else {
            return;
        };
        let remote_id = &self.link.remote_broker_id;
        if d.name.starts_with("ActiveMQ.")
            || self.broker.is_temporary(&d)
            || e.network_path.iter().any(|b| b == remote_id)
            || e.network_path.len() >= self.connector.network_ttl as usize
            || !self.filters.permits(&d)
        {
            return;
        }
        self.consumers.insert(e.consumer_id.clone(), d.clone());
        if let Some(s) = self.subscriptions.get_mut(&d) {
            s.local_consumers.insert(e.consumer_id);
            return;
        }
        self.next += 1;
        let remote = ConsumerId {
            connection_id: self.link.connection_id.clone(),
            session_id: SESSION,
            value: self.next,
        };
        let mut path: Vec<BrokerId> = e
            .network_path
            .iter()
            .map(|b| BrokerId { value: b.clone() })
            .collect();
        path.push(BrokerId {
            value: self.local_id.to_string(),
        });
        let info = ConsumerInfo {
            command_id: self.link.next_command_id(),
            consumer_id: remote.clone(),
            destination: Some(crate::openwire::convert::openwire_destination(&d, false)),
            prefetch_size: i32::try_from(self.connector.prefetch).unwrap_or(i32::MAX),
            dispatch_async: true,
            // What came from here stays there.
            selector: Some(loop_selector(&self.local_id)),
            network_subscription: true,
            broker_path: Some(path),
            ..ConsumerInfo::default()
        };
        let session = match local.session(AckMode::Auto) {
            Ok(s) => s,
            Err(e) => {
                warn!(bridge = %self.connector.name, "cannot store what {d} pulls: {e}");
                return;
            }
        };
        if !self.link.send(&Command::ConsumerInfo(Box::new(info))).await {
            return;
        }
        let (to_store, rx) = mpsc::channel(self.connector.prefetch.max(1) as usize);
        let task = tokio::spawn(store_and_ack(
            rx,
            self.link.clone(),
            Arc::clone(&self.broker),
            Arc::clone(&self.status),
            session,
        ));
        info!(
            bridge = %self.connector.name,
            "demand for {d} here: pulling it from {} (duplex)",
            self.link.remote_broker_name
        );
        self.by_remote.insert(remote.clone(), d.clone());
        self.subscriptions.insert(
            d,
            Subscription {
                local_consumers: HashSet::from([e.consumer_id]),
                remote,
                to_store,
                task,
            },
        );
    }

    async fn remove(&mut self, consumer_id: &str) {
        let Some(d) = self.consumers.remove(consumer_id) else {
            return;
        };
        let Some(s) = self.subscriptions.get_mut(&d) else {
            return;
        };
        s.local_consumers.remove(consumer_id);
        if !s.local_consumers.is_empty() {
            return;
        }
        if let Some(s) = self.subscriptions.remove(&d) {
            info!(bridge = %self.connector.name, "no more demand for {d} here: pulling stops (duplex)");
            self.by_remote.remove(&s.remote);
            let _ = self
                .link
                .send(&Command::RemoveInfo(RemoveInfo {
                    command_id: self.link.next_command_id(),
                    object_id: RemoveTarget::Consumer(s.remote),
                    ..RemoveInfo::default()
                }))
                .await;
            // Its queue drains (stored and acked) on its own.
            drop(s.to_store);
        }
    }

    /// A message the remote broker dispatched to one of the duplex subscriptions.
    pub async fn on_dispatch(&mut self, d: MessageDispatch) {
        let Some(dest) = self.by_remote.get(&d.consumer_id) else {
            return;
        };
        if let Some(s) = self.subscriptions.get(dest) {
            let _ = s.to_store.send(d).await;
        }
    }

    /// Ends every subscription (their messages not yet acked go back on the remote broker).
    pub async fn stop(&mut self) {
        for (_, s) in self.subscriptions.drain() {
            drop(s.to_store);
            s.task.abort();
            let _ = s.task.await;
        }
        self.by_remote.clear();
        self.consumers.clear();
    }
}

/// Stores each dispatched message here, then acks it on the remote broker.
async fn store_and_ack(
    mut rx: mpsc::Receiver<MessageDispatch>,
    link: Link,
    broker: Arc<crate::Broker>,
    status: Arc<BridgeStatus>,
    session: Session,
) {
    let remote_id = link.remote_broker_id.clone();
    while let Some(d) = rx.recv().await {
        let Some(mut m) = d.message else {
            continue;
        };
        // It came from the remote broker: its path says so, for the loop checks here.
        m.broker_path.get_or_insert_with(Vec::new).push(BrokerId {
            value: remote_id.clone(),
        });
        let stored = async {
            let dest = m
                .destination
                .as_ref()
                .ok_or_else(|| "no destination".to_owned())?;
            let destination =
                crate::openwire::convert::destination(dest).map_err(|e| format!("{e:?}"))?;
            let mut out = crate::openwire::convert::outgoing(&m).map_err(|e| format!("{e:?}"))?;
            out.redelivery_count =
                u32::try_from(d.redelivery_counter.max(m.redelivery_counter)).unwrap_or(0);
            session
                .producer(destination)
                .map_err(|e| e.to_string())?
                .send(out)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match stored {
            Ok(_) => {
                broker.network().received.fetch_add(1, Ordering::Relaxed);
                status.pulled.fetch_add(1, Ordering::Relaxed);
                let _ = link
                    .send(&Command::MessageAck(Box::new(MessageAck {
                        command_id: link.next_command_id(),
                        destination: d.destination.clone(),
                        consumer_id: d.consumer_id.clone(),
                        ack_type: AckType::Individual,
                        first_message_id: m.message_id.clone(),
                        last_message_id: m.message_id.clone(),
                        message_count: 1,
                        ..MessageAck::default()
                    })))
                    .await;
            }
            // Not acked: the remote broker gives it again when this subscription ends.
            Err(e) => {
                warn!("cannot store a message pulled from {remote_id}: {e}");
                break;
            }
        }
    }
    session.close().await;
}
