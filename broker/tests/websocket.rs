//! STOMP over WebSocket with a Rust WebSocket client (tokio-tungstenite): subprotocol
//! negotiation, STOMP frames split across WebSocket messages and several in one message, one
//! outgoing frame per message, the frame-size limit on both, the same users as over TCP, and
//! `wss://`. The browser client's test is in `websocket_browser.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestBroker, TestCert, body, recv};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const WS: &str = "[transports]\nstomp = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\n";
const LOGIN: &str =
    "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:admin\npasscode:admin\n\n\0";

async fn open<S>(
    stream: S,
    url: &str,
    subprotocols: Option<&str>,
) -> Result<(WebSocketStream<S>, Option<String>), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().unwrap();
    if let Some(p) = subprotocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, chosen))
}

async fn connect_ws(
    b: &TestBroker,
    subprotocols: Option<&str>,
) -> Result<(WebSocketStream<TcpStream>, Option<String>), WsError> {
    let addr = b.server.websocket.expect("websocket listener");
    let tcp = TcpStream::connect(addr).await.unwrap();
    open(tcp, &format!("ws://{addr}/"), subprotocols).await
}

/// The next data message as text, skipping heart-beat EOLs; `None` once the socket closes.
async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Option<String> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s");
        match m {
            Some(Ok(Message::Text(t))) if t.as_str() == "\n" => {}
            Some(Ok(Message::Text(t))) => return Some(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => return Some(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
        }
    }
}

async fn send_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// One STOMP frame per WebSocket message: exactly one NUL, at the end.
fn one_frame(m: &str) -> &str {
    assert_eq!(m.matches('\0').count(), 1, "one frame per message: {m:?}");
    assert!(m.ends_with('\0'), "{m:?}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocols_are_negotiated_and_others_refused() {
    let b = TestBroker::start(WS).await;
    for (offered, chosen) in [
        (Some("v10.stomp, v11.stomp, v12.stomp"), Some("v12.stomp")),
        (Some("v11.stomp"), Some("v11.stomp")),
        (Some("chat, v10.stomp"), Some("v10.stomp")),
        // None offered: STOMP all the same, as ActiveMQ does.
        (None, None),
    ] {
        let (mut ws, got) = connect_ws(&b, offered).await.unwrap();
        assert_eq!(got.as_deref(), chosen, "{offered:?}");
        send_text(&mut ws, LOGIN).await;
        let reply = next_text(&mut ws).await.unwrap();
        assert!(one_frame(&reply).starts_with("CONNECTED\n"), "{reply}");
    }
    // Only others offered: refused at the upgrade with a 400 that says why.
    match connect_ws(&b, Some("mqtt")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 400);
            let text = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(
                text.contains("v12.stomp") && text.contains("mqtt"),
                "{text}"
            );
        }
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("a client offering only mqtt was accepted"),
    }
    b.stop().await;
}

/// A frame split over three messages, then two frames in one message; every frame the broker
/// sends is a message of its own. Messages cross to and from a STOMP-over-TCP client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_may_span_messages_and_share_one_and_cross_to_tcp() {
    let b = TestBroker::start(WS).await;
    let (mut ws, _) = connect_ws(&b, Some("v12.stomp")).await.unwrap();
    let (a, rest) = LOGIN.split_at(10);
    let (c, d) = rest.split_at(20);
    for part in [a, c, d] {
        send_text(&mut ws, part).await;
    }
    assert!(one_frame(&next_text(&mut ws).await.unwrap()).starts_with("CONNECTED"));
    send_text(
        &mut ws,
        "SUBSCRIBE\nid:s\ndestination:/queue/ws-in\nreceipt:r1\n\n\0\
         SEND\ndestination:/queue/ws-in\npersistent:true\nreceipt:r2\n\nfrom ws\0",
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(one_frame(&next_text(&mut ws).await.unwrap()).to_owned());
    }
    assert!(
        got.iter()
            .any(|f| f.starts_with("RECEIPT") && f.contains("receipt-id:r1")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|f| f.starts_with("RECEIPT") && f.contains("receipt-id:r2")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|f| f.starts_with("MESSAGE") && f.ends_with("\n\nfrom ws\0")),
        "{got:?}"
    );
    // To a TCP client and back.
    send_text(
        &mut ws,
        "SEND\ndestination:/queue/ws-to-tcp\npersistent:true\nreceipt:r3\n\nhello tcp\0",
    )
    .await;
    assert!(next_text(&mut ws).await.unwrap().contains("receipt-id:r3"));
    let mut tcp = b.client().await;
    tcp.subscribe("t", "/queue/ws-to-tcp", "auto", &[])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut tcp).await), "hello tcp");
    tcp.send("/queue/ws-in", "hello ws", &[]).await.unwrap();
    let m = next_text(&mut ws).await.unwrap();
    assert!(one_frame(&m).ends_with("\n\nhello ws\0"), "{m}");
    b.stop().await;
}

/// `transports.max_frame_bytes` bounds a STOMP frame however it is split, and a WebSocket
/// message too; the users are those of STOMP over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_users_are_those_of_tcp() {
    let b = TestBroker::start(
        "[transports]\nstomp = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\nmax_frame_bytes = 4096\n[[users]]\nname = \"admin\"\npassword = \"admin\"\n",
    )
    .await;
    // A frame over the limit, sent in small messages: an ERROR naming the limit.
    let (mut ws, _) = connect_ws(&b, Some("v12.stomp")).await.unwrap();
    send_text(&mut ws, LOGIN).await;
    assert!(next_text(&mut ws).await.unwrap().starts_with("CONNECTED"));
    send_text(&mut ws, "SEND\ndestination:/queue/big\nreceipt:big\n\n").await;
    let chunk = "x".repeat(1024);
    for _ in 0..8 {
        if ws.send(Message::text(chunk.clone())).await.is_err() {
            break;
        }
    }
    let reply = next_text(&mut ws).await.unwrap();
    assert!(
        reply.starts_with("ERROR") && reply.contains("4096"),
        "{reply}"
    );
    assert!(reply.contains("receipt-id:big"), "{reply}");

    // One message over the limit: the connection ends, nothing is taken from it.
    let (mut ws, _) = connect_ws(&b, Some("v12.stomp")).await.unwrap();
    send_text(&mut ws, LOGIN).await;
    assert!(next_text(&mut ws).await.unwrap().starts_with("CONNECTED"));
    let huge = format!(
        "SEND\ndestination:/queue/big\nreceipt:huge\n\n{}\0",
        "y".repeat(8192)
    );
    let _ = ws.send(Message::text(huge)).await;
    let mut ended = false;
    for _ in 0..10 {
        match next_text(&mut ws).await {
            None => {
                ended = true;
                break;
            }
            Some(f) => assert!(!f.contains("RECEIPT"), "{f}"),
        }
    }
    assert!(ended, "the connection ends");
    let stats = b.broker.destination_stats().await.unwrap();
    assert!(
        stats
            .iter()
            .all(|s| s.destination.name.as_ref() != "big" || s.pending == 0),
        "{stats:?}"
    );

    // A wrong password: refused as over TCP.
    let (mut ws, _) = connect_ws(&b, Some("v12.stomp")).await.unwrap();
    send_text(
        &mut ws,
        "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:nope\n\n\0",
    )
    .await;
    let reply = next_text(&mut ws).await.unwrap();
    assert!(
        reply.starts_with("ERROR") && reply.contains("Authentication failed"),
        "{reply}"
    );
    b.stop().await;
}

/// `wss://`: STOMP over WebSocket over TLS with the certificate of `stomp_tls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_websocket_serves_stomp() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path());
    let b = TestBroker::start(&cert.transports("websocket_tls = \"127.0.0.1:0\"\n")).await;
    let addr = b.server.websocket_tls.expect("wss listener");
    let connector =
        tokio_rustls::TlsConnector::from(broker::tls::client_config(&cert.cert).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut ws, chosen) = open(
        tls,
        &format!("wss://localhost:{}/", addr.port()),
        Some("v12.stomp"),
    )
    .await
    .unwrap();
    assert_eq!(chosen.as_deref(), Some("v12.stomp"));
    send_text(&mut ws, LOGIN).await;
    assert!(next_text(&mut ws).await.unwrap().starts_with("CONNECTED"));
    send_text(
        &mut ws,
        "SUBSCRIBE\nid:s\ndestination:/topic/wss\n\n\0SEND\ndestination:/topic/wss\n\nsecure\0",
    )
    .await;
    let m = next_text(&mut ws).await.unwrap();
    assert!(
        one_frame(&m).starts_with("MESSAGE") && m.ends_with("\n\nsecure\0"),
        "{m}"
    );
    // Plain ws:// is not served on the wss port.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert!(open(tcp, &format!("ws://{addr}/"), None).await.is_err());
    b.stop().await;
}
