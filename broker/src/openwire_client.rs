//! A small OpenWire client (ActiveMQ's native protocol, port 61616): what `broker producer` and
//! `broker consumer` speak when the URL's port answers in OpenWire. It uses the `openwire`
//! codec crate, loose encoding and no marshal cache, and does what the stock Java client does
//! on the wire for the same calls: WireFormatInfo both ways, ConnectionInfo (user and
//! password), one SessionInfo, ProducerInfo/ConsumerInfo, messages, MessageAck, TransactionInfo,
//! RemoveInfo and ShutdownInfo on close.
//!
//! One task drives the socket: a synchronous command waits for its Response, and whatever else
//! arrives meanwhile (dispatched messages, the broker's KeepAliveInfo) is kept or answered. An
//! ExceptionResponse or a ConnectionError becomes [`ClientError::Refused`] naming the Java
//! exception class, as a JMS client would throw it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::openwire::{
    AckType, Command, ConnectionId, ConnectionInfo, ConsumerInfo, Destination, KeepAliveInfo,
    LocalTransactionId, Message, MessageAck, MessageDispatch, MessageId, MessageKind, MessagePull,
    ProducerId, ProducerInfo, RemoveInfo, RemoveTarget, SessionId, SessionInfo, ShutdownInfo,
    Throwable, TransactionId, TransactionInfo, TransactionType, WireFormat, WireFormatInfo,
    WireFormatOptions,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{ClientError, ConnectOptions, Io, Result, open};
use crate::url::Endpoint;

pub use ::openwire::ConsumerId;

/// The version offered: what activemq-client 5.17/5.18 offers; the broker may answer lower.
const VERSION: i32 = ::openwire::wireformat::MAX_VERSION;

/// How long to wait for the broker's WireFormatInfo, which an OpenWire broker sends at once.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections made by this process, for unique connection ids.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// A message handed to the application, with what acknowledging it needs.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub consumer_id: ConsumerId,
    pub message: Message,
    /// How often the broker delivered it before (JMSRedelivered when above 0).
    pub redelivery_counter: i32,
}

impl Delivery {
    pub fn redelivered(&self) -> bool {
        self.redelivery_counter > 0
    }

    /// The body as text: a TextMessage's text, any other kind's bytes read as UTF-8.
    pub fn body_text(&self) -> String {
        let max = ::openwire::DEFAULT_MAX_INFLATED_SIZE;
        match self.message.kind {
            MessageKind::Text => self.message.text(max).ok().flatten().unwrap_or_default(),
            _ => self
                .message
                .body(max)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
        }
    }
}

/// How a consumer acknowledges (JMS's modes as the stock client sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// A standard ack covers every message delivered up to the one it names.
    Standard,
    /// Each message is acknowledged on its own (`INDIVIDUAL_ACKNOWLEDGE`).
    Individual,
}

/// What a consumer subscribes to.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    pub selector: Option<String>,
    /// A durable topic subscription of that name (the connection needs a client id).
    pub durable: Option<String>,
    /// `None`: ActiveMQ's default for the kind (1000 for a queue, 100 for a durable
    /// subscriber, 32766 for a topic).
    pub prefetch: Option<u32>,
}

pub struct OpenWireClient {
    io: Box<dyn Io>,
    wf: WireFormat,
    buf: BytesMut,
    out: BytesMut,
    connection_id: ConnectionId,
    session_id: SessionId,
    producer_id: ProducerId,
    next_command: i32,
    next_sequence: i64,
    next_consumer: i64,
    next_tx: i64,
    /// Messages that arrived while waiting for a response.
    pending: VecDeque<Delivery>,
    /// A consumer with prefetch 0: the broker sends it a message only when it pulls one.
    pulling: Option<(ConsumerId, Destination)>,
    pub endpoint: Endpoint,
}

/// The destination a tool's `--destination` names: `/queue/X` or `queue://X` a queue,
/// `/topic/X` or `topic://X` a topic, a bare name a queue (as ActiveMQ's own tools take it).
pub fn destination(name: &str) -> Result<Destination> {
    let d = if let Some(q) = name
        .strip_prefix("/queue/")
        .or_else(|| name.strip_prefix("queue://"))
    {
        Destination::queue(q)
    } else if let Some(t) = name
        .strip_prefix("/topic/")
        .or_else(|| name.strip_prefix("topic://"))
    {
        Destination::topic(t)
    } else if name.starts_with('/') {
        return Err(ClientError::Protocol(format!(
            "{name:?}: over OpenWire a destination is /queue/<name> or /topic/<name>"
        )));
    } else {
        Destination::queue(name)
    };
    if d.physical_name.is_empty() {
        return Err(ClientError::Protocol(format!(
            "{name:?} names no destination"
        )));
    }
    Ok(d)
}

fn refused(t: Option<&Throwable>, fallback: &str) -> ClientError {
    ClientError::Refused {
        class: t
            .and_then(|t| t.class_name.clone())
            .unwrap_or_else(|| "javax.jms.JMSException".into()),
        message: t
            .and_then(|t| t.message.clone())
            .unwrap_or_else(|| fallback.into()),
    }
}

impl OpenWireClient {
    /// Opens a connection, agrees the wire format, logs in and opens a session.
    pub async fn connect(endpoint: &Endpoint, opts: &ConnectOptions) -> Result<OpenWireClient> {
        let io = open(endpoint, opts).await?;
        let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // ActiveMQ's shape (`ID:<host>-<port>-<time>-<n>:<n>`), unique per process and run:
        // a broker takes a repeated id for the same client reconnecting.
        let connection_id = ConnectionId::new(format!(
            "ID:broker-cli-{}-{started}-0:{n}",
            std::process::id()
        ));
        let session_id = SessionId {
            connection_id: connection_id.value.clone(),
            value: 1,
        };
        let producer_id = ProducerId {
            connection_id: connection_id.value.clone(),
            session_id: 1,
            value: 1,
        };
        let mut c = OpenWireClient {
            io,
            wf: WireFormat::default(),
            buf: BytesMut::with_capacity(8192),
            out: BytesMut::with_capacity(8192),
            connection_id,
            session_id,
            producer_id,
            next_command: 0,
            next_sequence: 0,
            next_consumer: 0,
            next_tx: 0,
            pending: VecDeque::new(),
            pulling: None,
            endpoint: endpoint.clone(),
        };
        // The broker speaks first; its WireFormatInfo is loose whatever is agreed.
        let first = tokio::time::timeout(HELLO_TIMEOUT, c.read_command())
            .await
            .map_err(|_| {
                ClientError::Protocol(format!(
                    "{}:{} sent no OpenWire WireFormatInfo within {HELLO_TIMEOUT:?}: not an \
                     OpenWire port?",
                    endpoint.host, endpoint.port
                ))
            })??;
        let theirs = match first {
            Command::WireFormatInfo(w) => w,
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected WireFormatInfo, got command type {}",
                    other.data_type()
                )));
            }
        };
        // Loose encoding and no cache, which the codec speaks; no inactivity monitoring
        // either (0 turns it off on both sides): a tool runs briefly and reads or writes all
        // along, and a consumer waiting `--idle-secs` would otherwise need a timer task.
        let options = WireFormatOptions {
            max_inactivity_duration: 0,
            max_inactivity_duration_initial_delay: 0,
            provider_name: Some("broker-cli".into()),
            ..WireFormatOptions::broker_default()
        };
        let ours = WireFormatInfo::new(VERSION, &options)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        c.write(&Command::WireFormatInfo(ours.clone()))?;
        c.flush().await?;
        c.wf = ::openwire::negotiate(&theirs, &ours).map_err(|e| {
            ClientError::Protocol(format!("the broker's wire format is refused: {e}"))
        })?;
        let info = ConnectionInfo {
            connection_id: c.connection_id.clone(),
            client_id: opts.client_id.clone(),
            user_name: Some(opts.login.clone()),
            password: Some(opts.passcode.clone()),
            ..ConnectionInfo::default()
        };
        c.request(Command::ConnectionInfo(info)).await?;
        let session = SessionInfo {
            session_id: c.session_id.clone(),
            ..SessionInfo::default()
        };
        c.request(Command::SessionInfo(session)).await?;
        Ok(c)
    }

    fn command_id(&mut self) -> i32 {
        self.next_command = self.next_command.wrapping_add(1);
        self.next_command
    }

    /// Encodes `cmd` into the write buffer (sent by [`Self::flush`]).
    fn write(&mut self, cmd: &Command) -> Result<()> {
        ::openwire::encode(cmd, &self.wf, &mut self.out)
            .map_err(|e| ClientError::Protocol(format!("cannot encode: {e}")))?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let r = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        }
        .await;
        self.out.clear();
        if let Err(e) = r {
            // A broker that refused an asynchronous command said why before it closed.
            return Err(self.why_closed().await.unwrap_or(ClientError::Io(e)));
        }
        Ok(())
    }

    /// What the broker said last before it closed, if it said anything (a ConnectionError).
    async fn why_closed(&mut self) -> Option<ClientError> {
        let read = async {
            loop {
                match self.read_command().await {
                    Ok(Command::ConnectionError(e)) => {
                        return Some(refused(e.exception.as_ref(), "connection error"));
                    }
                    Ok(_) => {}
                    Err(e @ ClientError::Refused { .. }) => return Some(e),
                    Err(_) => return None,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .ok()
            .flatten()
    }

    async fn read_command(&mut self) -> Result<Command> {
        loop {
            match ::openwire::decode(&mut self.buf, &self.wf) {
                Ok(Some(c)) => return Ok(c),
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// The next command that is not for this client's bookkeeping: messages are returned,
    /// keep-alives answered, a ConnectionError or a ShutdownInfo ends the connection.
    async fn next(&mut self) -> Result<Command> {
        loop {
            match self.read_command().await? {
                Command::KeepAliveInfo(k) if k.response_required => {
                    self.write(&Command::KeepAliveInfo(KeepAliveInfo::default()))?;
                    self.flush().await?;
                }
                Command::KeepAliveInfo(_) | Command::BrokerInfo(_) => {}
                Command::ConnectionError(e) => {
                    return Err(refused(e.exception.as_ref(), "connection error"));
                }
                Command::ShutdownInfo(_) => return Err(ClientError::Closed),
                other => return Ok(other),
            }
        }
    }

    /// Sends `cmd` with `responseRequired` and waits for its Response; messages arriving
    /// meanwhile are kept for [`Self::recv`].
    async fn request(&mut self, mut cmd: Command) -> Result<()> {
        let id = self.command_id();
        set_header(&mut cmd, id, true);
        self.write(&cmd)?;
        self.flush().await?;
        self.wait_for(id).await
    }

    async fn wait_for(&mut self, id: i32) -> Result<()> {
        loop {
            match self.next().await? {
                Command::Response(r) if r.correlation_id == id => return Ok(()),
                Command::ExceptionResponse(r) if r.correlation_id == id => {
                    return Err(refused(r.exception.as_ref(), "refused"));
                }
                // An earlier asynchronous command failed: the connection is no good either.
                Command::ExceptionResponse(r) => {
                    return Err(refused(r.exception.as_ref(), "refused"));
                }
                Command::MessageDispatch(d) => self.keep(d),
                _ => {}
            }
        }
    }

    fn keep(&mut self, d: MessageDispatch) {
        if let Some(m) = d.message {
            self.pending.push_back(Delivery {
                consumer_id: d.consumer_id,
                message: *m,
                redelivery_counter: d.redelivery_counter,
            });
        }
    }

    /// Declares the connection's producer (ActiveMQ's anonymous producer: each message names
    /// its destination).
    pub async fn producer(&mut self) -> Result<()> {
        let info = ProducerInfo {
            producer_id: self.producer_id.clone(),
            ..ProducerInfo::default()
        };
        self.request(Command::ProducerInfo(info)).await
    }

    /// Sends a TextMessage. `sync`: with `responseRequired`, returning once the broker has it
    /// (stored, if persistent), an ExceptionResponse as [`ClientError::Refused`]; otherwise
    /// written and not waited for, as the Java client's asynchronous sends.
    pub async fn send_text(
        &mut self,
        to: &Destination,
        text: &str,
        persistent: bool,
        sync: bool,
        tx: Option<&TransactionId>,
    ) -> Result<()> {
        self.next_sequence += 1;
        let mut m = Message::new(MessageKind::Text);
        m.set_text(Some(text))
            .map_err(|e| ClientError::Protocol(format!("cannot encode the body: {e}")))?;
        m.producer_id = Some(self.producer_id.clone());
        m.destination = Some(to.clone());
        m.message_id = Some(MessageId {
            text_view: None,
            producer_id: Some(self.producer_id.clone()),
            producer_sequence_id: self.next_sequence,
            broker_sequence_id: 0,
        });
        m.persistent = persistent;
        m.transaction_id = tx.cloned();
        m.timestamp = now_ms();
        let mut cmd = Command::Message(Box::new(m));
        if sync {
            self.request(cmd).await
        } else {
            let id = self.command_id();
            set_header(&mut cmd, id, false);
            self.write(&cmd)?;
            self.flush().await
        }
    }

    /// Begins a local transaction (sent without waiting, as the Java client does).
    pub async fn begin(&mut self) -> Result<TransactionId> {
        self.next_tx += 1;
        let tx = TransactionId::Local(LocalTransactionId {
            value: self.next_tx,
            connection_id: self.connection_id.clone(),
        });
        let mut cmd = Command::TransactionInfo(self.tx_info(&tx, TransactionType::Begin));
        let id = self.command_id();
        set_header(&mut cmd, id, false);
        self.write(&cmd)?;
        self.flush().await?;
        Ok(tx)
    }

    /// Commits a local transaction and waits for the broker's answer.
    pub async fn commit(&mut self, tx: &TransactionId) -> Result<()> {
        let info = self.tx_info(tx, TransactionType::CommitOnePhase);
        self.request(Command::TransactionInfo(info)).await
    }

    fn tx_info(&self, tx: &TransactionId, kind: TransactionType) -> TransactionInfo {
        TransactionInfo {
            connection_id: self.connection_id.clone(),
            transaction_id: Some(tx.clone()),
            transaction_type: kind,
            ..TransactionInfo::default()
        }
    }

    /// Subscribes; messages then arrive through [`Self::recv_timeout`].
    pub async fn subscribe(&mut self, to: &Destination, s: &Subscription) -> Result<ConsumerId> {
        self.next_consumer += 1;
        let consumer_id = ConsumerId {
            connection_id: self.connection_id.value.clone(),
            session_id: self.session_id.value,
            value: self.next_consumer,
        };
        let prefetch = match s.prefetch {
            Some(p) => i32::try_from(p).unwrap_or(i32::MAX),
            None if to.kind.is_queue() => 1000,
            None if s.durable.is_some() => 100,
            None => 32766,
        };
        let info = ConsumerInfo {
            consumer_id: consumer_id.clone(),
            destination: Some(to.clone()),
            prefetch_size: prefetch,
            maximum_pending_message_limit: 0,
            dispatch_async: true,
            selector: s.selector.clone(),
            subscription_name: s.durable.clone(),
            priority: 0,
            ..ConsumerInfo::default()
        };
        self.request(Command::ConsumerInfo(Box::new(info))).await?;
        self.pulling = (prefetch == 0).then(|| (consumer_id.clone(), to.clone()));
        Ok(consumer_id)
    }

    /// A queue's messages as a queue browser sees them (`ConsumerInfo.browser`): nothing is
    /// taken or locked; the broker ends the enumeration with a MessageDispatch without a
    /// message, and the browser is closed after it.
    pub async fn browse(&mut self, queue: &Destination) -> Result<Vec<Delivery>> {
        if !queue.kind.is_queue() {
            return Err(ClientError::Protocol(format!(
                "only a queue can be browsed, not the topic {}",
                queue.physical_name
            )));
        }
        self.next_consumer += 1;
        let consumer_id = ConsumerId {
            connection_id: self.connection_id.value.clone(),
            session_id: self.session_id.value,
            value: self.next_consumer,
        };
        let info = ConsumerInfo {
            consumer_id: consumer_id.clone(),
            browser: true,
            destination: Some(queue.clone()),
            prefetch_size: 500,
            dispatch_async: true,
            ..ConsumerInfo::default()
        };
        self.request(Command::ConsumerInfo(Box::new(info))).await?;
        let mut out: Vec<Delivery> = self
            .pending
            .drain(..)
            .filter(|d| d.consumer_id == consumer_id)
            .collect();
        loop {
            match self.next().await? {
                Command::MessageDispatch(d) if d.consumer_id == consumer_id => match d.message {
                    Some(m) => out.push(Delivery {
                        consumer_id: d.consumer_id,
                        message: *m,
                        redelivery_counter: d.redelivery_counter,
                    }),
                    None => break,
                },
                Command::ExceptionResponse(r) => {
                    return Err(refused(r.exception.as_ref(), "refused"));
                }
                _ => {}
            }
        }
        self.request(Command::RemoveInfo(RemoveInfo {
            object_id: RemoveTarget::Consumer(consumer_id),
            last_delivered_sequence_id: -1,
            ..RemoveInfo::default()
        }))
        .await?;
        Ok(out)
    }

    /// The next message, or `None` when none comes within `d`.
    pub async fn recv_timeout(&mut self, d: Duration) -> Result<Option<Delivery>> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        // Prefetch 0: ask for one message, waiting as long as this call does (the broker answers
        // with an empty dispatch if none comes), as the Java client's receive(timeout) does.
        if let Some((consumer_id, destination)) = self.pulling.clone() {
            let pull = MessagePull {
                consumer_id,
                destination: Some(destination),
                timeout: i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1),
                ..MessagePull::default()
            };
            let id = self.command_id();
            let mut cmd = Command::MessagePull(pull);
            set_header(&mut cmd, id, false);
            self.write(&cmd)?;
            self.flush().await?;
        }
        let pulling = self.pulling.is_some();
        let wait = async {
            loop {
                match self.next().await? {
                    // A pull that found nothing.
                    Command::MessageDispatch(MessageDispatch { message: None, .. }) if pulling => {
                        return Ok(None);
                    }
                    Command::MessageDispatch(MessageDispatch {
                        consumer_id,
                        message: Some(m),
                        redelivery_counter,
                        ..
                    }) => {
                        return Ok(Some(Delivery {
                            consumer_id,
                            message: *m,
                            redelivery_counter,
                        }));
                    }
                    Command::ExceptionResponse(r) => {
                        return Err(refused(r.exception.as_ref(), "refused"));
                    }
                    _ => {}
                }
            }
        };
        // The pull's own answer may come a little after `d`: wait for it a moment longer, so
        // that a message the broker dispatched at the deadline is not left unread.
        let limit = if pulling {
            d + Duration::from_secs(1)
        } else {
            d
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(r) => r,
            Err(_) => Ok(None),
        }
    }

    /// Acknowledges `last` and, for a standard ack, every message the consumer had before it
    /// (`count` of them in all). Not waited for, as the Java client's acks.
    pub async fn ack(&mut self, last: &Delivery, count: i32, mode: AckMode) -> Result<()> {
        let ack = MessageAck {
            destination: last.message.destination.clone(),
            consumer_id: last.consumer_id.clone(),
            ack_type: match mode {
                AckMode::Standard => AckType::Standard,
                AckMode::Individual => AckType::Individual,
            },
            first_message_id: None,
            last_message_id: last.message.message_id.clone(),
            message_count: count.max(1),
            ..MessageAck::default()
        };
        let mut cmd = Command::MessageAck(Box::new(ack));
        let id = self.command_id();
        set_header(&mut cmd, id, false);
        self.write(&cmd)?;
        self.flush().await
    }

    /// Closes a consumer: the messages it had prefetched past `last_delivered` (not handed to
    /// the application) go back to the broker as never delivered.
    pub async fn close_consumer(
        &mut self,
        consumer: &ConsumerId,
        last_delivered: Option<&Delivery>,
    ) -> Result<()> {
        let last = last_delivered
            .and_then(|d| d.message.message_id.as_ref())
            .map_or(-1, |id| id.broker_sequence_id);
        self.pending.clear();
        self.request(Command::RemoveInfo(RemoveInfo {
            object_id: RemoveTarget::Consumer(consumer.clone()),
            last_delivered_sequence_id: last,
            ..RemoveInfo::default()
        }))
        .await
    }

    /// Closes the connection as the Java client does: RemoveInfo for it (waited for), then
    /// ShutdownInfo.
    pub async fn disconnect(mut self) -> Result<()> {
        self.request(Command::RemoveInfo(RemoveInfo {
            object_id: RemoveTarget::Connection(self.connection_id.clone()),
            last_delivered_sequence_id: -1,
            ..RemoveInfo::default()
        }))
        .await?;
        let mut cmd = Command::ShutdownInfo(ShutdownInfo::default());
        let id = self.command_id();
        set_header(&mut cmd, id, false);
        self.write(&cmd)?;
        self.flush().await?;
        self.io.shutdown().await.ok();
        Ok(())
    }
}

/// Sets a command's id and whether it wants a response.
fn set_header(cmd: &mut Command, id: i32, response_required: bool) {
    macro_rules! set {
        ($($v:ident),*) => {
            match cmd {
                $(Command::$v(c) => {
                    c.command_id = id;
                    c.response_required = response_required;
                })*
                _ => {}
            }
        };
    }
    set!(
        ConnectionInfo,
        SessionInfo,
        ConsumerInfo,
        ProducerInfo,
        TransactionInfo,
        RemoveInfo,
        ShutdownInfo,
        MessageAck,
        Message
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tool_destinations_map_to_openwire_ones() {
        assert_eq!(
            destination("/queue/A.B").unwrap(),
            Destination::queue("A.B")
        );
        assert_eq!(destination("queue://A").unwrap(), Destination::queue("A"));
        assert_eq!(destination("/topic/T").unwrap(), Destination::topic("T"));
        assert_eq!(destination("topic://T").unwrap(), Destination::topic("T"));
        assert_eq!(destination("plain").unwrap(), Destination::queue("plain"));
        assert!(destination("/queue/").is_err());
        assert!(destination("/temp-queue/x").is_err());
    }
}
