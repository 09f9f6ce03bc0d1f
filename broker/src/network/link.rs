//! A bridge's OpenWire connection to the remote broker, as a client: the handshake
//! (WireFormatInfo both ways, ConnectionInfo answered, the remote's BrokerInfo), then a reader
//! task that matches Responses to requests and hands dispatches on, and a writer task fed by a
//! bounded channel that also keeps the connection alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use openwire::{
    Command, ConnectionId, ConnectionInfo, KeepAliveInfo, MessageDispatch, WireFormat,
    WireFormatInfo, WireFormatOptions,
};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use super::config::Remote;

/// Connecting, the handshake and the login must be done within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued for the writer before a sender waits.
const OUTBOUND_FRAMES: usize = 1024;
/// Dispatches (advisories) queued for the bridge before the reader waits.
const INBOUND_FRAMES: usize = 1024;

/// Why a link could not be opened or ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("no answer from {0} within {CONNECT_TIMEOUT:?}")]
    Timeout(String),
    #[error("{0} closed the connection during the handshake")]
    Closed(String),
    #[error("{0}: {1}")]
    Protocol(String, String),
    #[error("{0} refused the login: {1}")]
    Refused(String, String),
}

/// The answer to a request: stored (`Ok`) or the remote's exception.
pub type Answer = Result<(), String>;

/// What the reader hands the bridge.
pub enum Inbound {
    Dispatch(Box<MessageDispatch>),
}

/// A handle on the connection, cloned by every forwarder.
#[derive(Clone)]
pub struct Link {
    out: mpsc::Sender<Bytes>,
    wf: Arc<WireFormat>,
    next_id: Arc<AtomicI32>,
    pending: Arc<Mutex<HashMap<i32, oneshot::Sender<Answer>>>>,
    pub connection_id: String,
    pub remote_broker_id: String,
    pub remote_broker_name: String,
}

/// The tasks behind a link; dropping the receiver ends nothing, [`Tasks::stop`] does.
pub struct Tasks {
    /// `None` once [`Tasks::ended`] saw it end.
    reader: Option<JoinHandle<String>>,
    writer: JoinHandle<()>,
}

impl Tasks {
    /// Waits for the reader to end (the remote closed, or an error) and says why.
    pub async fn ended(&mut self) -> String {
        let Some(reader) = self.reader.as_mut() else {
            return "the connection ended".into();
        };
        let why = match reader.await {
            Ok(why) => why,
            Err(e) => format!("reader task failed: {e}"),
        };
        self.reader = None;
        why
    }

    /// Ends both tasks; then no frame is written any more, and every request still waiting
    /// for its answer errs (see [`Link::fail_pending`]).
    pub async fn stop(self, link: &Link) {
        self.writer.abort();
        let _ = self.writer.await;
        if let Some(reader) = self.reader {
            reader.abort();
            let _ = reader.await;
        }
        link.fail_pending();
    }
}

impl Link {
    /// Connects and logs in; `connection_id` names this side (unique per connection), and
    /// `client_id` the bridge (ActiveMQ refuses a connection without one).
    pub async fn open(
        remote: &Remote,
        connection_id: String,
        client_id: String,
    ) -> Result<(Link, mpsc::Receiver<Inbound>, Tasks), LinkError> {
        let addr = remote.address.clone();
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            Self::handshake(remote, connection_id, client_id),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout(addr)),
        }
    }

    async fn handshake(
        remote: &Remote,
        connection_id: String,
        client_id: String,
    ) -> Result<(Link, mpsc::Receiver<Inbound>, Tasks), LinkError> {
        let addr = remote.address.clone();
        let proto = |e: String| LinkError::Protocol(addr.clone(), e);
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| LinkError::Connect(addr.clone(), e))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let ours = WireFormatInfo::new(12, &WireFormatOptions::broker_default())
            .map_err(|e| proto(e.to_string()))?;
        let mut wf = WireFormat::default();
        let mut buf = BytesMut::new();
        openwire::encode(&Command::WireFormatInfo(ours.clone()), &wf, &mut buf)
            .map_err(|e| proto(e.to_string()))?;
        wr.write_all(&buf)
            .await
            .map_err(|e| LinkError::Connect(addr.clone(), e))?;
        let mut rbuf = BytesMut::with_capacity(8192);
        let theirs = loop {
            match openwire::decode(&mut rbuf, &wf).map_err(|e| proto(e.to_string()))? {
                Some(Command::WireFormatInfo(w)) => break w,
                Some(other) => {
                    return Err(proto(format!(
                        "expected WireFormatInfo, got type {}",
                        other.data_type()
                    )));
                }
                None => read_more(&mut rd, &mut rbuf, &addr).await?,
            }
        };
        wf = openwire::negotiate(&theirs, &ours).map_err(|e| proto(e.to_string()))?;
        let info = ConnectionInfo {
            command_id: 1,
            response_required: true,
            connection_id: ConnectionId {
                value: connection_id.clone(),
            },
            client_id: Some(client_id),
            user_name: remote.user.clone(),
            password: remote.password.clone(),
            ..ConnectionInfo::default()
        };
        let mut buf = BytesMut::new();
        openwire::encode(&Command::ConnectionInfo(info), &wf, &mut buf)
            .map_err(|e| proto(e.to_string()))?;
        wr.write_all(&buf)
            .await
            .map_err(|e| LinkError::Connect(addr.clone(), e))?;
        // The remote introduces itself (BrokerInfo) and answers the login, in either order.
        let mut broker = None;
        let mut answered = false;
        while broker.is_none() || !answered {
            match openwire::decode(&mut rbuf, &wf).map_err(|e| proto(e.to_string()))? {
                Some(Command::BrokerInfo(b)) => {
                    broker = Some((
                        b.broker_id.map(|i| i.value).unwrap_or_default(),
                        b.broker_name.unwrap_or_default(),
                    ));
                }
                Some(Command::Response(r)) if r.correlation_id == 1 => answered = true,
                Some(Command::ExceptionResponse(e)) if e.correlation_id == 1 => {
                    let why = e
                        .exception
                        .and_then(|t| t.message)
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(LinkError::Refused(addr, why));
                }
                Some(Command::ConnectionError(e)) => {
                    let why = e
                        .exception
                        .and_then(|t| t.message)
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(LinkError::Refused(addr, why));
                }
                Some(_) => {}
                None => read_more(&mut rd, &mut rbuf, &addr).await?,
            }
        }
        let (remote_broker_id, remote_broker_name) = broker.unwrap_or_default();
        if remote_broker_id.is_empty() {
            return Err(proto("the remote broker sent no broker id".into()));
        }
        let wf = Arc::new(wf);
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND_FRAMES);
        let (in_tx, in_rx) = mpsc::channel(INBOUND_FRAMES);
        let pending: Arc<Mutex<HashMap<i32, oneshot::Sender<Answer>>>> = Arc::default();
        let keep_alive = wf
            .keep_alive_interval_ms()
            .map(|ms| Duration::from_millis(ms.max(1) as u64));
        let writer = tokio::spawn(write_loop(wr, out_rx, keep_alive, Arc::clone(&wf)));
        let link = Link {
            out: out_tx,
            wf: Arc::clone(&wf),
            next_id: Arc::new(AtomicI32::new(2)),
            pending: Arc::clone(&pending),
            connection_id,
            remote_broker_id,
            remote_broker_name,
        };
        let reader = tokio::spawn(read_loop(rd, rbuf, wf, pending, in_tx, link.clone()));
        Ok((
            link,
            in_rx,
            Tasks {
                reader: Some(reader),
                writer,
            },
        ))
    }

    /// Drops every request waiting for its answer: their receivers err. Called once the
    /// writer is gone, so no request can be left behind waiting.
    pub fn fail_pending(&self) {
        self.pending.lock().clear();
    }

    /// A fresh command id.
    pub fn next_command_id(&self) -> i32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a command that wants no answer; false once the connection is gone.
    pub async fn send(&self, cmd: &Command) -> bool {
        let mut buf = BytesMut::new();
        if let Err(e) = openwire::encode(cmd, &self.wf, &mut buf) {
            debug!("cannot encode {}: {e}", cmd.data_type());
            return false;
        }
        self.out.send(buf.freeze()).await.is_ok()
    }

    /// Sends `cmd`, whose `command_id` is `id` and which requires a response; the receiver
    /// resolves with the answer, or errs when the connection goes first.
    pub async fn request(&self, id: i32, cmd: &Command) -> Option<oneshot::Receiver<Answer>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        if self.send(cmd).await {
            Some(rx)
        } else {
            self.pending.lock().remove(&id);
            None
        }
    }
}

async fn read_more(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    addr: &str,
) -> Result<(), LinkError> {
    match rd.read_buf(buf).await {
        Ok(0) => Err(LinkError::Closed(addr.to_owned())),
        Ok(_) => Ok(()),
        Err(e) => Err(LinkError::Connect(addr.to_owned(), e)),
    }
}

/// Reads until the remote closes or errs; returns why. Answers resolve their requests;
/// dispatches go to the bridge (waiting for room: the remote then waits for our acks).
async fn read_loop(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut buf: BytesMut,
    wf: Arc<WireFormat>,
    pending: Arc<Mutex<HashMap<i32, oneshot::Sender<Answer>>>>,
    inbound: mpsc::Sender<Inbound>,
    link: Link,
) -> String {
    // The remote's keep-alives arrive a few times per inactivity period.
    let read_timeout = match wf.max_inactivity_duration {
        d if d > 0 => Duration::from_millis(d as u64 * 2),
        _ => Duration::from_secs(365 * 24 * 3600),
    };
    let why = 'outer: loop {
        loop {
            let cmd = match openwire::decode(&mut buf, &wf) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => break 'outer format!("malformed frame: {e}"),
            };
            match cmd {
                Command::Response(r) => {
                    if let Some(tx) = pending.lock().remove(&r.correlation_id) {
                        let _ = tx.send(Ok(()));
                    }
                }
                Command::ExceptionResponse(e) => {
                    let why = e
                        .exception
                        .and_then(|t| t.message)
                        .unwrap_or_else(|| "refused".into());
                    if let Some(tx) = pending.lock().remove(&e.correlation_id) {
                        let _ = tx.send(Err(why));
                    }
                }
                Command::MessageDispatch(d) => {
                    let handed = inbound.send(Inbound::Dispatch(Box::new(d))).await;
                    if handed.is_err() {
                        break 'outer "the bridge stopped".into();
                    }
                }
                Command::KeepAliveInfo(k) if k.response_required => {
                    link.send(&Command::KeepAliveInfo(KeepAliveInfo::default()))
                        .await;
                }
                Command::ConnectionError(e) => {
                    break 'outer format!(
                        "connection error from the remote broker: {}",
                        e.exception.and_then(|t| t.message).unwrap_or_default()
                    );
                }
                Command::ShutdownInfo(_) => break 'outer "the remote broker is stopping".into(),
                _ => {}
            }
        }
        match tokio::time::timeout(read_timeout, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => break "the remote broker closed the connection".into(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => break format!("read failed: {e}"),
            Err(_) => break format!("nothing read within {read_timeout:?}"),
        }
    };
    // Every request still waiting learns the connection is gone.
    pending.lock().clear();
    why
}

/// Writes frames in order; a keep-alive when there was nothing to write for `keep_alive`.
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    keep_alive: Option<Duration>,
    wf: Arc<WireFormat>,
) {
    let mut ping = BytesMut::new();
    let _ = openwire::encode(
        &Command::KeepAliveInfo(KeepAliveInfo::default()),
        &wf,
        &mut ping,
    );
    let ping = ping.freeze();
    let idle = keep_alive.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    loop {
        let frame = match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => ping.clone(),
        };
        if wr.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
