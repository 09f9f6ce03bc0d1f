//! STOMP over WebSocket (ActiveMQ's `ws://` transport connector): the HTTP upgrade with STOMP's
//! subprotocols, then the socket as one more byte stream for [`super::server::serve`], so the
//! connection logic, users, limits, pipeline and memory accounting are the TCP ones.
//!
//! Framing: incoming WebSocket messages are concatenated into the STOMP byte stream, so a
//! frame may span messages and one message may hold several frames. Going out, each write is
//! one message, and the connection's writer ([`crate::outbound::write_loop`]) writes each
//! queued frame (and each heart-beat EOL) with one `write_all`, which [`WsBytes`] always takes
//! whole: one STOMP frame per WebSocket message, as ActiveMQ sends them. A frame that is valid
//! UTF-8 goes as a text message (what ActiveMQ sends, and what browser clients expect), any
//! other (a binary body) as a binary message.
//!
//! A WebSocket message is bounded by `transports.max_frame_bytes` (tungstenite refuses a
//! larger one and the connection ends), and the STOMP decoder bounds frames as on TCP. Since
//! tungstenite assembles a whole message before the STOMP decoder sees any of it, a client
//! that has not logged in could still make it buffer `max_frame_bytes`; so until the broker
//! has answered CONNECT, at most [`HANDSHAKE_ALLOWANCE`] + `max_connect_frame_bytes` bytes are
//! read from the socket at all ([`LoginBudget`]), as little as a STOMP client over TCP gets.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::debug;

use super::server::{ServerContext, serve};

/// The subprotocols served, best first (ActiveMQ's `stompProtocols` and their priority).
pub const SUBPROTOCOLS: [&str; 4] = ["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

/// The subprotocol to answer with for a request's `Sec-WebSocket-Protocol` values: none when
/// the client offers none (ActiveMQ then speaks STOMP too), the best STOMP one it offers, or
/// an error when it offers only others (ActiveMQ would speak STOMP to a client expecting
/// something else; a clear refusal is kinder to it).
pub fn choose_subprotocol<'a>(
    offered: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'static str>, Vec<String>> {
    let offered: Vec<String> = offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    SUBPROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .map(Some)
        .ok_or(offered)
}

/// Completes the upgrade on an accepted (and, for `wss://`, TLS-wrapped) stream and serves
/// STOMP on it until it closes. The upgrade must finish within `connect_timeout`.
pub async fn serve_websocket<S>(stream: S, peer: String, ctx: Arc<ServerContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(ctx.limits.max_frame_bytes))
        .max_frame_size(Some(ctx.limits.max_frame_bytes));
    // The error type is tungstenite's (its handshake callback's), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let negotiate = |request: &Request, mut response: Response| {
        let offered = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match choose_subprotocol(offered) {
            Ok(None) => Ok(response),
            Ok(Some(p)) => {
                response
                    .headers_mut()
                    .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
                Ok(response)
            }
            Err(offered) => {
                let mut refusal = ErrorResponse::new(Some(format!(
                    "unsupported WebSocket subprotocol {offered:?}: this endpoint speaks STOMP \
                     ({})\n",
                    SUBPROTOCOLS.join(", ")
                )));
                *refusal.status_mut() = StatusCode::BAD_REQUEST;
                Err(refusal)
            }
        }
    };
    let gate = Arc::new(LoginGate::default());
    let stream = LoginBudget {
        inner: stream,
        left: HANDSHAKE_ALLOWANCE + ctx.max_connect_frame_bytes,
        gate: Arc::clone(&gate),
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, negotiate, Some(config));
    let ws = match tokio::time::timeout(ctx.connect_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            debug!(peer = %peer, "WebSocket upgrade refused or failed: {e}");
            return;
        }
        Err(_) => {
            debug!(peer = %peer, "WebSocket upgrade timed out");
            return;
        }
    };
    serve(WsBytes::new(ws, gate), peer, ctx).await;
}

/// The bytes of the HTTP upgrade request and WebSocket framing allowed before login, beside
/// the CONNECT frame itself.
pub const HANDSHAKE_ALLOWANCE: usize = 16 * 1024;

/// Opens when the broker has answered CONNECT: the socket is then read without a budget.
#[derive(Default)]
pub struct LoginGate {
    open: AtomicBool,
    /// The reader waiting for the gate to open.
    waiting: Mutex<Option<Waker>>,
}

impl LoginGate {
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
        if let Some(w) = self.waiting.lock().take() {
            w.wake();
        }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

/// The socket under a WebSocket, read at most `left` bytes until its [`LoginGate`] opens; then
/// reading waits (the client's bytes stay in its socket) until the gate opens or the
/// connect timeout ends the connection.
pub struct LoginBudget<S> {
    pub inner: S,
    pub left: usize,
    pub gate: Arc<LoginGate>,
}

impl<S: AsyncRead + Unpin> AsyncRead for LoginBudget<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.gate.is_open() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.left == 0 {
            *this.gate.waiting.lock() = Some(cx.waker().clone());
            // Opened meanwhile: its wake may have found no waker.
            if !this.gate.is_open() {
                return Poll::Pending;
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let mut chunk = [0u8; 4096];
        let n = this.left.min(chunk.len()).min(buf.remaining());
        let mut limited = ReadBuf::new(&mut chunk[..n]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        this.left -= limited.filled().len();
        buf.put_slice(limited.filled());
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LoginBudget<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A WebSocket as a byte stream: messages in are read as one stream of bytes, each write out
/// is one message (and is always taken whole).
pub struct WsBytes<S> {
    ws: WebSocketStream<LoginBudget<S>>,
    /// Opened when the first CONNECTED frame goes out.
    gate: Arc<LoginGate>,
    /// The unread rest of the last message.
    pending: Bytes,
    /// The peer closed (or the stream ended): reads return end of file.
    eof: bool,
}

impl<S> WsBytes<S> {
    pub fn new(ws: WebSocketStream<LoginBudget<S>>, gate: Arc<LoginGate>) -> WsBytes<S> {
        WsBytes {
            ws,
            gate,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn io_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Pings are answered by tungstenite itself; pongs and empty messages carry no
            // STOMP bytes.
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Text(t))) => this.pending = Bytes::from(t),
                Some(Ok(Message::Binary(b))) => this.pending = b,
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        // The server's first frame is CONNECTED (the login succeeded) or an ERROR.
        if buf.starts_with(b"CONNECTED\n") && !this.gate.is_open() {
            this.gate.open();
        }
        let bytes = Bytes::copy_from_slice(buf);
        let message = match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        };
        Pin::new(&mut this.ws)
            .start_send(message)
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(io_error)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Before login only the budget is read; the rest waits in the socket until the gate opens.
    #[tokio::test]
    async fn the_socket_is_read_within_the_budget_until_login() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&vec![7u8; 100_000]).await.unwrap();
        let gate = Arc::new(LoginGate::default());
        let mut budget = LoginBudget {
            inner: server,
            left: 10_000,
            gate: Arc::clone(&gate),
        };
        let mut got = vec![0u8; 200_000];
        let mut n = 0;
        while n < 10_000 {
            n += budget.read(&mut got[n..]).await.unwrap();
        }
        assert_eq!(n, 10_000);
        let more = tokio::time::timeout(Duration::from_millis(100), budget.read(&mut got[n..]));
        assert!(more.await.is_err(), "nothing past the budget before login");
        let reader = tokio::spawn(async move {
            let mut rest = vec![0u8; 90_000];
            budget.read_exact(&mut rest).await.unwrap();
        });
        tokio::task::yield_now().await;
        gate.open();
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn subprotocols_are_chosen_best_first_and_others_refused() {
        assert_eq!(choose_subprotocol([]), Ok(None));
        assert_eq!(
            choose_subprotocol(["v10.stomp, v12.stomp"]),
            Ok(Some("v12.stomp"))
        );
        assert_eq!(
            choose_subprotocol(["v11.stomp", "stomp"]),
            Ok(Some("v11.stomp"))
        );
        assert_eq!(choose_subprotocol(["stomp"]), Ok(Some("stomp")));
        assert_eq!(
            choose_subprotocol(["mqtt", "chat"]),
            Err(vec!["mqtt".to_owned(), "chat".to_owned()])
        );
    }
}
