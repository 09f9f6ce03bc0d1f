//! One bridge: this broker to one remote broker, reconnecting with back-off, forwarding on
//! the remote's demand (ActiveMQ's `DemandForwardingBridge`).
//!
//! The demand is learnt from the remote's consumer advisories (the live consumers first, then
//! each start and stop). A remote consumer creates demand for its destination unless the
//! filters exclude it, its broker path already holds this broker (the demand came from here:
//! a loop), or the path is `network_ttl` brokers long already. With conduit subscriptions
//! (the default) all remote consumers of a destination share one forwarder.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker_core::{Connection, Destination};
use openwire::{
    AckType, Command, ConsumerId, ConsumerInfo, DataStructure, MessageAck, MessageDispatch,
    ProducerId, ProducerInfo, RemoveTarget, SessionId, SessionInfo,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::config::{Filters, NetworkConnector, Remote};
use super::duplex::{self, Pull};
use super::forward::{Forwarder, Shared};
use super::link::{Inbound, Link};
use super::status::BridgeStatus;

/// The consumer advisory topics a bridge watches on the remote broker.
const ADVISORY_TOPICS: [&str; 2] = [
    "ActiveMQ.Advisory.Consumer.Queue.>",
    "ActiveMQ.Advisory.Consumer.Topic.>",
];
/// Prefetch of the advisory consumers on the remote broker.
const ADVISORY_PREFETCH: i32 = 1000;
/// How long a stopping bridge waits for the answers to messages in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// What one bridge is.
pub struct Spec {
    pub connector: Arc<NetworkConnector>,
    pub filters: Arc<Filters>,
    pub remote: Remote,
    /// What the console shows of it.
    pub status: Arc<BridgeStatus>,
}

/// Connects, forwards until the connection ends, waits, again; until the broker stops.
pub async fn run(spec: Spec, broker: Arc<crate::Broker>, mut shutdown: watch::Receiver<bool>) {
    let name = spec.connector.name.clone();
    let addr = spec.remote.address.clone();
    let mut attempt: u32 = 0;
    let mut n: u64 = 0;
    loop {
        let stopping = *shutdown.borrow();
        if stopping {
            return;
        }
        n += 1;
        let connection_id = format!("{}-{name}-{n}", broker.broker_id());
        // As ActiveMQ names its bridges' connections: one per connector and broker.
        let client_id = format!("{name}_{}_outbound", broker.broker_id());
        match Link::open(&spec.remote, connection_id, client_id).await {
            Ok((link, inbound, tasks)) => {
                attempt = 0;
                info!(
                    bridge = %name,
                    remote = %addr,
                    remote_broker = %link.remote_broker_name,
                    "network bridge connected to {} ({})",
                    link.remote_broker_name,
                    link.remote_broker_id
                );
                spec.status.connected(&link.remote_broker_name);
                let why = serve(&spec, &broker, link, inbound, tasks, &mut shutdown).await;
                spec.status.disconnected();
                info!(bridge = %name, remote = %addr, "network bridge disconnected: {why}");
            }
            Err(e) => {
                // The first failure is news; a remote that stays down is not, each time.
                if attempt == 0 {
                    warn!(bridge = %name, remote = %addr, "network bridge cannot connect: {e}");
                } else {
                    debug!(bridge = %name, remote = %addr, "network bridge cannot connect: {e}");
                }
            }
        }
        let delay = spec.connector.reconnect_delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
    }
}

/// Serves one connection; returns why it ended.
async fn serve(
    spec: &Spec,
    broker: &Arc<crate::Broker>,
    link: Link,
    mut inbound: mpsc::Receiver<Inbound>,
    mut tasks: super::link::Tasks,
    shutdown: &mut watch::Receiver<bool>,
) -> String {
    let local_id: Arc<str> = Arc::from(broker.broker_id());
    if link.remote_broker_id == *local_id {
        tasks.stop(&link).await;
        return "the remote broker is this broker".into();
    }
    let local = match broker
        .connect_from(
            None,
            "network",
            &format!("{} (bridge {})", spec.remote.address, spec.connector.name),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tasks.stop(&link).await;
            return format!("cannot open the local connection: {e}");
        }
    };
    let (failures, mut failed) = mpsc::channel(16);
    let shared = Shared {
        broker: Arc::clone(broker),
        producer: ProducerId {
            connection_id: link.connection_id.clone(),
            session_id: 1,
            value: 1,
        },
        link: link.clone(),
        local_id: Arc::clone(&local_id),
        prefetch: spec.connector.prefetch,
        failures,
        status: Arc::clone(&spec.status),
    };
    let mut demand = Demand {
        spec,
        local: &local,
        shared,
        consumers: HashMap::new(),
        entries: HashMap::new(),
        stopping: JoinSet::new(),
    };
    // Duplex: this broker's own demand pulls over the same connection.
    let mut pull = spec.connector.duplex.then(|| {
        Pull::new(
            Arc::clone(&spec.connector),
            Arc::clone(&spec.filters),
            link.clone(),
            Arc::clone(&local_id),
            Arc::clone(broker),
            Arc::clone(&spec.status),
        )
    });
    let mut watcher = None;
    let why = match demand.open_remote().await {
        Err(why) => why,
        Ok(()) => 'serving: {
            demand.start_static().await;
            let mut local_events = None;
            if pull.is_some() {
                match duplex::watch_local(broker, &local).await {
                    Ok((rx, task)) => {
                        local_events = Some(rx);
                        watcher = Some(task);
                    }
                    Err(e) => break 'serving format!("cannot watch the local consumers: {e}"),
                }
            }
            loop {
                tokio::select! {
                    d = inbound.recv() => match d {
                        Some(Inbound::Dispatch(d)) => match pull.as_mut() {
                            Some(p) if d.consumer_id.session_id == duplex::SESSION => {
                                p.on_dispatch(*d).await;
                            }
                            _ => demand.on_advisory(*d).await,
                        },
                        None => break tasks.ended().await,
                    },
                    Some(e) = async {
                        match local_events.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if let Some(p) = pull.as_mut() {
                            p.on_local(e, &local).await;
                        }
                    }
                    Some(why) = failed.recv() => break why,
                    _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                        break "the broker is stopping".to_owned()
                    }
                }
            }
        }
    };
    let link_alive = !inbound.is_closed();
    if link_alive {
        // A clean stop: no new messages, the answers in flight still acked.
        let _ = tokio::time::timeout(DRAIN, demand.stop_all()).await;
    }
    if let Some(w) = watcher {
        w.abort();
        let _ = w.await;
    }
    if let Some(p) = pull.as_mut() {
        p.stop().await;
    }
    tasks.stop(&link).await;
    demand.stop_all().await;
    local.close().await;
    why
}

/// The remote demand and the forwarders serving it.
struct Demand<'a> {
    spec: &'a Spec,
    local: &'a Connection,
    shared: Shared,
    /// Remote consumer → the key of the forwarder it counts for.
    consumers: HashMap<ConsumerId, Key>,
    entries: HashMap<Key, Entry>,
    /// Forwarders being stopped (draining their answers).
    stopping: JoinSet<()>,
}

/// A destination, and the remote consumer when subscriptions are not conduit.
type Key = (Destination, Option<ConsumerId>);

struct Entry {
    remote_consumers: HashSet<ConsumerId>,
    /// Statically included: stays without remote consumers.
    fixed: bool,
    forwarder: Forwarder,
}

impl Demand<'_> {
    /// The session, producer and advisory consumers on the remote broker.
    async fn open_remote(&self) -> Result<(), String> {
        let link = &self.shared.link;
        let session_id = SessionId {
            connection_id: link.connection_id.clone(),
            value: 1,
        };
        let mut ok = link
            .send(&Command::SessionInfo(SessionInfo {
                command_id: link.next_command_id(),
                session_id,
                ..SessionInfo::default()
            }))
            .await;
        ok &= link
            .send(&Command::ProducerInfo(ProducerInfo {
                command_id: link.next_command_id(),
                producer_id: self.shared.producer.clone(),
                ..ProducerInfo::default()
            }))
            .await;
        for (i, topic) in ADVISORY_TOPICS.iter().enumerate() {
            ok &= link
                .send(&Command::ConsumerInfo(Box::new(ConsumerInfo {
                    command_id: link.next_command_id(),
                    consumer_id: self.advisory_consumer(i),
                    destination: Some(openwire::Destination::topic(*topic)),
                    prefetch_size: ADVISORY_PREFETCH,
                    dispatch_async: true,
                    network_subscription: true,
                    broker_path: Some(vec![openwire::BrokerId {
                        value: self.shared.local_id.to_string(),
                    }]),
                    ..ConsumerInfo::default()
                })))
                .await;
        }
        if ok {
            Ok(())
        } else {
            Err("the connection ended while subscribing to the advisories".into())
        }
    }

    fn advisory_consumer(&self, i: usize) -> ConsumerId {
        ConsumerId {
            connection_id: self.shared.link.connection_id.clone(),
            session_id: 1,
            value: i as i64 + 1,
        }
    }

    /// `statically_included_destinations`, forwarded whether or not the remote has consumers.
    async fn start_static(&mut self) {
        if self.spec.connector.dynamic_only {
            return;
        }
        let statics: Vec<Destination> = self
            .spec
            .connector
            .statically_included_destinations
            .iter()
            .filter_map(|s| {
                s.strip_prefix("queue://")
                    .map(Destination::queue)
                    .or_else(|| s.strip_prefix("topic://").map(Destination::topic))
            })
            .collect();
        for d in statics {
            if self.spec.filters.excluded.iter().any(|p| p.matches(&d)) {
                continue;
            }
            let key = (d.clone(), None);
            let path = vec![self.shared.link.remote_broker_id.clone()];
            if let Some(forwarder) = self.start_forwarder(d.clone(), path).await {
                info!(bridge = %self.spec.connector.name, "forwarding {d} (statically included)");
                self.entries.insert(
                    key,
                    Entry {
                        remote_consumers: HashSet::new(),
                        fixed: true,
                        forwarder,
                    },
                );
            }
        }
        self.count();
    }

    async fn start_forwarder(&self, d: Destination, path: Vec<String>) -> Option<Forwarder> {
        match Forwarder::start(self.local, d.clone(), path, self.shared.clone()).await {
            Ok(f) => Some(f),
            Err(e) => {
                warn!(bridge = %self.spec.connector.name, "cannot consume {d} to forward it: {e}");
                None
            }
        }
    }

    /// One advisory: acked at once (they are notices), then applied.
    async fn on_advisory(&mut self, d: MessageDispatch) {
        let Some(m) = d.message else {
            return;
        };
        if let Some(id) = &m.message_id {
            let link = &self.shared.link;
            link.send(&Command::MessageAck(Box::new(MessageAck {
                command_id: link.next_command_id(),
                destination: d.destination.clone(),
                consumer_id: d.consumer_id.clone(),
                ack_type: AckType::Individual,
                first_message_id: Some(id.clone()),
                last_message_id: Some(id.clone()),
                message_count: 1,
                ..MessageAck::default()
            })))
            .await;
        }
        match m.data_structure.map(|b| *b) {
            Some(DataStructure::Command(Command::ConsumerInfo(info))) => {
                self.add_consumer(*info).await;
            }
            Some(DataStructure::Command(Command::RemoveInfo(r))) => {
                if let RemoveTarget::Consumer(id) = r.object_id {
                    self.remove_consumer(&id).await;
                }
            }
            _ => {}
        }
    }

    async fn add_consumer(&mut self, info: ConsumerInfo) {
        let name = &self.spec.connector.name;
        if info.browser || self.consumers.contains_key(&info.consumer_id) {
            return;
        }
        let Some(dest) = info.destination.as_ref() else {
            return;
        };
        if dest.kind.is_temporary() {
            return;
        }
        let Ok(d) = crate::openwire::convert::destination(dest) else {
            return;
        };
        if d.name.starts_with("ActiveMQ.") {
            return;
        }
        let path: Vec<String> = info
            .broker_path
            .iter()
            .flatten()
            .map(|b| b.value.clone())
            .collect();
        if path.iter().any(|b| **b == *self.shared.local_id) {
            debug!(bridge = %name, "demand for {d} came from this broker: ignored (loop)");
            return;
        }
        if path.len() >= self.spec.connector.network_ttl as usize {
            debug!(bridge = %name, "demand for {d} is {} hops away: beyond network_ttl", path.len());
            return;
        }
        if !self.spec.filters.permits(&d) {
            debug!(bridge = %name, "demand for {d} not bridged (filters)");
            return;
        }
        let key = if self.spec.connector.conduit_subscriptions {
            (d.clone(), None)
        } else {
            (d.clone(), Some(info.consumer_id.clone()))
        };
        if let Some(e) = self.entries.get_mut(&key) {
            e.remote_consumers.insert(info.consumer_id.clone());
            self.consumers.insert(info.consumer_id, key);
            return;
        }
        let mut network_path = path;
        network_path.push(self.shared.link.remote_broker_id.clone());
        let Some(forwarder) = self.start_forwarder(d.clone(), network_path).await else {
            return;
        };
        info!(bridge = %name, "demand for {d} on {}: forwarding", self.shared.link.remote_broker_name);
        self.entries.insert(
            key.clone(),
            Entry {
                remote_consumers: HashSet::from([info.consumer_id.clone()]),
                fixed: false,
                forwarder,
            },
        );
        self.consumers.insert(info.consumer_id, key);
        self.count();
    }

    /// The destinations forwarded now, for the console.
    fn count(&self) {
        self.spec
            .status
            .destinations
            .store(self.entries.len(), Ordering::Relaxed);
    }

    async fn remove_consumer(&mut self, id: &ConsumerId) {
        let Some(key) = self.consumers.remove(id) else {
            return;
        };
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        e.remote_consumers.remove(id);
        if !e.remote_consumers.is_empty() || e.fixed {
            return;
        }
        if let Some(e) = self.entries.remove(&key) {
            info!(
                bridge = %self.spec.connector.name,
                "no more demand for {} on {}: forwarding stops",
                key.0,
                self.shared.link.remote_broker_name
            );
            // Drained on its own task: its answers come through the reader, which this task
            // must keep serving meanwhile.
            self.stopping.spawn(e.forwarder.stop());
        }
        self.count();
    }

    /// Stops every forwarder and waits for them.
    async fn stop_all(&mut self) {
        for (_, e) in self.entries.drain() {
            self.stopping.spawn(e.forwarder.stop());
        }
        self.consumers.clear();
        while self.stopping.join_next().await.is_some() {}
    }
}
