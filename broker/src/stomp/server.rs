//! One STOMP connection: frames in, broker-core calls, frames out.
//!
//! Each connection has a reader (this task), a writer task fed by a bounded channel (so a
//! client that does not read stops being fed, and memory stays bounded), and one pump task per
//! subscription moving messages from its broker-core consumer to the writer. Each STOMP
//! subscription has its own broker session (its ack mode), each STOMP transaction its own
//! transacted session. A malformed frame or a refused command gets an ERROR frame and the
//! connection is closed; nothing else is affected.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use broker_core::authorization::Operation;
use broker_core::{
    AckMode, Body, BrokerError, Connection, Consumer, Destination, DestinationKind, Message,
    MessageId, OrderKey, Outgoing, Producer, Received, Session, Submitted, Value,
};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::frame::{Decoder, Frame, FrameError, Limits, Version};
use crate::Broker;
use crate::outbound::{self, OutSender, WriterOptions};
use crate::pipeline::{Window, WriteFailed};
use crate::users::Users;

/// What every connection shares.
pub struct ServerContext {
    pub broker: Arc<Broker>,
    pub users: Arc<Users>,
    pub limits: Limits,
    pub max_pending_frames: usize,
    /// The bytes of those frames at most (they count against the broker's memory too).
    pub max_pending_bytes: usize,
    /// The largest frame read before CONNECT is answered.
    pub max_connect_frame_bytes: usize,
    /// A client must have sent CONNECT this long after the accept.
    pub connect_timeout: Duration,
    /// Writes (SENDs and ACKs without a receipt) one connection may have in flight, and their
    /// message bytes.
    pub pipeline_window: usize,
    pub pipeline_window_bytes: usize,
    /// A client that reads nothing for this long while frames wait for it is cut off.
    pub write_timeout: Option<Duration>,
    /// Heart-beats as negotiated: the shortest interval either way (a client asking for less
    /// gets this), and how many of its promised intervals a silent client is given.
    pub heartbeats: HeartbeatPolicy,
    /// Flips to true when the broker stops: connections close.
    pub shutdown: watch::Receiver<bool>,
    /// The live OpenWire connections by ConnectionId: a client reconnecting with one replaces
    /// the stale connection.
    pub(crate) openwire_connections: Arc<crate::openwire::takeover::Registry>,
}

/// Longer heart-beat intervals are taken as this (a year): as good as none.
const LONGEST_HEARTBEAT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How CONNECT's `heart-beat:cx,cy` is honoured (`[transports] stomp_heartbeat_*`).
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatPolicy {
    /// The floor under both intervals, against a client asking for a beat every millisecond.
    pub min_interval: Duration,
    /// A client that promised a beat every `cx` ms is closed after `cx` × this of silence
    /// (ActiveMQ's `transport.hbGracePeriodMultiplier`).
    pub grace: f64,
}

impl HeartbeatPolicy {
    /// What the server sends at and what it expects, for a client's `cx,cy` (0 = none), as
    /// ActiveMQ does: beats every `cy` ms to the client, and the client is expected every `cx`
    /// ms; each raised to the floor.
    fn negotiate(&self, cx: u64, cy: u64) -> (Option<Duration>, Option<Duration>) {
        let raise = |ms: u64| {
            (ms > 0).then(|| {
                Duration::from_millis(ms)
                    .max(self.min_interval)
                    .min(LONGEST_HEARTBEAT)
            })
        };
        (raise(cy), raise(cx))
    }

    /// How long a client expected every `every` may stay silent (bounded: the client chose
    /// `every`, and a deadline past the clock's range would panic).
    fn read_timeout(&self, every: Duration) -> Duration {
        Duration::try_from_secs_f64(every.as_secs_f64() * self.grace.max(1.0))
            .unwrap_or(LONGEST_HEARTBEAT)
            .min(LONGEST_HEARTBEAT)
    }
}
/// How long a CONNECT waits for a previous connection with its client id to close.
const CLIENT_ID_WAIT: Duration = Duration::from_secs(5);
/// Messages of a queue sent per browse page.
const BROWSE_PAGE: usize = 500;

/// Why a connection ends with an ERROR frame.
struct Refusal {
    message: String,
    detail: String,
}

impl Refusal {
    fn new(message: impl Into<String>, detail: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            detail: detail.into(),
        }
    }
}

impl From<BrokerError> for Refusal {
    fn from(e: BrokerError) -> Refusal {
        Refusal::new(e.to_string(), String::new())
    }
}

/// A STOMP destination; a comma list (`/queue/a,b,/topic/c`, ActiveMQ's composite form) becomes
/// broker-core's (`a,b,topic://c`): an element with its own `/queue/` or `/topic/` prefix keeps
/// that kind, one without takes the first element's. Wildcards (`/topic/orders.>`) pass
/// through for broker-core to interpret.
fn parse_destination(s: &str) -> Result<Destination, Refusal> {
    let Some((first, rest)) = s.split_once(',') else {
        return parse_single_destination(s);
    };
    let head = parse_single_destination(first)?;
    let mut name = head.name.to_string();
    for part in rest.split(',') {
        name.push(',');
        if let Some(n) = part.strip_prefix("/queue/") {
            name.push_str("queue://");
            name.push_str(n);
        } else if let Some(n) = part.strip_prefix("/topic/") {
            name.push_str("topic://");
            name.push_str(n);
        } else {
            name.push_str(part);
        }
    }
    Ok(Destination {
        kind: head.kind,
        name: name.into(),
    })
}

fn parse_single_destination(s: &str) -> Result<Destination, Refusal> {
    let (kind, name) = if let Some(n) = s.strip_prefix("/queue/") {
        (DestinationKind::Queue, n)
    } else if let Some(n) = s.strip_prefix("/topic/") {
        (DestinationKind::Topic, n)
    } else {
        return Err(Refusal::new(
            format!("unsupported destination {s:?}: use /queue/<name> or /topic/<name>"),
            "",
        ));
    };
    if name.is_empty() {
        return Err(Refusal::new(format!("destination {s:?} has no name"), ""));
    }
    Ok(Destination {
        kind,
        name: name.into(),
    })
}

/// ActiveMQ's STOMP names of temporary destinations: `/temp-queue/<x>` and `/temp-topic/<x>`
/// name one of this connection's own (created at first use, `<x>` being the client's name for
/// it), `/remote-temp-queue/<name>` and `/remote-temp-topic/<name>` another connection's by its
/// broker name, which is how a message's `destination` and `reply-to` show one to any
/// connection but its creator's.
const TEMP_PREFIXES: [(&str, DestinationKind, bool); 4] = [
    ("/temp-queue/", DestinationKind::Queue, false),
    ("/temp-topic/", DestinationKind::Topic, false),
    ("/remote-temp-queue/", DestinationKind::Queue, true),
    ("/remote-temp-topic/", DestinationKind::Topic, true),
];

/// How one connection names destinations on the way out: its own temporary destinations by
/// the names it gave them, other live temporary ones as `/remote-temp-...`, the rest as usual.
#[derive(Clone)]
struct Naming {
    broker: Arc<Broker>,
    own: Arc<Mutex<HashMap<Destination, String>>>,
}

impl Naming {
    fn name(&self, d: &Destination) -> String {
        if let Some(n) = self.own.lock().get(d) {
            return n.clone();
        }
        if self.broker.is_temporary(d) {
            return match d.kind {
                DestinationKind::Queue => format!("/remote-temp-queue/{}", d.name),
                DestinationKind::Topic => format!("/remote-temp-topic/{}", d.name),
            };
        }
        stomp_destination(d)
    }
}

fn stomp_destination(d: &Destination) -> String {
    match d.kind {
        DestinationKind::Queue => format!("/queue/{}", d.name),
        DestinationKind::Topic => format!("/topic/{}", d.name),
    }
}

/// Headers a SEND carries that are not message properties.
const RESERVED: &[&str] = &[
    "destination",
    "content-length",
    "receipt",
    "transaction",
    "persistent",
    "priority",
    "expires",
    "correlation-id",
    "reply-to",
    "type",
    "JMSXGroupID",
    "JMSXGroupSeq",
    "message-id",
    "timestamp",
    "redelivered",
    "subscription",
    "ack",
];

fn value_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::I8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
    }
}

/// A SEND frame as a message to produce (ActiveMQ's conventions: `persistent:true` for a
/// persistent message, a body with `content-length` is bytes, without it text).
fn outgoing(frame: &Frame) -> Result<Outgoing, Refusal> {
    let body = if frame.get("content-length").is_some() {
        Body::Bytes(frame.body.clone())
    } else {
        match std::str::from_utf8(&frame.body) {
            Ok(t) => Body::Text(t.to_owned()),
            Err(_) => Body::Bytes(frame.body.clone()),
        }
    };
    let mut out = Outgoing::new(body);
    out.persistent = frame.get("persistent") == Some("true");
    if let Some(p) = frame.get("priority") {
        out.priority = p
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 9)
            .ok_or_else(|| Refusal::new(format!("bad priority {p:?}: 0 to 9"), ""))?;
    }
    if let Some(e) = frame.get("expires") {
        out.expiration = e.trim().parse().map_err(|_| {
            Refusal::new(
                format!("bad expires {e:?}: milliseconds since the epoch"),
                "",
            )
        })?;
    }
    out.correlation_id = frame.get("correlation-id").map(str::to_owned);
    out.message_type = frame.get("type").map(str::to_owned);
    out.group_id = frame.get("JMSXGroupID").map(str::to_owned);
    if let Some(seq) = frame.get("JMSXGroupSeq") {
        out.group_seq = seq
            .trim()
            .parse()
            .map_err(|_| Refusal::new(format!("bad JMSXGroupSeq {seq:?}: an integer"), ""))?;
    }
    let mut props = BTreeMap::new();
    for (k, v) in &frame.headers {
        if !RESERVED.contains(&k.as_str()) && !props.contains_key(k) {
            props.insert(k.clone(), Value::String(v.clone()));
        }
    }
    out.properties = props;
    Ok(out)
}

fn message_frame(m: &Message, subscription: &str, ack: Option<&str>, naming: &Naming) -> Frame {
    let mut f = Frame::new("MESSAGE")
        .header("subscription", subscription)
        .header("message-id", m.id.to_string())
        .header("destination", naming.name(&m.destination));
    if let Some(a) = ack {
        f = f.header("ack", a);
    }
    f = f
        .header("persistent", m.persistent.to_string())
        .header("priority", m.priority.to_string())
        .header("timestamp", m.timestamp.to_string())
        .header("expires", m.expiration.to_string());
    if m.redelivery_count > 0 {
        f = f.header("redelivered", "true");
    }
    if let Some(c) = &m.correlation_id {
        f = f.header("correlation-id", c.clone());
    }
    if let Some(r) = &m.reply_to {
        f = f.header("reply-to", naming.name(r));
    }
    if let Some(t) = &m.message_type {
        f = f.header("type", t.clone());
    }
    if let Some(g) = &m.group_id {
        f = f.header("JMSXGroupID", g.clone());
        if m.group_seq != 0 {
            f = f.header("JMSXGroupSeq", m.group_seq.to_string());
        }
    }
    for (k, v) in &m.properties {
        f = f.header(k, value_text(v));
    }
    match &m.body {
        Body::Text(t) => f.body = Bytes::copy_from_slice(t.as_bytes()),
        Body::Bytes(b) | Body::Object(b) => {
            // A bytes message is told from a text one by its content-length, which the
            // encoder adds only for a non-empty body: an empty one says it explicitly.
            if b.is_empty() {
                f = f.header("content-length", "0");
            }
            f.body = b.clone();
        }
        Body::Empty => {}
        other => f.body = Bytes::from(format!("{other:?}")),
    }
    f
}

/// A message handed out on a CLIENT or CLIENT-INDIVIDUAL subscription, waiting for its ACK.
struct Unacked {
    sub: String,
    ack: String,
    received: Received,
}

struct Sub {
    destination: String,
    session: Session,
    consumer: Arc<Consumer>,
    pump: JoinHandle<()>,
    /// Prefetch credits of a client-ack subscription: one per unacked message.
    credits: Option<Arc<Semaphore>>,
}

struct Conn {
    ctx: Arc<ServerContext>,
    peer: String,
    version: Version,
    connection: Connection,
    auto: Session,
    producers: HashMap<String, Producer>,
    subs: HashMap<String, Sub>,
    txs: HashMap<String, Session>,
    unacked: Arc<Mutex<BTreeMap<u64, Unacked>>>,
    next_ack: Arc<AtomicU64>,
    out: OutSender,
    /// SENDs and ACKs handed to the broker and not yet durable.
    window: Window,
    /// SEND frames so far, to name one in an ERROR.
    sends: u64,
    /// This connection's temporary destinations by the names it gave them (`/temp-queue/x`).
    temps: HashMap<String, Destination>,
    naming: Naming,
}

/// Serves one client until it disconnects, errs or the broker stops.
pub async fn serve<S>(io: S, peer: String, ctx: Arc<ServerContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(io);
    let (out, out_rx) = outbound::channel(
        ctx.max_pending_frames,
        ctx.max_pending_bytes,
        ctx.broker.memory().ok(),
    );
    let (beat_tx, beat_rx) = watch::channel(None::<Duration>);
    let writer = tokio::spawn(outbound::write_loop(
        wr,
        out_rx,
        WriterOptions {
            ping: Bytes::from_static(b"\n"),
            idle: beat_rx,
            write_timeout: ctx.write_timeout,
            peer: peer.clone(),
        },
    ));
    // Until CONNECT is answered only a small frame is read, and the deadline is absolute:
    // a client that never logs in holds a few KiB for `connect_timeout` at most.
    let mut decoder = Decoder::new(Limits {
        max_frame_bytes: ctx.limits.max_frame_bytes.min(ctx.max_connect_frame_bytes),
        ..ctx.limits
    });
    let connect_deadline = tokio::time::Instant::now() + ctx.connect_timeout;
    let mut buf = BytesMut::with_capacity(8192);
    let mut conn: Option<Conn> = None;
    let mut read_timeout = ctx.connect_timeout;
    let mut shutdown = ctx.shutdown.clone();
    'outer: loop {
        // Frames already buffered first.
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %peer, "malformed frame: {e}; closing the connection");
                    let _ = out
                        .send(error_frame(
                            decoder.version,
                            &frame_refusal(&e),
                            decoder.failed_receipt(),
                        ))
                        .await;
                    break 'outer;
                }
            };
            let receipt = frame.get("receipt").map(str::to_owned);
            let result = match conn.as_mut() {
                None => match Box::pin(connect(&frame, &peer, &ctx, &out, &beat_tx)).await {
                    Ok((c, timeout)) => {
                        decoder.version = c.version;
                        decoder.limits = ctx.limits;
                        read_timeout = timeout;
                        conn = Some(c);
                        Ok(false)
                    }
                    Err(r) => Err(r),
                },
                Some(c) if receipt.is_none() && c.pipelines(&frame) => {
                    Box::pin(c.pipeline(frame)).await.map(|()| false)
                }
                Some(c) => match c.window.drain().await {
                    Ok(()) => Box::pin(c.handle(frame)).await,
                    Err(failed) => Err(write_refusal(failed)),
                },
            };
            let version = decoder.version;
            match result {
                Ok(done) => {
                    if done && let Some(c) = conn.take() {
                        // Released before the receipt, so a client that reconnects at once
                        // with the same client id is not refused.
                        c.close().await;
                    }
                    if let Some(r) = receipt {
                        let _ = out
                            .send(
                                Frame::new("RECEIPT")
                                    .header("receipt-id", r)
                                    .to_bytes(version),
                            )
                            .await;
                    }
                    if done {
                        break 'outer;
                    }
                }
                Err(refusal) => {
                    debug!(peer = %peer, "refused: {}", refusal.message);
                    let _ = out
                        .send(error_frame(version, &refusal, receipt.as_deref()))
                        .await;
                    break 'outer;
                }
            }
        }
        tokio::select! {
            r = tokio::time::timeout_at(
                if conn.is_some() { tokio::time::Instant::now() + read_timeout } else { connect_deadline },
                rd.read_buf(&mut buf),
            ) => match r {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(peer = %peer, "read: {e}");
                    break;
                }
                Err(_) => {
                    if conn.is_some() {
                        info!(peer = %peer, "no frame or heart-beat within {read_timeout:?}; closing");
                    } else {
                        info!(peer = %peer, "no CONNECT within {:?} of accepting; closing", ctx.connect_timeout);
                    }
                    break;
                }
            },
            Err(failed) = async {
                match conn.as_mut() {
                    Some(c) => c.window.complete_oldest().await,
                    None => std::future::pending().await,
                }
            } => {
                let refusal = write_refusal(failed);
                warn!(peer = %peer, "{}; closing the connection", refusal.message);
                let _ = out.send(error_frame(decoder.version, &refusal, None)).await;
                break;
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                let _ = out.send(error_frame(decoder.version, &Refusal::new("the broker is shutting down", ""), None)).await;
                break;
            }
            // The writer gave up on a client that does not read (it logged why).
            () = out.closed() => break,
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
        linger(&mut rd, &mut buf).await;
    }
}

/// A lingering close: the ERROR (or receipt) just written is followed by our FIN, but closing
/// a socket with unread bytes from the client makes the kernel send a reset, which can destroy
/// that ERROR before the client reads it (a producer that pipelines SENDs always has more on
/// the way). So read and discard until the client closes too, for a second at most.
pub(crate) async fn linger<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            buf.clear();
            match rd.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn write_refusal(failed: WriteFailed) -> Refusal {
    Refusal::new(
        format!("{} failed: {}", failed.what, failed.error),
        "Nothing sent or acknowledged after it on this connection was acknowledged as done; \
         the connection is closed.",
    )
}

fn frame_refusal(e: &FrameError) -> Refusal {
    Refusal::new(format!("malformed frame: {e}"), "")
}

fn error_frame(version: Version, r: &Refusal, receipt: Option<&str>) -> Bytes {
    let mut f = Frame::new("ERROR")
        .header("message", r.message.replace('\n', " "))
        .header("content-type", "text/plain");
    if let Some(id) = receipt {
        f = f.header("receipt-id", id);
    }
    if !r.detail.is_empty() {
        f.body = Bytes::from(r.detail.clone());
    }
    f.to_bytes(version)
}

/// Answers CONNECT/STOMP: version, credentials, client id, heart-beats.
async fn connect(
    frame: &Frame,
    peer: &str,
    ctx: &Arc<ServerContext>,
    out: &OutSender,
    beat: &watch::Sender<Option<Duration>>,
) -> Result<(Conn, Duration), Refusal> {
    if frame.command != "CONNECT" && frame.command != "STOMP" {
        return Err(Refusal::new(
            format!("expected CONNECT, got {}", frame.command),
            "",
        ));
    }
    let version = match frame.get("accept-version") {
        None => Version::V1_0,
        Some(list) => list
            .split(',')
            .filter_map(Version::parse)
            .max()
            .ok_or_else(|| Refusal::new("Supported protocol versions are 1.0,1.1,1.2", ""))?,
    };
    let login = frame.get("login").unwrap_or("");
    let passcode = frame.get("passcode").unwrap_or("");
    let Some(subject) = ctx.users.authenticate(login, passcode).await else {
        warn!(peer = %peer, login = %login, "authentication failed");
        return Err(Refusal::new(
            "Authentication failed",
            format!("wrong user name or password for {login:?}"),
        ));
    };
    let client_id = frame.get("client-id").filter(|c| !c.is_empty());
    // A client that reconnects at once may find its previous connection, closed on its side,
    // not yet gone on ours: wait a little for it before refusing the client id.
    let deadline = tokio::time::Instant::now() + CLIENT_ID_WAIT;
    let connection = loop {
        match ctx.broker.connect_from(client_id, "stomp", peer).await {
            Err(BrokerError::ClientIdInUse(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other?,
        }
    };
    connection.set_subject(subject)?;
    let auto = connection.session(AckMode::Auto)?;
    let (cx, cy) = frame
        .get("heart-beat")
        .filter(|_| version >= Version::V1_1)
        .and_then(|h| {
            let (a, b) = h.split_once(',')?;
            Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
        })
        .unwrap_or((0, 0));
    let (send_every, expect_every) = ctx.heartbeats.negotiate(cx, cy);
    if send_every.is_some() {
        beat.send_replace(send_every);
    }
    let read_timeout = match expect_every {
        Some(every) => ctx.heartbeats.read_timeout(every),
        None => LONGEST_HEARTBEAT,
    };
    let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis());
    let connected = Frame::new("CONNECTED")
        .header("version", version.as_str())
        .header("server", concat!("rust-broker/", env!("CARGO_PKG_VERSION")))
        .header("session", connection.id())
        .header(
            "heart-beat",
            format!("{},{}", ms(send_every), ms(expect_every)),
        );
    let _ = out.send(connected.to_bytes(version)).await;
    debug!(peer = %peer, version = version.as_str(), login = %login, "connected");
    Ok((
        Conn {
            ctx: Arc::clone(ctx),
            peer: peer.to_owned(),
            version,
            connection,
            auto,
            producers: HashMap::new(),
            subs: HashMap::new(),
            txs: HashMap::new(),
            unacked: Arc::new(Mutex::new(BTreeMap::new())),
            next_ack: Arc::new(AtomicU64::new(0)),
            out: out.clone(),
            window: Window::new(
                ctx.pipeline_window,
                ctx.pipeline_window_bytes,
                Arc::clone(ctx.broker.pipelined()),
                ctx.broker.memory().ok(),
            ),
            sends: 0,
            temps: HashMap::new(),
            naming: Naming {
                broker: Arc::clone(&ctx.broker),
                own: Arc::new(Mutex::new(HashMap::new())),
            },
        },
        read_timeout,
    ))
}

/// A SUBSCRIBE's selector as broker-core gets it: with ActiveMQ's
/// `convert_string_expressions:` prefix, as ActiveMQ's STOMP door adds it, since STOMP headers
/// are strings and `price > 10` should select `price:15`.
fn stomp_selector(frame: &Frame) -> Option<String> {
    let s = frame.get("selector").filter(|s| !s.trim().is_empty())?;
    Some(if s.starts_with(broker_core::CONVERT_STRING_EXPRESSIONS) {
        s.to_owned()
    } else {
        format!("{}{s}", broker_core::CONVERT_STRING_EXPRESSIONS)
    })
}

fn required<'a>(frame: &'a Frame, name: &str) -> Result<&'a str, Refusal> {
    frame
        .get(name)
        .ok_or_else(|| Refusal::new(format!("{} needs a {name} header", frame.command), ""))
}

impl Conn {
    /// A destination header as a destination, and whether it is a temporary one. This
    /// connection's `/temp-queue/x` is created at its first use, as ActiveMQ creates it.
    fn resolve(&mut self, text: &str) -> Result<(Destination, bool), Refusal> {
        let Some((prefix, kind, remote)) = TEMP_PREFIXES
            .into_iter()
            .find(|(p, _, _)| text.starts_with(p))
        else {
            return Ok((parse_destination(text)?, false));
        };
        let name = &text[prefix.len()..];
        if name.is_empty() {
            return Err(Refusal::new(
                format!("destination {text:?} has no name"),
                "",
            ));
        }
        if remote {
            return Ok((
                Destination {
                    kind,
                    name: name.into(),
                },
                true,
            ));
        }
        if let Some(d) = self.temps.get(text) {
            return Ok((d.clone(), true));
        }
        let d = self.connection.create_temporary(kind)?;
        self.temps.insert(text.to_owned(), d.clone());
        self.naming.own.lock().insert(d.clone(), text.to_owned());
        Ok((d, true))
    }

    /// Handles one frame; `Ok(true)` ends the connection cleanly (DISCONNECT).
    async fn handle(&mut self, frame: Frame) -> Result<bool, Refusal> {
        match frame.command.as_str() {
            // Boxed: each command's future is large in debug builds, and nesting them all in
            // the connection's future would make its poll use a deep stack.
            "SEND" => {
                if let Some(sent) = Box::pin(self.send(&frame)).await? {
                    sent.await.map_err(|e| {
                        Refusal::new(format!("{}: {e}", self.last_send(&frame)), "")
                    })?;
                }
            }
            "SUBSCRIBE" => Box::pin(self.subscribe(&frame)).await?,
            "UNSUBSCRIBE" => Box::pin(self.unsubscribe(&frame)).await?,
            "ACK" | "NACK" => {
                if let Some(acked) = Box::pin(self.ack(&frame)).await? {
                    acked.await?;
                }
            }
            "BEGIN" => {
                let id = required(&frame, "transaction")?;
                if self.txs.contains_key(id) {
                    return Err(Refusal::new(
                        format!("transaction {id:?} is already open"),
                        "",
                    ));
                }
                let s = self.connection.session(AckMode::Transacted)?;
                self.txs.insert(id.to_owned(), s);
            }
            "COMMIT" | "ABORT" => {
                let id = required(&frame, "transaction")?;
                let s = self
                    .txs
                    .remove(id)
                    .ok_or_else(|| Refusal::new(format!("no open transaction {id:?}"), ""))?;
                if frame.command == "COMMIT" {
                    s.commit().await?;
                } else {
                    s.rollback().await?;
                }
                s.close().await;
            }
            "DISCONNECT" => return Ok(true),
            "CONNECT" | "STOMP" => return Err(Refusal::new("already connected", "")),
            other => {
                return Err(Refusal::new(format!("{other} is not a client frame"), ""));
            }
        }
        Ok(false)
    }

    /// Whether a frame without a receipt can go into the window rather than be applied and
    /// awaited: a SEND outside a transaction, or an ACK outside a transaction.
    fn pipelines(&self, frame: &Frame) -> bool {
        let plain = frame.get("transaction").is_none();
        match frame.command.as_str() {
            "SEND" => {
                plain
                    && !frame
                        .get("destination")
                        .is_some_and(|d| d.starts_with("/queue/ActiveMQ.Admin."))
            }
            "ACK" => plain,
            _ => false,
        }
    }

    /// Applies a SEND or an ACK in order and leaves its store write in the window.
    async fn pipeline(&mut self, frame: Frame) -> Result<(), Refusal> {
        let bytes = frame.body.len();
        self.window.make_room(bytes).await.map_err(write_refusal)?;
        if frame.command == "SEND" {
            let sent = Box::pin(self.send(&frame)).await?;
            let what = self.last_send(&frame);
            if let Some(sent) = sent {
                self.window
                    .push(what, bytes, Box::pin(async move { sent.await.map(drop) }));
            }
        } else if let Some(acked) = Box::pin(self.ack(&frame)).await? {
            let what = match frame.get("id").or_else(|| frame.get("message-id")) {
                Some(id) => format!("ACK of {id}"),
                None => "ACK".to_owned(),
            };
            self.window.push(what, 0, Box::pin(acked));
        }
        Ok(())
    }

    /// How an ERROR names the SEND just handled: `SEND #12 to /queue/orders`.
    fn last_send(&self, frame: &Frame) -> String {
        format!(
            "SEND #{} to {}",
            self.sends,
            frame.get("destination").unwrap_or_default()
        )
    }

    /// Hands a SEND to the broker; the message has its place when this returns and is stored
    /// when the [`Submitted`] resolves. A refusal names the SEND.
    async fn send(&mut self, frame: &Frame) -> Result<Option<Submitted<MessageId>>, Refusal> {
        self.sends += 1;
        Box::pin(self.submit_send(frame)).await.map_err(|r| {
            Refusal::new(
                format!("{}: {}", self.last_send(frame), r.message),
                r.detail,
            )
        })
    }

    async fn submit_send(
        &mut self,
        frame: &Frame,
    ) -> Result<Option<Submitted<MessageId>>, Refusal> {
        let dest_text = required(frame, "destination")?;
        if let Some(queue) = dest_text.strip_prefix("/queue/ActiveMQ.Admin.Purge.") {
            self.auto
                .authorize(Operation::Admin, &Destination::queue(queue))?;
            let n = self.ctx.broker.purge(queue).await?;
            info!(peer = %self.peer, queue, purged = n, "purged");
            return Ok(None);
        }
        let (destination, temporary) = self.resolve(dest_text)?;
        let mut out = outgoing(frame)?;
        if let Some(r) = frame.get("reply-to") {
            out.reply_to = Some(self.resolve(r)?.0);
        }
        let session = match frame.get("transaction") {
            Some(tx) => self
                .txs
                .get(tx)
                .ok_or_else(|| Refusal::new(format!("no open transaction {tx:?}"), ""))?
                .clone(),
            None => self.auto.clone(),
        };
        // One producer per destination and session.
        let key = format!("{}\u{0}{dest_text}", frame.get("transaction").unwrap_or(""));
        if !self.producers.contains_key(&key) {
            if self.producers.len() >= 10_000 {
                self.producers.clear();
            }
            // A temporary one must exist, and a send fails once it is deleted, naming it.
            let producer = if temporary {
                session.temporary_producer(destination)?
            } else {
                session.producer(destination)?
            };
            self.producers.insert(key.clone(), producer);
        }
        let producer = self
            .producers
            .get(&key)
            .ok_or_else(|| Refusal::new("internal: producer vanished", ""))?;
        Ok(Some(producer.submit(out).await?))
    }

    async fn subscribe(&mut self, frame: &Frame) -> Result<(), Refusal> {
        let dest_text = required(frame, "destination")?.to_owned();
        let id = match frame.get("id") {
            Some(id) => id.to_owned(),
            None if self.version == Version::V1_0 => dest_text.clone(),
            None => return Err(Refusal::new("SUBSCRIBE needs an id header", "")),
        };
        if self.subs.contains_key(&id) {
            return Err(Refusal::new(
                format!("subscription {id:?} already exists"),
                "",
            ));
        }
        if frame.get("browser") == Some("true") {
            return self
                .browse(&id, &dest_text, stomp_selector(frame).as_deref())
                .await;
        }
        let (destination, temporary) = self.resolve(&dest_text)?;
        let mode = match frame.get("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::Individual,
            other => {
                return Err(Refusal::new(
                    format!("unknown ack mode {other:?}: auto, client or client-individual"),
                    "",
                ));
            }
        };
        let selector = stomp_selector(frame);
        let selector = selector.as_deref();
        let limits = &self.ctx.broker.config().limits;
        let prefetch = match frame.get("activemq.prefetchSize") {
            // Above ActiveMQ's maximum it is lowered to it, silently, as ActiveMQ does.
            Some(p) => p
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|p| *p > 0)
                .map(|p| broker_core::clamp_prefetch(i64::try_from(p).unwrap_or(i64::MAX)))
                .ok_or_else(|| Refusal::new(format!("bad activemq.prefetchSize {p:?}"), ""))?,
            None if destination.is_queue() => limits.queue_prefetch,
            None => limits.topic_prefetch,
        };
        let session = self.connection.session(mode)?;
        // A client-acked subscription's prefetch is the client's credit (below): broker-core
        // hands it a message only when the client has room for one, so a message never waits
        // for a consumer with no room while another has (ActiveMQ's hard prefetch limit).
        let core_prefetch = if mode == AckMode::Auto { prefetch } else { 0 };
        let durable = frame
            .get("activemq.subscriptionName")
            .or_else(|| frame.get("durable-subscription-name"));
        let consumer = match durable {
            Some(name) if destination.is_topic() => {
                let selector = match frame.get("selector") {
                    Some(raw) if self.legacy_durable_selector(&destination, name, raw).await => {
                        Some(raw)
                    }
                    _ => selector,
                };
                session
                    .durable_subscriber_with_prefetch(
                        destination,
                        name,
                        selector,
                        Some(core_prefetch),
                    )
                    .await?
            }
            // Only this connection's own: another's is refused by broker-core.
            _ if temporary => {
                session
                    .temporary_consumer(destination, selector, Some(core_prefetch))
                    .await?
            }
            // ActiveMQ's exclusive consumer, as its STOMP door reads the header.
            _ if frame.get("activemq.exclusive") == Some("true") => {
                session
                    .exclusive_consumer(destination, selector, Some(core_prefetch))
                    .await?
            }
            _ => {
                session
                    .consumer_with_prefetch(destination, selector, core_prefetch)
                    .await?
            }
        };
        let consumer = Arc::new(consumer);
        let credits = (mode != AckMode::Auto).then(|| Arc::new(Semaphore::new(prefetch as usize)));
        let pump = tokio::spawn(pump(
            Arc::clone(&consumer),
            id.clone(),
            self.version,
            credits.clone(),
            Arc::clone(&self.unacked),
            Arc::clone(&self.next_ack),
            self.out.clone(),
            self.naming.clone(),
        ));
        self.subs.insert(
            id,
            Sub {
                destination: dest_text,
                session,
                consumer,
                pump,
                credits,
            },
        );
        Ok(())
    }

    /// Whether the durable subscription `name` on `topic` exists with exactly `raw` as its
    /// selector, without the `convert_string_expressions:` prefix: made by a build before
    /// STOMP selectors got it. Re-subscribing with the same text keeps that subscription and
    /// its messages as they are (with JMS's comparisons), rather than replacing it, and
    /// dropping its messages, for a prefix the client never wrote.
    async fn legacy_durable_selector(&self, topic: &Destination, name: &str, raw: &str) -> bool {
        let Some(client_id) = self.connection.client_id() else {
            return false;
        };
        let Ok(all) = self.ctx.broker.durable_subscriptions().await else {
            return false;
        };
        all.iter().any(|(d, info)| {
            d == topic
                && info.key.client_id == client_id
                && info.key.name == name
                && info.selector.as_deref() == Some(raw)
        })
    }

    /// A queue browser (ActiveMQ's `browser:true`): the queue's messages without consuming
    /// them, then a MESSAGE with `browser:end`. `/queue/ActiveMQ.Statistics.Destination`
    /// browses the broker's per-destination counts instead (as ActiveMQ's statistics plugin).
    async fn browse(
        &mut self,
        id: &str,
        dest_text: &str,
        selector: Option<&str>,
    ) -> Result<(), Refusal> {
        // Parsed first: an invalid selector is refused before anything is sent.
        let max_nodes = self.ctx.broker.config().limits.max_selector_nodes;
        let selector = selector
            .map(|s| broker_core::Selector::parse_limited(s, max_nodes))
            .transpose()
            .map_err(BrokerError::from)?;
        let selected = |m: &Message| selector.as_ref().is_none_or(|s| s.matches(m));
        if dest_text.starts_with("/queue/ActiveMQ.Statistics.Destination") {
            for s in self.ctx.broker.destination_stats().await? {
                let mut f = Frame::new("MESSAGE")
                    .header("subscription", id)
                    .header("destination", dest_text)
                    .header("destinationName", stomp_destination(&s.destination))
                    .header("pending", s.pending.to_string())
                    .header("consumers", s.consumers.to_string())
                    .header("enqueued", s.enqueued.to_string())
                    .header("dequeued", s.dequeued.to_string())
                    .header("expired", s.expired.to_string());
                if let Some(k) = &s.subscription {
                    f = f.header("subscriptionName", k.to_string());
                }
                self.emit(f).await?;
            }
        } else {
            let destination = parse_destination(dest_text)?;
            if !destination.is_queue() {
                return Err(Refusal::new("only queues can be browsed", ""));
            }
            // Checked before the first page: a refused browse sends nothing.
            self.auto.authorize(Operation::Read, &destination)?;
            let mut after: Option<OrderKey> = None;
            loop {
                let page = self
                    .ctx
                    .broker
                    .browse_after(&destination.name, after, BROWSE_PAGE)
                    .await?;
                for m in page.iter().filter(|m| selected(m)) {
                    self.emit(message_frame(m, id, None, &self.naming)).await?;
                }
                match page.last() {
                    Some(m) if page.len() == BROWSE_PAGE => after = Some(OrderKey::of(m)),
                    _ => break,
                }
            }
            // Then those held in memory only, which the store does not have: STOMP sends
            // are non-persistent unless they say otherwise.
            for m in self.auto.browse_in_memory(&destination)? {
                if !selected(&m) {
                    continue;
                }
                self.emit(message_frame(&m, id, None, &self.naming)).await?;
            }
            // And those spooled to the temp store while memory was full.
            let mut spooled = self.auto.browse_spooled(&destination)?;
            loop {
                let page = spooled.next(BROWSE_PAGE).await;
                if page.is_empty() {
                    break;
                }
                for m in page.iter().filter(|m| selected(m)) {
                    self.emit(message_frame(m, id, None, &self.naming)).await?;
                }
            }
        }
        let end = Frame::new("MESSAGE")
            .header("subscription", id)
            .header("destination", dest_text)
            .header("browser", "end");
        self.emit(end).await
    }

    async fn emit(&self, f: Frame) -> Result<(), Refusal> {
        if self.out.send(f.to_bytes(self.version)).await {
            Ok(())
        } else {
            Err(Refusal::new("connection closed", ""))
        }
    }

    async fn unsubscribe(&mut self, frame: &Frame) -> Result<(), Refusal> {
        let id = match frame.get("id") {
            Some(id) => id.to_owned(),
            None => {
                let dest = frame.get("destination").unwrap_or_default();
                self.subs
                    .iter()
                    .find(|(_, s)| s.destination == dest)
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| Refusal::new("UNSUBSCRIBE needs an id header", ""))?
            }
        };
        let durable = frame
            .get("activemq.subscriptionName")
            .or_else(|| frame.get("durable-subscription-name"));
        match self.subs.remove(&id) {
            Some(sub) => self.close_sub(&id, sub).await,
            None if durable.is_none() => {
                return Err(Refusal::new(format!("no subscription {id:?}"), ""));
            }
            None => {}
        }
        if let Some(name) = durable {
            self.connection.unsubscribe(name).await?;
        }
        Ok(())
    }

    async fn close_sub(&self, id: &str, mut sub: Sub) {
        // Closing the consumer ends the pump's receive; a pump stuck writing to a client that
        // stopped reading is aborted after a grace period (its message, if client-acked, is
        // still with the session and is redelivered below).
        if let Some(c) = &sub.credits {
            c.close();
        }
        sub.consumer.close().await;
        if tokio::time::timeout(Duration::from_secs(1), &mut sub.pump)
            .await
            .is_err()
        {
            sub.pump.abort();
        }
        self.unacked.lock().retain(|_, u| u.sub != id);
        sub.session.close().await;
    }

    /// Applies an ACK or NACK to the subscription at once; an ACK's store write is returned
    /// to be awaited (or left in the window).
    async fn ack(&mut self, frame: &Frame) -> Result<Option<Submitted<()>>, Refusal> {
        let nack = frame.command == "NACK";
        // 1.2 acks by the MESSAGE's ack header; 1.0 and 1.1 by message-id (and subscription).
        let found = {
            let unacked = self.unacked.lock();
            let hit = if self.version == Version::V1_2 {
                let id = required(frame, "id")?;
                unacked.iter().find(|(_, u)| u.ack == id)
            } else {
                let mid = required(frame, "message-id")?;
                let sub = frame.get("subscription");
                unacked.iter().find(|(_, u)| {
                    u.received.id().to_string() == mid && sub.is_none_or(|s| s == u.sub)
                })
            };
            hit.map(|(seq, u)| (*seq, u.sub.clone(), u.received.clone()))
        };
        let Some((seq, sub_id, received)) = found else {
            return Err(Refusal::new(
                format!(
                    "{} for a message that is not awaiting an ack",
                    frame.command
                ),
                "",
            ));
        };
        let sub = self
            .subs
            .get(&sub_id)
            .ok_or_else(|| Refusal::new("the subscription is gone", ""))?;
        let cumulative = sub.session.mode() == AckMode::Client;
        let released = {
            let mut unacked = self.unacked.lock();
            let seqs: Vec<u64> = unacked
                .iter()
                .filter(|(s, u)| u.sub == sub_id && (**s == seq || (cumulative && **s < seq)))
                .map(|(s, _)| *s)
                .collect();
            for s in &seqs {
                unacked.remove(s);
            }
            seqs.len()
        };
        if let Some(c) = &sub.credits {
            c.add_permits(released);
        }
        if nack {
            sub.session.nack(&received).await?;
        } else if let Some(tx) = frame.get("transaction") {
            let t = self
                .txs
                .get(tx)
                .ok_or_else(|| Refusal::new(format!("no open transaction {tx:?}"), ""))?;
            sub.session.acknowledge_in(&received, t).await?;
        } else {
            // A receipt asked for means a client waits for this ack to be durable.
            let wait = if frame.get("receipt").is_some() {
                broker_core::AckWait::Receipt
            } else {
                broker_core::AckWait::NoReceipt
            };
            return Ok(Some(sub.session.submit_acknowledge(&received, wait).await?));
        }
        Ok(None)
    }

    /// The client is gone: transactions roll back, unacked messages go back (redelivered).
    async fn close(mut self) {
        let subs: Vec<(String, Sub)> = self.subs.drain().collect();
        for (id, sub) in subs {
            self.close_sub(&id, sub).await;
        }
        for (_, s) in self.txs.drain() {
            let _ = s.rollback().await;
            s.close().await;
        }
        self.connection.close().await;
        debug!(peer = %self.peer, "connection closed");
    }
}

/// Moves messages from a consumer to the connection's writer.
#[allow(clippy::too_many_arguments)]
async fn pump(
    consumer: Arc<Consumer>,
    sub: String,
    version: Version,
    credits: Option<Arc<Semaphore>>,
    unacked: Arc<Mutex<BTreeMap<u64, Unacked>>>,
    next_ack: Arc<AtomicU64>,
    out: OutSender,
    naming: Naming,
) {
    loop {
        let Some(batch) = crate::outbound::next_batch(&consumer, credits.as_deref()).await else {
            return;
        };
        for _ in 0..batch {
            if !forward_one(
                &consumer,
                &sub,
                version,
                credits.is_some(),
                &unacked,
                &next_ack,
                &out,
                &naming,
            )
            .await
            {
                return;
            }
        }
    }
}

/// Receives one message and queues it for the client; false when the pump should stop.
#[allow(clippy::too_many_arguments)]
async fn forward_one(
    consumer: &Consumer,
    sub: &str,
    version: Version,
    client_acked: bool,
    unacked: &Mutex<BTreeMap<u64, Unacked>>,
    next_ack: &AtomicU64,
    out: &OutSender,
    naming: &Naming,
) -> bool {
    let received = match consumer.receive().await {
        Ok(Some(r)) => r,
        Ok(None) => return false,
        Err(e) => {
            warn!(subscription = %sub, "receive failed: {e}");
            return false;
        }
    };
    let seq = next_ack.fetch_add(1, Ordering::Relaxed);
    let ack = seq.to_string();
    let frame = message_frame(
        received.message(),
        sub,
        (version == Version::V1_2).then_some(ack.as_str()),
        naming,
    );
    if client_acked {
        unacked.lock().insert(
            seq,
            Unacked {
                sub: sub.to_owned(),
                ack,
                received,
            },
        );
    }
    out.send(frame.to_bytes(version)).await
}
