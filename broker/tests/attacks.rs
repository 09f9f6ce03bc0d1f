//! Hostile clients against a running broker (issue 32 §1): each test runs one attack while a
//! well-behaved client keeps sending and receiving, and checks that the attacker gets an ERROR
//! naming the limit's config key or is disconnected, that the well-behaved client finishes its
//! exchange (30 s is a hang detector, not a timing claim), and that the broker's memory gauge
//! on the console's `/metrics` never passed `limits.memory_bytes`. A last test kills
//! connections holding uncommitted transacted sends and unread outgoing frames and checks the
//! gauge comes back to its baseline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use broker::stomp::frame::{Decoder, Frame, Limits, Version};
use broker::web::WebServer;
use bytes::BytesMut;
use common::{TestBroker, recv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

const ADMIN: &str = "Basic YWRtaW46YWRtaW4="; // admin:admin

/// How long anything in these tests may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

/// A broker with `extra` config and its web console (for `/metrics`).
async fn broker(extra: &str) -> (TestBroker, WebServer) {
    let b = TestBroker::start(extra).await;
    let web = b.console().await;
    (b, web)
}

/// The memory gauge from `/metrics`: (used, peak, limit).
async fn memory(web: SocketAddr) -> (u64, u64, u64) {
    let r = common::http::request(web, "GET", "/metrics", &[("Authorization", ADMIN)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let gauge = |name: &str| -> u64 {
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{}", r.body))
    };
    (
        gauge("broker_memory_used_bytes"),
        gauge("broker_memory_peak_bytes"),
        gauge("broker_memory_limit_bytes"),
    )
}

async fn assert_memory_within_limit(web: SocketAddr) {
    let (used, peak, limit) = memory(web).await;
    assert!(
        used <= limit && peak <= limit,
        "memory used {used}, peak {peak}, limit {limit}"
    );
}

/// The well-behaved client: `rounds` persistent sends with receipts to its own queue, each
/// received back. Panics if that does not finish within [`HANG`].
async fn well_behaved(b: &TestBroker, queue: &str, rounds: usize) {
    let exchange = async {
        let mut c = b.client().await;
        let dest = format!("/queue/{queue}");
        c.subscribe("good", &dest, "auto", &[])
            .await
            .expect("subscribe");
        for i in 0..rounds {
            let body = format!("good {i}");
            c.send(&dest, body.clone(), &[("persistent", "true")])
                .await
                .expect("the well-behaved send");
            let m = recv(&mut c).await;
            assert_eq!(common::body(&m), body);
        }
        c.disconnect().await.expect("disconnect");
    };
    tokio::time::timeout(HANG, exchange)
        .await
        .expect("the well-behaved client finished its exchange");
}

/// A raw STOMP 1.2 connection for an attacker, logged in.
async fn attacker(b: &TestBroker) -> TcpStream {
    let addr = b.server.stomp.expect("STOMP listener");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let connect = Frame::new("CONNECT")
        .header("accept-version", "1.2")
        .header("host", "localhost")
        .header("login", "admin")
        .header("passcode", "admin");
    s.write_all(&connect.to_bytes(Version::V1_2))
        .await
        .expect("CONNECT");
    let mut rd = Reader::new();
    let f = rd.next(&mut s).await.expect("CONNECTED");
    assert_eq!(f.command, "CONNECTED");
    s
}

/// Reads frames from an attacker's socket.
struct Reader {
    decoder: Decoder,
    buf: BytesMut,
}

impl Reader {
    fn new() -> Reader {
        let mut decoder = Decoder::new(Limits {
            max_frame_bytes: 64 * 1024 * 1024,
            ..Limits::default()
        });
        decoder.version = Version::V1_2;
        Reader {
            decoder,
            buf: BytesMut::new(),
        }
    }

    /// The next frame, or `None` at end of stream or a reset.
    async fn next<R: AsyncReadExt + Unpin>(&mut self, rd: &mut R) -> Option<Frame> {
        loop {
            while Decoder::skip_heartbeats(&mut self.buf) {}
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("a valid frame") {
                return Some(f);
            }
            match rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// Reads until the broker's ERROR (its `message` header) or the end of the connection (None),
/// skipping anything else; panics if neither comes within [`HANG`].
async fn error_or_close(rd: &mut OwnedReadHalf) -> Option<String> {
    let mut reader = Reader::new();
    tokio::time::timeout(HANG, async {
        loop {
            match reader.next(rd).await {
                Some(f) if f.command == "ERROR" => {
                    return Some(f.get("message").unwrap_or_default().to_owned());
                }
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .expect("the broker answered the attack with an ERROR or closed the connection")
}

/// Runs `frames` (at most `max` of them) into an attacker's connection from a task of their
/// own, stopping when the broker closes it; then waits for the broker's ERROR.
async fn flood(
    s: TcpStream,
    max: usize,
    frame: impl Fn(usize) -> Frame + Send + 'static,
) -> Option<String> {
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        // Batched so that the flood is fast, and bounded in count.
        let mut batch = BytesMut::new();
        for i in 0..max {
            frame(i).encode(Version::V1_2, &mut batch);
            if batch.len() >= 64 * 1024 || i + 1 == max {
                if wr.write_all(&batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
        }
    });
    let answer = error_or_close(&mut rd).await;
    writer.abort();
    answer
}

fn expect_limit(answer: Option<String>, key: &str) {
    let message = answer.unwrap_or_else(|| panic!("an ERROR naming {key}, not a bare close"));
    assert!(message.contains(key), "the ERROR names {key}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connect_is_cut_off_at_the_deadline() {
    let (b, web) =
        broker("[transports]\nstomp = \"127.0.0.1:0\"\nconnect_timeout_ms = 1000\n").await;
    let attack = async {
        let mut s = TcpStream::connect(b.server.stomp.unwrap()).await.unwrap();
        // One byte every 50 ms of a CONNECT that never ends: 400 bytes would take 20 s.
        let trickle = b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:admin\nx:".repeat(10);
        let mut sent = 0;
        for byte in trickle.iter().take(400) {
            if s.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(50), s.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        assert!(
            sent < 400,
            "the broker let a client trickle a CONNECT for the whole 20 s"
        );
    };
    tokio::join!(attack, well_behaved(&b, "good.slow-connect", 100));
    assert_memory_within_limit(web.addr).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_frame_before_login_is_refused() {
    let (b, web) = broker("").await;
    let attack = async {
        let s = TcpStream::connect(b.server.stomp.unwrap()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            let mut frame =
                b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:admin\n\n".to_vec();
            frame.resize(16 * 1024 * 1024, b'x');
            frame.push(0);
            // Fails once the broker has closed the connection.
            let _ = wr.write_all(&frame).await;
        });
        let answer = error_or_close(&mut rd).await;
        writer.abort();
        if let Some(message) = answer {
            assert!(message.contains("frame"), "the ERROR says why: {message}");
        }
    };
    tokio::join!(attack, well_behaved(&b, "good.big-frame", 100));
    assert_memory_within_limit(web.addr).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_subscribes_hit_the_consumer_cap() {
    let (b, web) = broker("").await;
    let attack = async {
        let s = attacker(&b).await;
        let answer = flood(s, 100_000, |i| {
            Frame::new("SUBSCRIBE")
                .header("id", format!("s{i}"))
                .header("destination", "/queue/attack.subscribes")
                .header("ack", "auto")
        })
        .await;
        expect_limit(answer, "limits.max_consumers_per_connection");
    };
    tokio::join!(attack, well_behaved(&b, "good.subscribes", 100));
    assert_memory_within_limit(web.addr).await;
    // The attacker's consumers went with it.
    tokio::time::timeout(HANG, async {
        loop {
            let stats = b.broker.destination_stats().await.unwrap();
            let left = stats
                .iter()
                .find(|s| &*s.destination.name == "attack.subscribes")
                .map_or(0, |s| s.consumers);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the attacker's consumers are closed");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_never_commits_hits_the_caps() {
    let (b, web) = broker(
        "[limits]\nmax_transacted_bytes_per_connection = 1048576\nmax_transacted_sends_per_connection = 200\n",
    )
    .await;
    let attack = async {
        // Big messages: the byte cap (1 MiB, 32 KiB each) comes first.
        let mut s = attacker(&b).await;
        s.write_all(
            &Frame::new("BEGIN")
                .header("transaction", "t")
                .to_bytes(Version::V1_2),
        )
        .await
        .unwrap();
        let body = vec![b'x'; 32 * 1024];
        let answer = flood(s, 1000, move |_| {
            Frame::new("SEND")
                .header("destination", "/queue/attack.tx")
                .header("transaction", "t")
                .header("persistent", "true")
                .header("content-length", body.len().to_string())
                .with_body(body.clone())
        })
        .await;
        expect_limit(answer, "limits.max_transacted_bytes_per_connection");
        // Small messages: the count cap.
        let mut s = attacker(&b).await;
        s.write_all(
            &Frame::new("BEGIN")
                .header("transaction", "t")
                .to_bytes(Version::V1_2),
        )
        .await
        .unwrap();
        let answer = flood(s, 1000, |i| {
            Frame::new("SEND")
                .header("destination", "/queue/attack.tx")
                .header("transaction", "t")
                .with_body(format!("never committed {i}"))
        })
        .await;
        expect_limit(answer, "limits.max_transacted_sends_per_connection");
    };
    tokio::join!(attack, well_behaved(&b, "good.tx", 100));
    assert_memory_within_limit(web.addr).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_transactions_and_new_destinations_hit_their_caps() {
    let (b, web) = broker("[limits]\nmax_destinations_created_per_second = 3\n").await;
    let attack = async {
        let s = attacker(&b).await;
        let answer = flood(s, 100_000, |i| {
            Frame::new("BEGIN").header("transaction", format!("t{i}"))
        })
        .await;
        expect_limit(answer, "limits.max_transactions_per_connection");
        // A new queue per send: the fourth within a second is refused.
        let s = attacker(&b).await;
        let answer = flood(s, 100_000, |i| {
            Frame::new("SEND")
                .header("destination", format!("/queue/attack.new.{i}"))
                .with_body("x")
        })
        .await;
        expect_limit(answer, "limits.max_destinations_created_per_second");
    };
    tokio::join!(attack, well_behaved(&b, "good.caps", 100));
    assert_memory_within_limit(web.addr).await;
    let created = b
        .broker
        .destination_stats()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.destination.name.starts_with("attack.new."))
        .count();
    assert!(created < 100, "{created} queues created by one flood");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_selector_is_refused() {
    let (b, web) = broker("").await;
    let attack = async {
        let s = attacker(&b).await;
        // 1 MB: far over the header line limit (max_header_bytes, 10 KiB), refused as it
        // is read.
        let selector = format!("a = '{}'", "x".repeat(1_000_000));
        let answer = flood(s, 1, move |_| {
            Frame::new("SUBSCRIBE")
                .header("id", "huge")
                .header("destination", "/queue/attack.selector")
                .header("selector", selector.clone())
        })
        .await;
        if let Some(message) = answer {
            assert!(message.contains("header"), "the ERROR says why: {message}");
        }
    };
    tokio::join!(attack, well_behaved(&b, "good.selector", 100));
    assert_memory_within_limit(web.addr).await;
    b.stop().await;
}

/// A client subscribed to `dest` with `ack` that never reads: small socket buffers on its
/// side, so that what it holds is what the broker holds for it.
async fn never_reading_subscriber(b: &TestBroker, dest: &str, ack: &str) -> TcpStream {
    let addr = b.server.stomp.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut idle = sock.connect(addr).await.unwrap();
    let connect = Frame::new("CONNECT")
        .header("accept-version", "1.2")
        .header("login", "admin")
        .header("passcode", "admin");
    idle.write_all(&connect.to_bytes(Version::V1_2))
        .await
        .unwrap();
    let mut rd = Reader::new();
    assert_eq!(rd.next(&mut idle).await.unwrap().command, "CONNECTED");
    let subscribe = Frame::new("SUBSCRIBE")
        .header("id", "idle")
        .header("destination", dest)
        .header("ack", ack)
        .header("receipt", "subscribed");
    idle.write_all(&subscribe.to_bytes(Version::V1_2))
        .await
        .unwrap();
    assert_eq!(rd.next(&mut idle).await.unwrap().command, "RECEIPT");
    idle
}

/// `total` persistent messages of `size` bytes to `dest`, a receipt every hundredth, which
/// keeps the producer honest without one per message.
async fn produce(b: &TestBroker, dest: &str, total: usize, size: usize) {
    let mut p = b.client().await;
    let body = vec![b'b'; size];
    for i in 0..total {
        let f = Frame::new("SEND")
            .header("destination", dest)
            .header("persistent", "true")
            .header("content-length", size.to_string())
            .with_body(body.clone());
        if i % 100 == 99 {
            p.request(f).await.expect("the producer is not refused");
        } else {
            p.send_frame(f).await.expect("the producer is not refused");
        }
    }
    p.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_starved_alone() {
    let (b, web) = broker("").await;
    const TOTAL: usize = 3000;
    const SIZE: usize = 8 * 1024;
    let idle = never_reading_subscriber(&b, "/queue/busy", "auto").await;

    // A busy queue, and a well-behaved consumer of it beside the idle one.
    let mut consumer = b.client().await;
    consumer
        .subscribe(
            "c",
            "/queue/busy",
            "auto",
            &[("activemq.prefetchSize", "100")],
        )
        .await
        .unwrap();
    let producer = produce(&b, "/queue/busy", TOTAL, SIZE);
    // The idle client can hold its prefetch (1000), a full outgoing queue (4 MiB) and what
    // the sockets buffer; everything else reaches the consumer that reads.
    let idle_bound = 1000 + (4 << 20) / SIZE + (8 << 20) / SIZE;
    let reader = async {
        let mut got = 0;
        while got < TOTAL - idle_bound {
            let m = recv(&mut consumer).await;
            assert_eq!(m.body.len(), SIZE);
            got += 1;
        }
    };
    tokio::time::timeout(HANG, async {
        tokio::join!(producer, reader, well_behaved(&b, "good.idle", 100))
    })
    .await
    .expect("the producer, the reading consumer and the well-behaved client finished");
    assert_memory_within_limit(web.addr).await;
    drop(idle);
    b.stop().await;
}

/// With `write_timeout_ms` a client that stops reading is not only starved but cut off: its
/// connection closes, and the messages it was holding (unacked, client-individual) go back to
/// the queue, so the consumer that reads gets every one of them. Without the timeout the reader
/// would wait forever for what the idle client holds, and the test would hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_after_the_write_timeout() {
    let (b, web) = broker("[transports]\nstomp = \"127.0.0.1:0\"\nwrite_timeout_ms = 500\n").await;
    const TOTAL: usize = 2000;
    const SIZE: usize = 8 * 1024;
    let mut idle = never_reading_subscriber(&b, "/queue/held", "client-individual").await;

    let mut consumer = b.client().await;
    consumer
        .subscribe(
            "c",
            "/queue/held",
            "auto",
            &[("activemq.prefetchSize", "100")],
        )
        .await
        .unwrap();
    let producer = produce(&b, "/queue/held", TOTAL, SIZE);
    let reader = async {
        for _ in 0..TOTAL {
            let m = recv(&mut consumer).await;
            assert_eq!(m.body.len(), SIZE);
        }
    };
    tokio::time::timeout(HANG, async {
        tokio::join!(producer, reader, well_behaved(&b, "good.cut", 100))
    })
    .await
    .expect("the reading consumer got every message, the idle client's too");
    // The idle client's socket ends (after what was already in its buffers).
    let closed = tokio::time::timeout(HANG, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the broker closed the idle client's connection"
    );
    assert_memory_within_limit(web.addr).await;
    b.stop().await;
}

/// Connections holding uncommitted transacted sends and unread outgoing frames are killed
/// (the socket dropped, no DISCONNECT): the memory they held is counted while they live and
/// given back when they go, to the byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_held_by_killed_connections_returns_to_baseline() {
    // An outgoing queue that can take everything sent to the idle client below: then all of
    // it is there (or in the kernel's socket buffers, 4 MiB at most here), not in flight.
    let (b, web) = broker(
        "[transports]\nstomp = \"127.0.0.1:0\"\nmax_pending_bytes = 33554432\nmax_pending_frames = 10000\n",
    )
    .await;
    let (baseline, _, _) = memory(web.addr).await;
    const SIZE: usize = 16 * 1024;
    let mut held = Vec::new();
    for n in 0..4 {
        let mut c = b.client().await;
        c.begin("t").await.unwrap();
        for i in 0..20 {
            // Persistent and not: both wait in the transaction until commit.
            let persistent = if i % 2 == 0 { "true" } else { "false" };
            c.send(
                &format!("/queue/killed.{n}"),
                vec![b'k'; SIZE],
                &[("transaction", "t"), ("persistent", persistent)],
            )
            .await
            .unwrap();
        }
        held.push(c);
    }
    let (with_txs, _, _) = memory(web.addr).await;
    assert!(
        with_txs >= baseline + 4 * 20 * SIZE as u64,
        "80 uncommitted sends of {SIZE} bytes are counted: {baseline} -> {with_txs}"
    );
    // One more that subscribes to a queue of big messages and never reads: its outgoing
    // queue holds them.
    let idle = never_reading_subscriber(&b, "/queue/killed.idle", "auto").await;
    let mut p = b.client().await;
    const IDLE_TOTAL: u64 = 256 * 64 * 1024;
    for _ in 0..256 {
        p.send_frame(
            Frame::new("SEND")
                .header("destination", "/queue/killed.idle")
                .with_body(vec![b'i'; 64 * 1024]),
        )
        .await
        .unwrap();
    }
    p.disconnect().await.unwrap();
    // Non-persistent and auto-acked: once the idle client's pump has them they are its own,
    // held only by its outgoing queue (and the sockets). Wait until the queue is drained and
    // at least what the sockets cannot hold is counted.
    tokio::time::timeout(HANG, async {
        loop {
            let pending = b
                .broker
                .destination_stats()
                .await
                .unwrap()
                .iter()
                .find(|s| &*s.destination.name == "killed.idle")
                .map_or(0, |s| s.pending);
            let (used, _, _) = memory(web.addr).await;
            if pending == 0 && used >= with_txs + IDLE_TOTAL / 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the idle client's outgoing queue holds over 8 MiB, counted");

    drop(held);
    drop(idle);
    let mut last = 0;
    let back = tokio::time::timeout(HANG, async {
        loop {
            let (used, _, _) = memory(web.addr).await;
            last = used;
            if used == baseline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        back.is_ok(),
        "memory back to its baseline {baseline} after the connections died, still {last}"
    );
    b.stop().await;
}
