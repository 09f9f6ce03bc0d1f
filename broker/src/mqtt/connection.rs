//! One MQTT connection: packets in, broker-core calls, packets out.
//!
//! Like a STOMP connection it has a reader (this task), a writer task fed by a bounded queue,
//! and one pump per subscription ([`super::session`]). QoS 1/2 PUBLISHes are handed to
//! broker-core in order and their PUBACK/PUBREC go out, in the same order, only once the
//! store has the message on disk; up to `pipeline_window` of them are in flight at once
//! (they share fsyncs), then the connection stops reading. Malformed input (any rule of the
//! standard the codec checks, a packet over `max_frame_bytes`, a second CONNECT, a PUBLISH
//! that is refused) closes that connection only, with a WARN naming the problem; the will is
//! then published, as on any close without DISCONNECT.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use broker_core::authorization::Operation;
use broker_core::{Body, BrokerError, Connection, Destination, Outgoing, Producer, Session, Value};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, Packet, PacketError, Publish, QoS, SubAck, SubAckCode,
    Will, decode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::MqttContext;
use super::mapping::{self, QOS_PROPERTY};
use super::session::{Outbox, Subscription, is_mqtt_durable, parse_durable_name};
use crate::outbound::{self, OutSender, WriterOptions};

/// How long a CONNECT waits for the previous connection of its client id to close.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// Producers cached per connection (one per JMS topic published to).
const MAX_PRODUCERS: usize = 10_000;

/// Connection numbers, to tell a client id's current connection from the one it replaced.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// A store write in flight and the packet that answers it once it is durable.
type Pending = (
    Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send + Sync>>,
    Option<Packet>,
);

/// Why a connection ends other than by DISCONNECT or the client going away.
#[derive(Debug)]
enum Close {
    /// A protocol violation or a refused operation: WARN with the reason.
    Violation(String),
    /// Logged at INFO (keep-alive expired, taken over, broker stopping).
    Quiet(String),
}

impl From<BrokerError> for Close {
    fn from(e: BrokerError) -> Close {
        Close::Violation(e.to_string())
    }
}

struct Conn {
    ctx: Arc<MqttContext>,
    peer: String,
    client_id: String,
    seq: u64,
    clean_session: bool,
    connection: Connection,
    auto: Session,
    producers: HashMap<String, Producer>,
    subs: HashMap<String, Subscription>,
    outbox: Arc<Outbox>,
    out: OutSender,
    will: Option<Will>,
    /// Inbound QoS 2 packet ids whose PUBREC went out and whose PUBREL has not come: a
    /// resent PUBLISH with one of them is not published again.
    awaiting_rel: HashSet<u16>,
    pending: VecDeque<Pending>,
    /// Set once CONNACK is queued. The subscriptions a resumed session opens before it wait
    /// for it: a PUBLISH ahead of CONNACK is a protocol error to the client ([MQTT-3.2.0-1]),
    /// and paho and mosquitto_sub drop it, so the message sat unacked in flight.
    connacked: watch::Sender<bool>,
}

/// Serves one client until it disconnects, errs or the broker stops.
pub async fn serve<S>(io: S, peer: String, ctx: Arc<MqttContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = Arc::clone(&ctx.server);
    let (mut rd, wr) = tokio::io::split(io);
    let (out, out_rx) = outbound::channel(
        server.max_pending_frames,
        server.max_pending_bytes,
        server.broker.memory().ok(),
    );
    let (_idle_tx, idle_rx) = watch::channel(None::<Duration>);
    let writer = tokio::spawn(outbound::write_loop(
        wr,
        out_rx,
        WriterOptions {
            // The server never pings in MQTT: the client does (PINGREQ).
            ping: Bytes::new(),
            idle: idle_rx,
            write_timeout: server.write_timeout,
            peer: peer.clone(),
        },
    ));
    let mut buf = BytesMut::with_capacity(8192);
    let mut shutdown = server.shutdown.clone();
    let connect_deadline = tokio::time::Instant::now() + server.connect_timeout;
    let mut conn: Option<Conn> = None;
    let mut kicked: Option<watch::Receiver<bool>> = None;
    let mut keep_alive: Option<Duration> = None;
    let mut clean = false;
    let ended: Option<Close> = 'outer: loop {
        // Packets already buffered first.
        loop {
            let limit = if conn.is_some() {
                server.limits.max_frame_bytes
            } else {
                server
                    .limits
                    .max_frame_bytes
                    .min(server.max_connect_frame_bytes)
            };
            let packet = match decode(&mut buf, limit) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(PacketError::ProtocolLevel(level)) if conn.is_none() => {
                    let _ = out
                        .send(connack(
                            false,
                            ConnectReturnCode::UnacceptableProtocolVersion,
                        ))
                        .await;
                    break 'outer Some(Close::Violation(format!(
                        "CONNECT with protocol level {level}, not 4 (MQTT 3.1.1); answered CONNACK 1"
                    )));
                }
                Err(e) => break 'outer Some(Close::Violation(format!("malformed packet: {e}"))),
            };
            match conn.as_mut() {
                None => {
                    let Packet::Connect(c) = packet else {
                        break 'outer Some(Close::Violation(format!(
                            "expected CONNECT, got {}",
                            packet.name()
                        )));
                    };
                    match connect(c, &peer, &ctx, &out).await {
                        Ok((c, ka, rx)) => {
                            keep_alive = ka;
                            kicked = Some(rx);
                            conn = Some(c);
                        }
                        Err(close) => break 'outer Some(close),
                    }
                }
                Some(c) => {
                    // Bounded: a client faster than the disk waits here, unread.
                    while c.pending.len() >= server.pipeline_window.max(1) {
                        if let Err(e) = c.complete_oldest().await {
                            break 'outer Some(e);
                        }
                    }
                    match Box::pin(c.handle(packet)).await {
                        Ok(true) => {
                            clean = true;
                            break 'outer None;
                        }
                        Ok(false) => {}
                        Err(e) => break 'outer Some(e),
                    }
                }
            }
        }
        // [MQTT-3.1.2-24]: one and a half keep-alive periods of silence close the connection.
        let deadline = match (&conn, keep_alive) {
            (None, _) => connect_deadline,
            (Some(_), Some(ka)) => tokio::time::Instant::now() + ka,
            (Some(_), None) => tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600),
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)) => match r {
                Ok(Ok(0)) => break None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(peer = %peer, "read: {e}");
                    break None;
                }
                Err(_) if conn.is_some() => break Some(Close::Quiet(format!(
                    "no packet within 1.5 × the keep-alive ({:?})", keep_alive.unwrap_or_default()
                ))),
                Err(_) => break Some(Close::Quiet(format!(
                    "no CONNECT within {:?} of accepting", server.connect_timeout
                ))),
            },
            r = async {
                match conn.as_mut() {
                    Some(c) if !c.pending.is_empty() => c.complete_oldest().await,
                    _ => std::future::pending().await,
                }
            } => {
                if let Err(e) = r {
                    break Some(e);
                }
            }
            _ = async {
                match kicked.as_mut() {
                    Some(k) => { let _ = k.wait_for(|b| *b).await; }
                    None => std::future::pending().await,
                }
            } => break Some(Close::Quiet("another connection took over its client id".into())),
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                break Some(Close::Quiet("the broker is shutting down".into()));
            }
            () = out.closed() => break None,
        }
    };
    match &ended {
        Some(Close::Violation(why)) => warn!(peer = %peer, "MQTT: {why}; closing the connection"),
        Some(Close::Quiet(why)) => info!(peer = %peer, "MQTT: {why}; closing the connection"),
        None => {}
    }
    if let Some(c) = conn {
        c.close(clean).await;
    }
    drop(out);
    let _ = writer.await;
    if !*shutdown.borrow() {
        crate::stomp::server::linger(&mut rd, &mut buf).await;
    }
}

fn connack(session_present: bool, code: ConnectReturnCode) -> Bytes {
    // Two fixed bytes: cannot fail to encode.
    Packet::ConnAck(ConnAck {
        session_present,
        code,
    })
    .to_bytes()
    .unwrap_or_default()
}

/// A fresh client id for an empty one with cleanSession=true ([MQTT-3.1.3-6]).
fn generated_client_id(seq: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("mqtt-{now:x}-{seq}")
}

/// Answers CONNECT: credentials, client id (taking over a connected one), session state.
async fn connect(
    c: Connect,
    peer: &str,
    ctx: &Arc<MqttContext>,
    out: &OutSender,
) -> Result<(Conn, Option<Duration>, watch::Receiver<bool>), Close> {
    let server = &ctx.server;
    let seq = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let refuse = |code: ConnectReturnCode, why: String| async move {
        let _ = out.send(connack(false, code)).await;
        Err(Close::Violation(why))
    };
    let client_id = if c.client_id.is_empty() {
        if !c.clean_session {
            return refuse(
                ConnectReturnCode::IdentifierRejected,
                "CONNECT with an empty client id and cleanSession=false; answered CONNACK 2".into(),
            )
            .await;
        }
        generated_client_id(seq)
    } else {
        c.client_id.clone()
    };
    let login = c.username.clone().unwrap_or_default();
    let password = match c.password.as_deref().map(std::str::from_utf8) {
        None => "",
        Some(Ok(p)) => p,
        Some(Err(_)) => "\u{fffd}invalid",
    };
    let Some(subject) = server.users.authenticate(&login, password).await else {
        return refuse(
            ConnectReturnCode::BadUsernameOrPassword,
            format!("authentication failed for user {login:?}; answered CONNACK 4"),
        )
        .await;
    };
    // Takeover: the connection holding this client id is told to close; broker-core refuses
    // the id until it has.
    let (kick_tx, kick_rx) = watch::channel(false);
    if let Some((_, old)) = ctx.clients.lock().insert(client_id.clone(), (seq, kick_tx)) {
        old.send_replace(true);
    }
    let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
    let connection = loop {
        match server
            .broker
            .connect_from(Some(&client_id), "mqtt", peer)
            .await
        {
            Err(BrokerError::ClientIdInUse(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(c) => break c,
            Err(e) => {
                forget_client(ctx, &client_id, seq);
                let code = match e {
                    BrokerError::NotAuthorized(_) => ConnectReturnCode::NotAuthorized,
                    BrokerError::ClientIdInUse(_) => ConnectReturnCode::IdentifierRejected,
                    _ => ConnectReturnCode::ServerUnavailable,
                };
                return refuse(code, format!("connection refused: {e}")).await;
            }
        }
    };
    if let Err(e) = connection.set_subject(subject) {
        // limits.max_connections_per_user
        connection.close().await;
        forget_client(ctx, &client_id, seq);
        return refuse(ConnectReturnCode::ServerUnavailable, e.to_string()).await;
    }
    let auto = match connection.session(broker_core::AckMode::Auto) {
        Ok(s) => s,
        Err(e) => {
            connection.close().await;
            forget_client(ctx, &client_id, seq);
            return refuse(ConnectReturnCode::ServerUnavailable, e.to_string()).await;
        }
    };
    let mut conn = Conn {
        ctx: Arc::clone(ctx),
        peer: peer.to_owned(),
        client_id: client_id.clone(),
        seq,
        clean_session: c.clean_session,
        connection,
        auto,
        producers: HashMap::new(),
        subs: HashMap::new(),
        outbox: Arc::new(Outbox::default()),
        out: out.clone(),
        will: c.will,
        awaiting_rel: HashSet::new(),
        pending: VecDeque::new(),
        connacked: watch::channel(false).0,
    };
    // Refused before CONNACK: a will to a topic the user may not write to.
    let will_refused = conn.will.as_ref().and_then(|w| {
        conn.auto
            .authorize(Operation::Write, &mapping::topic_to_jms(&w.topic))
            .err()
            .map(|e| format!("will to {:?}: {e}; answered CONNACK 5", w.topic))
    });
    if let Some(why) = will_refused {
        conn.close(true).await;
        return refuse(ConnectReturnCode::NotAuthorized, why).await;
    }
    let session_present = match conn.resume_session().await {
        Ok(p) => p,
        Err(e) => {
            conn.close(true).await;
            return refuse(
                ConnectReturnCode::ServerUnavailable,
                format!("the session of {client_id:?} cannot be resumed: {e}"),
            )
            .await;
        }
    };
    let _ = out
        .send(connack(session_present, ConnectReturnCode::Accepted))
        .await;
    conn.connacked.send_replace(true);
    debug!(peer = %peer, client_id = %client_id, login = %login, "MQTT connected");
    let keep_alive =
        (c.keep_alive > 0).then(|| Duration::from_millis(u64::from(c.keep_alive) * 1500));
    Ok((conn, keep_alive, kick_rx))
}

/// Drops a client id's entry unless a later connection took it over.
fn forget_client(ctx: &MqttContext, client_id: &str, seq: u64) {
    let mut clients = ctx.clients.lock();
    if clients.get(client_id).is_some_and(|(s, _)| *s == seq) {
        clients.remove(client_id);
    }
}

impl Conn {
    /// cleanSession=true: the client's durable subscriptions are deleted. false: they are
    /// subscribed again; returns whether there were any (CONNACK's session present).
    async fn resume_session(&mut self) -> Result<bool, BrokerError> {
        let mine: Vec<String> = self
            .ctx
            .server
            .broker
            .durable_subscriptions()
            .await?
            .into_iter()
            .filter(|(_, i)| i.key.client_id == self.client_id && is_mqtt_durable(&i.key.name))
            .map(|(_, i)| i.key.name)
            .collect();
        if self.clean_session {
            for name in &mine {
                self.connection.unsubscribe(name).await?;
            }
            return Ok(false);
        }
        for name in &mine {
            if let Some((qos, filter)) = parse_durable_name(name) {
                let sub = self.open_subscription(&filter, qos).await?;
                self.subs.insert(filter, sub);
            }
        }
        Ok(!mine.is_empty())
    }

    async fn open_subscription(&self, filter: &str, qos: QoS) -> Result<Subscription, BrokerError> {
        Subscription::open(
            &self.connection,
            filter,
            qos,
            !self.clean_session,
            super::session::Flow {
                max_inflight: self.ctx.max_inflight,
                topic_prefetch: self.ctx.server.broker.config().limits.topic_prefetch,
            },
            &super::session::Wiring {
                outbox: Arc::clone(&self.outbox),
                out: self.out.clone(),
                connacked: self.connacked.subscribe(),
            },
        )
        .await
    }

    /// Awaits the oldest store write and sends its answer.
    async fn complete_oldest(&mut self) -> Result<(), Close> {
        let Some((write, answer)) = self.pending.pop_front() else {
            return Ok(());
        };
        write.await?;
        if let Some(p) = answer {
            self.send(&p).await?;
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<(), Close> {
        while !self.pending.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(())
    }

    async fn send(&self, p: &Packet) -> Result<(), Close> {
        let bytes = p
            .to_bytes()
            .map_err(|e| Close::Violation(format!("cannot encode {}: {e}", p.name())))?;
        if self.out.send(bytes).await {
            Ok(())
        } else {
            Err(Close::Quiet("the client stopped reading".into()))
        }
    }

    /// One packet after CONNECT; `Ok(true)` for DISCONNECT.
    async fn handle(&mut self, packet: Packet) -> Result<bool, Close> {
        match packet {
            Packet::Publish(p) => Box::pin(self.publish(p)).await?,
            Packet::PubAck(id) => self.acked(id, QoS::AtLeastOnce).await,
            Packet::PubRec(id) => {
                if !self.outbox.release(id) {
                    debug!(peer = %self.peer, "PUBREC for unknown packet id {id}");
                }
                // Answered even for an unknown id, as the standard's flow requires.
                self.pending
                    .push_back((Box::pin(async { Ok(()) }), Some(Packet::PubRel(id))));
            }
            Packet::PubComp(id) => self.acked(id, QoS::ExactlyOnce).await,
            Packet::PubRel(id) => {
                self.awaiting_rel.remove(&id);
                self.pending
                    .push_back((Box::pin(async { Ok(()) }), Some(Packet::PubComp(id))));
            }
            Packet::Subscribe(s) => {
                self.drain().await?;
                Box::pin(self.subscribe(s.packet_id, s.filters)).await?;
            }
            Packet::Unsubscribe(u) => {
                self.drain().await?;
                for f in u.filters {
                    if let Some(sub) = self.subs.remove(&f) {
                        let durable = sub.durable.then_some(sub.qos);
                        sub.close().await;
                        if let Some(qos) = durable {
                            for name in super::session::durable_names(qos, &f) {
                                self.unsubscribe_durable(&name).await?;
                            }
                        }
                    }
                }
                self.send(&Packet::UnsubAck(u.packet_id)).await?;
            }
            Packet::PingReq => {
                self.drain().await?;
                self.send(&Packet::PingResp).await?;
            }
            Packet::Disconnect => {
                self.drain().await?;
                return Ok(true);
            }
            other => {
                return Err(Close::Violation(format!(
                    "{} is not a packet a client sends after CONNECT",
                    other.name()
                )));
            }
        }
        Ok(false)
    }

    /// Deletes a durable subscription; one that does not exist (the parent-level one of a
    /// filter without `#`) is fine.
    async fn unsubscribe_durable(&self, name: &str) -> Result<(), Close> {
        match self.connection.unsubscribe(name).await {
            Ok(()) => Ok(()),
            Err(BrokerError::Invalid(e)) if e.starts_with("no durable subscription") => {
                debug!("unsubscribe {name}: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A PUBACK (QoS 1) or PUBCOMP (QoS 2): the delivery is done, acked in the store.
    async fn acked(&mut self, id: u16, expected: QoS) {
        let Some(entry) = self.outbox.complete(id) else {
            debug!(peer = %self.peer, "ack for unknown packet id {id}");
            return;
        };
        if entry.qos != expected {
            debug!(peer = %self.peer, "packet id {id}: acked as QoS {expected:?}, sent as {:?}", entry.qos);
        }
        if let Some((received, session, credits)) = entry.ack {
            credits.add_permits(1);
            match session
                .submit_acknowledge(&received, broker_core::AckWait::NoReceipt)
                .await
            {
                Ok(done) => self.pending.push_back((Box::pin(done), None)),
                // The subscription closed meanwhile: the message went back for redelivery.
                Err(e) => debug!(peer = %self.peer, "ack after unsubscribe: {e}"),
            }
        }
    }

    async fn subscribe(
        &mut self,
        packet_id: u16,
        filters: Vec<(String, QoS)>,
    ) -> Result<(), Close> {
        let mut codes = Vec::with_capacity(filters.len());
        let mut granted = Vec::new();
        for (filter, qos) in filters {
            // [MQTT-3.8.4-3]: a subscription to the same filter replaces the old one, but "the
            // flow of publications MUST NOT be interrupted": at the same QoS the old one goes
            // on as it is. Closing it would send what is in flight (unacked) a second time, as
            // a client resuming its persistent session and subscribing again would see.
            if self.subs.get(&filter).is_some_and(|old| old.qos == qos) {
                codes.push(SubAckCode::Granted(qos));
                granted.push((filter, qos));
                continue;
            }
            if let Some(old) = self.subs.remove(&filter) {
                let stale = (old.durable && old.qos != qos).then_some(old.qos);
                old.close().await;
                if let Some(q) = stale {
                    for name in super::session::durable_names(q, &filter) {
                        self.unsubscribe_durable(&name).await?;
                    }
                }
            }
            match self.open_subscription(&filter, qos).await {
                Ok(sub) => {
                    self.subs.insert(filter.clone(), sub);
                    codes.push(SubAckCode::Granted(qos));
                    granted.push((filter, qos));
                }
                Err(e) => {
                    warn!(peer = %self.peer, client_id = %self.client_id, "MQTT SUBSCRIBE to {filter:?} refused: {e}");
                    codes.push(SubAckCode::Failure);
                }
            }
        }
        self.send(&Packet::SubAck(SubAck { packet_id, codes }))
            .await?;
        for (filter, qos) in granted {
            for (topic, entry) in self.ctx.retained.matching(&filter) {
                let qos = qos.min(entry.qos);
                let packet_id = if qos == QoS::AtMostOnce {
                    None
                } else {
                    let inflight = super::session::Inflight {
                        qos,
                        released: false,
                        ack: None,
                    };
                    self.outbox.allocate(inflight).await
                };
                self.send(&Packet::Publish(Publish {
                    dup: false,
                    qos,
                    retain: true,
                    topic,
                    packet_id,
                    payload: entry.payload,
                }))
                .await?;
            }
        }
        Ok(())
    }

    /// A PUBLISH from the client: to its JMS topic (persistent for QoS 1/2), and to the
    /// retained messages when flagged. PUBACK/PUBREC go out once the store has it.
    async fn publish(&mut self, p: Publish) -> Result<(), Close> {
        if p.qos == QoS::ExactlyOnce
            && let Some(id) = p.packet_id
            && self.awaiting_rel.contains(&id)
        {
            // A resend of a QoS 2 message we have: answer again, publish once.
            self.pending
                .push_back((Box::pin(async { Ok(()) }), Some(Packet::PubRec(id))));
            return Ok(());
        }
        let submitted = self
            .submit(&p.topic, p.qos, p.payload.clone())
            .await
            .map_err(|e| Close::Violation(format!("PUBLISH to {:?} refused: {e}", p.topic)))?;
        if p.retain {
            // Rare: applied in place, durable before the answer below.
            self.ctx
                .retained
                .set(&p.topic, p.qos, p.payload)
                .await
                .map_err(|e| Close::Violation(format!("retaining on {:?}: {e}", p.topic)))?;
        }
        let answer = match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => Some(Packet::PubAck(id)),
            (QoS::ExactlyOnce, Some(id)) => {
                self.awaiting_rel.insert(id);
                Some(Packet::PubRec(id))
            }
            _ => None,
        };
        self.pending
            .push_back((Box::pin(async move { submitted.await.map(drop) }), answer));
        Ok(())
    }

    /// Hands one message to broker-core (authorization and limits apply there).
    async fn submit(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: Bytes,
    ) -> Result<broker_core::Submitted<broker_core::MessageId>, BrokerError> {
        let destination: Destination = mapping::topic_to_jms(topic);
        let mut out = Outgoing::new(Body::Bytes(payload));
        out.persistent = qos != QoS::AtMostOnce;
        out = out.property(QOS_PROPERTY, Value::I32(i32::from(qos.bits())));
        if !self.producers.contains_key(topic) {
            if self.producers.len() >= MAX_PRODUCERS {
                self.producers.clear();
            }
            let producer = self.auto.producer(destination)?;
            self.producers.insert(topic.to_owned(), producer);
        }
        match self.producers.get(topic) {
            Some(p) => p.submit(out).await,
            None => Err(BrokerError::Invalid("producer vanished".into())),
        }
    }

    /// The connection ends: the will is published unless it ended by DISCONNECT, then
    /// subscriptions close (unacked messages go back) and the client id is free.
    async fn close(mut self, clean: bool) {
        // Writes in flight still land; their answers no longer matter.
        while let Some((write, _)) = self.pending.pop_front() {
            let _ = write.await;
        }
        if !clean && let Some(w) = self.will.take() {
            let retain = w.retain;
            match self.submit(&w.topic, w.qos, w.payload.clone()).await {
                Ok(sent) => {
                    if let Err(e) = sent.await {
                        warn!(peer = %self.peer, "will to {:?} not stored: {e}", w.topic);
                    }
                }
                Err(e) => warn!(peer = %self.peer, "will to {:?} refused: {e}", w.topic),
            }
            if retain && let Err(e) = self.ctx.retained.set(&w.topic, w.qos, w.payload).await {
                warn!(peer = %self.peer, "will to {:?} not retained: {e}", w.topic);
            }
        }
        self.outbox.close();
        for (_, sub) in self.subs.drain() {
            sub.close().await;
        }
        self.connection.close().await;
        forget_client(&self.ctx, &self.client_id, self.seq);
        debug!(peer = %self.peer, client_id = %self.client_id, "MQTT connection closed");
    }
}
