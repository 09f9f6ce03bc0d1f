//! STOMP over TCP against a broker on an ephemeral port: every command, each ack mode,
//! transactions, durable subscriptions across a restart, selectors, TLS, authentication and
//! malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use broker::client::{ClientError, ConnectOptions, StompClient};
use broker::stomp::frame::Frame;
use broker::url::Endpoint;
use common::{TestBroker, body, none, recv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_with_receipts_and_headers() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    c.send(
        "/queue/a",
        "hello",
        &[
            ("persistent", "true"),
            ("priority", "7"),
            ("correlation-id", "c-1"),
            ("color", "red"),
        ],
    )
    .await
    .unwrap();
    // A different delivery mode: JMS leaves the order between the two undefined, so the
    // test sends it once the first was received.
    c.subscribe("s1", "/queue/a", "auto", &[]).await.unwrap();
    let m = recv(&mut c).await;
    assert_eq!(m.command, "MESSAGE");
    assert_eq!(body(&m), "hello");
    assert_eq!(m.get("subscription"), Some("s1"));
    assert_eq!(m.get("destination"), Some("/queue/a"));
    assert_eq!(m.get("persistent"), Some("true"));
    assert_eq!(m.get("priority"), Some("7"));
    assert_eq!(m.get("correlation-id"), Some("c-1"));
    assert_eq!(m.get("color"), Some("red"));
    assert!(m.get("message-id").is_some());
    c.send(
        "/queue/a",
        &b"\x00\x01binary"[..],
        &[("content-length", "8")],
    )
    .await
    .unwrap();
    let m = recv(&mut c).await;
    assert_eq!(&m.body[..], b"\x00\x01binary");
    assert_eq!(
        m.get("persistent"),
        Some("false"),
        "STOMP sends are non-persistent by default, as in ActiveMQ"
    );
    none(&mut c).await;
    c.disconnect().await.unwrap();
    b.stop().await;
}

async fn raw_session(b: &TestBroker, connect: &str) -> TcpStream {
    let mut s = TcpStream::connect(b.server.stomp.unwrap()).await.unwrap();
    s.write_all(connect.as_bytes()).await.unwrap();
    s
}

async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_1_0_and_1_1_clients_work_with_their_framing() {
    let b = TestBroker::start("").await;
    // 1.0: no accept-version, no escaping, ack by message-id, subscription id optional.
    let mut s = raw_session(&b, "CONNECT\nlogin:admin\npasscode:admin\n\n\0").await;
    let connected = read_until(&mut s, "\0").await;
    assert!(
        connected.contains("CONNECTED") && connected.contains("version:1.0"),
        "{connected}"
    );
    s.write_all(b"SEND\ndestination:/queue/v10\nk:a\\cb\n\nten\0SUBSCRIBE\ndestination:/queue/v10\nack:client\n\n\0")
        .await
        .unwrap();
    let msg = read_until(&mut s, "ten\0").await;
    assert!(msg.contains("k:a\\cb"), "1.0 does not escape: {msg}");
    let mid = msg
        .lines()
        .find_map(|l| l.strip_prefix("message-id:"))
        .unwrap()
        .to_owned();
    s.write_all(format!("ACK\nmessage-id:{mid}\nreceipt:1\n\n\0").as_bytes())
        .await
        .unwrap();
    assert!(read_until(&mut s, "receipt-id:1").await.contains("RECEIPT"));
    // 1.1: heart-beat negotiation, escaped headers.
    let mut s = raw_session(&b, "STOMP\naccept-version:1.0,1.1\nhost:x\nlogin:admin\npasscode:admin\nheart-beat:0,1000\n\n\0").await;
    let connected = read_until(&mut s, "\0").await;
    assert!(
        connected.contains("version:1.1") && connected.contains("heart-beat:"),
        "{connected}"
    );
    s.write_all(b"SEND\ndestination:/queue/v11\nk:a\\cb\n\neleven\0SUBSCRIBE\nid:x\ndestination:/queue/v11\n\n\0")
        .await
        .unwrap();
    let msg = read_until(&mut s, "eleven\0").await;
    assert!(msg.contains("k:a\\cb"), "1.1 escapes the colon: {msg}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ack_is_cumulative_and_unacked_messages_come_back_redelivered() {
    let b = TestBroker::start("").await;
    let mut p = b.client().await;
    for i in 1..=4 {
        p.send("/queue/c", format!("m{i}"), &[("persistent", "true")])
            .await
            .unwrap();
    }
    let mut c = b.client().await;
    c.subscribe("s", "/queue/c", "client", &[]).await.unwrap();
    let ms: Vec<Frame> = [
        recv(&mut c).await,
        recv(&mut c).await,
        recv(&mut c).await,
        recv(&mut c).await,
    ]
    .into();
    c.ack(&ms[1], None).await.unwrap();
    drop(c); // the connection dies with m3 and m4 unacked
    let mut c = b.client().await;
    c.subscribe("s", "/queue/c", "client-individual", &[])
        .await
        .unwrap();
    let a = recv(&mut c).await;
    let d = recv(&mut c).await;
    assert_eq!((body(&a).as_str(), body(&d).as_str()), ("m3", "m4"));
    assert_eq!(a.get("redelivered"), Some("true"));
    c.ack(&d, None).await.unwrap();
    c.nack(&a).await.unwrap();
    let again = recv(&mut c).await;
    assert_eq!(body(&again), "m3");
    c.ack(&again, None).await.unwrap();
    none(&mut c).await;
    assert!(
        matches!(c.ack(&again, None).await, Err(ClientError::Broker { .. })),
        "a second ack is refused with an ERROR frame"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_cover_sends_and_acks() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    c.begin("t1").await.unwrap();
    c.send(
        "/queue/tx",
        "dropped",
        &[("transaction", "t1"), ("persistent", "true")],
    )
    .await
    .unwrap();
    c.abort("t1").await.unwrap();
    c.begin("t2").await.unwrap();
    c.send(
        "/queue/tx",
        "kept",
        &[("transaction", "t2"), ("persistent", "true")],
    )
    .await
    .unwrap();
    let mut watcher = b.client().await;
    watcher
        .subscribe("w", "/queue/tx", "client", &[])
        .await
        .unwrap();
    none(&mut watcher).await;
    c.commit("t2").await.unwrap();
    let m = recv(&mut watcher).await;
    assert_eq!(body(&m), "kept");
    // An ACK inside a transaction applies at commit, with the transaction's sends.
    watcher.begin("t3").await.unwrap();
    watcher.ack(&m, Some("t3")).await.unwrap();
    watcher
        .send(
            "/queue/tx-out",
            "result",
            &[("transaction", "t3"), ("persistent", "true")],
        )
        .await
        .unwrap();
    watcher.abort("t3").await.unwrap();
    watcher.disconnect().await.unwrap();
    let mut w2 = b.client().await;
    w2.subscribe("w", "/queue/tx", "client", &[]).await.unwrap();
    let m = recv(&mut w2).await;
    assert_eq!(
        (body(&m).as_str(), m.get("redelivered")),
        ("kept", Some("true"))
    );
    w2.begin("t4").await.unwrap();
    w2.ack(&m, Some("t4")).await.unwrap();
    w2.send(
        "/queue/tx-out",
        "result",
        &[("transaction", "t4"), ("persistent", "true")],
    )
    .await
    .unwrap();
    w2.commit("t4").await.unwrap();
    w2.subscribe("o", "/queue/tx-out", "auto", &[])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut w2).await), "result");
    none(&mut w2).await;
    assert!(matches!(
        w2.commit("nope").await,
        Err(ClientError::Broker { .. })
    ));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscription_survives_a_client_and_a_broker_restart() {
    let b = TestBroker::start("").await;
    let mut sub = b.client_as("admin", "admin", Some("app-1")).await;
    sub.subscribe(
        "d",
        "/topic/prices",
        "client",
        &[("activemq.subscriptionName", "keeper")],
    )
    .await
    .unwrap();
    sub.disconnect().await.unwrap();
    let mut p = b.client().await;
    for i in 0..3 {
        p.send("/topic/prices", format!("p{i}"), &[("persistent", "true")])
            .await
            .unwrap();
    }
    p.disconnect().await.unwrap();
    let b = b.restart().await;
    let mut sub = b.client_as("admin", "admin", Some("app-1")).await;
    sub.subscribe(
        "d",
        "/topic/prices",
        "client",
        &[("activemq.subscriptionName", "keeper")],
    )
    .await
    .unwrap();
    let frames = [
        recv(&mut sub).await,
        recv(&mut sub).await,
        recv(&mut sub).await,
    ];
    let got: Vec<String> = frames.iter().map(body).collect();
    assert_eq!(got, ["p0", "p1", "p2"]);
    none(&mut sub).await;
    sub.ack(&frames[2], None).await.unwrap();
    // UNSUBSCRIBE with the name deletes the durable subscription.
    sub.request(
        Frame::new("UNSUBSCRIBE")
            .header("id", "d")
            .header("activemq.subscriptionName", "keeper"),
    )
    .await
    .unwrap();
    let stats = b.broker.durable_subscriptions().await.unwrap();
    assert!(stats.is_empty(), "{stats:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_prefetch_headers() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    // STOMP headers are string properties: as in ActiveMQ (and JMS), a string does not compare
    // with a number, so selectors on them use strings.
    c.subscribe(
        "s",
        "/queue/sel",
        "auto",
        &[
            ("selector", "size <> '1' AND color = 'red'"),
            ("activemq.prefetchSize", "1"),
        ],
    )
    .await
    .unwrap();
    for (size, color) in [("1", "red"), ("9", "blue"), ("7", "red")] {
        c.send(
            "/queue/sel",
            format!("{size}{color}"),
            &[("size", size), ("color", color)],
        )
        .await
        .unwrap();
    }
    assert_eq!(body(&recv(&mut c).await), "7red");
    none(&mut c).await;
    let mut bad = b.client().await;
    let e = bad
        .subscribe("x", "/queue/sel", "auto", &[("selector", "color = 'red")])
        .await;
    assert!(
        matches!(&e, Err(ClientError::Broker { message, .. }) if message.contains("selector")),
        "{e:?}"
    );
    b.stop().await;
}

/// A selector of more nodes than `limits.max_selector_nodes`, or one of 100,000 terms, is
/// refused at SUBSCRIBE with an ERROR naming the limit; the broker serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_selectors_are_refused_at_subscribe() {
    let b = TestBroker::start(
        "[limits]\nmax_selector_nodes = 50\n[transports]\nstomp = \"127.0.0.1:0\"\nmax_header_bytes = 1048576\n",
    )
    .await;
    let refused = |text: String| {
        let b = &b;
        async move {
            let mut c = b.client().await;
            match c
                .subscribe("x", "/topic/big", "auto", &[("selector", text.as_str())])
                .await
            {
                Err(ClientError::Broker { message, .. }) => message,
                other => panic!("{other:?}"),
            }
        }
    };
    let sums = format!("{}1 = 26", "1 + ".repeat(25));
    let message = refused(sums).await;
    assert!(message.contains("limits.max_selector_nodes"), "{message}");
    let ors = format!("{}color = 'red'", "a=1 OR ".repeat(99_999));
    let message = refused(ors).await;
    assert!(
        message.contains("selector") && message.contains("longer than"),
        "{message}"
    );
    // Within the limit (47 nodes) the chain works.
    let mut c = b.client().await;
    let fits = format!("{}color = 'red'", "color = 'blue' OR ".repeat(11));
    c.subscribe("ok", "/topic/big", "auto", &[("selector", fits.as_str())])
        .await
        .unwrap();
    let mut p = b.client().await;
    p.send("/topic/big", "blue", &[("color", "green")])
        .await
        .unwrap();
    p.send("/topic/big", "red", &[("color", "red")])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut c).await), "red");
    b.stop().await;
}

/// A topic subscriber that acks nothing (client acks, prefetch 1) falls behind; past
/// `max_pending_non_durable` the broker drops for it, and `/metrics` counts the drops per topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_topic_subscriber_drops_are_counted_on_metrics() {
    let b = TestBroker::start("[limits]\nmax_pending_non_durable = 3\n").await;
    let web = b.console().await;
    let mut slow = b.client().await;
    slow.subscribe(
        "s",
        "/topic/ticks",
        "client",
        &[("activemq.prefetchSize", "1")],
    )
    .await
    .unwrap();
    let mut p = b.client().await;
    for i in 0..10 {
        p.send("/topic/ticks", format!("t{i}"), &[]).await.unwrap();
    }
    // At most one written to the client, one in its prefetch and three waiting.
    let dropped = b
        .broker
        .destination_stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| &*s.destination.name == "ticks" && s.subscription.is_none())
        .map_or(0, |s| s.slow_consumer_dropped);
    assert!((5..=10).contains(&dropped), "{dropped}");
    let metrics = common::http::request(
        web.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        None,
    )
    .await;
    assert_eq!(metrics.status, 200);
    let line =
        format!("broker_slow_consumer_dropped_total{{destination=\"topic://ticks\"}} {dropped}\n");
    assert!(metrics.body.contains(&line), "{line} in {}", metrics.body);
    assert!(
        metrics
            .body
            .contains("# TYPE broker_slow_consumer_dropped_total counter\n")
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_dstat_and_purge() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    for i in 0..3 {
        c.send("/queue/b", format!("b{i}"), &[("persistent", "true")])
            .await
            .unwrap();
    }
    c.subscribe("br", "/queue/b", "auto", &[("browser", "true")])
        .await
        .unwrap();
    let seen: Vec<String> = [recv(&mut c).await, recv(&mut c).await, recv(&mut c).await]
        .iter()
        .map(body)
        .collect();
    assert_eq!(seen, ["b0", "b1", "b2"]);
    assert_eq!(recv(&mut c).await.get("browser"), Some("end"));
    c.subscribe(
        "st",
        "/queue/ActiveMQ.Statistics.Destination",
        "auto",
        &[("browser", "true")],
    )
    .await
    .unwrap();
    let row = recv(&mut c).await;
    assert_eq!(row.get("destinationName"), Some("/queue/b"));
    assert_eq!(row.get("pending"), Some("3"), "browsing consumed nothing");
    assert_eq!(recv(&mut c).await.get("browser"), Some("end"));
    c.send("/queue/ActiveMQ.Admin.Purge.b", "", &[])
        .await
        .unwrap();
    assert!(b.broker.browse("b", 10).await.unwrap().is_empty());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_and_failures_get_an_error_frame() {
    let b = TestBroker::start("[[users]]\nname = \"alice\"\npassword = \"s3cret\"\n").await;
    let endpoint = b.endpoint();
    let login = |u: &str, p: &str| ConnectOptions {
        login: u.into(),
        passcode: p.into(),
        ..ConnectOptions::default()
    };
    for (u, p) in [("alice", "wrong"), ("admin", "admin"), ("", "")] {
        let e = StompClient::connect(&endpoint, &login(u, p))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&e, ClientError::Broker { message, .. } if message == "Authentication failed"),
            "{u}/{p}: {e}"
        );
    }
    let mut ok = StompClient::connect(&endpoint, &login("alice", "s3cret"))
        .await
        .unwrap();
    ok.send("/queue/x", "in", &[]).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_that_connection() {
    let b = TestBroker::start(
        "[transports]\nstomp = \"127.0.0.1:0\"\nmax_frame_bytes = 65536\nmax_headers = 20\n",
    )
    .await;
    let mut good = b.client().await;
    good.subscribe("g", "/queue/ok", "auto", &[]).await.unwrap();
    let cases: Vec<Vec<u8>> = vec![
        b"HELLO\n\n\0".to_vec(),
        b"SEND\nno-colon-here\n\n\0".to_vec(),
        b"SEND\ndestination:/queue/ok\ncontent-length:zz\n\n\0".to_vec(),
        format!("SEND\ndestination:/queue/ok\n\n{}", "x".repeat(70_000)).into_bytes(),
        format!(
            "SEND\n{}\n\0",
            (0..30).map(|i| format!("h{i}:v\n")).collect::<String>()
        )
        .into_bytes(),
        b"SEND\ndestination:/elsewhere/x\n\n\0".to_vec(),
        b"SEND\ndestination:/queue/ok\npriority:12\n\n\0".to_vec(),
        b"SUBSCRIBE\nid:1\ndestination:/queue/ok\nack:sometimes\n\n\0".to_vec(),
        b"ACK\nid:nothing\n\n\0".to_vec(),
        b"SEND\nk:\\q\n\n\0".to_vec(),
    ];
    for bytes in cases {
        let mut bad = b.client().await;
        bad.write_raw(&bytes).await.unwrap();
        let reply = bad.recv_timeout(Duration::from_secs(10)).await;
        assert!(
            matches!(&reply, Err(ClientError::Broker { .. })),
            "{:?} => {reply:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        );
        assert!(
            matches!(
                bad.recv_timeout(Duration::from_secs(10)).await,
                Err(ClientError::Closed | ClientError::Io(_))
            ),
            "the connection is closed after the ERROR"
        );
    }
    // Not even CONNECT: an ERROR too.
    let mut s = TcpStream::connect(b.server.stomp.unwrap()).await.unwrap();
    s.write_all(b"\x16\x03\x01garbage\n\n\0").await.unwrap();
    assert!(read_until(&mut s, "\0").await.starts_with("ERROR"));
    // The broker and the good connection carry on.
    let mut p = b.client().await;
    p.send("/queue/ok", "still here", &[]).await.unwrap();
    assert_eq!(body(&recv(&mut good).await), "still here");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let tls = common::TestCert::write(dir.path());
    let cert_path = tls.cert.clone();
    let b = TestBroker::start(&tls.transports("stomp_tls = \"127.0.0.1:0\"\n")).await;
    let endpoint = Endpoint {
        host: "localhost".into(),
        port: b.server.stomp_tls.unwrap().port(),
        tls: true,
    };
    let opts = ConnectOptions {
        login: "admin".into(),
        passcode: "admin".into(),
        client_id: None,
        ca: Some(cert_path.clone()),
    };
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    c.send("/queue/secure", "over tls", &[("persistent", "true")])
        .await
        .unwrap();
    c.subscribe("s", "/queue/secure", "auto", &[])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut c).await), "over tls");
    // Plain STOMP on the TLS port gets nowhere, and the broker carries on.
    let plain = Endpoint {
        tls: false,
        ..endpoint.clone()
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(15), StompClient::connect(&plain, &opts))
            .await
            .map_or(true, |r| r.is_err())
    );
    c.send("/queue/secure", "still fine", &[]).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_and_priorities() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    c.send(
        "/queue/e",
        "old",
        &[("expires", "1"), ("persistent", "true")],
    )
    .await
    .unwrap();
    for p in ["1", "9", "4"] {
        c.send(
            "/queue/e",
            format!("p{p}"),
            &[("priority", p), ("persistent", "true")],
        )
        .await
        .unwrap();
    }
    c.subscribe("s", "/queue/e", "auto", &[]).await.unwrap();
    let got: Vec<String> = [recv(&mut c).await, recv(&mut c).await, recv(&mut c).await]
        .iter()
        .map(body)
        .collect();
    assert_eq!(got, ["p9", "p4", "p1"]);
    none(&mut c).await;
    b.stop().await;
}

/// `prioritized_messages = false` on a queue: what was sent with mixed priorities comes back
/// in the order sent, each frame with the priority it was sent with (KahaDB, so the order
/// comes from the store's cursor: two messages paged in at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_without_prioritized_messages_is_fifo_whatever_the_priority() {
    let b = TestBroker::start(
        "[limits]\nmax_page_size = 2\n[[policy.entries]]\nqueue = \"fifo.>\"\nprioritized_messages = false\n",
    )
    .await;
    let mut c = b.client().await;
    let sent = [
        ("a", "1"),
        ("b", "9"),
        ("c", "4"),
        ("d", "9"),
        ("e", "0"),
        ("f", "7"),
    ];
    for (text, p) in sent {
        c.send(
            "/queue/fifo.orders",
            text,
            &[("priority", p), ("persistent", "true")],
        )
        .await
        .unwrap();
    }
    c.subscribe("s", "/queue/fifo.orders", "auto", &[])
        .await
        .unwrap();
    for (text, p) in sent {
        let m = recv(&mut c).await;
        assert_eq!(body(&m), text);
        assert_eq!(m.get("priority"), Some(p), "{text} keeps its priority");
    }
    none(&mut c).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heart_beats_are_negotiated_and_sent() {
    let b = TestBroker::start("").await;
    let mut s = raw_session(
        &b,
        "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\nheart-beat:0,1000\n\n\0",
    )
    .await;
    let connected = read_until(&mut s, "\0").await;
    // As ActiveMQ: beats every 1000 ms to the client, none expected from it.
    assert!(connected.contains("heart-beat:1000,0"), "{connected}");
    // Nothing else is sent on this connection, so what arrives next is a heart-beat EOL.
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut byte))
        .await
        .expect("a heart-beat within 10 s")
        .unwrap();
    assert_eq!(&byte, b"\n");
    b.stop().await;
}

/// Before logging in a client gets little: a big frame is refused at the pre-CONNECT limit, and
/// trickling bytes does not extend the CONNECT deadline, which counts from the accept. A
/// logged-in client meanwhile keeps sending and receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_logs_in_gets_little() {
    let b = TestBroker::start(
        "[transports]\nstomp = \"127.0.0.1:0\"\nmax_connect_frame_bytes = 4096\nconnect_timeout_ms = 1000\n",
    )
    .await;
    let mut good = b.client().await;
    good.subscribe("g", "/queue/alive", "auto", &[])
        .await
        .unwrap();

    // 16 MiB "CONNECT" without a NUL: refused after 4 KiB, not buffered.
    let mut big = TcpStream::connect(b.server.stomp.unwrap()).await.unwrap();
    big.write_all(b"CONNECT\nlogin:admin\npasscode:admin\n\n")
        .await
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut refused_after = None;
    for i in 0..256 {
        if big.write_all(&chunk).await.is_err() {
            refused_after = Some(i);
            break;
        }
    }
    let reply = read_until(&mut big, "\0").await;
    assert!(
        reply.starts_with("ERROR") && reply.contains("4096"),
        "{reply:?} (write failed after {refused_after:?} chunks)"
    );

    // One byte every 100 ms, for 30 s if it were let: closed at the deadline instead.
    let mut slow = TcpStream::connect(b.server.stomp.unwrap()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for byte in b"CONNECT\nlogin:admin\npasscode:admin\n"
        .iter()
        .cycle()
        .take(300)
    {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut probe)).await
        {
            closed = true;
            break;
        }
        good.send("/queue/alive", "beat", &[]).await.unwrap();
        assert_eq!(body(&recv(&mut good).await), "beat");
    }
    assert!(
        closed,
        "the trickling client was not closed within {:?}",
        started.elapsed()
    );
    b.stop().await;
}

/// Issue 25 over STOMP: a wildcard subscription, a composite send in ActiveMQ's STOMP form
/// (`/queue/a,/topic/b`), a virtual topic read by its consumer queue, and the refusal of a
/// send to a wildcard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_composites_and_virtual_topics() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    c.subscribe("w", "/topic/orders.>", "auto", &[])
        .await
        .unwrap();
    c.subscribe("v", "/queue/Consumer.A.VirtualTopic.Prices", "auto", &[])
        .await
        .unwrap();
    c.send("/queue/audit,/topic/orders.eu.paris", "both", &[])
        .await
        .unwrap();
    let m = recv(&mut c).await;
    assert_eq!(
        (
            m.get("subscription"),
            m.get("destination"),
            body(&m).as_str()
        ),
        (Some("w"), Some("/topic/orders.eu.paris"), "both")
    );
    c.send(
        "/topic/VirtualTopic.Prices",
        "p1",
        &[("persistent", "true")],
    )
    .await
    .unwrap();
    let m = recv(&mut c).await;
    assert_eq!(
        (
            m.get("subscription"),
            m.get("destination"),
            body(&m).as_str()
        ),
        (
            Some("v"),
            Some("/queue/Consumer.A.VirtualTopic.Prices"),
            "p1"
        )
    );
    none(&mut c).await;
    // The composite's queue copy waits in its queue.
    c.subscribe("a", "/queue/audit", "auto", &[]).await.unwrap();
    assert_eq!(body(&recv(&mut c).await), "both");
    // A send to a wildcard is an ERROR for that client; the broker serves on.
    let mut bad = b.client().await;
    let e = bad.send("/queue/orders.*", "x", &[]).await;
    assert!(
        matches!(&e, Err(ClientError::Broker { message, .. }) if message.contains("wildcard")),
        "{e:?}"
    );
    c.send("/topic/orders.us", "still serving", &[])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut c).await), "still serving");
    b.stop().await;
}

/// Waits (bounded) until the broker has no temporary destination left.
async fn no_temporary_destinations(b: &TestBroker) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !b.broker.temporary_destinations().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "temporary destinations left: {:?}",
            b.broker.temporary_destinations().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Request/reply over ActiveMQ's STOMP temporary queues: the requester's `/temp-queue/replies`
/// reaches the replier as `/remote-temp-queue/<name>`, which it can send to but not consume
/// from, and which is gone with the requester's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_queue_request_reply() {
    let b = TestBroker::start("").await;
    let mut requester = b.client().await;
    requester
        .subscribe("replies", "/temp-queue/replies", "auto", &[])
        .await
        .unwrap();
    let mut replier = b.client().await;
    replier
        .subscribe("work", "/queue/stomp.requests", "auto", &[])
        .await
        .unwrap();
    requester
        .send(
            "/queue/stomp.requests",
            "ping",
            &[
                ("reply-to", "/temp-queue/replies"),
                ("correlation-id", "r-1"),
            ],
        )
        .await
        .unwrap();
    let request = recv(&mut replier).await;
    let reply_to = request.get("reply-to").unwrap().to_owned();
    assert!(
        reply_to.starts_with("/remote-temp-queue/ID:"),
        "rewritten for the other side: {reply_to}"
    );
    // Sent persistent: held in memory all the same (broker-core/tests/temporary.rs checks
    // the store).
    replier
        .send(
            &reply_to,
            "pong",
            &[("correlation-id", "r-1"), ("persistent", "true")],
        )
        .await
        .unwrap();
    let reply = recv(&mut requester).await;
    assert_eq!(body(&reply), "pong");
    assert_eq!(reply.get("correlation-id"), Some("r-1"));
    assert_eq!(
        reply.get("destination"),
        Some("/temp-queue/replies"),
        "its owner sees its own name for it"
    );
    let name = reply_to
        .trim_start_matches("/remote-temp-queue/")
        .to_owned();
    assert_eq!(b.broker.temporary_destinations().unwrap().len(), 1);

    // Another connection cannot consume from it.
    let mut thief = b.client().await;
    thief
        .write_raw(format!("SUBSCRIBE\nid:x\ndestination:{reply_to}\nreceipt:s\n\n\0").as_bytes())
        .await
        .unwrap();
    match thief.recv_timeout(Duration::from_secs(10)).await {
        Err(ClientError::Broker { message, .. }) => assert!(
            message.contains("Cannot subscribe to remote temporary destination"),
            "{message}"
        ),
        other => panic!("subscribed to another connection's temporary queue: {other:?}"),
    }

    // Gone with its connection: a send to it is refused, naming it.
    requester.disconnect().await.unwrap();
    no_temporary_destinations(&b).await;
    match replier.send(&reply_to, "late", &[]).await {
        Err(ClientError::Broker { message, .. }) => {
            assert!(message.contains(&name), "names it: {message}")
        }
        other => panic!("a send to a deleted temporary queue: {other:?}"),
    }
    b.stop().await;
}

/// A connection's `/temp-topic/x`: each of its subscriptions gets what another connection
/// sends to the `/remote-temp-topic/<name>` it learnt from a reply-to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_topic_reaches_each_subscription_of_its_owner() {
    let b = TestBroker::start("").await;
    let mut owner = b.client().await;
    owner
        .subscribe("a", "/temp-topic/events", "auto", &[])
        .await
        .unwrap();
    owner
        .subscribe("b", "/temp-topic/events", "auto", &[])
        .await
        .unwrap();
    let mut other = b.client().await;
    other
        .subscribe("in", "/queue/stomp.topic-requests", "auto", &[])
        .await
        .unwrap();
    owner
        .send(
            "/queue/stomp.topic-requests",
            "subscribe me",
            &[("reply-to", "/temp-topic/events")],
        )
        .await
        .unwrap();
    let request = recv(&mut other).await;
    let reply_to = request.get("reply-to").unwrap().to_owned();
    assert!(reply_to.starts_with("/remote-temp-topic/ID:"), "{reply_to}");
    other.send(&reply_to, "event", &[]).await.unwrap();
    let mut subscriptions = Vec::new();
    for _ in 0..2 {
        let m = recv(&mut owner).await;
        assert_eq!(body(&m), "event");
        assert_eq!(m.get("destination"), Some("/temp-topic/events"));
        subscriptions.push(m.get("subscription").unwrap().to_owned());
    }
    subscriptions.sort();
    assert_eq!(subscriptions, ["a", "b"]);
    b.stop().await;
}

/// A browser sees a queue's non-persistent messages (STOMP's default) after its stored ones,
/// and takes none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_shows_non_persistent_messages_too() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    c.send("/queue/bnp", "stored", &[("persistent", "true")])
        .await
        .unwrap();
    c.send("/queue/bnp", "in memory", &[]).await.unwrap();
    for _ in 0..2 {
        c.subscribe("br", "/queue/bnp", "auto", &[("browser", "true")])
            .await
            .unwrap();
        let seen: Vec<String> = [recv(&mut c).await, recv(&mut c).await]
            .iter()
            .map(body)
            .collect();
        assert_eq!(seen, ["stored", "in memory"]);
        assert_eq!(recv(&mut c).await.get("browser"), Some("end"));
    }
    c.subscribe("s", "/queue/bnp", "auto", &[]).await.unwrap();
    let mut got = vec![body(&recv(&mut c).await), body(&recv(&mut c).await)];
    got.sort();
    assert_eq!(got, ["in memory", "stored"]);
    b.stop().await;
}

/// Message groups over STOMP (issue 25): `JMSXGroupID` / `JMSXGroupSeq` headers on SEND, each
/// group whole and in order on one subscriber, `JMSXGroupFirstForConsumer:true` on the first
/// message of a group a subscriber gets; when that subscriber's connection dies its unacked
/// messages go, in order, to the subscriber that takes the group over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_groups_stay_on_one_subscriber_and_move_when_it_goes() {
    let b = TestBroker::start("").await;
    let mut c1 = b.client().await;
    c1.subscribe("s1", "/queue/g", "client", &[]).await.unwrap();
    let mut c2 = b.client().await;
    c2.subscribe("s2", "/queue/g", "auto", &[]).await.unwrap();
    let mut p = b.client().await;
    for i in 0..3 {
        for g in ["A", "B"] {
            let seq = (i + 1).to_string();
            p.send(
                "/queue/g",
                format!("{g}-{i}"),
                &[("JMSXGroupID", g), ("JMSXGroupSeq", &seq)],
            )
            .await
            .unwrap();
        }
    }
    // The first subscriber got the first group, the second the other.
    let mut got1 = Vec::new();
    let mut got2 = Vec::new();
    for _ in 0..3 {
        got1.push(recv(&mut c1).await);
        got2.push(recv(&mut c2).await);
    }
    let bodies = |fs: &[Frame]| fs.iter().map(body).collect::<Vec<_>>();
    assert_eq!(bodies(&got1), ["A-0", "A-1", "A-2"]);
    assert_eq!(bodies(&got2), ["B-0", "B-1", "B-2"]);
    for fs in [&got1, &got2] {
        assert_eq!(fs[0].get("JMSXGroupFirstForConsumer"), Some("true"));
        assert!(
            fs[1..]
                .iter()
                .all(|f| f.get("JMSXGroupFirstForConsumer").is_none())
        );
    }
    assert_eq!(got1[2].get("JMSXGroupID"), Some("A"));
    assert_eq!(got1[2].get("JMSXGroupSeq"), Some("3"));
    none(&mut c1).await;
    // The owner of A dies with all three unacked: A moves to c2, its messages first.
    drop(c1);
    p.send("/queue/g", "A-3", &[("JMSXGroupID", "A")])
        .await
        .unwrap();
    let moved = [
        recv(&mut c2).await,
        recv(&mut c2).await,
        recv(&mut c2).await,
        recv(&mut c2).await,
    ];
    assert_eq!(bodies(&moved), ["A-0", "A-1", "A-2", "A-3"]);
    assert_eq!(moved[0].get("JMSXGroupFirstForConsumer"), Some("true"));
    assert_eq!(moved[0].get("redelivered"), Some("true"));
    assert!(moved[3].get("redelivered").is_none());
    none(&mut c2).await;
    b.stop().await;
}

/// `activemq.exclusive:true` on SUBSCRIBE (issue 25): the exclusive subscriber gets every
/// message; when its connection dies the next exclusive one takes over, unacked messages
/// redelivered first; a plain subscriber gets nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_subscriber_gets_everything_and_the_next_takes_over() {
    let b = TestBroker::start("").await;
    let exclusive = [("activemq.exclusive", "true")];
    let mut plain = b.client().await;
    plain.subscribe("p", "/queue/x", "auto", &[]).await.unwrap();
    let mut e1 = b.client().await;
    e1.subscribe("e1", "/queue/x", "client", &exclusive)
        .await
        .unwrap();
    let mut e2 = b.client().await;
    e2.subscribe("e2", "/queue/x", "auto", &exclusive)
        .await
        .unwrap();
    let mut p = b.client().await;
    for i in 0..3 {
        p.send("/queue/x", format!("m{i}"), &[]).await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(body(&recv(&mut e1).await), format!("m{i}"));
    }
    none(&mut e2).await;
    none(&mut plain).await;
    drop(e1);
    p.send("/queue/x", "m3", &[]).await.unwrap();
    for i in 0..4 {
        let f = recv(&mut e2).await;
        assert_eq!(body(&f), format!("m{i}"));
        assert_eq!(f.get("redelivered").is_some(), i < 3);
    }
    none(&mut plain).await;
    b.stop().await;
}

/// Prefetch is a hard limit, as in ActiveMQ: a client-acked subscriber with
/// `activemq.prefetchSize:1` holds one unacked message and no message waits for it while
/// another subscriber has room. (Before, one more sat in a buffer for it: the other subscriber
/// got m3 and m4 while m2 waited.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_is_a_hard_limit_and_nothing_waits_for_a_full_subscriber() {
    let b = TestBroker::start("").await;
    let mut slow = b.client().await;
    slow.subscribe(
        "s",
        "/queue/hard",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    )
    .await
    .unwrap();
    let mut p = b.client().await;
    p.send("/queue/hard", "m1", &[]).await.unwrap();
    let m1 = recv(&mut slow).await;
    assert_eq!(body(&m1), "m1");
    let mut fast = b.client().await;
    fast.subscribe(
        "f",
        "/queue/hard",
        "client-individual",
        &[("activemq.prefetchSize", "2")],
    )
    .await
    .unwrap();
    for m in ["m2", "m3", "m4"] {
        p.send("/queue/hard", m, &[]).await.unwrap();
    }
    // The slow one is full: m2 and m3 go to the other, in order; m4 waits for room.
    let got: Vec<String> = [recv(&mut fast).await, recv(&mut fast).await]
        .iter()
        .map(body)
        .collect();
    assert_eq!(got, ["m2", "m3"]);
    none(&mut fast).await;
    none(&mut slow).await;
    // An ack makes room for exactly one more.
    slow.ack(&m1, None).await.unwrap();
    assert_eq!(body(&recv(&mut slow).await), "m4");
    b.stop().await;
}

/// Advisory topics over STOMP: a subscriber to ActiveMQ's consumer advisory topic of a queue
/// hears a consumer arrive, with `consumerCount` as a header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisories_reach_stomp_subscribers() {
    let b = TestBroker::start("").await;
    let mut watcher = b.client().await;
    watcher
        .subscribe(
            "adv",
            "/topic/ActiveMQ.Advisory.Consumer.Queue.watched",
            "auto",
            &[],
        )
        .await
        .unwrap();
    let mut worker = b.client().await;
    worker
        .subscribe("w", "/queue/watched", "auto", &[])
        .await
        .unwrap();
    let m = recv(&mut watcher).await;
    assert_eq!(m.get("consumerCount"), Some("1"), "{m:?}");
    assert_eq!(m.get("event"), Some("started"));
    assert_eq!(m.get("type"), Some("Advisory"));
    b.stop().await;
}

/// STOMP headers are strings; as in ActiveMQ (whose STOMP door prefixes every selector with
/// `convert_string_expressions:`), a numeric string compares with a number as a number.
/// Arithmetic on a string still selects nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_selectors_compare_string_headers_as_numbers() {
    let b = TestBroker::start("").await;
    let mut p = b.client().await;
    for (n, selector) in [
        "price > 10",
        "price <= 15",
        "price = 15",
        "price BETWEEN 10 AND 30",
        "price > 20 OR price = 15.0",
        "price + 1 = 16",
        "price < 10",
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = b.client().await;
        let queue = format!("/queue/numeric-{n}");
        c.subscribe("s", &queue, "auto", &[("selector", selector)])
            .await
            .unwrap();
        p.send(&queue, "fifteen", &[("price", "15")]).await.unwrap();
        let selected = !matches!(selector, "price + 1 = 16" | "price < 10");
        if selected {
            assert_eq!(body(&recv(&mut c).await), "fifteen", "{selector}");
        } else {
            none(&mut c).await;
        }
        c.disconnect().await.unwrap();
    }
    b.stop().await;
}

/// A syntax error in a selector is an ERROR (echoing the SUBSCRIBE's receipt) and no
/// subscription: not for a queue, a topic, a durable subscription, nor a queue browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_selector_is_an_error_and_subscribes_nothing() {
    let b = TestBroker::start("").await;
    let mut p = b.client().await;
    p.send("/queue/badsel", "kept", &[]).await.unwrap();
    for (n, extra) in [
        "destination:/queue/badsel\n",
        "destination:/topic/badsel\n",
        "destination:/topic/badsel\nactivemq.subscriptionName:d1\n",
        "destination:/queue/badsel\nbrowser:true\n",
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = raw_session(
            &b,
            "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\nclient-id:bad\n\n\0",
        )
        .await;
        read_until(&mut s, "\0").await;
        let frame =
            format!("SUBSCRIBE\nid:s{n}\n{extra}selector:price >> 10\nreceipt:sub-{n}\n\n\0");
        s.write_all(frame.as_bytes()).await.unwrap();
        let reply = read_until(&mut s, "\0").await;
        assert!(reply.starts_with("ERROR"), "{extra}: {reply}");
        assert!(reply.contains(&format!("receipt-id:sub-{n}")), "{reply}");
        assert!(reply.contains("selector"), "{reply}");
        assert!(!reply.contains("MESSAGE"), "nothing browsed: {reply}");
    }
    let durables = b.broker.durable_subscriptions().await.unwrap();
    assert!(durables.is_empty(), "{durables:?}");
    // The queue's message is still there for a real consumer.
    let mut c = b.client().await;
    c.subscribe("ok", "/queue/badsel", "auto", &[])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut c).await), "kept");
    b.stop().await;
}

/// A queue browser applies its selector (ActiveMQ's browsers do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_browser_applies_its_selector() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    for price in ["5", "15", "25"] {
        c.send("/queue/browse-sel", price, &[("price", price)])
            .await
            .unwrap();
    }
    c.subscribe(
        "b",
        "/queue/browse-sel",
        "auto",
        &[("browser", "true"), ("selector", "price > 10")],
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let m = recv(&mut c).await;
        if m.get("browser") == Some("end") {
            break;
        }
        seen.push(body(&m));
    }
    assert_eq!(seen, ["15", "25"]);
    b.stop().await;
}

/// Heart-beats as the client asks (ActiveMQ answers `heart-beat:cy,cx` and keeps to it): a
/// client wanting beats every 500 ms gets them that often, and one that promised to beat every
/// 500 ms and goes silent is closed after a small multiple of that (here well within 10 s; the
/// old 10 s floor made it 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heart_beats_are_honoured_as_negotiated() {
    let b = TestBroker::start("").await;
    let mut s = raw_session(
        &b,
        "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\nheart-beat:500,500\n\n\0",
    )
    .await;
    let connected = read_until(&mut s, "\0").await;
    assert!(connected.contains("heart-beat:500,500"), "{connected}");
    // Silent from here on: beats arrive, then the server closes the connection.
    let mut beats = 0;
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => {
                let got = &buf[..n];
                if got.starts_with(b"ERROR") {
                    continue;
                }
                beats += got.iter().filter(|c| **c == b'\n').count();
            }
        }
    };
    assert!(
        closed,
        "a client silent for 10 s after promising 500 ms beats is closed"
    );
    assert!(beats >= 1, "beats were sent before the close");

    // The floor is configurable: asked for 50 ms, a client gets (and owes) the floor.
    let b2 =
        TestBroker::start("[transports]\nstomp = \"127.0.0.1:0\"\nstomp_heartbeat_min_ms = 2000\n")
            .await;
    let mut s = raw_session(
        &b2,
        "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\nheart-beat:50,0\n\n\0",
    )
    .await;
    let connected = read_until(&mut s, "\0").await;
    assert!(connected.contains("heart-beat:0,2000"), "{connected}");
    // Absurd intervals are bounded, not a panic: the connection serves on.
    let mut s = raw_session(
        &b2,
        "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\nheart-beat:18446744073709551615,18446744073709551615\n\n\0",
    )
    .await;
    assert!(read_until(&mut s, "\0").await.starts_with("CONNECTED"));
    s.write_all(b"SEND\ndestination:/queue/hb\nreceipt:1\n\nx\0")
        .await
        .unwrap();
    assert!(read_until(&mut s, "receipt-id:1").await.contains("RECEIPT"));
    b2.stop().await;
    b.stop().await;
}

/// Every refused frame that asked for a receipt gets its `receipt-id` on the ERROR (STOMP 1.2
/// says SHOULD; ActiveMQ does), whatever the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_frames_echo_the_receipt_of_the_refused_frame() {
    let b = TestBroker::start("[[users]]\nname = \"admin\"\npassword = \"admin\"\n").await;
    let login = "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\n\n\0";
    let cases: &[(&str, &str)] = &[
        // Before CONNECT.
        ("", "SEND\ndestination:/queue/a\nreceipt:r\n\nx\0"),
        (
            "",
            "CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:wrong\nreceipt:r\n\n\0",
        ),
        ("", "CONNECT\naccept-version:9.9\nreceipt:r\n\n\0"),
        // After it.
        (login, "SEND\ndestination:/nowhere/a\nreceipt:r\n\nx\0"),
        (login, "SEND\nreceipt:r\n\nx\0"),
        (
            login,
            "SEND\ndestination:/queue/a\npriority:99\nreceipt:r\n\nx\0",
        ),
        (
            login,
            "SEND\ndestination:/queue/a\ntransaction:none\nreceipt:r\n\nx\0",
        ),
        (
            login,
            "SUBSCRIBE\nid:1\ndestination:/queue/a\nack:sometimes\nreceipt:r\n\n\0",
        ),
        (login, "SUBSCRIBE\ndestination:/queue/a\nreceipt:r\n\n\0"),
        (login, "UNSUBSCRIBE\nid:nope\nreceipt:r\n\n\0"),
        (login, "ACK\nid:nope\nreceipt:r\n\n\0"),
        (login, "NACK\nid:nope\nreceipt:r\n\n\0"),
        (login, "COMMIT\ntransaction:nope\nreceipt:r\n\n\0"),
        (login, "ABORT\ntransaction:nope\nreceipt:r\n\n\0"),
        (login, "BEGIN\nreceipt:r\n\n\0"),
        (login, "CONNECT\naccept-version:1.2\nreceipt:r\n\n\0"),
        (login, "MESSAGE\nreceipt:r\n\n\0"),
        // Malformed: the receipt is read from the headers that did parse.
        (
            login,
            "SEND\ndestination:/queue/a\nreceipt:r\ncontent-length:x\n\nx\0",
        ),
        (
            login,
            "SEND\ndestination:/queue/a\nreceipt:r\nbad\\qescape:1\n\nx\0",
        ),
        (
            login,
            "SEND\ndestination:/queue/a\nreceipt:r\ncontent-length:1\n\nxy\0",
        ),
        (
            login,
            "SEND\nreceipt:r\ndestination:/queue/a\ncontent-length:999999999\n\n",
        ),
    ];
    for (before, frame) in cases {
        let mut s = raw_session(&b, before).await;
        if !before.is_empty() {
            read_until(&mut s, "\0").await;
        }
        s.write_all(frame.as_bytes()).await.unwrap();
        let reply = read_until(&mut s, "\0").await;
        assert!(reply.starts_with("ERROR"), "{frame:?}: {reply}");
        assert!(reply.contains("receipt-id:r\n"), "{frame:?}: {reply}");
    }
    b.stop().await;
}

/// A bytes message with no body (SEND with `content-length:0`) is delivered as one: with
/// `content-length:0`, persistent or not; an empty text message (no content-length) stays text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_bytes_message_keeps_content_length_zero() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    for persistent in ["false", "true"] {
        c.send(
            "/queue/empty",
            bytes::Bytes::new(),
            &[
                ("content-length", "0"),
                ("persistent", persistent),
                ("kind", "bytes"),
            ],
        )
        .await
        .unwrap();
    }
    c.send("/queue/empty", bytes::Bytes::new(), &[("kind", "text")])
        .await
        .unwrap();
    c.subscribe("s", "/queue/empty", "auto", &[]).await.unwrap();
    // JMS leaves the order across delivery modes open: each is checked by its kind.
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let m = recv(&mut c).await;
        assert!(m.body.is_empty());
        let kind = m.get("kind").unwrap().to_owned();
        let expected = (kind == "bytes").then_some("0");
        assert_eq!(m.get("content-length"), expected, "{m:?}");
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(kinds, ["bytes", "bytes", "text"]);
    b.stop().await;
}

/// A durable subscription made before STOMP selectors got ActiveMQ's
/// `convert_string_expressions:` prefix (its selector stored as the client wrote it) is kept,
/// with its messages, when the client subscribes again with the same selector: not replaced
/// for a prefix the client never wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscription_from_before_the_selector_prefix_keeps_its_messages() {
    let b = TestBroker::start("").await;
    {
        // As an earlier build made it: the selector text as given.
        let c = b.broker.connect(Some("legacy")).await.unwrap();
        let s = c.session(broker_core::AckMode::Auto).unwrap();
        let consumer = s
            .durable_subscriber(
                broker_core::Destination::topic("legacy-news"),
                "d",
                Some("color = 'red'"),
            )
            .await
            .unwrap();
        consumer.close().await;
        s.close().await;
        c.close().await;
    }
    let mut p = b.client().await;
    p.send(
        "/topic/legacy-news",
        "kept",
        &[("color", "red"), ("persistent", "true")],
    )
    .await
    .unwrap();
    let mut c = b.client_as("admin", "admin", Some("legacy")).await;
    c.subscribe(
        "s",
        "/topic/legacy-news",
        "auto",
        &[
            ("activemq.subscriptionName", "d"),
            ("selector", "color = 'red'"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(body(&recv(&mut c).await), "kept");
    b.stop().await;
}

/// `limits.temp_bytes` over STOMP: with 64 KiB of memory, 64 KiB of temp store and
/// `send_fail_if_no_space`, non-persistent sends past the memory are taken (spooled to
/// `tmp_storage`, shown on `/metrics`) until the temp store is full too; the next gets an ERROR
/// naming `limits.temp_bytes`; a queue browser sees every accepted message, and a subscriber
/// then gets them all in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_persistent_sends_past_memory_spool_to_the_temp_store() {
    let b = TestBroker::start(
        "[limits]\nmemory_bytes = 65536\ntemp_bytes = 65536\n[policy]\nsend_fail_if_no_space = true\n",
    )
    .await;
    let web = b.console().await;
    let mut p = b.client().await;
    let text = |i: usize| format!("{i:04}{}", "x".repeat(4096));
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..100 {
        match p
            .send("/queue/spooled", text(i), &[("persistent", "false")])
            .await
        {
            Ok(()) => accepted += 1,
            Err(e) => {
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("refused once memory and temp store are full");
    assert!(refusal.contains("limits.temp_bytes"), "{refusal}");
    assert!(accepted > 20, "only {accepted} taken: nothing spooled");
    let metrics = common::http::request(
        web.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        None,
    )
    .await;
    let gauge = |name: &str| -> u64 {
        let prefix = format!("{name} ");
        metrics
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {}", metrics.body))
    };
    assert_eq!(gauge("broker_temp_limit_bytes"), 65536);
    assert!(gauge("broker_temp_usage_bytes") >= 65536);
    assert!(gauge("broker_temp_percent") >= 100);
    assert!(b.dir.path().join("tmp_storage").exists());

    // A queue browser sees them all, those in memory and those spooled, and takes none.
    let mut c = b.client().await;
    c.subscribe("br", "/queue/spooled", "auto", &[("browser", "true")])
        .await
        .unwrap();
    for i in 0..accepted {
        assert_eq!(body(&recv(&mut c).await), text(i), "browsed message {i}");
    }
    assert_eq!(recv(&mut c).await.get("browser"), Some("end"));
    assert!(b.broker.temp_usage().unwrap().0 >= 65536);

    c.subscribe("s", "/queue/spooled", "auto", &[])
        .await
        .unwrap();
    for i in 0..accepted {
        assert_eq!(body(&recv(&mut c).await), text(i));
    }
    none(&mut c).await;
    assert_eq!(b.broker.temp_usage().unwrap().0, 0);
    b.stop().await;
}
