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
//! larger one and the connection ends), and the STOMP decoder bounds frames as on TCP.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Sink, Stream};
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
    serve(WsBytes::new(ws), peer, ctx).await;
}

/// A WebSocket as a byte stream: messages in are read as one stream of bytes, each write out
/// is one message (and is always taken whole).
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last message.
    pending: Bytes,
    /// The peer closed (or the stream ended): reads return end of file.
    eof: bool,
}

impl<S> WsBytes<S> {
    pub fn new(ws: WebSocketStream<S>) -> WsBytes<S> {
        WsBytes {
            ws,
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
mod tests {
    use super::*;

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
