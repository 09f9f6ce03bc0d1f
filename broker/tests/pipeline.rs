//! Pipelined SENDs and ACKs over STOMP: frames without a receipt are applied in order and
//! written behind the connection's back, and a receipt still means that everything before it
//! is stored — checked by killing the broker process with SIGKILL, and by filling its disk; a
//! producer faster than a slow disk is held to the window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use broker::client::StompClient;
use broker::stomp::frame::Frame;
use broker::url::parse;
use common::process::{admin, spawn, write_config};
use common::{TestBroker, body, recv};

fn send(destination: &str, n: u64) -> Frame {
    Frame::new("SEND")
        .header("destination", destination)
        .header("persistent", "true")
        .with_body(format!("{n}"))
}

/// Every message of the queue, in delivery order, acked one by one (client-individual acks,
/// pipelined too), as numbers.
async fn drain(c: &mut StompClient, queue: &str) -> Vec<u64> {
    c.subscribe("drain", queue, "client-individual", &[])
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = c.recv_timeout(Duration::from_secs(2)).await.unwrap() {
        got.push(body(&m).parse::<u64>().unwrap());
        c.ack(&m, None).await.unwrap();
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreceipted_sends_and_acks_keep_their_order() {
    let b = TestBroker::start("").await;
    let mut c = b.client().await;
    // 2,000 SENDs, every 250th with a receipt, to two queues alternately.
    for n in 0..2_000u64 {
        let q = if n % 2 == 0 {
            "/queue/even"
        } else {
            "/queue/odd"
        };
        if n % 250 == 249 {
            c.request(send(q, n)).await.unwrap();
        } else {
            c.send_frame(send(q, n)).await.unwrap();
        }
    }
    c.request(
        Frame::new("SEND")
            .header("destination", "/queue/even")
            .header("persistent", "true")
            .with_body("end"),
    )
    .await
    .unwrap();
    let b = b.restart().await;
    let mut c = b.client().await;
    c.subscribe("e", "/queue/even", "client-individual", &[])
        .await
        .unwrap();
    let mut evens = Vec::new();
    loop {
        let m = recv(&mut c).await;
        c.ack(&m, None).await.unwrap();
        if body(&m) == "end" {
            break;
        }
        evens.push(body(&m).parse::<u64>().unwrap());
    }
    assert_eq!(evens, (0..2_000).step_by(2).collect::<Vec<u64>>());
    // The pipelined ACKs are durable once a receipt follows them: after a restart nothing of
    // the even queue comes back.
    c.request(Frame::new("UNSUBSCRIBE").header("id", "e"))
        .await
        .unwrap();
    let odds = drain(&mut c, "/queue/odd").await;
    assert_eq!(odds, (1..2_000).step_by(2).collect::<Vec<u64>>());
    c.disconnect().await.unwrap();
    let b = b.restart().await;
    let mut c = b.client().await;
    assert_eq!(drain(&mut c, "/queue/even").await, Vec::<u64>::new());
    c.disconnect().await.unwrap();
    b.stop().await;
}

/// SIGKILL while unreceipted SENDs are in flight: what is stored is a prefix of what was sent,
/// in order, and it reaches at least the last SEND whose receipt the client got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_everything_before_the_last_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let opts = admin();
    let (mut child, url) = spawn(&config);
    let endpoint = parse(&url).unwrap().remove(0);
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    let mut receipted = None;
    let mut n = 0u64;
    // Receipts every 100 SENDs; after the 20th, 300 more without one, then the kill.
    while n < 2_300 {
        let f = send("/queue/k", n);
        if n % 100 == 99 && n < 2_000 {
            c.request(f).await.unwrap();
            receipted = Some(n);
        } else {
            c.send_frame(f).await.unwrap();
        }
        n += 1;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(c);
    let receipted = receipted.unwrap();

    let (mut child, url) = spawn(&config);
    let endpoint = parse(&url).unwrap().remove(0);
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    let got = drain(&mut c, "/queue/k").await;
    c.disconnect().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "SIGKILL: 2300 sent, #{receipted} receipted last, {} survived",
        got.len()
    );
    let expected: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, expected, "what survived is a prefix of what was sent");
    assert!(
        got.len() as u64 > receipted,
        "the SEND receipted last (#{receipted}) survived; {} did",
        got.len()
    );
}

/// A tmpfs for the data directory; `None` (the test says so) where mounting needs a root this
/// process is not.
struct Tmpfs {
    parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(parent.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { parent })
    }

    fn path(&self) -> &Path {
        self.parent.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.parent.path())
            .status();
    }
}

/// A broker on `data` (KahaDB, the tests' small journal files) with its STOMP listener.
async fn serve(
    data: &Path,
) -> (
    std::sync::Arc<broker::Broker>,
    broker::listener::Server,
    broker::url::Endpoint,
) {
    let broker = std::sync::Arc::new(broker::Broker::new(common::config(data, "")));
    broker.start().await.expect("broker starts");
    let server = broker::listener::Server::start(std::sync::Arc::clone(&broker))
        .await
        .unwrap();
    let addr = server.stomp.unwrap();
    let endpoint = broker::url::Endpoint {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: false,
    };
    (broker, server, endpoint)
}

/// The disk fills while SENDs are in flight: the client gets an ERROR naming the SEND that
/// failed, the connection closes, and every receipted message is there after the disk has room
/// again and the broker restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_in_the_window_is_an_error_and_loses_nothing_receipted() {
    let Some(fs) = Tmpfs::mount(12 * 1024 * 1024) else {
        test_support::skip("mounting a tmpfs needs root");
        return;
    };
    // Room for the journal's first files; the ballast takes the rest but a little.
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 8 * 1024 * 1024]).unwrap();
    let data = fs.path().join("data");
    let (broker, server, endpoint) = serve(&data).await;
    let opts = admin();
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    let big = "x".repeat(16 * 1024);
    let mut receipted = 0u64;
    let mut error = None;
    for n in 0..2_000u64 {
        let f = Frame::new("SEND")
            .header("destination", "/queue/full")
            .header("persistent", "true")
            .with_body(format!("{n} {big}"));
        let r = if n % 10 == 9 {
            c.request(f).await.map(|_| receipted = n + 1)
        } else {
            c.send_frame(f).await
        };
        if let Err(e) = r {
            error = Some(e.to_string());
            break;
        }
    }
    let error = match error {
        Some(e) if e.contains("SEND #") => e,
        // The ERROR may still be on its way after the last write the socket took, or a write
        // failed on the closing socket before the ERROR was read.
        _ => match c.recv_timeout(Duration::from_secs(10)).await {
            Ok(Some(f)) => f.get("message").unwrap_or_default().to_owned(),
            other => format!("{other:?}"),
        },
    };
    assert!(
        error.contains("SEND #") && error.contains("No space left on device"),
        "the client is told which write failed and why: {error}"
    );
    drop(c);
    server.stop().await;
    broker.stop().await;
    std::fs::remove_file(&ballast).unwrap();
    let (broker, server, endpoint) = serve(&data).await;
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    c.subscribe("d", "/queue/full", "client-individual", &[])
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = c.recv_timeout(Duration::from_secs(2)).await.unwrap() {
        let text = body(&m);
        got.push(text.split(' ').next().unwrap().parse::<u64>().unwrap());
        c.ack(&m, None).await.unwrap();
    }
    c.disconnect().await.unwrap();
    server.stop().await;
    broker.stop().await;
    eprintln!(
        "full disk: {error}; {receipted} receipted, {} stored",
        got.len()
    );
    let expected: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, expected, "a prefix of what was sent, in order");
    assert!(
        got.len() as u64 >= receipted && receipted > 0,
        "{receipted} receipted, {} stored",
        got.len()
    );
}

/// A producer much faster than the disk (every fsync of the simulated disk takes 5 ms): the
/// broker holds at most the window's bytes of its messages, the producer is slowed by TCP
/// instead, everything still shares fsyncs, and the final receipt finds all of it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_faster_than_a_slow_disk_is_held_to_the_window() {
    const WINDOW_BYTES: usize = 64 * 1024;
    const COUNT: u64 = 2_000;
    let fs = store_journal::fs::SimFs::new();
    fs.control().set_fsync_delay(Duration::from_millis(5));
    let mut kaha = store_kahadb::KahaDbConfig::new("/slow");
    kaha.preallocate = false;
    let store = store_kahadb::KahaDbStore::open_with_fs(kaha, Arc::new(fs.clone())).unwrap();
    let config = broker::BrokerConfig::from_toml(&format!(
        "[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"\"\nwebsocket = \"\"\nweb = \"\"\npipeline_window_bytes = {WINDOW_BYTES}\n"
    ))
    .unwrap();
    let core = broker_core::Broker::new(
        config.core(),
        Arc::new(broker_core::NoLock),
        Arc::new(broker_core::OpenedStore(Arc::new(store))),
    );
    let b = Arc::new(broker::Broker::with_core(core, config));
    b.start().await.unwrap();
    let server = broker::listener::Server::start(Arc::clone(&b))
        .await
        .unwrap();
    let endpoint = broker::url::Endpoint {
        host: "127.0.0.1".into(),
        port: server.stomp.unwrap().port(),
        tls: false,
    };
    let mut c = StompClient::connect(&endpoint, &admin()).await.unwrap();
    let fsyncs_before = fs.control().fsyncs();
    let body = "x".repeat(1024);
    tokio::time::timeout(Duration::from_secs(120), async {
        for n in 0..COUNT {
            let f = Frame::new("SEND")
                .header("destination", "/queue/slow")
                .header("persistent", "true")
                .header("n", n.to_string())
                .with_body(body.clone());
            c.send_frame(f).await.unwrap();
        }
        c.request(send("/queue/slow", COUNT)).await.unwrap();
    })
    .await
    .expect("the producer finishes");
    let gauge = b.pipelined();
    assert!(
        gauge.high_water() <= WINDOW_BYTES,
        "the broker held {} bytes of unwritten messages, more than the window's {WINDOW_BYTES}",
        gauge.high_water()
    );
    // The disk was the bottleneck: the window filled up (so the bound above was tested).
    assert!(
        gauge.high_water() >= WINDOW_BYTES / 2,
        "the window never filled: {} bytes at most",
        gauge.high_water()
    );
    assert_eq!(gauge.bytes(), 0, "the receipt drained the window");
    let fsyncs = fs.control().fsyncs() - fsyncs_before;
    assert!(
        fsyncs < COUNT / 4,
        "{fsyncs} fsyncs for {COUNT} messages: the window's writes did not share them"
    );
    let stats = b.destination_stats().await.unwrap();
    let slow = stats
        .iter()
        .find(|s| &*s.destination.name == "slow")
        .expect("the queue exists");
    assert_eq!(slow.pending, COUNT + 1);
    drop(c);
    server.stop().await;
    b.stop().await;
}
