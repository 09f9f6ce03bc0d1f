//! A small STOMP 1.2 client: what the CLI tools and the tests use. Its OpenWire counterpart is
//! [`crate::openwire_client`]; both share [`ConnectOptions`], [`ClientError`] and the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stomp::frame::{Decoder, Frame, Limits, Version};
use crate::url::Endpoint;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker sent ERROR: {message}{}", if .body.is_empty() { String::new() } else { format!(" ({})", .body) })]
    Broker { message: String, body: String },
    #[error("protocol: {0}")]
    Protocol(String),
    /// An OpenWire broker's ExceptionResponse or ConnectionError: the Java exception class
    /// it names (which a JMS client would throw) and its message.
    #[error("the broker refused: {message} ({class})")]
    Refused { class: String, message: String },
    /// The port speaks another protocol (OpenWire): retrying will not help.
    #[error("{0}")]
    NotStomp(String),
    #[error("the connection closed")]
    Closed,
    #[error("timed out")]
    Timeout,
}

pub type Result<T> = std::result::Result<T, ClientError>;

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to log in.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub login: String,
    pub passcode: String,
    pub client_id: Option<String>,
    /// Trusted CA (PEM) for `ssl://` endpoints.
    pub ca: Option<std::path::PathBuf>,
}

pub struct StompClient {
    io: Box<dyn Io>,
    decoder: Decoder,
    buf: BytesMut,
    /// Frames that arrived while waiting for a receipt.
    pending: VecDeque<Frame>,
    next_receipt: u64,
    pub endpoint: Endpoint,
    pub session: String,
}

impl StompClient {
    pub async fn connect(endpoint: &Endpoint, opts: &ConnectOptions) -> Result<StompClient> {
        let io = open(endpoint, opts).await?;
        let mut c = StompClient {
            io,
            decoder: Decoder::new(Limits {
                max_frame_bytes: 256 * 1024 * 1024,
                ..Limits::default()
            }),
            buf: BytesMut::with_capacity(8192),
            pending: VecDeque::new(),
            next_receipt: 0,
            endpoint: endpoint.clone(),
            session: String::new(),
        };
        let mut f = Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", endpoint.host.clone())
            .header("login", opts.login.clone())
            .header("passcode", opts.passcode.clone());
        if let Some(id) = &opts.client_id {
            f = f.header("client-id", id.clone());
        }
        c.write(&f).await?;
        // An OpenWire listener (ActiveMQ's 61616) speaks first, with its WireFormatInfo: say
        // so, rather than a frame decoding error.
        while c.buf.len() < OPENWIRE_HELLO && !c.buf.contains(&0) {
            if c.io.read_buf(&mut c.buf).await? == 0 {
                break;
            }
        }
        if looks_like_openwire(&c.buf) {
            return Err(ClientError::NotStomp(format!(
                "{}:{} speaks OpenWire (ActiveMQ's Java client protocol, port 61616 by default), \
                 not STOMP",
                endpoint.host, endpoint.port
            )));
        }
        let reply = c.read_frame().await?;
        match reply.command.as_str() {
            "CONNECTED" => {
                c.decoder.version = Version::V1_2;
                c.session = reply.get("session").unwrap_or_default().to_owned();
                Ok(c)
            }
            "ERROR" => Err(error_of(&reply)),
            other => Err(ClientError::Protocol(format!(
                "expected CONNECTED, got {other}"
            ))),
        }
    }

    async fn write(&mut self, f: &Frame) -> Result<()> {
        let bytes = f.to_bytes(self.decoder.version);
        self.io.write_all(&bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Writes raw bytes (tests use this for malformed input).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends a frame without waiting.
    pub async fn send_frame(&mut self, f: Frame) -> Result<()> {
        self.write(&f).await
    }

    /// Sends a frame with a receipt and waits for it; frames arriving meanwhile are kept for
    /// `recv`. An ERROR is returned as an error.
    pub async fn request(&mut self, f: Frame) -> Result<Frame> {
        self.next_receipt += 1;
        let id = format!("r{}", self.next_receipt);
        self.write(&f.header("receipt", id.clone())).await?;
        loop {
            let reply = self.read_frame().await?;
            match reply.command.as_str() {
                "RECEIPT" if reply.get("receipt-id") == Some(&id) => return Ok(reply),
                "ERROR" => return Err(error_of(&reply)),
                _ => self.pending.push_back(reply),
            }
        }
    }

    /// The next MESSAGE (or other unsolicited frame); an ERROR is an error.
    pub async fn recv(&mut self) -> Result<Frame> {
        let f = match self.pending.pop_front() {
            Some(f) => f,
            None => self.read_frame().await?,
        };
        if f.command == "ERROR" {
            return Err(error_of(&f));
        }
        Ok(f)
    }

    pub async fn recv_timeout(&mut self, d: Duration) -> Result<Option<Frame>> {
        if let Some(f) = self.pending.pop_front() {
            return if f.command == "ERROR" {
                Err(error_of(&f))
            } else {
                Ok(Some(f))
            };
        }
        match tokio::time::timeout(d, self.recv()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// SEND with a receipt.
    pub async fn send(
        &mut self,
        destination: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<()> {
        let mut f = Frame::new("SEND").header("destination", destination);
        for (k, v) in headers {
            f = f.header(k, *v);
        }
        self.request(f.with_body(body)).await.map(|_| ())
    }

    pub async fn subscribe(
        &mut self,
        id: &str,
        destination: &str,
        ack: &str,
        headers: &[(&str, &str)],
    ) -> Result<()> {
        let mut f = Frame::new("SUBSCRIBE")
            .header("id", id)
            .header("destination", destination)
            .header("ack", ack);
        for (k, v) in headers {
            f = f.header(k, *v);
        }
        self.request(f).await.map(|_| ())
    }

    /// ACKs a MESSAGE (by its `ack` header), optionally within a transaction.
    pub async fn ack(&mut self, message: &Frame, transaction: Option<&str>) -> Result<()> {
        let id = message
            .get("ack")
            .ok_or_else(|| ClientError::Protocol("the MESSAGE has no ack header".into()))?;
        let mut f = Frame::new("ACK").header("id", id);
        if let Some(t) = transaction {
            f = f.header("transaction", t);
        }
        self.request(f).await.map(|_| ())
    }

    pub async fn nack(&mut self, message: &Frame) -> Result<()> {
        let id = message
            .get("ack")
            .ok_or_else(|| ClientError::Protocol("the MESSAGE has no ack header".into()))?;
        self.request(Frame::new("NACK").header("id", id))
            .await
            .map(|_| ())
    }

    pub async fn begin(&mut self, tx: &str) -> Result<()> {
        self.request(Frame::new("BEGIN").header("transaction", tx))
            .await
            .map(|_| ())
    }

    pub async fn commit(&mut self, tx: &str) -> Result<()> {
        self.request(Frame::new("COMMIT").header("transaction", tx))
            .await
            .map(|_| ())
    }

    pub async fn abort(&mut self, tx: &str) -> Result<()> {
        self.request(Frame::new("ABORT").header("transaction", tx))
            .await
            .map(|_| ())
    }

    pub async fn disconnect(mut self) -> Result<()> {
        self.request(Frame::new("DISCONNECT")).await?;
        Ok(())
    }
}

/// A TCP connection to `endpoint`, inside TLS for `ssl://` (trusting `opts.ca`): what both the
/// STOMP and the OpenWire client speak over.
pub(crate) async fn open(endpoint: &Endpoint, opts: &ConnectOptions) -> Result<Box<dyn Io>> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    tcp.set_nodelay(true)?;
    let io: Box<dyn Io> = if endpoint.tls {
        let ca = opts
            .ca
            .as_ref()
            .ok_or_else(|| ClientError::Protocol("an ssl:// URL needs a CA file".into()))?;
        let config =
            crate::tls::client_config(ca).map_err(|e| ClientError::Protocol(format!("{e:#}")))?;
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| ClientError::Protocol(format!("bad TLS server name: {e}")))?;
        let s = tokio_rustls::TlsConnector::from(Arc::clone(&config))
            .connect(name, tcp)
            .await?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    Ok(io)
}

fn error_of(f: &Frame) -> ClientError {
    ClientError::Broker {
        message: f.get("message").unwrap_or("").to_owned(),
        body: String::from_utf8_lossy(&f.body).into_owned(),
    }
}

/// The bytes that tell an OpenWire listener's first frame: a 4-byte size, the
/// WireFormatInfo type (1), the magic `ActiveMQ`.
const OPENWIRE_HELLO: usize = 13;

fn looks_like_openwire(buf: &[u8]) -> bool {
    buf.len() >= OPENWIRE_HELLO && buf[4] == 1 && &buf[5..OPENWIRE_HELLO] == b"ActiveMQ"
}

/// Connects to the first endpoint that answers, trying them in turn until `deadline` passes
/// (a `failover:` URL's behaviour).
pub async fn connect_any(
    endpoints: &[Endpoint],
    opts: &ConnectOptions,
    deadline: Duration,
) -> Result<StompClient> {
    let until = tokio::time::Instant::now() + deadline;
    let mut last = ClientError::Closed;
    loop {
        for e in endpoints {
            match StompClient::connect(e, opts).await {
                Ok(c) => return Ok(c),
                // A refused login will not get better by retrying.
                Err(
                    err @ (ClientError::Broker { .. }
                    | ClientError::Refused { .. }
                    | ClientError::NotStomp(_)),
                ) => {
                    return Err(err);
                }
                Err(err) => last = err,
            }
        }
        if tokio::time::Instant::now() >= until {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
