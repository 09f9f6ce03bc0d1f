//! The client side of the in-process API: connections, sessions, producers and consumers,
//! with JMS's acknowledgement modes and transactions.
//!
//! A session is single-threaded in JMS; here its state sits behind an async mutex, so calls on
//! one session run one at a time (which is what gives transactions and CLIENT acks their
//! order), while different sessions never wait for each other and their store writes share
//! fsyncs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex as SyncMutex;
use store_api::{
    Body, Destination, DestinationKind, Message, MessageId, SubscriptionKey, TransactionId, TxOp,
    Value, Xid,
};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tracing::warn;

use crate::authorization::{Operation, Subject};
use crate::core::advisory::Advisory;
use crate::core::{
    Core, Placed, PreparedOp, QueueFanIn, WildcardDurable, now_ms, scheduler, temporary,
};
use crate::destination_filter::DestinationFilter;
use crate::dispatch::{Credit, Delivery, Dispatcher, Flow, Source};
use crate::error::{BrokerError, Result};
use crate::selector::Selector;

mod producer;
mod submitted;
mod usage;
pub use producer::{DeclaredProducer, Producer};
pub use submitted::Submitted;
use usage::{ConnectionUsage, Slot};

/// The largest prefetch a consumer gets, as ActiveMQ's `ActiveMQPrefetchPolicy.MAX_PREFETCH_SIZE`
/// (`Short.MAX_VALUE - 1`): a larger one asked for (STOMP's `activemq.prefetchSize`, OpenWire's
/// `ConsumerInfo.prefetchSize`) is lowered to it silently, as ActiveMQ does.
pub const MAX_PREFETCH: u32 = 32_766;

/// A prefetch a client asked for, as the broker uses it: negative counts as 0, above
/// [`MAX_PREFETCH`] as `MAX_PREFETCH`.
pub fn clamp_prefetch(asked: i64) -> u32 {
    asked.clamp(0, i64::from(MAX_PREFETCH)) as u32
}

/// Whether a client waits for an ack to be durable: a receipt asked for, a response required.
/// An ack nobody waits for may share a later write's fsync (see
/// `store_api::DestinationStore::remove_unwaited`); it is durable when it completes either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWait {
    /// Someone waits: written at once, in a group commit of its own if need be.
    Receipt,
    /// Nobody waits (auto acks, acks without a receipt): may wait a moment for company.
    NoReceipt,
}

/// How a session acknowledges what it consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Each message is acked as `receive` returns it.
    Auto,
    /// [`Session::acknowledge`] acks that message and every earlier one the session received.
    Client,
    /// Acked lazily in batches: cheaper, and a crash may deliver some again.
    DupsOk,
    /// [`Session::acknowledge`] acks exactly that message.
    Individual,
    /// Sends and receives take effect at [`Session::commit`]; [`Session::rollback`] undoes
    /// them (received messages are redelivered).
    Transacted,
}

/// A message to send: body and headers; the broker fills in the id, destination and timestamp.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: Body,
    pub priority: u8,
    pub persistent: bool,
    /// Absolute expiry in milliseconds since the epoch, 0 for never; see also `time_to_live`.
    pub expiration: i64,
    pub time_to_live: Option<Duration>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<Destination>,
    pub message_type: Option<String>,
    pub group_id: Option<String>,
    pub group_seq: i32,
    pub properties: BTreeMap<String, Value>,
    /// The id the client gave the message (OpenWire's JMSMessageID), kept instead of one the
    /// producer makes up: the id a Java producer saw after `send` is the one its consumers
    /// see (request/reply correlates on it), and a resend of a message already stored (the
    /// failover transport resends what was in flight when the connection broke) is
    /// recognised as the store's `Duplicate` and answered as sent, not stored twice.
    pub id: Option<MessageId>,
    /// Deliveries it already had elsewhere: 0 for a new message; a network bridge passes on
    /// the count of a message it sends again after a lost answer, so that the copy a
    /// consumer may see twice comes flagged as redelivered.
    pub redelivery_count: u32,
}

impl Outgoing {
    pub fn new(body: Body) -> Self {
        Outgoing {
            body,
            priority: store_api::DEFAULT_PRIORITY,
            persistent: true,
            expiration: 0,
            time_to_live: None,
            correlation_id: None,
            reply_to: None,
            message_type: None,
            group_id: None,
            group_seq: 0,
            properties: BTreeMap::new(),
            id: None,
            redelivery_count: 0,
        }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Outgoing::new(Body::Text(text.into()))
    }

    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Outgoing::new(Body::Bytes(bytes.into()))
    }

    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.time_to_live = Some(ttl);
        self
    }

    pub fn expiration(mut self, at_ms: i64) -> Self {
        self.expiration = at_ms;
        self
    }

    pub fn property(mut self, name: impl Into<String>, value: Value) -> Self {
        self.properties.insert(name.into(), value);
        self
    }

    /// The message this becomes once the broker has given it an id, a destination and its
    /// send time (from which a time-to-live counts).
    pub(crate) fn into_message(self, id: MessageId, destination: Destination, now: i64) -> Message {
        let expiration = match self.time_to_live {
            Some(ttl) if !ttl.is_zero() => now.saturating_add(ttl.as_millis() as i64),
            _ => self.expiration,
        };
        Message {
            id,
            destination,
            sequence: 0,
            priority: self.priority,
            timestamp: now,
            expiration,
            persistent: self.persistent,
            redelivery_count: self.redelivery_count,
            correlation_id: self.correlation_id,
            reply_to: self.reply_to,
            message_type: self.message_type,
            group_id: self.group_id,
            group_seq: self.group_seq,
            properties: self.properties,
            body: self.body,
        }
    }

    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    pub fn message_type(mut self, t: impl Into<String>) -> Self {
        self.message_type = Some(t.into());
        self
    }
}

/// A message as a consumer receives it.
#[derive(Debug, Clone)]
pub struct Received {
    message: Arc<Message>,
    dispatcher: Arc<Dispatcher>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatcher({})", self.destination)
    }
}

impl Received {
    pub fn message(&self) -> &Message {
        &self.message
    }

    pub fn id(&self) -> &MessageId {
        &self.message.id
    }

    /// True when an earlier delivery of this message was not acknowledged.
    pub fn redelivered(&self) -> bool {
        self.message.redelivery_count > 0
    }

    pub fn text(&self) -> Option<&str> {
        match &self.message.body {
            Body::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn into_message(self) -> Message {
        Arc::unwrap_or_clone(self.message)
    }
}

pub(crate) struct ConnectionInner {
    core: Arc<Core>,
    id: String,
    client_id: Option<String>,
    remote: Option<String>,
    protocol: Option<String>,
    sessions: SyncMutex<Vec<Weak<SessionInner>>>,
    closed: AtomicBool,
    /// What this connection holds, against the per-connection caps.
    usage: Arc<ConnectionUsage>,
    /// Its logged-in user, set once by the protocol door after login; unset for a
    /// connection of the broker's own, which may do everything.
    subject: Arc<OnceLock<Arc<Subject>>>,
}

/// What the console shows of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: String,
    pub client_id: Option<String>,
    /// The peer's address, when the transport gave one.
    pub remote: Option<String>,
    /// The wire protocol it speaks (`stomp`, `openwire`, ...); none for one in process.
    pub protocol: Option<String>,
    pub sessions: usize,
    pub consumers: usize,
}

impl ConnectionInner {
    pub(crate) fn info(&self) -> Option<ConnectionInfo> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let sessions: Vec<Arc<SessionInner>> = self
            .sessions
            .lock()
            .iter()
            .filter_map(|s| s.upgrade())
            .collect();
        Some(ConnectionInfo {
            id: self.id.clone(),
            client_id: self.client_id.clone(),
            remote: self.remote.clone(),
            protocol: self.protocol.clone(),
            sessions: sessions
                .iter()
                .filter(|s| !s.closed.load(Ordering::Acquire))
                .count(),
            consumers: sessions.iter().map(|s| s.consumers.lock().len()).sum(),
        })
    }

    /// The broker is stopping: consumers see the end of their stream; nothing is acked.
    pub(crate) fn abort(&self) {
        self.closed.store(true, Ordering::Release);
        for s in self.sessions.lock().drain(..).filter_map(|s| s.upgrade()) {
            s.closed.store(true, Ordering::Release);
            for (id, target) in s.consumers.lock().drain(..) {
                target.unregister(&s.core, id);
            }
        }
    }
}

/// A client's connection to the broker.
pub struct Connection {
    inner: Arc<ConnectionInner>,
}

impl Connection {
    pub(crate) fn open(
        core: Arc<Core>,
        client_id: Option<&str>,
        peer: Option<(&str, &str)>,
    ) -> Result<Connection> {
        if let Some(cid) = client_id {
            if cid.is_empty() {
                return Err(BrokerError::Invalid("a client id must not be empty".into()));
            }
            if !core.client_ids.lock().insert(cid.to_owned()) {
                return Err(BrokerError::ClientIdInUse(cid.to_owned()));
            }
        }
        let max = core.config.limits.max_connections;
        let open = core
            .connections
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .count();
        if open >= max {
            if let Some(cid) = client_id {
                core.client_ids.lock().remove(cid);
            }
            return Err(BrokerError::ConnectionLimit {
                what: "too many connections to this broker".into(),
                limit: max as u64,
                key: "limits.max_connections",
            });
        }
        let id = format!("ID:{}-{}", core.incarnation, core.next_id());
        let inner = Arc::new(ConnectionInner {
            core: Arc::clone(&core),
            id,
            client_id: client_id.map(str::to_owned),
            remote: peer.map(|(_, address)| address.to_owned()),
            protocol: peer.map(|(protocol, _)| protocol.to_owned()),
            sessions: SyncMutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            usage: ConnectionUsage::new(),
            subject: Arc::new(OnceLock::new()),
        });
        let mut all = core.connections.lock();
        all.retain(|c| c.strong_count() > 0);
        all.push(Arc::downgrade(&inner));
        drop(all);
        core.advise(Advisory::Connection {
            connection_id: &inner.id,
            client_id: inner.client_id.as_deref(),
            started: true,
        });
        Ok(Connection { inner })
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn client_id(&self) -> Option<&str> {
        self.inner.client_id.as_deref()
    }

    /// Binds this connection to its logged-in user: every later operation of its sessions
    /// is checked against the user's `[[authorization]]` grants. Set once; a second call is
    /// ignored (a connection does not change user).
    /// Who this connection is, once logged in; refused, and to be closed by the caller, when
    /// the user already has `limits.max_connections_per_user` open.
    pub fn set_subject(&self, subject: Subject) -> Result<()> {
        let core = &self.inner.core;
        let max = core.config.limits.max_connections_per_user;
        // Counted and set under the connections' lock, so that two logins of one user at
        // the same moment cannot both take the last place.
        let all = core.connections.lock();
        let open = all
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .filter(|c| c.subject.get().is_some_and(|s| s.user() == subject.user()))
            .count();
        if open >= max {
            return Err(BrokerError::ConnectionLimit {
                what: format!("too many connections for user {:?}", subject.user()),
                limit: max as u64,
                key: "limits.max_connections_per_user",
            });
        }
        let _ = self.inner.subject.set(Arc::new(subject));
        drop(all);
        Ok(())
    }

    pub fn session(&self, mode: AckMode) -> Result<Session> {
        if self.inner.closed.load(Ordering::Acquire) || self.inner.core.is_closed() {
            return Err(BrokerError::Closed("connection"));
        }
        // A transacted session is an open transaction for the cap's sake: it holds one from
        // its first send or ack to each commit, and its session state until it is closed.
        let tx_slot = if mode == AckMode::Transacted {
            Some(
                self.inner
                    .usage
                    .transaction(&self.inner.core.config.limits)?,
            )
        } else {
            None
        };
        let inner = Arc::new(SessionInner {
            core: Arc::clone(&self.inner.core),
            id: format!("{}:{}", self.inner.id, self.inner.core.next_id()),
            connection_id: self.inner.id.clone(),
            client_id: self.inner.client_id.clone(),
            mode,
            state: Mutex::new(SessionState::default()),
            consumers: SyncMutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            acks: Arc::new(Semaphore::new(MAX_PIPELINED_ACKS as usize)),
            usage: Arc::clone(&self.inner.usage),
            tx_slot: SyncMutex::new(tx_slot),
            subject: Arc::clone(&self.inner.subject),
            network_path: OnceLock::new(),
            forwards_to: OnceLock::new(),
        });
        let mut sessions = self.inner.sessions.lock();
        // Sessions closed and dropped leave a dead entry each: a client that opens and closes
        // sessions all day must not grow this list (pruned at each doubling, so amortized).
        if sessions.len() >= 64 && sessions.len().is_power_of_two() {
            sessions.retain(|s| s.strong_count() > 0);
        }
        sessions.push(Arc::downgrade(&inner));
        drop(sessions);
        Ok(Session { inner })
    }

    /// Deletes this client's durable subscription `name`. It must have no active consumer.
    pub async fn unsubscribe(&self, name: &str) -> Result<()> {
        let cid = self.inner.client_id.as_deref().ok_or_else(|| {
            BrokerError::Invalid("unsubscribe needs a connection with a client id".into())
        })?;
        let key = SubscriptionKey::new(cid, name);
        // Deleting a subscription drops its messages: the user must be one who may read
        // every topic it is on (ActiveMQ does not check this; a client id alone was enough).
        if let Some(subject) = self.inner.subject.get() {
            for topic in self.inner.core.subscription_topics(&key) {
                subject.check(Operation::Read, &topic, false)?;
            }
        }
        self.inner.core.unsubscribe(&key).await
    }

    /// A new temporary queue or topic owned by this connection, named as ActiveMQ names them:
    /// `<connection id>:<n>`. See [`Connection::add_temporary`].
    pub fn create_temporary(&self, kind: DestinationKind) -> Result<Destination> {
        let destination = Destination {
            kind,
            name: format!("{}:{}", self.inner.id, self.inner.core.next_id()).into(),
        };
        self.add_temporary(&destination)?;
        Ok(destination)
    }

    /// Makes `destination` (named by the client, as the OpenWire client names its own) a
    /// temporary destination of this connection: any connection may send to it, only this
    /// one consume from it, and it is deleted with its messages by
    /// [`Connection::delete_temporary`] or when this connection closes. Its messages are held
    /// in memory only, persistent or not (see `core::temporary`).
    pub fn add_temporary(&self, destination: &Destination) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) || self.inner.core.is_closed() {
            return Err(BrokerError::Closed("connection"));
        }
        let core = &self.inner.core;
        if let Some(subject) = self.inner.subject.get() {
            subject.check(Operation::Admin, destination, true)?;
        }
        // Each counts as a destination created, against the per-connection rate cap, so a
        // client cannot fill memory with them.
        if !core.temporaries.contains(destination) {
            self.inner.usage.destination_created(&core.config.limits)?;
        }
        core.temporaries.add(core, destination, &self.inner.id)
    }

    /// Deletes a temporary destination of this connection with its messages; refused while
    /// it has consumers.
    pub fn delete_temporary(&self, destination: &Destination) -> Result<()> {
        if let Some(subject) = self.inner.subject.get() {
            subject.check(Operation::Admin, destination, true)?;
        }
        self.inner
            .core
            .temporaries
            .delete(destination, &self.inner.id)
    }

    /// Closes every session (rolling back open transactions, redelivering unacked messages).
    pub async fn close(self) {
        self.close_ref().await;
    }

    async fn close_ref(&self) {
        close_connection(&self.inner).await;
    }
}

async fn close_connection(inner: &ConnectionInner) {
    if inner.closed.swap(true, Ordering::AcqRel) {
        return;
    }
    let sessions: Vec<_> = inner.sessions.lock().drain(..).collect();
    for s in sessions.into_iter().filter_map(|s| s.upgrade()) {
        Session { inner: s }.close().await;
    }
    // After its consumers are gone, so that none is left on a deleted destination.
    inner.core.temporaries.delete_all_of(&inner.id);
    if let Some(cid) = &inner.client_id {
        inner.core.client_ids.lock().remove(cid);
    }
    inner.core.advise(Advisory::Connection {
        connection_id: &inner.id,
        client_id: inner.client_id.as_deref(),
        started: false,
    });
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Consumer loss: a connection dropped without close still gives its messages back.
        if !self.inner.closed.load(Ordering::Acquire) {
            // The task holds the inner state, not a `Connection`: a runtime shutting down
            // drops a task it is handed at once, and a `Connection` in it would spawn again
            // from this very drop, recursing until the stack overflows.
            let inner = Arc::clone(&self.inner);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { close_connection(&inner).await });
            }
        }
    }
}

#[derive(Default)]
struct SessionState {
    /// The open store transaction (transacted and XA sessions), begun at first use.
    tx: Option<TransactionId>,
    xa: Option<Xid>,
    /// Messages sent in the open transaction, published when it commits.
    sends: Vec<Arc<Message>>,
    /// Their bytes, counted against the broker's memory and the connection's cap until the
    /// transaction ends ([`take_sends`]).
    send_bytes: u64,
    /// Received and not yet acked (CLIENT, INDIVIDUAL, DUPS_OK) or not yet committed
    /// (transacted), in order of receipt.
    delivered: Vec<(Arc<Dispatcher>, Arc<Message>)>,
    /// Of `delivered` (transacted), the acks enlisted by
    /// [`Session::acknowledge_in_returning`]: the consumer session each goes back to if the
    /// transaction rolls back.
    returns: Vec<(Arc<Dispatcher>, MessageId, Weak<SessionInner>)>,
}

/// Where a message acked in a transaction goes back to if the transaction rolls back: the
/// session that received it, while that session is open.
pub(crate) struct ReturnTo {
    session: Weak<SessionInner>,
    message: Arc<Message>,
}

/// Takes the return address of `(dispatcher, id)` out of `returns`, if it has one.
fn take_return(
    returns: &mut Vec<(Arc<Dispatcher>, MessageId, Weak<SessionInner>)>,
    dispatcher: &Arc<Dispatcher>,
    message: &Arc<Message>,
) -> Option<ReturnTo> {
    let pos = returns
        .iter()
        .position(|(d, id, _)| Arc::ptr_eq(d, dispatcher) && *id == message.id)?;
    let (_, _, session) = returns.swap_remove(pos);
    Some(ReturnTo {
        session,
        message: Arc::clone(message),
    })
}

/// A message acked in a transaction that rolled back: back to the session that received it
/// (delivered, unacked) while that session is open, else redelivered from its destination.
pub(crate) async fn return_or_redeliver(
    dispatcher: Arc<Dispatcher>,
    id: &MessageId,
    back_to: Option<ReturnTo>,
) {
    if let Some(r) = back_to
        && let Some(session) = r.session.upgrade()
    {
        let mut st = session.state.lock().await;
        // Checked under the state lock: a close marks itself closed before it takes the
        // delivered messages under this lock, so one put back here is never left behind.
        if !session.closed.load(Ordering::Acquire) {
            st.delivered.push((dispatcher, r.message));
            return;
        }
    }
    dispatcher.redeliver(id).await;
}

pub(crate) struct SessionInner {
    core: Arc<Core>,
    id: String,
    /// Its connection's id: the owner of the temporary destinations it may consume from.
    connection_id: String,
    client_id: Option<String>,
    mode: AckMode,
    state: Mutex<SessionState>,
    consumers: SyncMutex<Vec<(u64, Target)>>,
    closed: AtomicBool,
    /// Outstanding pipelined AUTO acks, at most `MAX_PIPELINED_ACKS`.
    acks: Arc<Semaphore>,
    /// The connection's counts, which this session's consumers and sends take from.
    usage: Arc<ConnectionUsage>,
    /// A transacted session's place under `limits.max_transactions_per_connection`, given
    /// back at close.
    tx_slot: SyncMutex<Option<Slot>>,
    /// The connection's user (see [`Connection::set_subject`]).
    subject: Arc<OnceLock<Arc<Subject>>>,
    /// Set when the session's consumers serve a network bridge: the brokers the demand came
    /// through, which their advisories carry so that other bridges do not forward in a loop.
    network_path: OnceLock<Vec<String>>,
    /// Set when the session's queue consumers forward to another broker (see
    /// [`Session::set_forwards_to`]).
    forwards_to: OnceLock<Arc<str>>,
}

/// Empties a session's transacted sends, giving their bytes back to the broker's memory and
/// their counts back to the connection: every end of a transaction (commit, rollback,
/// prepare, close, a session dropped with its connection) goes through here.
fn take_sends(core: &Core, usage: &ConnectionUsage, st: &mut SessionState) -> Vec<Arc<Message>> {
    let sends = std::mem::take(&mut st.sends);
    let bytes = std::mem::take(&mut st.send_bytes);
    usage.release_sends(sends.len(), bytes);
    core.memory.release(bytes);
    sends
}

/// AUTO acks a session may have in flight to the store at once.
const MAX_PIPELINED_ACKS: u32 = 256;

/// Messages a DUPS_OK session acks in one store transaction.
const DUPS_OK_BATCH: usize = 64;

/// A consumer's place under the connection's cap, held by the protocol door
/// ([`Session::reserve_consumer`]).
#[derive(Debug)]
pub struct ConsumerSlot {
    _slot: Slot,
}

/// A session: a single-threaded context for producing and consuming.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl Session {
    pub fn mode(&self) -> AckMode {
        self.inner.mode
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) || self.inner.core.is_closed() {
            Err(BrokerError::Closed("session"))
        } else {
            Ok(())
        }
    }

    /// Refuses `op` on `destination` when the connection's user lacks the grant
    /// (`[[authorization]]`); a protocol door calls it for what broker-core does not do
    /// itself (a browse through the store, a purge).
    pub fn authorize(&self, op: Operation, destination: &Destination) -> Result<()> {
        match self.inner.subject.get() {
            None => Ok(()),
            Some(s) => s.check(
                op,
                destination,
                self.inner.core.temporaries.contains(destination),
            ),
        }
    }

    /// Marks this session's consumers as a network bridge's (ActiveMQ's
    /// `ConsumerInfo.networkSubscription`), on behalf of the brokers in `broker_path`: their
    /// advisories carry `networkSubscription` and `brokerPath` (the ids joined by commas).
    /// Set once, before its first consumer; a second call changes nothing.
    pub fn set_network_path(&self, broker_path: Vec<String>) {
        let _ = self.inner.network_path.set(broker_path);
    }

    /// Marks this session's queue consumers as a network bridge's forwarding to broker
    /// `remote_broker_id`: a message whose broker path holds it (it came from there) is kept
    /// from them, unless the queue's `replay_when_no_consumers` lets it go back (see
    /// `dispatch`). Set once, before its first consumer; a second call changes nothing.
    pub fn set_forwards_to(&self, remote_broker_id: &str) {
        let _ = self.inner.forwards_to.set(Arc::from(remote_broker_id));
    }

    /// Whether `destination`'s policy has `replay_when_no_consumers` (queues only).
    pub fn replays_when_no_consumers(&self, destination: &Destination) -> bool {
        self.inner
            .core
            .policies
            .resolve(destination)
            .replay_when_no_consumers
    }

    pub fn producer(&self, destination: Destination) -> Result<Producer> {
        self.make_producer(destination, false, true)
    }

    /// A producer to a temporary destination: each send fails, naming it, once the
    /// destination is deleted (rather than create an ordinary destination of that name).
    pub fn temporary_producer(&self, destination: Destination) -> Result<Producer> {
        self.make_producer(destination, true, true)
    }

    /// A producer that a [`DeclaredProducer`] stands for: it sends as any other (`temporary`
    /// as [`Session::temporary_producer`]) but takes no place under the producer cap and is
    /// neither counted nor advised itself.
    pub fn undeclared_producer(
        &self,
        destination: Destination,
        temporary: bool,
    ) -> Result<Producer> {
        self.make_producer(destination, temporary, false)
    }

    /// Declares a producer ahead of its sends (`None`: an anonymous one, which names its
    /// destination per send): it takes its place under `limits.max_producers_per_connection`
    /// and is advised until dropped.
    pub fn declare_producer(&self, destination: Option<Destination>) -> Result<DeclaredProducer> {
        self.check_open()?;
        if let Some(d) = &destination {
            self.authorize(Operation::Write, d)?;
        }
        let slot = self.inner.usage.producer(&self.inner.core.config.limits)?;
        let id = format!("{}:{}", self.inner.id, self.inner.core.next_id());
        Ok(DeclaredProducer::new(
            self.clone(),
            id.into(),
            destination,
            slot,
        ))
    }

    fn make_producer(
        &self,
        destination: Destination,
        temporary: bool,
        announced: bool,
    ) -> Result<Producer> {
        self.check_open()?;
        self.authorize(Operation::Write, &destination)?;
        if temporary && !self.inner.core.temporaries.contains(&destination) {
            return Err(temporary::gone(&destination));
        }
        let slot = if announced {
            Some(self.inner.usage.producer(&self.inner.core.config.limits)?)
        } else {
            None
        };
        let id = format!("{}:{}", self.inner.id, self.inner.core.next_id());
        Ok(Producer::new(
            self.clone(),
            id.into(),
            destination,
            temporary,
            slot,
        ))
    }

    /// The messages of a queue held in memory only, which the store's browse
    /// ([`crate::Broker::browse_after`]) does not see: its non-persistent ones, or every
    /// message of a temporary queue (this connection's own only). For a queue browser: nothing
    /// is taken, locked or acked.
    pub fn browse_in_memory(&self, queue: &Destination) -> Result<Vec<Arc<Message>>> {
        self.authorize(Operation::Read, queue)?;
        let core = &self.inner.core;
        if core.temporaries.contains(queue) {
            return core.temporaries.browse(queue, &self.inner.connection_id);
        }
        Ok(core
            .queues()
            .into_iter()
            .find(|q| q.destination == *queue)
            .map(|q| q.memory_messages())
            .unwrap_or_default())
    }

    /// The messages of a queue spooled to the temp store (non-persistent ones that came
    /// while memory was full), which neither the store's browse nor [`Self::browse_in_memory`]
    /// sees: a snapshot of the moment, read back a page at a time by [`SpooledPages::next`].
    /// For a queue browser: nothing is taken, locked or acked.
    pub fn browse_spooled(&self, queue: &Destination) -> Result<SpooledPages> {
        self.authorize(Operation::Read, queue)?;
        let core = &self.inner.core;
        let records = core
            .queues()
            .into_iter()
            .find(|q| q.destination == *queue)
            .map(|q| q.spooled_records())
            .unwrap_or_default();
        Ok(SpooledPages {
            temp: core.temp.clone(),
            records: records.into(),
        })
    }

    /// Whether `destination` is a live temporary destination (see
    /// [`Connection::add_temporary`]).
    pub fn is_temporary(&self, destination: &Destination) -> bool {
        self.inner.core.temporaries.contains(destination)
    }

    /// A consumer of a queue, or a non-durable subscriber of a topic. A live temporary
    /// destination of that name is the one consumed (by its owner connection only).
    pub async fn consumer(
        &self,
        destination: Destination,
        selector: Option<&str>,
    ) -> Result<Consumer> {
        self.open_consumer(destination, selector, None, false, false)
            .await
    }

    /// A consumer of a temporary destination of this session's connection; refused for
    /// another connection's ("Cannot subscribe to remote temporary destination") or a deleted
    /// one. `None` for the broker's default prefetch.
    pub async fn temporary_consumer(
        &self,
        destination: Destination,
        selector: Option<&str>,
        prefetch: Option<u32>,
    ) -> Result<Consumer> {
        self.open_consumer(destination, selector, prefetch, true, false)
            .await
    }

    /// A consumer with an explicit prefetch (ActiveMQ's `activemq.prefetchSize`).
    pub async fn consumer_with_prefetch(
        &self,
        destination: Destination,
        selector: Option<&str>,
        prefetch: u32,
    ) -> Result<Consumer> {
        self.open_consumer(destination, selector, Some(prefetch), false, false)
            .await
    }

    /// A queue consumer that is ActiveMQ's exclusive consumer (`activemq.exclusive`,
    /// `consumer.exclusive`): while it is registered it gets every message of the queue, and
    /// when it goes the next exclusive consumer, in order of arrival, takes over. On a topic
    /// the flag means nothing, as in ActiveMQ. `None` for the broker's default prefetch.
    pub async fn exclusive_consumer(
        &self,
        destination: Destination,
        selector: Option<&str>,
        prefetch: Option<u32>,
    ) -> Result<Consumer> {
        self.open_consumer(destination, selector, prefetch, false, true)
            .await
    }

    async fn open_consumer(
        &self,
        destination: Destination,
        selector: Option<&str>,
        prefetch: Option<u32>,
        temporary: bool,
        exclusive: bool,
    ) -> Result<Consumer> {
        self.check_open()?;
        self.authorize(Operation::Read, &destination)?;
        let core = &self.inner.core;
        let filter = consumer_filter(&destination)?;
        let slot = self.inner.usage.consumer(&core.config.limits)?;
        let selector = selector
            .map(|s| Selector::parse_limited(s, core.config.limits.max_selector_nodes))
            .transpose()?
            .map(Arc::new);
        let default_prefetch = if destination.is_queue() {
            core.config.limits.queue_prefetch
        } else {
            core.config.limits.topic_prefetch
        };
        // Registered once, with its final prefetch: a consumer re-registered after the
        // dispatcher had already handed it messages would strand them.
        let flow = Flow::for_prefetch(prefetch.map_or(default_prefetch, |p| p.min(MAX_PREFETCH)));
        if let Some(filter) = filter {
            // A wildcard creates no destination: it listens to those that exist or appear.
            if destination.is_queue() {
                let id = core.next_id();
                let (fan_in, rx) = core.add_queue_fan_in(filter, id, selector, flow.clone());
                return Ok(self.consumer_of(
                    id,
                    Target::Queues(fan_in),
                    rx,
                    slot,
                    &flow,
                    &destination,
                ));
            }
            let d = Dispatcher::start(
                core,
                destination.clone(),
                Source::Memory {
                    max_pending: core.config.limits.max_pending_non_durable,
                    dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
                },
            );
            let consumer = self.attach(Arc::clone(&d), selector, flow, false, slot);
            core.add_wildcard_subscriber(filter, &d);
            return Ok(consumer);
        }
        let dispatcher = if temporary || core.temporaries.contains(&destination) {
            core.temporaries
                .consumer_dispatcher(core, &destination, &self.inner.connection_id)?
        } else if destination.is_queue() {
            self.admit(&destination).await?;
            core.queue(&destination).await?
        } else {
            self.admit(&destination).await?;
            core.topic_subscriber(&destination, |t| {
                Dispatcher::start(
                    core,
                    destination.clone(),
                    Source::Memory {
                        max_pending: core.config.limits.max_pending_non_durable,
                        dropped: Arc::clone(&t.slow_consumer_dropped),
                    },
                )
            })
            .await?
        };
        Ok(self.attach(dispatcher, selector, flow, exclusive, slot))
    }

    /// A durable subscriber: `name` with the connection's client id names a subscription that
    /// keeps messages while no consumer is attached, across broker restarts.
    pub async fn durable_subscriber(
        &self,
        topic: Destination,
        name: &str,
        selector: Option<&str>,
    ) -> Result<Consumer> {
        self.durable_subscriber_with_prefetch(topic, name, selector, None)
            .await
    }

    /// As [`Session::durable_subscriber`], with an explicit prefetch (0: credit the caller
    /// grants, see [`Consumer::grant`]); `None` for the broker's topic prefetch.
    pub async fn durable_subscriber_with_prefetch(
        &self,
        topic: Destination,
        name: &str,
        selector: Option<&str>,
        prefetch: Option<u32>,
    ) -> Result<Consumer> {
        self.check_open()?;
        if !topic.is_topic() {
            return Err(BrokerError::Invalid(format!("{topic} is not a topic")));
        }
        self.authorize(Operation::Read, &topic)?;
        let filter = consumer_filter(&topic)?;
        if self.inner.core.temporaries.contains(&topic) {
            return Err(BrokerError::InvalidDestination(format!(
                "a durable subscription on the temporary {}",
                temporary::temporary_url(&topic)
            )));
        }
        let cid = self.inner.client_id.as_deref().ok_or_else(|| {
            BrokerError::Invalid(
                "a durable subscription needs a connection with a client id".into(),
            )
        })?;
        let core = &self.inner.core;
        let slot = self.inner.usage.consumer(&core.config.limits)?;
        let parsed = selector
            .map(|s| Selector::parse_limited(s, core.config.limits.max_selector_nodes))
            .transpose()?
            .map(Arc::new);
        let key = SubscriptionKey::new(cid, name);
        let flow = Flow::for_prefetch(
            prefetch.map_or(core.config.limits.topic_prefetch, |p| p.min(MAX_PREFETCH)),
        );
        if let Some(filter) = filter {
            let (w, id, rx) = core
                .wildcard_durable_subscriber(
                    &topic,
                    filter,
                    &key,
                    selector.map(str::to_owned),
                    parsed,
                    flow.clone(),
                )
                .await?;
            return Ok(self.consumer_of(id, Target::Durables(w), rx, slot, &flow, &topic));
        }
        self.admit(&topic).await?;
        let d = core
            .durable_subscription(&topic, &key, selector.map(str::to_owned))
            .await?;
        if d.consumer_count() > 0 {
            return Err(BrokerError::Invalid(format!(
                "durable subscription {key} is in use"
            )));
        }
        Ok(self.attach(d, parsed, flow, false, slot))
    }

    /// A place under `limits.max_consumers_per_connection` for something a protocol door
    /// holds like a consumer without a broker-core consumer behind it (an OpenWire advisory
    /// subscription); the place is given back when the returned slot is dropped.
    pub fn reserve_consumer(&self) -> Result<ConsumerSlot> {
        self.check_open()?;
        let slot = self.inner.usage.consumer(&self.inner.core.config.limits)?;
        Ok(ConsumerSlot { _slot: slot })
    }

    /// Counts `destination` against `limits.max_destinations_created_per_second` when using
    /// it creates it, and creates it: a transacted send would otherwise create it only at
    /// commit, and count again at each send until then.
    async fn admit(&self, destination: &Destination) -> Result<()> {
        let core = &self.inner.core;
        if core.has_destination(destination) {
            return Ok(());
        }
        // As ActiveMQ's AuthorizationBroker.addDestination: creating one needs `admin`.
        self.authorize(Operation::Admin, destination)?;
        let max = core.config.limits.max_destinations;
        if core.destination_count() >= max {
            return Err(BrokerError::ConnectionLimit {
                what: format!("too many destinations to create {destination}"),
                limit: max as u64,
                key: "limits.max_destinations",
            });
        }
        self.inner.usage.destination_created(&core.config.limits)?;
        if destination.is_queue() {
            core.queue(destination).await.map(drop)
        } else {
            core.topic(destination).await.map(drop)
        }
    }

    fn attach(
        &self,
        dispatcher: Arc<Dispatcher>,
        selector: Option<Arc<Selector>>,
        flow: Flow,
        exclusive: bool,
        slot: Slot,
    ) -> Consumer {
        let id = self.inner.core.next_id();
        let role = crate::dispatch::NetworkRole {
            network: self.inner.network_path.get().is_some()
                || self.inner.forwards_to.get().is_some(),
            forwards_to: self.inner.forwards_to.get().cloned(),
        };
        let rx = dispatcher.add_consumer(id, selector, flow.clone(), exclusive, role);
        let destination = dispatcher.destination.clone();
        self.consumer_of(id, Target::One(dispatcher), rx, slot, &flow, &destination)
    }

    fn consumer_of(
        &self,
        id: u64,
        target: Target,
        rx: mpsc::UnboundedReceiver<Delivery>,
        slot: Slot,
        flow: &Flow,
        destination: &Destination,
    ) -> Consumer {
        self.inner.consumers.lock().push((id, target.clone()));
        let core = &self.inner.core;
        core.live_consumers.add(
            id,
            crate::core::advisory::LiveConsumer {
                destination: destination.clone(),
                consumer_id: format!("{}:{id}", self.inner.connection_id),
                connection_id: self.inner.connection_id.clone(),
                network_path: self.inner.network_path.get().cloned(),
            },
        );
        core.advise(Advisory::Consumer {
            destination,
            consumer_id: format!("{}:{id}", self.inner.connection_id),
            connection_id: &self.inner.connection_id,
            network_path: self.inner.network_path.get().map(Vec::as_slice),
            started: true,
            count: core.consumer_count(destination),
        });
        Consumer {
            session: self.clone(),
            id,
            destination: destination.clone(),
            target,
            credit: flow.credit().cloned(),
            rx: Mutex::new(rx),
            closed: AtomicBool::new(false),
            slot: SyncMutex::new(Some(slot)),
        }
    }

    /// A send outside a transaction with its place taken ([`Core::place`]); `None` in a
    /// transacted session, where the send is enlisted instead and applies at commit.
    ///
    /// A composite or virtual-topic send places one copy per destination
    /// ([`Core::routes`]); in a transacted session each copy is enlisted in its transaction.
    pub(crate) async fn place(&self, message: Message) -> Result<Option<Placed>> {
        self.check_open()?;
        let core = &self.inner.core;
        // An order to the scheduler, carried out now (in a transaction too, as ActiveMQ does);
        // nothing is stored.
        if core.config.broker.scheduler_support
            && crate::core::scheduler_management::is_management(&message)
        {
            core.scheduler_management(&message).await?;
            return Ok(Some(Placed::done()));
        }
        let temporary = core.temporaries.contains(&message.destination);
        // A scheduled send becomes a job; the destination must be one a send can reach now.
        // A temporary destination's send is delivered at once: it has no store to wait in.
        if !temporary
            && core.config.broker.scheduler_support
            && let Some(schedule) = scheduler::schedule_of(&message)?
        {
            for d in core.routes(&message.destination)? {
                self.admit(&d).await?;
            }
            let job = scheduler::job_of(&message, schedule, now_ms());
            if self.inner.mode != AckMode::Transacted {
                return core.schedule(job).await.map(Some);
            }
            return self.enlist_send(job).await.map(|()| None);
        }
        let routes = if temporary {
            vec![message.destination.clone()]
        } else {
            core.routes(&message.destination)?
        };
        if let [only] = routes.as_slice()
            && *only == message.destination
        {
            // A temporary destination is never created by a send, nor counted as one created.
            if !temporary {
                self.admit(&message.destination).await?;
            }
            if self.inner.mode != AckMode::Transacted {
                return core.place(message).await.map(Some);
            }
            return self.enlist_send(message).await.map(|()| None);
        }
        for d in &routes {
            self.admit(d).await?;
        }
        let copies = routes.into_iter().map(|d| {
            let mut copy = message.clone();
            copy.destination = d;
            copy
        });
        if self.inner.mode != AckMode::Transacted {
            return core.place_all(copies.collect()).await.map(Some);
        }
        for copy in copies {
            self.enlist_send(copy).await?;
        }
        Ok(None)
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// An uncommitted send is held until its transaction ends: it counts against the
    /// connection's caps and the broker's memory (a send waits for memory as a
    /// non-persistent one does), and [`take_sends`] gives both back.
    async fn enlist_send(&self, message: Message) -> Result<()> {
        let core = &self.inner.core;
        let bytes = message.size();
        self.inner
            .usage
            .transacted_send(bytes, &core.config.limits)?;
        if let Err(e) = core.wait_for_memory().await {
            self.inner.usage.release_sends(1, bytes);
            return Err(e);
        }
        core.memory.add(bytes);
        let mut st = self.inner.state.lock().await;
        let enlisted = async {
            let tx = self.ensure_tx(&mut st).await?;
            // A temporary destination's messages never touch the store: held here until
            // the commit hands them over.
            if message.persistent && !core.temporaries.contains(&message.destination) {
                core.wait_for_store(bytes).await?;
                core.store.enlist(&tx, TxOp::Add(message.clone())).await?;
            }
            Ok::<_, BrokerError>(())
        }
        .await;
        if let Err(e) = enlisted {
            self.inner.usage.release_sends(1, bytes);
            core.memory.release(bytes);
            return Err(e);
        }
        st.sends.push(Arc::new(message));
        st.send_bytes += bytes;
        Ok(())
    }

    async fn ensure_tx(&self, st: &mut SessionState) -> Result<TransactionId> {
        if let Some(tx) = &st.tx {
            return Ok(tx.clone());
        }
        let tx = self.inner.core.new_local_tx();
        self.inner.core.store.begin(&tx).await?;
        st.tx = Some(tx.clone());
        Ok(tx)
    }

    /// Called when the application takes a message: acks it per the mode.
    async fn on_receive(&self, dispatcher: &Arc<Dispatcher>, message: &Arc<Message>) -> Result<()> {
        match self.inner.mode {
            AckMode::Auto => {
                // Pipelined: the ack is written (and fsynced, sharing the fsync with the acks
                // of the messages that follow) while the application already has the message.
                // A crash before it is durable redelivers the message, flagged, as ActiveMQ
                // does for AUTO. Close waits for every outstanding ack.
                let permit = Arc::clone(&self.inner.acks)
                    .acquire_owned()
                    .await
                    .map_err(|_| BrokerError::Closed("session"))?;
                let (d, m) = (Arc::clone(dispatcher), Arc::clone(message));
                tokio::spawn(async move {
                    if let Err(e) = d.ack(&m, AckWait::NoReceipt).await {
                        warn!(message = %m.id, "ack failed, the message will be redelivered: {e}");
                        d.redeliver(&m.id).await;
                    }
                    drop(permit);
                });
                Ok(())
            }
            AckMode::Client | AckMode::Individual => {
                self.inner
                    .state
                    .lock()
                    .await
                    .delivered
                    .push((Arc::clone(dispatcher), Arc::clone(message)));
                Ok(())
            }
            AckMode::DupsOk => {
                let batch = {
                    let mut st = self.inner.state.lock().await;
                    st.delivered
                        .push((Arc::clone(dispatcher), Arc::clone(message)));
                    if st.delivered.len() >= DUPS_OK_BATCH {
                        std::mem::take(&mut st.delivered)
                    } else {
                        Vec::new()
                    }
                };
                if batch.is_empty() {
                    Ok(())
                } else {
                    self.inner.core.ack_many(batch, AckWait::NoReceipt).await
                }
            }
            AckMode::Transacted => {
                let mut st = self.inner.state.lock().await;
                let tx = self.ensure_tx(&mut st).await?;
                if let Some(op) = dispatcher.ack_op(message) {
                    self.inner.core.store.enlist(&tx, op).await?;
                }
                st.delivered
                    .push((Arc::clone(dispatcher), Arc::clone(message)));
                Ok(())
            }
        }
    }

    /// CLIENT: acks `message` and everything received before it in this session.
    /// INDIVIDUAL: acks exactly `message`. Other modes: nothing to do (as JMS says).
    pub async fn acknowledge(&self, message: &Received) -> Result<()> {
        self.check_open()?;
        if !matches!(self.inner.mode, AckMode::Client | AckMode::Individual) {
            return Ok(());
        }
        let items = self.take_unacked(message, true).await?;
        self.inner.core.ack_many(items, AckWait::Receipt).await
    }

    /// [`Session::acknowledge`] without waiting for the store: the message (in CLIENT mode with
    /// every earlier one) leaves the session's unacked set now, in order with the session's
    /// other calls, and the returned [`Submitted`] resolves once the ack is durable. At most
    /// `MAX_PIPELINED_ACKS` acks of a session are in flight (the caller waits for a slot);
    /// close waits for all of them. If the store fails the ack, the message is redelivered.
    pub async fn submit_acknowledge(
        &self,
        message: &Received,
        wait: AckWait,
    ) -> Result<Submitted<()>> {
        self.check_open()?;
        if !matches!(self.inner.mode, AckMode::Client | AckMode::Individual) {
            return Ok(Submitted::done(()));
        }
        let items = self.take_unacked(message, true).await?;
        let permit = Arc::clone(&self.inner.acks)
            .acquire_owned()
            .await
            .map_err(|_| BrokerError::Closed("session"))?;
        let core = Arc::clone(&self.inner.core);
        Ok(Submitted::running(tokio::spawn(async move {
            let redeliver: Vec<_> = items
                .iter()
                .map(|(d, m)| (Arc::clone(d), m.id.clone()))
                .collect();
            let result = core.ack_many(items, wait).await;
            if let Err(e) = &result {
                warn!("a pipelined ack failed, its messages will be redelivered: {e}");
                for (d, id) in redeliver {
                    d.redeliver(&id).await;
                }
            }
            drop(permit);
            result
        })))
    }

    /// Takes `message` (and, in CLIENT mode, every earlier one) out of this session's unacked
    /// set, failing if it is not there.
    async fn take_unacked(
        &self,
        message: &Received,
        cumulative: bool,
    ) -> Result<Vec<(Arc<Dispatcher>, Arc<Message>)>> {
        let mut st = self.inner.state.lock().await;
        let pos = st
            .delivered
            .iter()
            .position(|(d, m)| Arc::ptr_eq(d, &message.dispatcher) && m.id == message.message.id)
            .ok_or_else(|| {
                BrokerError::Invalid(format!(
                    "message {} is not awaiting an ack in this session",
                    message.message.id
                ))
            })?;
        Ok(if cumulative && self.inner.mode == AckMode::Client {
            st.delivered.drain(..=pos).collect()
        } else {
            vec![st.delivered.remove(pos)]
        })
    }

    /// Returns a message this session received whose client never showed it to its
    /// application (a protocol door's prefetch, e.g. what an OpenWire consumer closed with
    /// after its `lastDeliveredSequenceId`): it goes back to its destination as it was, not
    /// counted as a redelivery. Only in CLIENT and INDIVIDUAL sessions (AUTO acked it already).
    pub async fn give_back(&self, message: &Received) -> Result<()> {
        let items = self.take_unacked(message, false).await?;
        for (d, m) in items {
            d.give_back(&m.id);
        }
        Ok(())
    }

    /// Refuses a message received in a CLIENT or INDIVIDUAL session: it is redelivered (to
    /// the dead letter queue past the maximum), as STOMP's NACK asks. In CLIENT mode earlier
    /// unacked messages are refused with it.
    pub async fn nack(&self, message: &Received) -> Result<()> {
        self.check_open()?;
        if !matches!(self.inner.mode, AckMode::Client | AckMode::Individual) {
            return Err(BrokerError::Invalid(
                "nack needs a CLIENT or INDIVIDUAL session".into(),
            ));
        }
        for (d, m) in self.take_unacked(message, true).await? {
            d.redeliver(&m.id).await;
        }
        Ok(())
    }

    /// Rejects a message received in a CLIENT or INDIVIDUAL session for good: its client gave
    /// up on it (OpenWire's poison ack, sent once the client's own redelivery policy is
    /// exhausted), so it goes to the dead letter queue now with `cause`, not back for another
    /// delivery as with [`Session::nack`]. Only that message, in either mode.
    pub async fn reject(&self, message: &Received, cause: &str) -> Result<()> {
        self.check_open()?;
        if !matches!(self.inner.mode, AckMode::Client | AckMode::Individual) {
            return Err(BrokerError::Invalid(
                "reject needs a CLIENT or INDIVIDUAL session".into(),
            ));
        }
        for (d, m) in self.take_unacked(message, false).await? {
            d.poison(&m.id, cause).await;
        }
        Ok(())
    }

    /// Acknowledges `message`, received in this CLIENT or INDIVIDUAL session, as part of the
    /// open transaction of the transacted session `tx`: the ack applies when `tx` commits,
    /// atomically with its sends, and a rollback redelivers the message (STOMP's ACK with a
    /// `transaction` header).
    pub async fn acknowledge_in(&self, message: &Received, tx: &Session) -> Result<()> {
        self.check_open()?;
        tx.check_open()?;
        if tx.inner.mode != AckMode::Transacted {
            return Err(BrokerError::Invalid(
                "acknowledge_in needs a transacted session".into(),
            ));
        }
        if !matches!(self.inner.mode, AckMode::Client | AckMode::Individual) {
            return Err(BrokerError::Invalid(
                "acknowledge_in needs a CLIENT or INDIVIDUAL session".into(),
            ));
        }
        let items = self.take_unacked(message, true).await?;
        let mut st = tx.inner.state.lock().await;
        let txid = match tx.ensure_tx(&mut st).await {
            Ok(t) => t,
            Err(e) => {
                drop(st);
                self.inner.state.lock().await.delivered.splice(0..0, items);
                return Err(e);
            }
        };
        for (d, m) in items {
            if let Some(op) = d.ack_op(&m)
                && let Err(e) = tx.inner.core.store.enlist(&txid, op).await
            {
                // Keep it with the transaction: a rollback redelivers it.
                st.delivered.push((d, m));
                return Err(e.into());
            }
            st.delivered.push((d, m));
        }
        Ok(())
    }

    /// [`Session::acknowledge_in`], except that if `tx` rolls back (before or after an XA
    /// prepare) while this session is open, the message comes back to this session,
    /// delivered and unacked, rather than to its destination. That is what the OpenWire
    /// client expects: it redelivers a rolled-back message itself from its own buffer, as
    /// ActiveMQ keeps such a message dispatched to its subscription; a redelivery from the
    /// destination as well would hand it to the application twice.
    pub async fn acknowledge_in_returning(&self, message: &Received, tx: &Session) -> Result<()> {
        self.acknowledge_in(message, tx).await?;
        tx.inner.state.lock().await.returns.push((
            Arc::clone(&message.dispatcher),
            message.message.id.clone(),
            Arc::downgrade(&self.inner),
        ));
        Ok(())
    }

    /// Unacked received messages are delivered again (JMS `Session.recover`).
    pub async fn recover(&self) -> Result<()> {
        if self.inner.mode == AckMode::Transacted {
            return Err(BrokerError::Invalid(
                "recover in a transacted session: use rollback".into(),
            ));
        }
        let items = std::mem::take(&mut self.inner.state.lock().await.delivered);
        for (d, m) in items {
            d.redeliver(&m.id).await;
        }
        Ok(())
    }

    /// Applies the transaction's sends and acks atomically. If the store refuses (a message
    /// acked meanwhile by an expiry, say), the transaction is rolled back and the error
    /// returned.
    pub async fn commit(&self) -> Result<()> {
        self.check_open()?;
        if self.inner.mode != AckMode::Transacted {
            return Err(BrokerError::Invalid(
                "commit in a session that is not transacted".into(),
            ));
        }
        let mut st = self.inner.state.lock().await;
        if st.xa.is_some() {
            return Err(BrokerError::Invalid(
                "an XA transaction is open: prepare it, then commit it on the broker".into(),
            ));
        }
        if let Some(tx) = st.tx.take()
            && let Err(e) = self.inner.core.store.commit(&tx).await
        {
            let _ = self.inner.core.store.rollback(&tx).await;
            let delivered = std::mem::take(&mut st.delivered);
            st.returns.clear();
            take_sends(&self.inner.core, &self.inner.usage, &mut st);
            drop(st);
            for (d, m) in delivered {
                d.redeliver(&m.id).await;
            }
            return Err(e.into());
        }
        let delivered = std::mem::take(&mut st.delivered);
        st.returns.clear();
        // Given back before they are published: a non-persistent one waits for memory there,
        // and must not wait for its own bytes.
        let sends = take_sends(&self.inner.core, &self.inner.usage, &mut st);
        drop(st);
        for (d, m) in delivered {
            d.settle(&m.id);
        }
        for m in sends {
            self.inner.core.committed_add(&m).await?;
        }
        Ok(())
    }

    /// Discards the transaction's sends; its received messages are redelivered.
    pub async fn rollback(&self) -> Result<()> {
        if self.inner.mode != AckMode::Transacted {
            return Err(BrokerError::Invalid(
                "rollback in a session that is not transacted".into(),
            ));
        }
        let (tx, delivered, mut returns) = {
            let mut st = self.inner.state.lock().await;
            take_sends(&self.inner.core, &self.inner.usage, &mut st);
            st.xa = None;
            (
                st.tx.take(),
                std::mem::take(&mut st.delivered),
                std::mem::take(&mut st.returns),
            )
        };
        if let Some(tx) = tx
            && let Err(e) = self.inner.core.store.rollback(&tx).await
        {
            warn!(session = %self.inner.id, "rollback of {tx}: {e}");
        }
        for (d, m) in delivered {
            let back_to = take_return(&mut returns, &d, &m);
            return_or_redeliver(d, &m.id, back_to).await;
        }
        Ok(())
    }

    /// Starts an XA branch in a transacted session: what follows is enlisted under `xid`.
    pub async fn xa_start(&self, xid: Xid) -> Result<()> {
        self.check_open()?;
        if self.inner.mode != AckMode::Transacted {
            return Err(BrokerError::Invalid("XA needs a transacted session".into()));
        }
        let mut st = self.inner.state.lock().await;
        if st.tx.is_some() {
            return Err(BrokerError::Invalid(
                "a transaction is already open in this session".into(),
            ));
        }
        let tx = TransactionId::Xa(xid.clone());
        self.inner.core.store.begin(&tx).await?;
        st.tx = Some(tx);
        st.xa = Some(xid);
        Ok(())
    }

    /// Ends and prepares the XA branch: durable from now on, across restarts, until
    /// [`crate::Broker::commit_prepared`] or [`crate::Broker::rollback_prepared`].
    pub async fn xa_prepare(&self) -> Result<Xid> {
        self.check_open()?;
        let mut st = self.inner.state.lock().await;
        let Some(xid) = st.xa.clone() else {
            return Err(BrokerError::Invalid("no XA transaction is open".into()));
        };
        self.inner.core.store.prepare(&xid).await?;
        st.xa = None;
        st.tx = None;
        let mut returns = std::mem::take(&mut st.returns);
        let mut pending: Vec<PreparedOp> = std::mem::take(&mut st.delivered)
            .into_iter()
            .map(|(dispatcher, m)| PreparedOp::Ack {
                back_to: take_return(&mut returns, &dispatcher, &m),
                dispatcher,
                id: m.id.clone(),
                recovered: false,
            })
            .collect();
        // Held by the broker from now on (until the prepared transaction ends), no longer
        // by this connection.
        pending.extend(
            take_sends(&self.inner.core, &self.inner.usage, &mut st)
                .into_iter()
                .map(PreparedOp::Add),
        );
        self.inner.core.prepared.lock().insert(xid.clone(), pending);
        Ok(xid)
    }

    /// Closes the session: an open transaction rolls back, unacked messages are redelivered
    /// (DUPS_OK ones are acked: the application had them), consumers are closed.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let consumers: Vec<_> = self.inner.consumers.lock().drain(..).collect();
        for (id, target) in consumers {
            target.unregister(&self.inner.core, id);
        }
        let (tx, delivered) = {
            let mut st = self.inner.state.lock().await;
            take_sends(&self.inner.core, &self.inner.usage, &mut st);
            (st.tx.take(), std::mem::take(&mut st.delivered))
        };
        self.inner.tx_slot.lock().take();
        end_session(&self.inner.core, self.inner.mode, tx, delivered).await;
        // Outstanding AUTO acks are durable when close returns.
        let _ = self.inner.acks.acquire_many(MAX_PIPELINED_ACKS).await;
    }
}

/// What a closing session leaves: an open transaction rolls back, unacked messages are
/// redelivered, except DUPS_OK ones, which the application had and are acked.
async fn end_session(
    core: &Arc<Core>,
    mode: AckMode,
    tx: Option<TransactionId>,
    delivered: Vec<(Arc<Dispatcher>, Arc<Message>)>,
) {
    if let Some(tx) = tx {
        let _ = core.store.rollback(&tx).await;
    }
    if mode == AckMode::DupsOk {
        if let Err(e) = core.ack_many(delivered, AckWait::NoReceipt).await {
            warn!("acking a DUPS_OK session's messages on close: {e}");
        }
    } else {
        for (d, m) in delivered {
            d.redeliver(&m.id).await;
        }
    }
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        // A session dropped without close (its connection lost): the same as a close.
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for (id, target) in self.consumers.get_mut().drain(..) {
            target.unregister(&self.core, id);
        }
        let st = self.state.get_mut();
        take_sends(&self.core, &self.usage, st);
        let tx = st.tx.take();
        let delivered = std::mem::take(&mut st.delivered);
        if tx.is_none() && delivered.is_empty() {
            return;
        }
        let core = Arc::clone(&self.core);
        let mode = self.mode;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { end_session(&core, mode, tx, delivered).await });
        }
    }
}

/// What a consumer is registered on.
#[derive(Clone)]
pub(crate) enum Target {
    /// A queue, a topic subscriber (plain or wildcard) or a durable subscription.
    One(Arc<Dispatcher>),
    /// Every queue a wildcard matches.
    Queues(Arc<QueueFanIn>),
    /// A durable subscription on a wildcard: its part on every matching topic.
    Durables(Arc<WildcardDurable>),
}

impl Target {
    fn unregister(&self, core: &Arc<Core>, id: u64) {
        core.live_consumers.remove(id);
        match self {
            Target::One(d) => {
                d.remove_consumer(id);
                if matches!(d.source, Source::Memory { .. }) {
                    core.remove_subscriber(d);
                }
            }
            Target::Queues(fan_in) => core.remove_queue_fan_in(fan_in),
            Target::Durables(w) => w.deactivate(),
        }
    }

    /// A consumer's credit grew: its dispatchers look for messages for it.
    fn wake(&self) {
        match self {
            Target::One(d) => d.wake(),
            Target::Queues(fan_in) => fan_in.wake(),
            Target::Durables(w) => w.wake(),
        }
    }
}

/// The wildcard filter a consumer's destination is, or `None` for a plain destination.
/// Consuming from a composite list is refused (ActiveMQ allows it).
fn consumer_filter(destination: &Destination) -> Result<Option<DestinationFilter>> {
    if crate::destination_filter::is_composite(&destination.name) {
        return Err(BrokerError::Invalid(format!(
            "{destination}: consuming from a composite destination is not supported; use one consumer per destination or a wildcard"
        )));
    }
    if !crate::destination_filter::has_wildcard_chars(&destination.name) {
        return Ok(None);
    }
    let filter = DestinationFilter::parse(&destination.name)?;
    Ok(filter.is_wildcard().then_some(filter))
}

/// Receives from a queue, a topic, a durable subscription, or every queue or topic a wildcard
/// matches.
pub struct Consumer {
    session: Session,
    id: u64,
    target: Target,
    /// What it consumes (a wildcard's pattern for a wildcard consumer), for advisories.
    destination: Destination,
    /// Opened with prefetch 0: handed only what [`Consumer::grant`] allows.
    credit: Option<Arc<Credit>>,
    rx: Mutex<mpsc::UnboundedReceiver<Delivery>>,
    closed: AtomicBool,
    /// Its place under `limits.max_consumers_per_connection`, given back when it is closed.
    slot: SyncMutex<Option<Slot>>,
}

impl Consumer {
    /// The next message, acked per the session's mode. `None` once the consumer, its session
    /// or the broker is closed.
    pub async fn receive(&self) -> Result<Option<Received>> {
        let mut rx = self.rx.lock().await;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            let Some(d) = rx.recv().await else {
                return Ok(None);
            };
            // The dispatcher that delivered it: a wildcard queue consumer has several.
            d.dispatcher.received(self.id);
            if d.message.is_expired(now_ms()) {
                d.dispatcher.expire_delivered(&d.message.id).await;
                // The credit it spent was for a message the application gets.
                self.grant(1);
                continue;
            }
            self.session.on_receive(&d.dispatcher, &d.message).await?;
            return Ok(Some(Received {
                message: d.message,
                dispatcher: d.dispatcher,
            }));
        }
    }

    /// Lets a consumer opened with prefetch 0 be handed `n` more messages: a protocol door
    /// grants one per message its client has room for. No effect on a consumer with a
    /// prefetch.
    pub fn grant(&self, n: u32) {
        if let Some(c) = &self.credit
            && n > 0
        {
            c.grant(n);
            self.target.wake();
        }
    }

    /// JMS's receive on a consumer with prefetch 0 (OpenWire's `MessagePull`): one credit,
    /// then the message it brings, or `None` after `timeout` with the credit taken back, so
    /// no message is left waiting for a consumer that stopped asking. On a consumer with a
    /// prefetch, as [`Consumer::receive_timeout`].
    pub async fn pull(&self, timeout: Duration) -> Result<Option<Received>> {
        let Some(credit) = &self.credit else {
            return self.receive_timeout(timeout).await;
        };
        self.grant(1);
        if let Some(r) = self.receive_timeout(timeout).await? {
            return Ok(Some(r));
        }
        if credit.revoke(1) == 1 {
            return Ok(None);
        }
        // Spent just as the time ran out: the message was handed over under the dispatcher's
        // lock and is in the channel or about to be.
        self.receive_timeout(Duration::from_secs(5)).await
    }

    /// As [`Consumer::receive`], giving up after `timeout` with `None`.
    pub async fn receive_timeout(&self, timeout: Duration) -> Result<Option<Received>> {
        match tokio::time::timeout(timeout, self.receive()).await {
            Ok(r) => r,
            Err(_) => Ok(None),
        }
    }

    /// Closes the consumer; messages prefetched but never received go back to the destination
    /// undelivered (their redelivery count unchanged).
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Unregistered first: that ends a `receive` waiting in another task, which holds the
        // receiver this then locks.
        self.unregister();
        let mut rx = self.rx.lock().await;
        give_back_buffered(&mut rx);
        drop(rx);
        // The session's pipelined AUTO acks are durable when close returns.
        let _ = self
            .session
            .inner
            .acks
            .acquire_many(MAX_PIPELINED_ACKS)
            .await;
    }

    fn unregister(&self) {
        self.slot.lock().take();
        let core = &self.session.inner.core;
        self.target.unregister(core, self.id);
        core.advise(Advisory::Consumer {
            destination: &self.destination,
            consumer_id: format!("{}:{}", self.session.inner.connection_id, self.id),
            connection_id: &self.session.inner.connection_id,
            network_path: self.session.inner.network_path.get().map(Vec::as_slice),
            started: false,
            count: core.consumer_count(&self.destination),
        });
        self.session
            .inner
            .consumers
            .lock()
            .retain(|(id, _)| *id != self.id);
    }
}

/// Returns what a closing consumer still had buffered.
fn give_back_buffered(rx: &mut mpsc::UnboundedReceiver<Delivery>) {
    rx.close();
    while let Ok(d) = rx.try_recv() {
        d.dispatcher.give_back(&d.message.id);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.unregister();
        give_back_buffered(self.rx.get_mut());
    }
}

/// A queue browser's snapshot of the messages spooled to the temp store, read back in pages
/// so that browsing a deep spool holds one page in memory, not all of it.
pub struct SpooledPages {
    temp: Option<Arc<crate::temp_store::TempStore>>,
    records: std::collections::VecDeque<Arc<crate::temp_store::SpooledRecord>>,
}

impl SpooledPages {
    /// The next up to `max` messages, in delivery order; empty once all were read. A record
    /// that cannot be read back (a damaged temp file) is logged and skipped: the browse goes on.
    pub async fn next(&mut self, max: usize) -> Vec<Message> {
        let Some(temp) = &self.temp else {
            return Vec::new();
        };
        loop {
            let n = max.max(1).min(self.records.len());
            if n == 0 {
                return Vec::new();
            }
            let page: Vec<_> = self.records.drain(..n).collect();
            let read: Vec<Message> = temp
                .read(page)
                .await
                .into_iter()
                .filter_map(|r| {
                    r.map_err(|e| warn!("a queue browser skips a spooled message: {e}"))
                        .ok()
                })
                .collect();
            if !read.is_empty() {
                return read;
            }
        }
    }
}
