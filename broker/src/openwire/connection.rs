//! One OpenWire connection: commands in, broker-core calls, commands out.
//!
//! Built like a STOMP connection (`crate::stomp::server`): a reader (this task), a writer task
//! fed by a bounded channel, and one pump task per consumer that moves messages from its
//! broker-core consumer to the writer while it has prefetch credits. Every OpenWire consumer
//! has a broker-core session of its own in INDIVIDUAL mode: the client says which messages it
//! consumed (a standard ack covers a range, an individual ack one), so the broker needs no
//! notion of the JMS session's acknowledge mode. Each OpenWire local transaction, and each XA
//! branch until it is prepared, is a transacted broker-core session; a prepared branch is the
//! broker's (`Broker::commit_prepared`), so any connection may end it, as with ActiveMQ's
//! `TransactionBroker`. Any command with `response_required` is answered by a `Response` (an
//! `IntegerResponse` for an XA prepare, a `DataArrayResponse` for a recover) or an
//! `ExceptionResponse`; a malformed frame ends the connection with a `ConnectionError`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use broker_core::{
    AckMode, BrokerError, Connection, Consumer, DeclaredProducer, Producer, Received, Session,
    Submitted,
};
use bytes::BytesMut;
use openwire::{
    AckType, BrokerId, BrokerInfo, Command, ConnectionError, ConnectionId, ConsumerId,
    ConsumerInfo, DataStructure, DestinationInfo, ExceptionResponse, KeepAliveInfo, MessageAck,
    MessageDispatch, MessageId, ProducerId, RemoveTarget, Response, Throwable, TransactionId,
    TransactionInfo, TransactionType, WireFormat, WireFormatInfo, WireFormatOptions,
    XaTransactionId,
};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::convert::{self, Unmappable};
use super::takeover;
use crate::outbound::{self, OutSender, WriterOptions};
use crate::pipeline::{Window, WriteFailed};
use crate::stomp::server::ServerContext;

/// The OpenWire version the broker offers; the client's 5.17 offers 12 too.
const VERSION: i32 = 12;
/// How long a ConnectionInfo waits for a previous connection with its client id to close.
const CLIENT_ID_WAIT: Duration = Duration::from_secs(5);
/// How long a reconnecting client waits for the stale connection it replaces to close (as
/// ActiveMQ's older brokers did, 15 s).
const TAKEOVER_WAIT: Duration = Duration::from_secs(15);
/// The advisory topics of temporary queues and topics. The Java client subscribes to both (as
/// one composite topic) at start, and refuses to send to a temporary destination these have
/// not announced ("Cannot publish to a deleted Destination").
const TEMP_QUEUE_ADVISORY: &str = "ActiveMQ.Advisory.TempQueue";
const TEMP_TOPIC_ADVISORY: &str = "ActiveMQ.Advisory.TempTopic";
/// Messages of a queue read from the store per page for a browser.
const BROWSE_PAGE: usize = 200;

/// Why a command failed: the Java exception class the client maps and its message.
#[derive(Debug)]
struct Failure {
    class: &'static str,
    message: String,
}

impl Failure {
    fn jms(message: impl Into<String>) -> Failure {
        Failure {
            class: "javax.jms.JMSException",
            message: message.into(),
        }
    }

    /// An `XAException` with its error code. The Java client builds the exception from its
    /// class name and message only, so the code travels at the end of the message, where the
    /// client's `TransactionContext` reads it back (`xaErrorCode:-4`), as ActiveMQ's
    /// `XATransaction.newXAException` writes it.
    fn xa(code: i32, message: impl std::fmt::Display) -> Failure {
        Failure {
            class: "javax.transaction.xa.XAException",
            message: format!("{message} xaErrorCode:{code}"),
        }
    }
}

/// `javax.transaction.xa.XAResource` and `XAException` codes.
mod xa {
    /// Prepared: commit or roll back later.
    pub const XA_OK: i32 = 0;
    /// The branch did nothing: nothing to commit, and it is over.
    pub const XA_RDONLY: i32 = 3;
    /// The resource manager failed; the branch may or may not be intact.
    pub const XAER_RMERR: i32 = -3;
    /// No such branch.
    pub const XAER_NOTA: i32 = -4;
    /// Called in the wrong state (a two-phase commit of a branch never prepared).
    pub const XAER_PROTO: i32 = -6;
    /// The branch id is taken.
    pub const XAER_DUPID: i32 = -8;
    /// A one-phase commit that failed and rolled back.
    pub const XA_RBROLLBACK: i32 = 100;
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Failure {
        let class = match &e {
            BrokerError::ClientIdInUse(_) => "javax.jms.InvalidClientIDException",
            // What ActiveMQ answers a ConsumerInfo whose selector does not parse with.
            BrokerError::Selector(_) => "javax.jms.InvalidSelectorException",
            // A send to a wildcard, or a malformed wildcard or composite name.
            BrokerError::DestinationName(_) => "javax.jms.InvalidDestinationException",
            // The Java client instantiates the class named: a cap or a full memory is what
            // ActiveMQ reports as a ResourceAllocationException.
            BrokerError::ConnectionLimit { .. } | BrokerError::ResourceLimit(_) => {
                "javax.jms.ResourceAllocationException"
            }
            BrokerError::InvalidDestination(_) => "javax.jms.InvalidDestinationException",
            // As ActiveMQ's AuthorizationBroker: the Java client turns it into a
            // JMSSecurityException.
            BrokerError::NotAuthorized(_) => "java.lang.SecurityException",
            _ => "javax.jms.JMSException",
        };
        Failure {
            class,
            message: e.to_string(),
        }
    }
}

impl From<Unmappable> for Failure {
    fn from(u: Unmappable) -> Failure {
        Failure {
            class: u.class,
            message: u.message,
        }
    }
}

/// Encodes commands with the connection's negotiated wire format.
#[derive(Clone)]
struct Out {
    tx: OutSender,
    wf: Arc<WireFormat>,
}

impl Out {
    async fn send(&self, cmd: &Command) -> bool {
        let mut buf = BytesMut::new();
        if let Err(e) = openwire::encode(cmd, &self.wf, &mut buf) {
            warn!("cannot encode {}: {e}", cmd.data_type());
            return false;
        }
        self.tx.send(buf.freeze()).await
    }
}

/// A message handed to a consumer and not yet consumed.
struct Delivered {
    id: MessageId,
    received: Received,
    /// Its prefetch credit was given back (by a delivered ack) before it was consumed.
    credited: bool,
}

struct OwConsumer {
    session: Session,
    consumer: Option<Arc<Consumer>>,
    pump: Option<JoinHandle<()>>,
    credits: Arc<Semaphore>,
    delivered: Arc<Mutex<VecDeque<Delivered>>>,
    /// Prefetch 0: only a MessagePull lets a message through, acks give no credit back.
    pull: bool,
    /// The timeouts of the pulls not yet answered, one credit each.
    pulls: Arc<Mutex<VecDeque<i64>>>,
    /// An advisory consumer's place under the connection's consumer cap (a real consumer's
    /// is held by its broker-core consumer).
    _slot: Option<broker_core::ConsumerSlot>,
}

impl OwConsumer {
    /// Takes the delivered, not yet consumed message `id` out of its list (a transaction
    /// enlisting its ack), if it is still there.
    fn take_delivered(&self, id: &MessageId) -> Option<Delivered> {
        let mut d = self.delivered.lock();
        let p = d.iter().position(|x| same_id(&x.id, id))?;
        d.remove(p)
    }
}

struct Conn {
    ctx: Arc<ServerContext>,
    peer: String,
    out: Out,
    connection: Connection,
    /// Producers per (transaction, destination, temporary, declared): those of declared
    /// producers take no place of their own under the producer cap and are not advised.
    producers: HashMap<(Option<TransactionId>, broker_core::Destination, bool, bool), Producer>,
    /// The producers the client declared (ProducerInfo), until their RemoveInfo: what
    /// `producerCount`, the producer advisories and the producer cap see.
    declared: HashMap<ProducerId, DeclaredProducer>,
    consumers: HashMap<ConsumerId, OwConsumer>,
    /// Open local transactions and XA branches not yet prepared, by their OpenWire id, with
    /// the acks they hold until commit (or prepare).
    txs: HashMap<TransactionId, Tx>,
    /// The acks of the XA branches this connection prepared: if a branch rolls back, they are
    /// the consumer's again (the client redelivers them itself), as broker-core gives them
    /// back to the consumer's session.
    prepared_acks: HashMap<XaTransactionId, Vec<(ConsumerId, Delivered)>>,
    /// The answer of the command being handled when it is not a plain `Response`.
    answer: Option<Command>,
    /// Gives every dispatched message a distinct sequence (`broker_sequence_id`).
    dispatch_seq: Arc<std::sync::atomic::AtomicI64>,
    /// Asynchronous sends handed to the broker and not yet stored.
    window: Window,
    /// Where a reconnect of this client (the same ConnectionId) tells this connection to
    /// close; `None` for a connection without an id.
    evicted: Option<takeover::Evicted>,
    /// This connection's hold on its ConnectionId: declared last, so that it is released only
    /// after everything else of the connection has closed.
    _registration: Option<takeover::Registration>,
    /// What the client's temporary-destination advisory consumer has been told.
    advisories: Arc<Mutex<Advisories>>,
    /// The broker-core producer names of the client's ProducerIds (`conn:session:value`), made
    /// once per producer rather than per message.
    producer_names: HashMap<ProducerId, Arc<str>>,
    /// The audit ids of the bridged sends in this connection's window, not yet stored: a copy
    /// of one of these waits for it before the audit is asked.
    bridged_in_flight: Arc<Mutex<HashSet<(String, i64)>>>,
}

/// The client's consumer of the temporary-destination advisories, if it has one, and the
/// temporary destinations announced to it (at most the live ones: a deletion takes its entry
/// out). Shared by the task that forwards broker-core's announcements and the pumps, which
/// announce a message's temporary reply-to first themselves, so that the client knows it
/// before its application can reply, whichever task runs first.
#[derive(Default)]
struct Advisories {
    consumer: Option<ConsumerId>,
    announced: HashSet<broker_core::Destination>,
    seq: i64,
}

impl Advisories {
    /// The advisory to send for a creation or deletion, unless it needs none (no advisory
    /// consumer, or already announced).
    fn announce(
        &mut self,
        destination: &broker_core::Destination,
        created: bool,
    ) -> Option<Command> {
        let consumer = self.consumer.clone()?;
        let news = if created {
            self.announced.insert(destination.clone())
        } else {
            self.announced.remove(destination)
        };
        if !news {
            return None;
        }
        self.seq += 1;
        let info = DestinationInfo {
            // The owner's id is broker-core's; the client only reads the destination.
            connection_id: ConnectionId {
                value: String::new(),
            },
            destination: convert::openwire_destination(destination, true),
            operation_type: if created {
                DestinationInfo::ADD
            } else {
                DestinationInfo::REMOVE
            },
            ..DestinationInfo::default()
        };
        let topic = openwire::Destination::topic(if destination.is_queue() {
            TEMP_QUEUE_ADVISORY
        } else {
            TEMP_TOPIC_ADVISORY
        });
        let mut m = openwire::Message::new(openwire::MessageKind::Plain);
        let producer = ProducerId {
            connection_id: "ID:broker-advisory".into(),
            session_id: 0,
            value: 0,
        };
        m.producer_id = Some(producer.clone());
        m.message_id = Some(MessageId {
            text_view: None,
            producer_id: Some(producer),
            producer_sequence_id: self.seq,
            broker_sequence_id: self.seq,
        });
        m.destination = Some(topic.clone());
        m.persistent = false;
        m.data_structure = Some(Box::new(DataStructure::Command(Command::DestinationInfo(
            info,
        ))));
        Some(Command::MessageDispatch(MessageDispatch {
            consumer_id: consumer,
            destination: Some(topic),
            message: Some(Box::new(m)),
            ..MessageDispatch::default()
        }))
    }
}

/// Whether a consumer's destination names only the temporary-destination advisory topics
/// (the client's own watch at start: `ActiveMQ.Advisory.TempQueue,ActiveMQ.Advisory.TempTopic`).
fn is_temp_advisory(d: &openwire::Destination) -> bool {
    !d.kind.is_queue()
        && d.physical_name
            .split(',')
            .all(|n| n == TEMP_QUEUE_ADVISORY || n == TEMP_TOPIC_ADVISORY)
}

/// An ActiveMQ network bridge watches `ActiveMQ.Advisory.Consumer.>` together with the
/// temporary-destination advisories, as one composite topic: its consumer advisories are the
/// part that matters (temporary destinations are not bridged here), so it consumes those alone.
fn bridge_advisory_destination(d: &openwire::Destination) -> Option<openwire::Destination> {
    if d.kind.is_queue() || !d.physical_name.contains(',') {
        return None;
    }
    let rest: Vec<&str> = d
        .physical_name
        .split(',')
        .filter(|n| *n != TEMP_QUEUE_ADVISORY && *n != TEMP_TOPIC_ADVISORY)
        .collect();
    match rest.as_slice() {
        [one] if one.starts_with("ActiveMQ.Advisory.") => Some(openwire::Destination::topic(*one)),
        _ => None,
    }
}

/// Feeds the client's advisory consumer: the temporary destinations live now, then each
/// creation and deletion, until the consumer or the connection goes.
async fn forward_advisories(
    broker: Arc<crate::Broker>,
    advisories: Arc<Mutex<Advisories>>,
    out: Out,
) {
    let Ok((mut events, live)) = broker.watch_temporaries() else {
        return;
    };
    let mut pending: Vec<(broker_core::Destination, bool)> =
        live.into_iter().map(|(d, _)| (d, true)).collect();
    loop {
        for (d, created) in pending.drain(..) {
            let cmd = advisories.lock().announce(&d, created);
            if let Some(cmd) = cmd
                && !out.send(&cmd).await
            {
                return;
            }
        }
        match events.recv().await {
            Ok(e) => pending.push((e.destination, e.created)),
            // Fell behind: what is live now stands in for what was missed (a deletion
            // missed leaves a stale entry, which only makes the client try a send the
            // broker then refuses).
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                let Ok(live) = broker.temporary_destinations() else {
                    return;
                };
                pending.extend(live.into_iter().map(|(d, _)| (d, true)));
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

struct Tx {
    session: Session,
    /// Consumed in the transaction: acked in it at commit, left delivered on rollback (the
    /// client redelivers them itself, as with ActiveMQ).
    acks: Vec<(ConsumerId, MessageId)>,
    /// Something was sent or acked in it: an XA prepare of a branch without work answers
    /// `XA_RDONLY`, as ActiveMQ's `XATransaction` does.
    work: bool,
}

/// Serves one OpenWire client until it disconnects, errs or the broker stops.
pub async fn serve<S>(io: S, peer: String, ctx: Arc<ServerContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let max_frame = ctx.limits.max_frame_bytes as u64;
    // Before the client's WireFormatInfo arrives only a small frame is read.
    let mut wf = WireFormat {
        max_frame_size: max_frame.min(ctx.max_connect_frame_bytes as u64),
        ..WireFormat::default()
    };
    let ours = match WireFormatInfo::new(VERSION, &WireFormatOptions::broker_default()) {
        Ok(w) => w,
        Err(e) => {
            warn!("cannot build the broker's WireFormatInfo: {e}");
            return;
        }
    };
    // The broker speaks first, as ActiveMQ's does.
    let mut buf = BytesMut::new();
    if openwire::encode(&Command::WireFormatInfo(ours.clone()), &wf, &mut buf).is_err()
        || wr.write_all(&buf).await.is_err()
        || wr.flush().await.is_err()
    {
        return;
    }
    let mut buf = BytesMut::with_capacity(8192);
    let deadline = tokio::time::Instant::now() + ctx.connect_timeout;
    // The client's WireFormatInfo.
    let theirs = loop {
        match openwire::decode(&mut buf, &wf) {
            Ok(Some(Command::WireFormatInfo(w))) => break w,
            Ok(Some(other)) => {
                info!(peer = %peer, "expected WireFormatInfo, got type {}; closing", other.data_type());
                let _ = refuse(&mut wr, &wf, "expected WireFormatInfo first").await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                info!(peer = %peer, "malformed frame before WireFormatInfo: {e}; closing");
                let _ = refuse(&mut wr, &wf, &format!("malformed frame: {e}")).await;
                return;
            }
        }
        match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                info!(peer = %peer, "no WireFormatInfo within {:?}; closing", ctx.connect_timeout);
                return;
            }
        }
    };
    wf = match openwire::negotiate(&theirs, &ours) {
        Ok(w) => w,
        Err(e) => {
            info!(peer = %peer, "wire format refused: {e}; closing");
            let _ = refuse(&mut wr, &wf, &format!("wire format refused: {e}")).await;
            return;
        }
    };
    wf.max_frame_size = wf.max_frame_size.min(max_frame);
    let wf = Arc::new(wf);
    let (tx, rx) = outbound::channel(
        ctx.max_pending_frames,
        ctx.max_pending_bytes,
        ctx.broker.memory().ok(),
    );
    let out = Out {
        tx,
        wf: Arc::clone(&wf),
    };
    let keep_alive = wf
        .keep_alive_interval_ms()
        .map(|ms| Duration::from_millis(ms.max(1) as u64));
    let mut ping = BytesMut::new();
    let _ = openwire::encode(
        &Command::KeepAliveInfo(KeepAliveInfo::default()),
        &wf,
        &mut ping,
    );
    // The interval is fixed once the wire format is agreed: the sender can go at once.
    let (_, idle) = watch::channel(keep_alive);
    let writer = tokio::spawn(outbound::write_loop(
        wr,
        rx,
        WriterOptions {
            ping: ping.freeze(),
            idle,
            write_timeout: ctx.write_timeout,
            peer: peer.clone(),
        },
    ));
    // ActiveMQ's read check: nothing at all from the client for the inactivity duration.
    let read_timeout = match wf.max_inactivity_duration {
        d if d > 0 => Duration::from_millis(d as u64),
        _ => Duration::from_secs(365 * 24 * 3600),
    };
    // The client's checks start after the negotiated initial delay; so do ours.
    let checks_from = tokio::time::Instant::now()
        + Duration::from_millis(wf.max_inactivity_duration_initial_delay.max(0) as u64);
    // The broker introduces itself once the wire format is agreed, as ActiveMQ's does: another
    // broker's network bridge waits for it before it logs in.
    let broker_info = BrokerInfo {
        broker_id: Some(BrokerId {
            value: ctx.broker.broker_id().to_owned(),
        }),
        broker_name: Some(ctx.broker.config().broker.name.clone()),
        ..BrokerInfo::default()
    };
    let _ = out.send(&Command::BrokerInfo(broker_info)).await;
    let mut conn: Option<Conn> = None;
    let mut evicted: Option<takeover::Evicted> = None;
    let mut shutdown = ctx.shutdown.clone();
    'outer: loop {
        loop {
            let cmd = match openwire::decode(&mut buf, &wf) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %peer, "malformed frame: {e}; closing the connection");
                    connection_error(
                        &out,
                        "java.io.IOException",
                        &format!("malformed frame: {e}"),
                    )
                    .await;
                    break 'outer;
                }
            };
            let id = cmd.command_id();
            // A keep-alive's answer is a keep-alive (sent by `handle`), not a Response; a
            // bridged send's is sent by its write in the window.
            let wants = cmd.response_required()
                && !matches!(cmd, Command::KeepAliveInfo(_))
                && !Conn::answered_by_window(&cmd);
            // RemoveInfo(connection) ends the broker connection, ShutdownInfo the socket: the
            // client sends both, the second after the first without waiting.
            let hang_up = matches!(cmd, Command::ShutdownInfo(_));
            let result = match conn.as_mut() {
                None => match cmd {
                    Command::ConnectionInfo(info) => {
                        match Box::pin(connect(&info, &peer, &ctx, &out)).await {
                            Ok(c) => {
                                evicted = c.evicted.clone();
                                conn = Some(c);
                                Ok(false)
                            }
                            Err(f) => Err(f),
                        }
                    }
                    // Another broker's bridge introduces itself before it logs in.
                    Command::KeepAliveInfo(_)
                    | Command::WireFormatInfo(_)
                    | Command::BrokerInfo(_) => Ok(false),
                    // The failover transport's first word on a reconnect (faultTolerant), before
                    // it replays its ConnectionInfo, sessions, producers and consumers.
                    Command::ConnectionControl(_) => Ok(false),
                    Command::ShutdownInfo(_) => Ok(true),
                    // What a client still sends after its connection was removed.
                    Command::RemoveInfo(_) | Command::MessageAck(_) => Ok(false),
                    other => Err(Failure::jms(format!(
                        "expected ConnectionInfo, got command type {}",
                        other.data_type()
                    ))),
                },
                Some(c) if Conn::pipelines(&cmd) => match cmd {
                    Command::Message(m) => Box::pin(c.pipeline(*m)).await.map(|()| false),
                    Command::MessageAck(a) => Box::pin(c.ack(*a)).await.map(|()| false),
                    _ => Ok(false),
                },
                // Anything else observes every earlier send: the window drains first.
                Some(c) => match c.window.drain().await {
                    Ok(()) => Box::pin(c.handle(cmd)).await,
                    Err(failed) => {
                        let f = write_failure(failed);
                        warn!(peer = %peer, "{}", f.message);
                        connection_error(&out, f.class, &f.message).await;
                        break 'outer;
                    }
                },
            };
            match result {
                Ok(done) => {
                    if done && let Some(c) = conn.take() {
                        evicted = None;
                        // Released before the response, so that a client reconnecting at
                        // once with the same client id is not refused.
                        c.close().await;
                    }
                    if wants {
                        match conn.as_mut().and_then(|c| c.answer.take()) {
                            Some(answer) => {
                                let _ = out.send(&answer).await;
                            }
                            None => respond(&out, id).await,
                        }
                    }
                    if hang_up {
                        break 'outer;
                    }
                }
                Err(f) => {
                    debug!(peer = %peer, "refused: {}", f.message);
                    if wants {
                        let r = ExceptionResponse {
                            correlation_id: id,
                            exception: Some(Throwable::new(f.class, f.message)),
                            ..ExceptionResponse::default()
                        };
                        let _ = out.send(&Command::ExceptionResponse(r)).await;
                    } else {
                        connection_error(&out, f.class, &f.message).await;
                    }
                    // A refused login ends the connection; a refused command does not, as
                    // with ActiveMQ (the client decides what the exception means).
                    if conn.is_none() || !wants {
                        break 'outer;
                    }
                }
            }
        }
        tokio::select! {
            r = tokio::time::timeout_at(
                (tokio::time::Instant::now() + read_timeout).max(checks_from + read_timeout),
                rd.read_buf(&mut buf),
            ) => match r {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(peer = %peer, "read: {e}");
                    break;
                }
                Err(_) => {
                    info!(peer = %peer, "nothing read within {read_timeout:?}; closing");
                    break;
                }
            },
            // Every write that completes, not only the first: a bridge's sends wait for their
            // answers, which go out as the writes complete, without anything more to read.
            failed = async {
                match conn.as_mut() {
                    Some(c) => loop {
                        if let Err(failed) = c.window.complete_oldest().await {
                            break failed;
                        }
                    },
                    None => std::future::pending().await,
                }
            } => {
                let f = write_failure(failed);
                warn!(peer = %peer, "{}; closing the connection", f.message);
                connection_error(&out, f.class, &f.message).await;
                break;
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                let _ = out.send(&Command::ShutdownInfo(openwire::ShutdownInfo::default())).await;
                break;
            }
            // The writer gave up on a client that does not read (it logged why).
            () = out.tx.closed() => break,
            // The client reconnected with this connection's id: this one is stale.
            () = async {
                let told = match evicted.as_mut() {
                    Some(e) => e.wait_for(|v| *v).await.is_ok(),
                    None => false,
                };
                if !told {
                    std::future::pending::<()>().await;
                }
            } => {
                info!(peer = %peer, "closing: its client reconnected with this connection's id");
                break;
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
    drop(out);
    let _ = writer.await;
    // Not when the broker is stopping: it must be gone at once (a master that lost its lock
    // stops before its slave may take over).
    if !*shutdown.borrow() {
        crate::stomp::server::linger(&mut rd, &mut buf).await;
    }
}

/// The id a bridged message is audited by: its id as the sending broker gave it.
fn audit_id(m: &openwire::Message) -> Option<(String, i64)> {
    if !is_bridged(m) {
        return None;
    }
    let id = m.message_id.as_ref()?;
    let producer = id.producer_id.as_ref()?;
    // With its hops: a message replayed back here (`replay_when_no_consumers`) and then
    // forwarded here again has a longer path, and is no resend of the first copy.
    let hops = m.broker_path.as_ref().map_or(0, Vec::len);
    Some((
        format!(
            "{}:{}:{}#{hops}",
            producer.connection_id, producer.session_id, producer.value
        ),
        id.producer_sequence_id,
    ))
}

/// A message another broker's network bridge forwarded (it names the brokers it came through).
fn is_bridged(m: &openwire::Message) -> bool {
    m.broker_path.as_ref().is_some_and(|p| !p.is_empty())
}

/// A `ConnectionError` written straight to the socket, before the writer task exists.
async fn refuse<W: AsyncWrite + Unpin>(
    wr: &mut W,
    wf: &WireFormat,
    message: &str,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let e = ConnectionError {
        exception: Some(Throwable::new("java.io.IOException", message)),
        ..ConnectionError::default()
    };
    if openwire::encode(&Command::ConnectionError(e), wf, &mut buf).is_ok() {
        wr.write_all(&buf).await?;
    }
    wr.flush().await?;
    wr.shutdown().await
}

async fn connection_error(out: &Out, class: &str, message: &str) {
    let e = ConnectionError {
        exception: Some(Throwable::new(class, message)),
        ..ConnectionError::default()
    };
    let _ = out.send(&Command::ConnectionError(e)).await;
}

async fn respond(out: &Out, correlation_id: i32) {
    let r = Response {
        correlation_id,
        ..Response::default()
    };
    let _ = out.send(&Command::Response(r)).await;
}

/// Answers a ConnectionInfo: credentials, then the client id.
async fn connect(
    info: &openwire::ConnectionInfo,
    peer: &str,
    ctx: &Arc<ServerContext>,
    out: &Out,
) -> Result<Conn, Failure> {
    let user = info.user_name.as_deref().unwrap_or("");
    let password = info.password.as_deref().unwrap_or("");
    let Some(subject) = ctx.users.authenticate(user, password).await else {
        warn!(peer = %peer, login = %user, "authentication failed");
        return Err(Failure {
            class: "java.lang.SecurityException",
            message: format!("User name [{user}] or password is invalid."),
        });
    };
    // The same ConnectionId again is the client reconnecting (its failover transport): the
    // stale connection goes first, with the client id and temporary destinations it holds.
    let id = info.connection_id.value.as_str();
    let (registration, evicted) = if id.is_empty() {
        (None, None)
    } else {
        let (r, e) = ctx
            .openwire_connections
            .take_over(id, user, peer, TAKEOVER_WAIT)
            .await
            .map_err(|e| {
                warn!(peer = %peer, login = %user, "{e}");
                Failure {
                    class: "javax.jms.InvalidClientIDException",
                    message: e.to_string(),
                }
            })?;
        (Some(r), Some(e))
    };
    let client_id = info.client_id.as_deref().filter(|c| !c.is_empty());
    // A client that reconnects at once may find its previous connection not yet gone here.
    let deadline = tokio::time::Instant::now() + CLIENT_ID_WAIT;
    let connection = loop {
        match ctx.broker.connect_from(client_id, "openwire", peer).await {
            Err(BrokerError::ClientIdInUse(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other?,
        }
    };
    connection.set_subject(subject)?;
    debug!(peer = %peer, login = %user, "OpenWire connection open");
    Ok(Conn {
        ctx: Arc::clone(ctx),
        peer: peer.to_owned(),
        out: out.clone(),
        connection,
        producers: HashMap::new(),
        declared: HashMap::new(),
        producer_names: HashMap::new(),
        consumers: HashMap::new(),
        txs: HashMap::new(),
        prepared_acks: HashMap::new(),
        answer: None,
        dispatch_seq: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        advisories: Arc::new(Mutex::new(Advisories::default())),
        bridged_in_flight: Arc::default(),
        window: Window::new(
            ctx.pipeline_window,
            ctx.pipeline_window_bytes,
            Arc::clone(ctx.broker.pipelined()),
            ctx.broker.memory().ok(),
        ),
        evicted,
        _registration: registration,
    })
}

/// An OpenWire XA branch id as broker-core's.
fn core_xid(x: &XaTransactionId) -> broker_core::Xid {
    broker_core::Xid {
        format_id: x.format_id,
        global_id: x.global_transaction_id.to_vec(),
        branch_qualifier: x.branch_qualifier.to_vec(),
    }
}

fn openwire_xid(x: &broker_core::Xid) -> XaTransactionId {
    XaTransactionId {
        format_id: x.format_id,
        global_transaction_id: bytes::Bytes::copy_from_slice(&x.global_id),
        branch_qualifier: bytes::Bytes::copy_from_slice(&x.branch_qualifier),
    }
}

/// A branch id as ActiveMQ's `XATransactionId` prints it.
fn xid_text(x: &broker_core::Xid) -> String {
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "XID:[{},globalId={},branchId={}]",
        x.format_id,
        hex(&x.global_id),
        hex(&x.branch_qualifier)
    )
}

/// A transaction the client names that this connection does not have open.
fn unknown_tx(id: &TransactionId) -> Failure {
    match id {
        TransactionId::Local(l) => Failure::jms(format!("no open transaction {}", l.value)),
        TransactionId::Xa(x) => Failure::xa(
            xa::XAER_NOTA,
            format!(
                "Transaction '{}' has not been started.",
                xid_text(&core_xid(x))
            ),
        ),
    }
}

impl Conn {
    /// Handles one command; `Ok(true)` ends the broker connection cleanly (the socket stays
    /// open until ShutdownInfo or end of stream).
    async fn handle(&mut self, cmd: Command) -> Result<bool, Failure> {
        match cmd {
            Command::Message(m) => Box::pin(self.send(*m)).await?,
            Command::MessageAck(a) => Box::pin(self.ack(*a)).await?,
            Command::ConsumerInfo(c) => Box::pin(self.consume(*c)).await?,
            Command::TransactionInfo(t) => Box::pin(self.transaction(t)).await?,
            Command::ProducerInfo(p) => self.declare(&p)?,
            Command::RemoveInfo(r) => {
                let last_delivered = r.last_delivered_sequence_id;
                match r.object_id {
                    RemoveTarget::Connection(_) => return Ok(true),
                    RemoveTarget::Session(s) => {
                        self.declared.retain(|p, _| p.session_id != s.value);
                        let ids: Vec<ConsumerId> = self
                            .consumers
                            .keys()
                            .filter(|c| c.session_id == s.value)
                            .cloned()
                            .collect();
                        for id in ids {
                            if let Some(c) = self.consumers.remove(&id) {
                                close_consumer(c).await;
                            }
                            self.forget_prepared_acks(&id);
                        }
                    }
                    RemoveTarget::Consumer(id) => {
                        {
                            let mut a = self.advisories.lock();
                            if a.consumer.as_ref() == Some(&id) {
                                a.consumer = None;
                                a.announced.clear();
                            }
                        }
                        if let Some(c) = self.consumers.remove(&id) {
                            give_back_unseen(&c, last_delivered).await;
                            close_consumer(c).await;
                        }
                        self.forget_prepared_acks(&id);
                    }
                    RemoveTarget::Producer(p) => {
                        self.declared.remove(&p);
                    }
                }
            }
            Command::RemoveSubscriptionInfo(r) => {
                let name = r
                    .subscription_name
                    .ok_or_else(|| Failure::jms("RemoveSubscriptionInfo without a name"))?;
                self.connection.unsubscribe(&name).await?;
            }
            // The client creates and deletes its temporary destinations so, naming them.
            Command::DestinationInfo(d) if d.destination.kind.is_temporary() => {
                let destination = convert::destination(&d.destination)?;
                if d.operation_type == DestinationInfo::REMOVE {
                    self.connection.delete_temporary(&destination)?;
                } else {
                    self.connection.add_temporary(&destination)?;
                }
            }
            Command::ShutdownInfo(_) => return Ok(true),
            // A keep-alive that asks for an answer gets one of its own kind.
            Command::KeepAliveInfo(k) if k.response_required => {
                let _ = self
                    .out
                    .send(&Command::KeepAliveInfo(KeepAliveInfo::default()))
                    .await;
            }
            Command::MessagePull(p) => {
                if let Some(c) = self.consumers.get(&p.consumer_id)
                    && c.pull
                {
                    self.pull(c, &p);
                }
            }
            Command::ConnectionInfo(_) => return Err(Failure::jms("already connected")),
            // Sessions, producers and the rest need nothing of the broker.
            _ => {}
        }
        Ok(false)
    }

    /// A synchronous send: answered once the message is stored (or enlisted in its
    /// transaction).
    async fn send(&mut self, m: openwire::Message) -> Result<(), Failure> {
        let submitted = Box::pin(self.submit(&m)).await?;
        submitted
            .await
            .map_err(|e| Failure::jms(format!("send of message {} failed: {e}", what(&m))))?;
        Ok(())
    }

    /// Whether a command can go into the window rather than be applied and awaited: an
    /// asynchronous send (`useAsyncSend`, or a non-persistent message) outside a transaction.
    fn pipelines(cmd: &Command) -> bool {
        match cmd {
            Command::Message(m) => {
                (!m.response_required || is_bridged(m)) && m.transaction_id.is_none()
            }
            // The acks a consumer sends as it goes (no response wanted, no transaction).
            Command::MessageAck(a) => !a.response_required && a.transaction_id.is_none(),
            _ => false,
        }
    }

    /// Whether `cmd` is a send another broker's bridge waits on: pipelined like an
    /// asynchronous send, and answered when its write completes, in order, so that a bridge's
    /// stream of sends shares fsyncs instead of taking one each.
    fn answered_by_window(cmd: &Command) -> bool {
        matches!(cmd, Command::Message(m)
            if m.response_required && is_bridged(m) && m.transaction_id.is_none())
    }

    /// Hands an asynchronous send to the broker in order and leaves its store write in the
    /// window, so a burst of sends shares the journal's fsyncs.
    async fn pipeline(&mut self, m: openwire::Message) -> Result<(), Failure> {
        let audit_id = audit_id(&m);
        if let Some(id) = &audit_id
            && self.bridged_in_flight.lock().contains(id)
        {
            self.window.drain().await.map_err(write_failure)?;
        }
        if let Some(id) = &audit_id
            && self.ctx.broker.network().seen(id)
        {
            // Sent again by a bridge whose answer was lost: stored already.
            debug!(peer = %self.peer, "bridged message {} is a duplicate: not stored again", what(&m));
            self.ctx
                .broker
                .network()
                .duplicates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.window.drain().await.map_err(write_failure)?;
            if m.response_required {
                respond(&self.out, m.command_id).await;
            }
            return Ok(());
        }
        let bytes = m.content.as_ref().map_or(0, |c| c.len());
        self.window.make_room(bytes).await.map_err(write_failure)?;
        let submitted = match Box::pin(self.submit(&m)).await {
            Ok(s) => s,
            // A reply to a requester gone meanwhile (its temporary queue deleted): as ActiveMQ,
            // the client hears of it through its exception listener and the connection stays,
            // or every replier would lose its connection to each requester that gave up.
            // A bridged send waits for its answer.
            Err(f) if m.response_required => {
                let r = ExceptionResponse {
                    correlation_id: m.command_id,
                    exception: Some(Throwable::new(f.class, f.message)),
                    ..ExceptionResponse::default()
                };
                let _ = self.out.send(&Command::ExceptionResponse(r)).await;
                return Ok(());
            }
            Err(f) if f.class == "javax.jms.InvalidDestinationException" => {
                debug!(peer = %self.peer, "asynchronous send refused: {}", f.message);
                connection_error(&self.out, f.class, &f.message).await;
                return Ok(());
            }
            Err(f) => return Err(f),
        };
        let answer = m
            .response_required
            .then(|| (self.out.clone(), m.command_id));
        if let Some(id) = &audit_id {
            self.bridged_in_flight.lock().insert(id.clone());
        }
        let audit = audit_id.map(|id| {
            (
                Arc::clone(&self.ctx.broker),
                Arc::clone(&self.bridged_in_flight),
                id,
            )
        });
        self.window.push(
            format!("send of message {}", what(&m)),
            bytes,
            Box::pin(async move {
                let stored = submitted.await;
                if let Some((broker, in_flight, id)) = audit {
                    in_flight.lock().remove(&id);
                    if stored.is_ok() {
                        broker.network().stored(id);
                    }
                }
                stored?;
                if let Some((out, correlation_id)) = answer {
                    respond(&out, correlation_id).await;
                }
                Ok(())
            }),
        );
        Ok(())
    }

    /// Gives a message its place at its destination; stored when the result resolves.
    async fn submit(
        &mut self,
        m: &openwire::Message,
    ) -> Result<Submitted<broker_core::MessageId>, Failure> {
        let dest = m
            .destination
            .as_ref()
            .ok_or_else(|| Failure::jms("a message without a destination"))?;
        let destination = convert::destination(dest)?;
        let mut out = convert::outgoing(m)?;
        out.id = self.client_message_id(m);
        if m.broker_path.as_ref().is_some_and(|p| !p.is_empty()) {
            self.ctx
                .broker
                .network()
                .received
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let tx = m.transaction_id.clone();
        let session = match &tx {
            Some(t) => {
                let txn = self.txs.get_mut(t).ok_or_else(|| unknown_tx(t))?;
                txn.work = true;
                txn.session.clone()
            }
            None => self.connection.session(AckMode::Auto)?,
        };
        let temporary = dest.kind.is_temporary();
        let declared = m
            .producer_id
            .as_ref()
            .is_some_and(|p| self.declared.contains_key(p));
        let key = (tx, destination.clone(), temporary, declared);
        if !self.producers.contains_key(&key) {
            if self.producers.len() >= 10_000 {
                self.producers.clear();
            }
            // A temporary one must exist, and a send fails once it is deleted, naming it.
            let producer = if declared {
                session.undeclared_producer(destination, temporary)?
            } else if temporary {
                session.temporary_producer(destination)?
            } else {
                session.producer(destination)?
            };
            self.producers.insert(key.clone(), producer);
        }
        let producer = self
            .producers
            .get(&key)
            .ok_or_else(|| Failure::jms("internal: producer vanished"))?;
        producer.submit(out).await.map_err(|e| {
            // A send to a wildcard or a malformed composite: ActiveMQ's client class for it.
            let invalid = matches!(e, BrokerError::DestinationName(_));
            let mut f = Failure::jms(format!("send of message {} failed: {e}", what(m)));
            if invalid {
                f.class = "javax.jms.InvalidDestinationException";
            }
            f
        })
    }

    /// The client's own id for `m` (its JMSMessageID) as broker-core's: `conn:session:value`
    /// and the producer sequence. `None` for an id that is not ActiveMQ's (a text view only).
    fn client_message_id(&mut self, m: &openwire::Message) -> Option<broker_core::MessageId> {
        let id = m.message_id.as_ref()?;
        let p = id.producer_id.as_ref()?;
        let seq = u64::try_from(id.producer_sequence_id).ok()?;
        if !self.producer_names.contains_key(p) {
            if self.producer_names.len() >= 10_000 {
                self.producer_names.clear();
            }
            let name: Arc<str> = format!("{}:{}:{}", p.connection_id, p.session_id, p.value).into();
            self.producer_names.insert(p.clone(), name);
        }
        let name = self.producer_names.get(p)?;
        Some(broker_core::MessageId::new(Arc::clone(name), seq))
    }

    /// A ProducerInfo: the producer counts, and is advised, from now until its RemoveInfo.
    /// The client sends it without waiting for an answer, and a refused command that wanted
    /// none closes the connection; so a producer that cannot be declared (write refused, the
    /// producer cap) is only left undeclared then, and its first send is refused instead,
    /// which the client reports on that send.
    fn declare(&mut self, p: &openwire::ProducerInfo) -> Result<(), Failure> {
        let declared = p
            .destination
            .as_ref()
            .map(convert::destination)
            .transpose()
            .map_err(Failure::from)
            .and_then(|d| {
                Ok(self
                    .connection
                    .session(AckMode::Auto)?
                    .declare_producer(d)?)
            });
        match declared {
            Ok(d) => {
                self.declared.insert(p.producer_id.clone(), d);
                Ok(())
            }
            Err(f) if p.response_required => Err(f),
            Err(f) => {
                debug!(peer = %self.peer, "producer not declared: {}", f.message);
                Ok(())
            }
        }
    }

    /// Prefetch 0: one pull lets one message through. A pull with a timeout (-1 for
    /// `receiveNoWait`) that finds nothing is answered by an empty MessageDispatch, which is
    /// what the client's `receive(timeout)` waits for.
    fn pull(&self, c: &OwConsumer, p: &openwire::MessagePull) {
        c.pulls.lock().push_back(p.timeout);
        c.credits.add_permits(1);
    }

    async fn consume(&mut self, info: ConsumerInfo) -> Result<(), Failure> {
        let dest = info
            .destination
            .as_ref()
            .ok_or_else(|| Failure::jms("a consumer without a destination"))?;
        let bridged = bridge_advisory_destination(dest);
        let dest = bridged.as_ref().unwrap_or(dest);
        if self.consumers.contains_key(&info.consumer_id) {
            return Err(Failure::jms("consumer id in use"));
        }
        let session = self.connection.session(AckMode::Individual)?;
        // Another broker's bridge: its consumer's advisories say so, with the brokers the
        // demand came through, so that no bridge forwards back along that path.
        if info.network_subscription {
            session.set_network_path(
                info.broker_path
                    .iter()
                    .flatten()
                    .map(|b| b.value.clone())
                    .collect(),
            );
        }
        // Above ActiveMQ's maximum it is lowered to it, silently, as ActiveMQ does.
        let prefetch = broker_core::clamp_prefetch(i64::from(info.prefetch_size)) as usize;
        let credits = Arc::new(Semaphore::new(prefetch));
        let delivered = Arc::new(Mutex::new(VecDeque::new()));
        let pulls = Arc::new(Mutex::new(VecDeque::new()));
        // The client watches the temporary destinations' advisories by itself at start: fed
        // from broker-core's temporary-destination events, as DestinationInfo commands. Every
        // other advisory topic is an ordinary topic of broker-core's advisories (below).
        if is_temp_advisory(dest) {
            let slot = session.reserve_consumer()?;
            {
                let mut a = self.advisories.lock();
                a.consumer = Some(info.consumer_id.clone());
                a.announced.clear();
            }
            let forwarder = Some(tokio::spawn(forward_advisories(
                Arc::clone(&self.ctx.broker),
                Arc::clone(&self.advisories),
                self.out.clone(),
            )));
            self.consumers.insert(
                info.consumer_id,
                OwConsumer {
                    session,
                    consumer: None,
                    pump: forwarder,
                    credits,
                    delivered,
                    pull: prefetch == 0,
                    pulls: Arc::clone(&pulls),
                    _slot: Some(slot),
                },
            );
            return Ok(());
        }
        let destination = convert::destination(dest)?;
        let selector = info.selector.as_deref().filter(|s| !s.trim().is_empty());
        if info.browser {
            let browse = self.browser(&info, &session, destination, selector)?;
            self.consumers.insert(
                info.consumer_id,
                OwConsumer {
                    session,
                    consumer: None,
                    pump: Some(browse),
                    credits,
                    delivered,
                    pull: false,
                    pulls,
                    _slot: None,
                },
            );
            return Ok(());
        }
        let consumer = match &info.subscription_name {
            Some(_) if dest.kind.is_temporary() => {
                return Err(Failure {
                    class: "javax.jms.InvalidDestinationException",
                    message: format!(
                        "a durable subscription on the temporary {}",
                        broker_core::temporary_url(&destination)
                    ),
                });
            }
            Some(name) if destination.is_topic() => {
                session
                    .durable_subscriber_with_prefetch(destination, name, selector, Some(0))
                    .await?
            }
            _ if dest.kind.is_temporary() => {
                session
                    .temporary_consumer(destination, selector, Some(0))
                    .await?
            }
            _ if info.exclusive => {
                session
                    .exclusive_consumer(destination, selector, Some(0))
                    .await?
            }
            // Broker-core's prefetch 0: the pump grants it the client's credits, so nothing
            // waits in a buffer of ours for a client with no room (or no pull).
            _ => {
                session
                    .consumer_with_prefetch(destination, selector, 0)
                    .await?
            }
        };
        let consumer = Arc::new(consumer);
        // Subscribed first, listed second: a consumer that stops in between is in the list
        // and its "stopped" advisory follows the replay.
        if super::advisory::watches_consumers(dest) {
            let live = self.ctx.broker.live_consumers()?;
            for m in super::advisory::replay(&dest.physical_name, &live) {
                let dispatch = MessageDispatch {
                    consumer_id: info.consumer_id.clone(),
                    destination: m.destination.clone(),
                    message: Some(Box::new(m)),
                    ..MessageDispatch::default()
                };
                if !self.out.send(&Command::MessageDispatch(dispatch)).await {
                    break;
                }
            }
        }
        let pump = tokio::spawn(pump(
            Arc::clone(&consumer),
            info.consumer_id.clone(),
            dest.clone(),
            Arc::clone(&credits),
            Arc::clone(&delivered),
            (prefetch == 0).then(|| Arc::clone(&pulls)),
            Arc::clone(&self.dispatch_seq),
            self.out.clone(),
            Arc::clone(&self.ctx.broker),
            Arc::clone(&self.advisories),
        ));
        self.consumers.insert(
            info.consumer_id,
            OwConsumer {
                session,
                consumer: Some(consumer),
                pump: Some(pump),
                credits,
                delivered,
                pull: prefetch == 0,
                pulls: Arc::clone(&pulls),
                _slot: None,
            },
        );
        Ok(())
    }

    /// A queue browser (`session.createBrowser(queue[, selector])`): the queue's messages that
    /// match, the stored ones in delivery order read page by page from the store as the
    /// console's browse reads them, then those held in memory only (non-persistent ones, or
    /// all of a temporary queue's); nothing is taken from a consumer, locked or removed and
    /// no ack is waited for. Then a MessageDispatch with no message, which is how ActiveMQ
    /// ends the client's enumeration. Unlike ActiveMQ, the in-memory messages come after the
    /// stored ones rather than merged into one delivery order.
    fn browser(
        &self,
        info: &ConsumerInfo,
        session: &Session,
        destination: broker_core::Destination,
        selector: Option<&str>,
    ) -> Result<JoinHandle<()>, Failure> {
        if !destination.is_queue() {
            return Err(Failure {
                class: "javax.jms.InvalidDestinationException",
                message: format!("only a queue can be browsed, not {destination}"),
            });
        }
        let broker = Arc::clone(&self.ctx.broker);
        let core: &broker_core::Broker = &broker;
        let max_nodes = core.config().limits.max_selector_nodes;
        let selector = selector
            .map(|s| broker_core::Selector::parse_limited(s, max_nodes))
            .transpose()
            .map_err(|e| Failure::from(BrokerError::Selector(e)))?;
        // Taken now: a temporary queue of another connection is refused here, and the
        // snapshot is of the moment the browser was made.
        let in_memory = session.browse_in_memory(&destination)?;
        let mut spooled = session.browse_spooled(&destination)?;
        let stored = !broker.is_temporary(&destination);
        let consumer_id = info.consumer_id.clone();
        let end_destination = info.destination.clone();
        let seq = Arc::clone(&self.dispatch_seq);
        let out = self.out.clone();
        Ok(tokio::spawn(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let send = async |m: &broker_core::Message| -> bool {
                if m.is_expired(now) || selector.as_ref().is_some_and(|s| !s.matches(m)) {
                    return true;
                }
                let id = dispatch_id(m, &seq);
                let message = match convert::dispatched(m, id, &|d| broker.is_temporary(d)) {
                    Ok(msg) => msg,
                    Err(e) => {
                        warn!("cannot convert message {} for OpenWire: {e}", m.id);
                        return true;
                    }
                };
                let dispatch = MessageDispatch {
                    consumer_id: consumer_id.clone(),
                    destination: message.destination.clone(),
                    redelivery_counter: message.redelivery_counter,
                    message: Some(Box::new(message)),
                    ..MessageDispatch::default()
                };
                out.send(&Command::MessageDispatch(dispatch)).await
            };
            let mut after: Option<broker_core::OrderKey> = None;
            let mut more = stored;
            while more {
                let page = match broker
                    .browse_after(&destination.name, after, BROWSE_PAGE)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(queue = %destination, "browse: {e}");
                        break;
                    }
                };
                for m in &page {
                    if !send(m).await {
                        return;
                    }
                }
                match page.last() {
                    Some(m) if page.len() == BROWSE_PAGE => {
                        after = Some(broker_core::OrderKey::of(m));
                    }
                    _ => more = false,
                }
            }
            for m in &in_memory {
                if !send(m).await {
                    return;
                }
            }
            loop {
                let page = spooled.next(BROWSE_PAGE).await;
                if page.is_empty() {
                    break;
                }
                for m in &page {
                    if !send(m).await {
                        return;
                    }
                }
            }
            let end = MessageDispatch {
                consumer_id: consumer_id.clone(),
                destination: end_destination,
                ..MessageDispatch::default()
            };
            let _ = out.send(&Command::MessageDispatch(end)).await;
        }))
    }

    async fn ack(&mut self, ack: MessageAck) -> Result<(), Failure> {
        let Some(c) = self.consumers.get(&ack.consumer_id) else {
            // A consumer already closed: its messages went back with it.
            return Ok(());
        };
        let Some(last) = ack.last_message_id.as_ref() else {
            return Ok(());
        };
        // The delivered messages this ack covers: up to `last` for a range, `last` alone
        // for an individual ack.
        let covered: Vec<Delivered> = {
            let mut d = c.delivered.lock();
            let Some(pos) = d.iter().position(|x| same_id(&x.id, last)) else {
                return Ok(());
            };
            match ack.ack_type {
                AckType::Delivered | AckType::Redelivered => {
                    // Consumed later: only the prefetch credit comes back now.
                    let mut freed = 0;
                    for x in d.iter_mut().take(pos + 1) {
                        if !x.credited {
                            x.credited = true;
                            freed += 1;
                        }
                    }
                    if !c.pull {
                        c.credits.add_permits(freed);
                    }
                    return Ok(());
                }
                AckType::Individual => d.remove(pos).into_iter().collect(),
                _ => d.drain(..=pos).collect(),
            }
        };
        let freed = covered.iter().filter(|x| !x.credited).count();
        if !c.pull {
            c.credits.add_permits(freed);
        }
        match (ack.ack_type, &ack.transaction_id) {
            // The client's redelivery policy gave up on these: to the dead letter queue now,
            // with the cause it gives (ActiveMQ's `dlqDeliveryFailureCause`).
            (AckType::Poison, _) => {
                let cause = match &ack.poison_cause {
                    Some(t) => format!(
                        "{}: {}",
                        t.class_name.as_deref().unwrap_or("java.lang.Throwable"),
                        t.message.as_deref().unwrap_or_default()
                    ),
                    None => "the client's redelivery policy gave up (poison ack)".to_owned(),
                };
                for x in &covered {
                    c.session.reject(&x.received, &cause).await?;
                }
            }
            (_, Some(t)) => {
                let txn = self.txs.get_mut(t).ok_or_else(|| unknown_tx(t))?;
                txn.work = true;
                // Put back as delivered-and-credited: the commit acks them; a rollback leaves
                // them with the consumer, whose client redelivers them itself.
                let mut d = c.delivered.lock();
                for x in covered.into_iter().rev() {
                    txn.acks.push((ack.consumer_id.clone(), x.id.clone()));
                    d.push_front(Delivered {
                        credited: true,
                        ..x
                    });
                }
            }
            (_, None) => {
                // Into the window, as a send without a response: the acks of a consumer share
                // fsyncs with each other and with the connection's sends.
                let wait = if ack.response_required {
                    broker_core::AckWait::Receipt
                } else {
                    broker_core::AckWait::NoReceipt
                };
                for x in &covered {
                    self.window.make_room(0).await.map_err(write_failure)?;
                    let acked = c.session.submit_acknowledge(&x.received, wait).await?;
                    self.window.push(
                        format!("ack of message {}", message_id_text(&x.id)),
                        0,
                        Box::pin(acked),
                    );
                }
                if ack.response_required {
                    self.window.drain().await.map_err(write_failure)?;
                }
            }
        }
        Ok(())
    }

    async fn transaction(&mut self, t: TransactionInfo) -> Result<(), Failure> {
        let id = match t.transaction_id.clone() {
            Some(TransactionId::Local(l)) => l,
            Some(TransactionId::Xa(x)) => return Box::pin(self.xa_transaction(&t, x)).await,
            None => {
                return match t.transaction_type {
                    TransactionType::Recover => self.recover(t.command_id),
                    _ => Err(Failure::jms(
                        "a transaction command without a transaction id",
                    )),
                };
            }
        };
        let key = TransactionId::Local(id);
        match t.transaction_type {
            TransactionType::Begin => {
                if self.txs.contains_key(&key) {
                    return Err(Failure::jms("the transaction is already open"));
                }
                let session = self.connection.session(AckMode::Transacted)?;
                self.txs.insert(
                    key,
                    Tx {
                        session,
                        acks: Vec::new(),
                        work: false,
                    },
                );
            }
            TransactionType::CommitOnePhase | TransactionType::CommitTwoPhase => {
                let tx = self.take_tx(&key).ok_or_else(|| unknown_tx(&key))?;
                let result = self.commit(&tx).await;
                tx.session.close().await;
                result?;
            }
            TransactionType::Rollback => {
                if let Some(tx) = self.take_tx(&key) {
                    let _ = tx.session.rollback().await;
                    tx.session.close().await;
                }
            }
            // END and FORGET of a local transaction need nothing; PREPARE is XA only.
            TransactionType::End | TransactionType::Forget => {}
            other => {
                return Err(Failure::jms(format!(
                    "transaction command {other:?} is not supported for a local transaction"
                )));
            }
        }
        Ok(())
    }

    /// An XA command, as ActiveMQ's `TransactionBroker` and `XATransaction` answer it. A
    /// branch is this connection's until it is prepared (BEGIN of a branch open here is a
    /// join or resume, END needs nothing), then the broker's: COMMIT and ROLLBACK of a
    /// prepared branch may come from any connection, after a restart too.
    async fn xa_transaction(
        &mut self,
        t: &TransactionInfo,
        x: XaTransactionId,
    ) -> Result<(), Failure> {
        let key = TransactionId::Xa(x.clone());
        let xid = core_xid(&x);
        match t.transaction_type {
            TransactionType::Begin => {
                if self.txs.contains_key(&key) {
                    return Ok(());
                }
                if self.is_prepared(&xid)? {
                    return Err(Failure::xa(
                        xa::XAER_DUPID,
                        format!("Transaction '{}' is already prepared.", xid_text(&xid)),
                    ));
                }
                let session = self.connection.session(AckMode::Transacted)?;
                if let Err(e) = session.xa_start(xid).await {
                    session.close().await;
                    return Err(Failure::xa(xa::XAER_RMERR, e));
                }
                self.txs.insert(
                    key,
                    Tx {
                        session,
                        acks: Vec::new(),
                        work: false,
                    },
                );
            }
            TransactionType::End => {}
            TransactionType::Prepare => {
                let Some(tx) = self.take_tx(&key) else {
                    return Err(self.not_open(&xid, "prepare")?);
                };
                let vote = if tx.work {
                    self.prepare(&tx, &x).await?;
                    xa::XA_OK
                } else {
                    let _ = tx.session.rollback().await;
                    xa::XA_RDONLY
                };
                tx.session.close().await;
                self.answer = Some(Command::IntegerResponse(openwire::IntegerResponse {
                    correlation_id: t.command_id,
                    result: vote,
                    ..openwire::IntegerResponse::default()
                }));
            }
            TransactionType::CommitOnePhase => match self.take_tx(&key) {
                Some(tx) => {
                    // Prepared, then committed: broker-core's XA branch ends only so.
                    let prepared = if tx.work {
                        self.prepare(&tx, &x).await
                    } else {
                        let _ = tx.session.rollback().await;
                        tx.session.close().await;
                        return Ok(());
                    };
                    tx.session.close().await;
                    prepared.map_err(|f| Failure::xa(xa::XA_RBROLLBACK, f.message))?;
                    self.end_prepared(&x, true).await?;
                }
                None if self.is_prepared(&xid)? => self.end_prepared(&x, true).await?,
                None => return Err(unknown_tx(&key)),
            },
            TransactionType::CommitTwoPhase => {
                if self.txs.contains_key(&key) {
                    return Err(Failure::xa(
                        xa::XAER_PROTO,
                        "Cannot do 2 phase commit if the transaction has not been prepared",
                    ));
                }
                self.end_prepared(&x, true).await?;
            }
            // FORGET of a branch the broker never ended by itself: ActiveMQ rolls it back.
            TransactionType::Rollback | TransactionType::Forget => match self.take_tx(&key) {
                Some(tx) => {
                    let _ = tx.session.rollback().await;
                    tx.session.close().await;
                }
                None => self.end_prepared(&x, false).await?,
            },
            TransactionType::Recover => self.recover(t.command_id)?,
            TransactionType::Other(code) => {
                return Err(Failure::xa(
                    xa::XAER_PROTO,
                    format!("unknown transaction command {code}"),
                ));
            }
        }
        Ok(())
    }

    /// Takes an open transaction out, with the producers that sent in it.
    fn take_tx(&mut self, key: &TransactionId) -> Option<Tx> {
        let tx = self.txs.remove(key)?;
        self.producers.retain(|(t, ..), _| t.as_ref() != Some(key));
        Some(tx)
    }

    fn is_prepared(&self, xid: &broker_core::Xid) -> Result<bool, Failure> {
        Ok(self.ctx.broker.prepared_transactions()?.contains(xid))
    }

    /// The failure for `what` on a branch not open on this connection: out of order if it is
    /// prepared, unknown otherwise.
    fn not_open(&self, xid: &broker_core::Xid, what: &str) -> Result<Failure, Failure> {
        Ok(if self.is_prepared(xid)? {
            Failure::xa(
                xa::XAER_PROTO,
                format!(
                    "Cannot call {what} now: transaction '{}' is prepared.",
                    xid_text(xid)
                ),
            )
        } else {
            Failure::xa(
                xa::XAER_NOTA,
                format!("Transaction '{}' has not been started.", xid_text(xid)),
            )
        })
    }

    /// RECOVER: the prepared branches, whichever connection prepared them, found at start or
    /// prepared since.
    fn recover(&mut self, command_id: i32) -> Result<(), Failure> {
        let prepared = self.ctx.broker.prepared_transactions()?;
        let data = prepared
            .iter()
            .map(|x| DataStructure::TransactionId(TransactionId::Xa(openwire_xid(x))))
            .collect();
        self.answer = Some(Command::DataArrayResponse(openwire::DataArrayResponse {
            correlation_id: command_id,
            data: Some(data),
            ..openwire::DataArrayResponse::default()
        }));
        Ok(())
    }

    /// Enlists the branch's acks and prepares it: durable from here on. On failure the branch
    /// is rolled back and its acks are the consumers' again.
    async fn prepare(&mut self, tx: &Tx, x: &XaTransactionId) -> Result<(), Failure> {
        let mut held: Vec<(ConsumerId, Delivered)> = Vec::new();
        let mut failed = None;
        for (consumer, id) in &tx.acks {
            let Some(c) = self.consumers.get(consumer) else {
                continue;
            };
            let Some(delivered) = c.take_delivered(id) else {
                continue;
            };
            let enlisted = c
                .session
                .acknowledge_in_returning(&delivered.received, &tx.session)
                .await;
            held.push((consumer.clone(), delivered));
            if let Err(e) = enlisted {
                failed = Some(e);
                break;
            }
        }
        let prepared = match failed {
            Some(e) => Err(e),
            None => tx.session.xa_prepare().await.map(drop),
        };
        match prepared {
            Ok(()) => {
                self.prepared_acks.insert(x.clone(), held);
                Ok(())
            }
            Err(e) => {
                let _ = tx.session.rollback().await;
                self.give_back(held);
                Err(Failure::xa(xa::XAER_RMERR, format!("prepare failed: {e}")))
            }
        }
    }

    /// Acks of a branch that rolled back: the consumers' again, first in line, in order.
    fn give_back(&self, held: Vec<(ConsumerId, Delivered)>) {
        for (consumer, delivered) in held.into_iter().rev() {
            if let Some(c) = self.consumers.get(&consumer) {
                c.delivered.lock().push_front(Delivered {
                    credited: true,
                    ..delivered
                });
            }
        }
    }

    /// A closed consumer's acks in prepared branches: nothing to give back to any more (a
    /// rollback redelivers them from their destination).
    fn forget_prepared_acks(&mut self, consumer: &ConsumerId) {
        self.prepared_acks.retain(|_, held| {
            held.retain(|(c, _)| c != consumer);
            !held.is_empty()
        });
    }

    /// Commits or rolls back a prepared branch.
    async fn end_prepared(&mut self, x: &XaTransactionId, commit: bool) -> Result<(), Failure> {
        let xid = core_xid(x);
        if !self.is_prepared(&xid)? {
            return Err(unknown_tx(&TransactionId::Xa(x.clone())));
        }
        let ended = if commit {
            self.ctx.broker.commit_prepared(&xid).await
        } else {
            self.ctx.broker.rollback_prepared(&xid).await
        };
        ended.map_err(|e| Failure::xa(xa::XAER_RMERR, e))?;
        let held = self.prepared_acks.remove(x).unwrap_or_default();
        if !commit {
            self.give_back(held);
        }
        Ok(())
    }

    /// Enlists the transaction's acks and commits it with its sends.
    async fn commit(&self, tx: &Tx) -> Result<(), Failure> {
        for (consumer, id) in &tx.acks {
            let Some(c) = self.consumers.get(consumer) else {
                continue;
            };
            if let Some(x) = c.take_delivered(id) {
                c.session.acknowledge_in(&x.received, &tx.session).await?;
            }
        }
        tx.session.commit().await?;
        Ok(())
    }

    /// The client is gone: transactions roll back, unconsumed messages go back.
    async fn close(mut self) {
        for (_, c) in self.consumers.drain() {
            close_consumer(c).await;
        }
        for (_, tx) in self.txs.drain() {
            let _ = tx.session.rollback().await;
            tx.session.close().await;
        }
        self.connection.close().await;
        debug!(peer = %self.peer, "OpenWire connection closed");
        let _ = &self.ctx;
    }
}

/// A closing consumer's messages that its client had prefetched but never handed to its
/// application (dispatched after `last_delivered`, the RemoveInfo's `lastDeliveredSequenceId`;
/// a negative one: none was handed over) go back as they were, not as redeliveries, as
/// ActiveMQ does: a consumer opened and closed per message (Spring's listener container
/// without caching) would otherwise push its whole prefetch toward the dead letter queue.
async fn give_back_unseen(c: &OwConsumer, last_delivered: i64) {
    let unseen: Vec<Received> = c
        .delivered
        .lock()
        .iter()
        .filter(|d| d.id.broker_sequence_id > last_delivered)
        .map(|d| d.received.clone())
        .collect();
    for r in unseen {
        if let Err(e) = c.session.give_back(&r).await {
            debug!("giving back an unseen message: {e}");
        }
    }
}

async fn close_consumer(mut c: OwConsumer) {
    c.credits.close();
    if let Some(consumer) = &c.consumer {
        consumer.close().await;
    }
    if let Some(mut pump) = c.pump.take() {
        // Without a broker-core consumer the task is a browse or the advisory feed: nothing
        // to finish, it stops here.
        let finishing = c.consumer.is_some()
            && tokio::time::timeout(Duration::from_secs(1), &mut pump)
                .await
                .is_ok();
        if !finishing {
            pump.abort();
        }
    }
    c.delivered.lock().clear();
    c.session.close().await;
}

fn same_id(a: &MessageId, b: &MessageId) -> bool {
    a.producer_id == b.producer_id && a.producer_sequence_id == b.producer_sequence_id
}

/// A message as the client knows it, for an error.
fn what(m: &openwire::Message) -> String {
    m.message_id
        .as_ref()
        .map(message_id_text)
        .unwrap_or_default()
}

/// A pipelined write that failed: the connection ends, naming it.
fn write_failure(failed: WriteFailed) -> Failure {
    Failure::jms(format!(
        "{} failed: {}; nothing sent after it on this connection was stored, the connection is closed",
        failed.what, failed.error
    ))
}

/// As Java's `MessageId.toString()`: the connection id already starts with `ID:` (the
/// client's own choice of text), so nothing is put before it.
fn message_id_text(id: &MessageId) -> String {
    match &id.producer_id {
        Some(p) => format!(
            "{}:{}:{}:{}",
            p.connection_id, p.session_id, p.value, id.producer_sequence_id
        ),
        None => id.text_view.clone().unwrap_or_default(),
    }
}

/// The id a dispatched message goes by. The broker-core id names the producer; OpenWire wants
/// a ProducerId, so the id's producer string stands in for the connection part.
fn dispatch_id(m: &broker_core::Message, seq: &std::sync::atomic::AtomicI64) -> MessageId {
    MessageId {
        text_view: None,
        producer_id: Some(producer_id_of(&m.id.producer)),
        producer_sequence_id: i64::try_from(m.id.producer_seq).unwrap_or(i64::MAX),
        broker_sequence_id: seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
    }
}

/// The ProducerId a broker-core producer name stands for: an OpenWire client's own
/// (`conn:session:value`, see `Conn::client_message_id`) comes back as it was sent, so the
/// consumer sees the JMSMessageID the producer saw; any other name is the connection part.
fn producer_id_of(name: &str) -> ProducerId {
    let mut parts = name.rsplitn(3, ':');
    if let (Some(value), Some(session), Some(connection)) =
        (parts.next(), parts.next(), parts.next())
        && let (Ok(value), Ok(session_id)) = (value.parse(), session.parse())
    {
        return ProducerId {
            connection_id: connection.to_owned(),
            session_id,
            value,
        };
    }
    ProducerId {
        connection_id: name.to_owned(),
        session_id: 0,
        value: 0,
    }
}

/// Moves messages from a consumer to the writer, one per prefetch credit.
#[allow(clippy::too_many_arguments)]
async fn pump(
    consumer: Arc<Consumer>,
    consumer_id: ConsumerId,
    destination: openwire::Destination,
    credits: Arc<Semaphore>,
    delivered: Arc<Mutex<VecDeque<Delivered>>>,
    pulls: Option<Arc<Mutex<VecDeque<i64>>>>,
    seq: Arc<std::sync::atomic::AtomicI64>,
    out: Out,
    broker: Arc<crate::Broker>,
    advisories: Arc<Mutex<Advisories>>,
) {
    loop {
        let (batch, timeout) = match &pulls {
            // Prefetch 0: each credit is a pull, and a pull with a timeout may find nothing.
            Some(pulls) => {
                match credits.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                }
                let timeout = pulls.lock().pop_front().filter(|t| *t != 0);
                if timeout.is_none() {
                    consumer.grant(1);
                }
                (1, timeout)
            }
            None => match crate::outbound::next_batch(&consumer, Some(&credits)).await {
                Some(n) => (n, None),
                None => return,
            },
        };
        for _ in 0..batch {
            let next = match timeout {
                // A no-wait pull still gives a message already in the queue a moment to arrive.
                Some(t) => {
                    let wait = Duration::from_millis(u64::try_from(t).unwrap_or(20).max(1));
                    consumer.pull(wait).await
                }
                None => consumer.receive().await,
            };
            let received = match next {
                Ok(Some(r)) => r,
                Ok(None) if timeout.is_some() => {
                    let empty = MessageDispatch {
                        consumer_id: consumer_id.clone(),
                        destination: Some(destination.clone()),
                        ..MessageDispatch::default()
                    };
                    if !out.send(&Command::MessageDispatch(empty)).await {
                        return;
                    }
                    continue;
                }
                Ok(None) => return,
                Err(e) => {
                    warn!("receive failed: {e}");
                    return;
                }
            };
            let m = received.message();
            let id = dispatch_id(m, &seq);
            // A temporary reply-to is announced to the client first: it refuses to send to a
            // temporary destination it has not been told about.
            if let Some(r) = &m.reply_to
                && broker.is_temporary(r)
            {
                let cmd = advisories.lock().announce(r, true);
                if let Some(cmd) = cmd
                    && !out.send(&cmd).await
                {
                    return;
                }
            }
            let message = match convert::dispatched(m, id.clone(), &|d| broker.is_temporary(d)) {
                Ok(msg) => msg,
                Err(e) => {
                    warn!("cannot convert message {} for OpenWire: {e}", m.id);
                    continue;
                }
            };
            let dispatch = MessageDispatch {
                consumer_id: consumer_id.clone(),
                destination: message.destination.clone(),
                redelivery_counter: message.redelivery_counter,
                message: Some(Box::new(message)),
                ..MessageDispatch::default()
            };
            delivered.lock().push_back(Delivered {
                id,
                received,
                credited: false,
            });
            if !out.send(&Command::MessageDispatch(dispatch)).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activemq_bridge_s_composite_advisory_watch_is_its_consumer_advisories() {
        let watched = openwire::Destination::topic(
            "ActiveMQ.Advisory.Consumer.>,ActiveMQ.Advisory.TempQueue,ActiveMQ.Advisory.TempTopic",
        );
        assert_eq!(
            bridge_advisory_destination(&watched),
            Some(openwire::Destination::topic("ActiveMQ.Advisory.Consumer.>"))
        );
        for other in [
            openwire::Destination::topic("ActiveMQ.Advisory.TempQueue,ActiveMQ.Advisory.TempTopic"),
            openwire::Destination::topic("a,b"),
            openwire::Destination::topic("ActiveMQ.Advisory.Consumer.>"),
            openwire::Destination::queue(
                "ActiveMQ.Advisory.Consumer.>,ActiveMQ.Advisory.TempQueue",
            ),
        ] {
            assert_eq!(bridge_advisory_destination(&other), None, "{other:?}");
        }
    }
}
