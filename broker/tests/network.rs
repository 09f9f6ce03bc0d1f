//! A network of brokers (issue 28), with real `broker` processes on loopback ports: one
//! broker's `[[network_connectors]]` bridge forwards to another what that other has consumers
//! for, nothing when it has none, within `network_ttl` hops, without loops or loss.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use broker::client::{ConnectOptions, StompClient};
use broker::stomp::frame::Frame;
use broker::url::Endpoint;
use common::process::BrokerProcess;
use test_support::{free_port, free_ports};

/// A `broker` process (killed with SIGKILL when dropped) and its addresses.
struct Node {
    process: BrokerProcess,
    name: String,
    stomp: Endpoint,
    openwire: u16,
}

/// A connector to the brokers listening for OpenWire on `ports`, with fast reconnects.
fn connector(ports: &[u16], extra: &str) -> String {
    let uris: Vec<String> = ports
        .iter()
        .map(|p| format!("tcp://127.0.0.1:{p}"))
        .collect();
    format!(
        "[[network_connectors]]\nuri = \"static:({})\"\nuser_name = \"admin\"\npassword = \"admin\"\ninitial_reconnect_delay_ms = 100\nmax_reconnect_delay_ms = 500\n{extra}",
        uris.join(",")
    )
}

/// Starts broker `name` on KahaDB under `dir`, OpenWire on `openwire`, with `extra` config.
fn start(dir: &Path, name: &str, openwire: u16, extra: &str) -> Node {
    start_with(dir, name, openwire, extra, "")
}

/// As [`start`], with the web console on `web` (empty: off).
fn start_with(dir: &Path, name: &str, openwire: u16, extra: &str, web: &str) -> Node {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[broker]\nname = \"{name}\"\ndata_directory = \"{}\"\n[persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:{openwire}\"\nwebsocket = \"\"\nmqtt = \"\"\nweb = \"{web}\"\n{extra}",
            dir.join(format!("data-{name}")).display()
        ),
    )
    .unwrap();
    let process =
        BrokerProcess::start(&config, "info,broker::network=debug,broker::openwire=debug");
    let url = process.announced("listening for STOMP on ", Duration::from_secs(60));
    let addr: std::net::SocketAddr = url.trim_start_matches("tcp://").parse().unwrap();
    let node = Node {
        process,
        name: name.to_owned(),
        stomp: Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: false,
        },
        openwire,
    };
    // Its OpenWire port is taken before another is chosen.
    node.wait_log("listening for OpenWire on", 1);
    node
}

impl Node {
    /// The web console's address, as the log announced it.
    fn web(&self) -> std::net::SocketAddr {
        self.wait_log("web console on http://", 1);
        let line = self
            .process
            .find_after(0, "web console on http://")
            .unwrap();
        let at = line.find("http://").unwrap() + "http://".len();
        line[at..].trim().trim_end_matches('/').parse().unwrap()
    }

    /// Waits (bounded) until `count` log lines contain `text`.
    fn wait_log(&self, text: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.process.count(text) >= count {
                return;
            }
            if Instant::now() > deadline {
                let log = self.log_text();
                panic!("{}: no {count} lines with {text:?} in:\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        self.process.log()
    }

    async fn client(&self) -> StompClient {
        StompClient::connect(
            &self.stomp,
            &ConnectOptions {
                login: "admin".into(),
                passcode: "admin".into(),
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("connect")
    }

    async fn client_id(&self, id: &str) -> StompClient {
        StompClient::connect(
            &self.stomp,
            &ConnectOptions {
                login: "admin".into(),
                passcode: "admin".into(),
                client_id: Some(id.into()),
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("connect")
    }

    fn kill(self) {
        self.process.kill9();
    }
}

/// A client-individual consumer of `/queue/<queue>` on `on`, returned once broker `seen_by`
/// logs the demand for it (its bridge to `on` forwards the queue from then on).
async fn consumer_with_demand(on: &Node, seen_by: &Node, queue: &str) -> StompClient {
    let mut consumer = on.client().await;
    consumer
        .subscribe("s", &format!("/queue/{queue}"), "client-individual", &[])
        .await
        .unwrap();
    seen_by.wait_log(&format!("demand for queue://{queue}"), 1);
    consumer
}

async fn send_all(c: &mut StompClient, destination: &str, range: std::ops::Range<usize>) {
    for i in range {
        c.send(destination, format!("m{i}"), &[("persistent", "true")])
            .await
            .unwrap();
    }
}

/// The next MESSAGE within `wait`, acked.
async fn next(c: &mut StompClient, wait: Duration) -> Option<Frame> {
    let f = c.recv_timeout(wait).await.unwrap()?;
    assert_eq!(f.command, "MESSAGE", "{f:?}");
    c.ack(&f, None).await.unwrap();
    Some(f)
}

fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

/// Receives `n` messages, each within 30 s.
async fn receive(c: &mut StompClient, n: usize, who: &Node) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        match next(c, Duration::from_secs(30)).await {
            Some(f) => got.push(body(&f)),
            None => panic!(
                "only {} of {n} messages arrived; log of {}:\n{}",
                got.len(),
                who.name,
                who.log_text()
            ),
        }
    }
    got
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Nothing more arrives for a while.
async fn nothing(c: &mut StompClient) {
    if let Some(f) = c.recv_timeout(Duration::from_millis(700)).await.unwrap() {
        panic!("unexpected {:?}: {}", f.command, body(&f));
    }
}

/// A consumer on `destination` at `node` finds nothing there (the queue is empty).
async fn empty(node: &Node, destination: &str) {
    let mut c = node.client().await;
    c.subscribe("empty", destination, "client-individual", &[])
        .await
        .unwrap();
    nothing(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_forwarded_to_the_broker_that_has_its_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_with(dir.path(), "b", free_port(), "", "127.0.0.1:0");
    let a = start_with(
        dir.path(),
        "a",
        free_port(),
        &connector(&[b.openwire], ""),
        "127.0.0.1:0",
    );
    a.wait_log("network bridge connected", 1);
    let mut consumer = consumer_with_demand(&b, &a, "q").await;
    let mut producer = a.client().await;
    send_all(&mut producer, "/queue/q", 0..200).await;
    assert_eq!(receive(&mut consumer, 200, &a).await, expected(0..200));
    nothing(&mut consumer).await;

    // The counts each side shows: forwarded by A's bridge, received by B.
    const ADMIN: (&str, &str) = ("Authorization", "Basic YWRtaW46YWRtaW4=");
    let line = format!(
        "broker_network_bridge_forwarded{{bridge=\"bridge\",remote=\"127.0.0.1:{}\"}} 200",
        b.openwire
    );
    // A acks each message once B's answer is in: the count may trail the consumer a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = common::http::request(a.web(), "GET", "/metrics", &[ADMIN], None).await;
        if m.body.contains(&line) || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.body.contains(&line), "{}", metrics.body);
    assert!(
        metrics
            .body
            .contains("broker_network_bridge_connected{bridge=\"bridge\"")
    );
    let overview = common::http::request(a.web(), "GET", "/api/overview", &[ADMIN], None).await;
    let overview: serde_json::Value = serde_json::from_str(&overview.body).unwrap();
    let bridge = &overview["network_bridges"][0];
    assert_eq!(bridge["remote_broker"], "b", "{overview}");
    assert_eq!(bridge["connected"], true);
    assert_eq!(bridge["forwarded"], 200);
    assert_eq!(bridge["destinations"], 1);
    let metrics = common::http::request(b.web(), "GET", "/metrics", &[ADMIN], None).await;
    assert!(
        metrics.body.contains("broker_network_received 200"),
        "{}",
        metrics.body
    );
    // Every one was acked on A: with B gone, A's queue has nothing left.
    b.kill();
    a.wait_log("network bridge disconnected", 1);
    empty(&a, "/queue/q").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_demand_nothing_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), "b", free_port(), "");
    let a = start(dir.path(), "a", free_port(), &connector(&[b.openwire], ""));
    a.wait_log("network bridge connected", 1);
    let mut producer = a.client().await;
    send_all(&mut producer, "/queue/q", 0..20).await;
    // A consumer of another queue on B is no demand for this one.
    let mut other = b.client().await;
    other
        .subscribe("o", "/queue/other", "client-individual", &[])
        .await
        .unwrap();
    a.wait_log("demand for queue://other", 1);
    nothing(&mut other).await;
    let mut local = a.client().await;
    local
        .subscribe("l", "/queue/q", "client-individual", &[])
        .await
        .unwrap();
    assert_eq!(receive(&mut local, 20, &a).await, expected(0..20));
    assert!(
        !a.log_text().contains("demand for queue://q "),
        "{}",
        a.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_forwarded_to_a_subscriber_and_a_durable_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), "b", free_port(), "");
    let a = start(dir.path(), "a", free_port(), &connector(&[b.openwire], ""));
    a.wait_log("network bridge connected", 1);
    let mut plain = b.client().await;
    plain
        .subscribe("s", "/topic/t", "client-individual", &[])
        .await
        .unwrap();
    let mut durable = b.client_id("durable-1").await;
    durable
        .subscribe(
            "d",
            "/topic/t",
            "client-individual",
            &[("activemq.subscriptionName", "sub")],
        )
        .await
        .unwrap();
    a.wait_log("demand for topic://t", 1);
    let mut producer = a.client().await;
    send_all(&mut producer, "/topic/t", 0..200).await;
    assert_eq!(receive(&mut plain, 200, &a).await, expected(0..200));
    assert_eq!(receive(&mut durable, 200, &a).await, expected(0..200));
    nothing(&mut plain).await;
    nothing(&mut durable).await;

    // Only the durable subscription left: still demand, still forwarded.
    drop(plain);
    send_all(&mut producer, "/topic/t", 200..210).await;
    assert_eq!(receive(&mut durable, 10, &a).await, expected(200..210));
}

/// A line A -> B -> C with the consumer on C: demand crosses one bridge per hop of
/// `network_ttl`.
async fn line_of_three(ttl: u32) -> (tempfile::TempDir, Node, Node, Node, StompClient) {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("network_ttl = {ttl}\n");
    let c = start(dir.path(), "c", free_port(), "");
    let b = start(
        dir.path(),
        "b",
        free_port(),
        &connector(&[c.openwire], &extra),
    );
    let a = start(
        dir.path(),
        "a",
        free_port(),
        &connector(&[b.openwire], &extra),
    );
    a.wait_log("network bridge connected", 1);
    b.wait_log("network bridge connected", 1);
    let consumer = consumer_with_demand(&c, &b, "q").await;
    (dir, a, b, c, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_three_with_network_ttl_1_stops_after_one_hop() {
    let (_dir, a, _b, _c, mut consumer) = line_of_three(1).await;
    a.wait_log("beyond network_ttl", 1);
    let mut producer = a.client().await;
    send_all(&mut producer, "/queue/q", 0..20).await;
    nothing(&mut consumer).await;
    let mut local = a.client().await;
    local
        .subscribe("l", "/queue/q", "client-individual", &[])
        .await
        .unwrap();
    assert_eq!(receive(&mut local, 20, &a).await, expected(0..20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_three_with_network_ttl_2_reaches_the_end() {
    let (_dir, a, _b, _c, mut consumer) = line_of_three(2).await;
    a.wait_log("demand for queue://q", 1);
    let mut producer = a.client().await;
    send_all(&mut producer, "/queue/q", 0..50).await;
    assert_eq!(receive(&mut consumer, 50, &a).await, expected(0..50));
    nothing(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_bridged_both_ways_neither_duplicate_nor_ping_pong() {
    let dir = tempfile::tempdir().unwrap();
    let [pa, pb] = free_ports::<2>();
    let a = start(dir.path(), "a", pa, &connector(&[pb], ""));
    let b = start(dir.path(), "b", pb, &connector(&[pa], ""));
    a.wait_log("network bridge connected", 1);
    b.wait_log("network bridge connected", 1);

    // Topics: one subscriber on each side; each gets every message once.
    let mut ta = a.client().await;
    ta.subscribe("t", "/topic/t", "client-individual", &[])
        .await
        .unwrap();
    let mut tb = b.client().await;
    tb.subscribe("t", "/topic/t", "client-individual", &[])
        .await
        .unwrap();
    a.wait_log("demand for topic://t", 1);
    b.wait_log("demand for topic://t", 1);
    let mut producer = a.client().await;
    send_all(&mut producer, "/topic/t", 0..50).await;
    assert_eq!(receive(&mut ta, 50, &a).await, expected(0..50));
    assert_eq!(receive(&mut tb, 50, &b).await, expected(0..50));
    nothing(&mut ta).await;
    nothing(&mut tb).await;

    // Queues: one consumer on each side; together they get every message once.
    let mut qa = a.client().await;
    qa.subscribe("q", "/queue/q", "client-individual", &[])
        .await
        .unwrap();
    let mut qb = b.client().await;
    qb.subscribe("q", "/queue/q", "client-individual", &[])
        .await
        .unwrap();
    a.wait_log("demand for queue://q", 1);
    b.wait_log("demand for queue://q", 1);
    send_all(&mut producer, "/queue/q", 0..100).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 100 && Instant::now() < deadline {
        for c in [&mut qa, &mut qb] {
            while let Some(f) = next(c, Duration::from_millis(100)).await {
                got.push(body(&f));
            }
        }
    }
    got.sort_by_key(|m| m[1..].parse::<usize>().unwrap());
    assert_eq!(got, expected(0..100));
    nothing(&mut qa).await;
    nothing(&mut qb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_receiving_broker_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pb = free_port();
    let b = start(dir.path(), "b", pb, "");
    let a = start(dir.path(), "a", free_port(), &connector(&[pb], ""));
    a.wait_log("network bridge connected", 1);
    let mut consumer = consumer_with_demand(&b, &a, "q").await;
    const N: usize = 500;
    let mut producer = a.client().await;
    let sending = tokio::spawn(async move {
        send_all(&mut producer, "/queue/q", 0..N).await;
        producer
    });

    // Per message: copies received, and whether a copy was acked (its receipt came back).
    let mut seen = vec![0usize; N];
    let mut acked = vec![false; N];
    let mut unflagged_duplicates = Vec::new();
    let mut b = Some(b);
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.iter().any(|a| !a) {
        assert!(
            Instant::now() < deadline,
            "not all acked: missing {:?}\nlog of a:\n{}",
            (0..N).filter(|i| !acked[*i]).collect::<Vec<_>>(),
            a.log_text()
        );
        let f = match consumer.recv_timeout(Duration::from_secs(1)).await {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(_) => {
                // B is gone: wait for it, then consume again.
                if let Ok(c) = StompClient::connect(
                    &b.as_ref().unwrap().stomp,
                    &ConnectOptions {
                        login: "admin".into(),
                        passcode: "admin".into(),
                        ..ConnectOptions::default()
                    },
                )
                .await
                {
                    consumer = c;
                    consumer
                        .subscribe("s", "/queue/q", "client-individual", &[])
                        .await
                        .unwrap();
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        assert_eq!(f.command, "MESSAGE", "{f:?}");
        let i: usize = body(&f)[1..].parse().unwrap();
        seen[i] += 1;
        if acked[i] && f.get("redelivered") != Some("true") {
            unflagged_duplicates.push(i);
        }
        if consumer.ack(&f, None).await.is_ok() {
            acked[i] = true;
        }
        if !killed && acked.iter().filter(|a| **a).count() == 150 {
            killed = true;
            b.take().unwrap().kill();
            b = Some(start(dir.path(), "b", pb, ""));
        }
    }
    assert!(killed);
    let producer = sending.await.unwrap();
    drop(producer);
    assert!(
        unflagged_duplicates.is_empty(),
        "consumed twice without the redelivered flag: {unflagged_duplicates:?}"
    );
    let twice = seen.iter().filter(|n| **n > 1).count();
    eprintln!(
        "{N} messages across a kill -9 of the receiving broker: {twice} received more than once (flagged or never acked)"
    );
    let mut consumer = consumer;
    nothing(&mut consumer).await;
}

/// Debian's ActiveMQ 5.17, with an OpenWire and a STOMP connector and a network connector to
/// `rust_openwire`; killed when dropped.
struct ActiveMq {
    child: Child,
    log: std::path::PathBuf,
    openwire: u16,
    stomp: Endpoint,
}

impl Drop for ActiveMq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn activemq(dir: &Path, rust_openwire: u16) -> Option<ActiveMq> {
    activemq_with(
        dir,
        &format!(
            r#"<networkConnector name="to-rust" uri="static:(tcp://127.0.0.1:{rust_openwire})"
                        userName="admin" password="admin"/>"#
        ),
        "",
    )
}

/// ActiveMQ with `network_connector` (a `<networkConnector>` element) and `openwire_attrs` on
/// its OpenWire `<transportConnector>`.
fn activemq_with(dir: &Path, network_connector: &str, openwire_attrs: &str) -> Option<ActiveMq> {
    const JAR: &str = "/usr/share/activemq/bin/activemq.jar";
    if !Path::new(JAR).exists() || Command::new("java").arg("-version").output().is_err() {
        test_support::skip("no Debian activemq package (/usr/share/activemq) or no java");
        return None;
    }
    let [openwire, stomp] = free_ports::<2>();
    let base = dir.join("amq");
    std::fs::create_dir_all(base.join("conf")).unwrap();
    std::fs::create_dir_all(base.join("data")).unwrap();
    std::fs::write(
        base.join("conf/activemq.xml"),
        format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="amq"
          dataDirectory="{data}">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <networkConnectors>
      {network_connector}
    </networkConnectors>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{openwire}" {openwire_attrs}/>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{stomp}"/>
    </transportConnectors>
  </broker>
</beans>
"#,
            data = base.join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(
        base.join("conf/log4j.properties"),
        "log4j.rootLogger=INFO, out\nlog4j.appender.out=org.apache.log4j.ConsoleAppender\nlog4j.appender.out.layout=org.apache.log4j.PatternLayout\nlog4j.appender.out.layout.ConversionPattern=%d %-5p %c{1} - %m%n\n",
    )
    .unwrap();
    let log = base.join("amq.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("java")
        .args(["-Xms64M", "-Xmx512M"])
        .arg(format!("-Dactivemq.base={}", base.display()))
        .arg("-Dactivemq.home=/usr/share/activemq")
        .arg(format!(
            "-Dlog4j.configuration=file:{}",
            base.join("conf/log4j.properties").display()
        ))
        .arg(format!("-Dactivemq.conf={}", base.join("conf").display()))
        .arg(format!("-Dactivemq.data={}", base.join("data").display()))
        .args(["-jar", JAR, "start"])
        .arg(format!(
            "xbean:file:{}",
            base.join("conf/activemq.xml").display()
        ))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start ActiveMQ");
    let amq = ActiveMq {
        child,
        log,
        openwire,
        stomp: Endpoint {
            host: "127.0.0.1".into(),
            port: stomp,
            tls: false,
        },
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", stomp)).is_err() {
        assert!(
            Instant::now() < deadline,
            "ActiveMQ did not start:\n{}",
            amq.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(amq)
}

impl ActiveMq {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn client(&self) -> StompClient {
        StompClient::connect(
            &self.stomp,
            &ConnectOptions {
                login: "admin".into(),
                passcode: "admin".into(),
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("connect to ActiveMQ")
    }
}

/// This broker and Apache ActiveMQ 5.17 bridged both ways: each one's connector to the other
/// (ActiveMQ's `networkConnector`, this one's `[[network_connectors]]`), messages flowing each
/// way to a consumer on the other side, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_with_activemq_5_17_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let rust_port = free_port();
    let Some(amq) = activemq(dir.path(), rust_port) else {
        return;
    };
    let rust = start(
        dir.path(),
        "rust",
        rust_port,
        &connector(&[amq.openwire], ""),
    );
    rust.wait_log("network bridge connected to amq", 1);

    exchange_with_activemq(&rust, &amq, 100).await;
}

/// With a bridge each way between this broker and ActiveMQ (static or discovered): a consumer on
/// each side, `n` messages sent on the other, each received exactly once, in order.
async fn exchange_with_activemq(rust: &Node, amq: &ActiveMq, n: usize) {
    // Consumers first, on each side; the demand crosses each bridge.
    let mut on_amq = amq.client().await;
    on_amq
        .subscribe("a", "/queue/to.amq", "client-individual", &[])
        .await
        .unwrap();
    let mut on_rust = rust.client().await;
    on_rust
        .subscribe("r", "/queue/to.rust", "client-individual", &[])
        .await
        .unwrap();
    rust.wait_log("demand for queue://to.amq", 1);

    // This broker to ActiveMQ.
    let mut producer = rust.client().await;
    send_all(&mut producer, "/queue/to.amq", 0..n).await;
    let mut got = Vec::new();
    for _ in 0..n {
        match next(&mut on_amq, Duration::from_secs(30)).await {
            Some(f) => got.push(body(&f)),
            None => panic!(
                "{} of {n} reached ActiveMQ; this broker's log:\n{}",
                got.len(),
                rust.log_text()
            ),
        }
    }
    assert_eq!(got, expected(0..n));

    // ActiveMQ to this broker: its bridge may learn of the consumer here a moment after it
    // connects, so the messages are sent once and waited for.
    let mut producer = amq.client().await;
    send_all(&mut producer, "/queue/to.rust", 0..n).await;
    let mut got = Vec::new();
    for _ in 0..n {
        match next(&mut on_rust, Duration::from_secs(60)).await {
            Some(f) => got.push(body(&f)),
            None => panic!(
                "{} of {n} came from ActiveMQ; ActiveMQ's log:\n{}\nthis broker's log:\n{}",
                got.len(),
                amq.log_text(),
                rust.log_text()
            ),
        }
    }
    assert_eq!(got, expected(0..n));
    nothing(&mut on_rust).await;
    nothing(&mut on_amq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_sending_broker_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), "b", free_port(), "");
    let pa = free_port();
    let config = connector(&[b.openwire], "");
    let mut a = start(dir.path(), "a", pa, &config);
    a.wait_log("network bridge connected", 1);
    let mut consumer = consumer_with_demand(&b, &a, "q").await;
    const N: usize = 500;
    let mut seen = vec![0usize; N];
    let mut acked = vec![false; N];
    let mut unflagged_duplicates = Vec::new();
    let mut producer = a.client().await;
    let mut sent = 0;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Sends interleaved with receives; A is killed after 200 receipts and started again.
    while acked.iter().any(|x| !x) {
        assert!(
            Instant::now() < deadline,
            "not all acked: missing {:?}",
            (0..N).filter(|i| !acked[*i]).collect::<Vec<_>>()
        );
        if sent < N {
            let end = (sent + 20).min(N);
            while sent < end
                && producer
                    .send("/queue/q", format!("m{sent}"), &[("persistent", "true")])
                    .await
                    .is_ok()
            {
                sent += 1;
            }
        }
        if !killed && sent >= 200 {
            killed = true;
            a.kill();
            a = start(dir.path(), "a", pa, &config);
            producer = a.client().await;
        }
        while let Ok(Some(f)) = consumer.recv_timeout(Duration::from_millis(50)).await {
            let i: usize = body(&f)[1..].parse().unwrap();
            seen[i] += 1;
            if acked[i] && f.get("redelivered") != Some("true") {
                unflagged_duplicates.push(i);
            }
            consumer.ack(&f, None).await.unwrap();
            acked[i] = true;
        }
    }
    assert!(
        unflagged_duplicates.is_empty(),
        "consumed twice without the redelivered flag: {unflagged_duplicates:?}"
    );
    let twice = seen.iter().filter(|n| **n > 1).count();
    eprintln!(
        "{N} messages across a kill -9 of the sending broker: {twice} received twice (flagged)"
    );
    nothing(&mut consumer).await;
}

/// A ring of three (A -> B -> C -> A) with `network_ttl` 3: demand travels all the way round,
/// yet each subscriber gets each message once and a queue's messages are consumed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_three_delivers_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let [pa, pb, pc] = free_ports::<3>();
    let ttl = "network_ttl = 3\n";
    let a = start(dir.path(), "a", pa, &connector(&[pb], ttl));
    let b = start(dir.path(), "b", pb, &connector(&[pc], ttl));
    let c = start(dir.path(), "c", pc, &connector(&[pa], ttl));
    for n in [&a, &b, &c] {
        n.wait_log("network bridge connected", 1);
    }
    let mut subscribers = Vec::new();
    for n in [&a, &b, &c] {
        let mut s = n.client().await;
        s.subscribe("t", "/topic/t", "client-individual", &[])
            .await
            .unwrap();
        subscribers.push(s);
    }
    for n in [&a, &b, &c] {
        n.wait_log("demand for topic://t", 1);
    }
    let mut producer = a.client().await;
    send_all(&mut producer, "/topic/t", 0..30).await;
    for (s, n) in subscribers.iter_mut().zip([&a, &b, &c]) {
        assert_eq!(receive(s, 30, n).await, expected(0..30), "{}", n.name);
    }
    for s in &mut subscribers {
        nothing(s).await;
    }

    let mut consumers = Vec::new();
    for n in [&a, &b, &c] {
        let mut q = n.client().await;
        q.subscribe("q", "/queue/q", "client-individual", &[])
            .await
            .unwrap();
        consumers.push(q);
    }
    for n in [&a, &b, &c] {
        n.wait_log("demand for queue://q", 1);
    }
    send_all(&mut producer, "/queue/q", 0..60).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 60 && Instant::now() < deadline {
        for q in &mut consumers {
            while let Some(f) = next(q, Duration::from_millis(100)).await {
                got.push(body(&f));
            }
        }
    }
    got.sort_by_key(|m| m[1..].parse::<usize>().unwrap());
    assert_eq!(got, expected(0..60));
    for q in &mut consumers {
        nothing(q).await;
    }
}

/// Reads commands from a raw OpenWire connection until `want` matches one (bounded).
async fn read_until(
    sock: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    wf: &openwire::WireFormat,
    want: impl Fn(&openwire::Command) -> bool,
) -> openwire::Command {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(cmd) = openwire::decode(buf, wf).unwrap() {
            if want(&cmd) {
                return cmd;
            }
        }
        assert!(Instant::now() < deadline, "no such command within 10 s");
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read_buf(buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
    }
}

/// A bridge that sends a message again (its first answer lost) gets an answer, and the
/// message is not stored twice: the receiving broker's message audit knows its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_message_sent_twice_is_stored_once() {
    use openwire::{Command, WireFormatInfo, WireFormatOptions};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), "b", free_port(), "");
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", b.openwire))
        .await
        .unwrap();
    let ours = WireFormatInfo::new(12, &WireFormatOptions::broker_default()).unwrap();
    let mut wf = openwire::WireFormat::default();
    let mut out = bytes::BytesMut::new();
    openwire::encode(&Command::WireFormatInfo(ours.clone()), &wf, &mut out).unwrap();
    sock.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let Command::WireFormatInfo(theirs) = read_until(&mut sock, &mut buf, &wf, |c| {
        matches!(c, Command::WireFormatInfo(_))
    })
    .await
    else {
        unreachable!()
    };
    wf = openwire::negotiate(&theirs, &ours).unwrap();
    let producer = openwire::ProducerId {
        connection_id: "ID:test-bridge".into(),
        session_id: 1,
        value: 1,
    };
    let message = |command_id: i32| {
        let mut m = openwire::Message::new(openwire::MessageKind::Text);
        m.set_text(Some("once")).unwrap();
        m.command_id = command_id;
        m.response_required = true;
        m.persistent = true;
        m.destination = Some(openwire::Destination::queue("q"));
        m.producer_id = Some(producer.clone());
        m.message_id = Some(openwire::MessageId {
            text_view: None,
            producer_id: Some(openwire::ProducerId {
                connection_id: "ID:elsewhere-1".into(),
                session_id: 0,
                value: 0,
            }),
            producer_sequence_id: 7,
            broker_sequence_id: 0,
        });
        m.broker_path = Some(vec![openwire::BrokerId {
            value: "ID:elsewhere".into(),
        }]);
        Command::Message(Box::new(m))
    };
    let mut out = bytes::BytesMut::new();
    for cmd in [
        Command::ConnectionInfo(openwire::ConnectionInfo {
            command_id: 1,
            response_required: true,
            connection_id: openwire::ConnectionId {
                value: "ID:test-bridge".into(),
            },
            client_id: Some("test-bridge".into()),
            user_name: Some("admin".into()),
            password: Some("admin".into()),
            ..openwire::ConnectionInfo::default()
        }),
        message(2),
        message(3),
    ] {
        openwire::encode(&cmd, &wf, &mut out).unwrap();
    }
    sock.write_all(&out).await.unwrap();
    for id in [2, 3] {
        read_until(
            &mut sock,
            &mut buf,
            &wf,
            |c| matches!(c, Command::Response(r) if r.correlation_id == id),
        )
        .await;
    }
    let mut consumer = b.client().await;
    consumer
        .subscribe("s", "/queue/q", "client-individual", &[])
        .await
        .unwrap();
    assert_eq!(receive(&mut consumer, 1, &b).await, ["once"]);
    nothing(&mut consumer).await;
}

/// A duplex bridge: A's one connector to B carries both directions; B has none of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplex_bridge_carries_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), "b", free_port(), "");
    let a = start(
        dir.path(),
        "a",
        free_port(),
        &connector(&[b.openwire], "duplex = true\n"),
    );
    a.wait_log("network bridge connected", 1);
    let mut on_a = a.client().await;
    on_a.subscribe("a", "/queue/back", "client-individual", &[])
        .await
        .unwrap();
    let mut on_b = b.client().await;
    on_b.subscribe("b", "/queue/fwd", "client-individual", &[])
        .await
        .unwrap();
    a.wait_log("demand for queue://back here: pulling", 1);
    a.wait_log("demand for queue://fwd on b: forwarding", 1);

    let mut to_a = a.client().await;
    send_all(&mut to_a, "/queue/fwd", 0..100).await;
    assert_eq!(receive(&mut on_b, 100, &a).await, expected(0..100));
    let mut to_b = b.client().await;
    send_all(&mut to_b, "/queue/back", 0..100).await;
    assert_eq!(receive(&mut on_a, 100, &a).await, expected(0..100));
    nothing(&mut on_a).await;
    nothing(&mut on_b).await;

    // Everything pulled was acked on B; nothing came back the other way.
    drop(on_a);
    a.wait_log("no more demand for queue://back here", 1);
    empty(&b, "/queue/back").await;
    empty(&a, "/queue/fwd").await;
}

/// Set in the child run of [`multicast_discovery_bridges_the_brokers_it_hears`] that runs
/// inside its own network namespace.
const IN_NETNS: &str = "BROKER_NETWORK_TEST_IN_NETNS";

/// Multicast discovery, only ever inside a network namespace this test creates: the test
/// binary runs itself again under `unshare --net`, where the scenario below brings up a
/// loopback that carries multicast and starts three brokers on it. Nothing reaches the host's
/// network. Without the right to create a namespace (not root) it is skipped, unless CI is
/// set.
#[test]
fn multicast_discovery_bridges_the_brokers_it_hears() {
    in_network_namespace(
        "multicast_discovery_bridges_the_brokers_it_hears",
        multicast_scenario,
    );
}

/// As above, with Apache ActiveMQ 5.17 (Debian's `activemq`) on the same group: each
/// discovers the other, and messages flow both ways.
#[test]
fn multicast_discovery_with_activemq_5_17() {
    in_network_namespace(
        "multicast_discovery_with_activemq_5_17",
        multicast_activemq_scenario,
    );
}

/// Runs `scenario` when this process is the child inside the namespace; otherwise runs test
/// `name` of this binary again under `unshare --net` and checks that it passed.
fn in_network_namespace(name: &str, scenario: fn()) {
    if std::env::var_os(IN_NETNS).is_some() {
        multicast_loopback();
        return scenario();
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return skip_or_fail(&format!("cannot run unshare: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        return skip_or_fail(stderr.trim());
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The child ran this very test (a filter matching nothing would pass too).
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
}

/// Inside the namespace: a loopback that carries multicast, the group's only route.
fn multicast_loopback() {
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "set", "lo", "multicast", "on"],
        &["route", "add", "224.0.0.0/4", "dev", "lo"],
    ] {
        let s = Command::new("ip").args(args).status().unwrap();
        assert!(s.success(), "ip {args:?}");
    }
}

/// No namespace to run in: a skip, or a failure under CI.
fn skip_or_fail(why: &str) {
    test_support::skip(format!(
        "multicast discovery needs a network namespace of its own (run as root): {why}"
    ));
}

/// Inside the namespace: brokers a, b and c advertise themselves on `multicast://default`
/// and discover each other there; a's messages reach b's consumer over a bridge nobody
/// listed; c's clean stop (`dead`) and b's `kill -9` (silence) stop a's bridges to them.
fn multicast_scenario() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let discovery = "openwire_discovery = \"multicast://default\"\n[[network_connectors]]\nuri = \"multicast://default\"\nuser_name = \"admin\"\npassword = \"admin\"\ninitial_reconnect_delay_ms = 100\nmax_reconnect_delay_ms = 500\n";
        let [pa, pb, pc] = free_ports::<3>();
        let a = start(dir.path(), "a", pa, discovery);
        let b = start(dir.path(), "b", pb, discovery);
        let c = start(dir.path(), "c", pc, discovery);
        for (n, others) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
            for o in others {
                n.wait_log(
                    &format!(
                        "discovered broker {} at tcp://127.0.0.1:{}: bridging",
                        o.name, o.openwire
                    ),
                    1,
                );
            }
            n.wait_log("network bridge connected", 2);
            // Never itself.
            let own = format!("discovered broker {} ", n.name);
            assert!(!n.log_text().contains(&own), "{}", n.log_text());
        }

        let mut consumer = consumer_with_demand(&b, &a, "mc").await;
        let mut producer = a.client().await;
        send_all(&mut producer, "/queue/mc", 0..50).await;
        assert_eq!(receive(&mut consumer, 50, &a).await, expected(0..50));
        nothing(&mut consumer).await;

        // A clean stop says `dead`.
        let pid = c.process.pid();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        a.wait_log(
            &format!("broker c at tcp://127.0.0.1:{pc} left the group: its bridge stops"),
            1,
        );
        drop(c);
        // A killed broker falls silent.
        drop(consumer);
        b.kill();
        a.wait_log(
            &format!("broker at tcp://127.0.0.1:{pb} not heard for 5000 ms: its bridge stops"),
            1,
        );
    });
}

/// A line of `/metrics` of `node` containing `text`, waited for (bounded).
async fn wait_metric(node: &Node, text: &str) {
    const ADMIN: (&str, &str) = ("Authorization", "Basic YWRtaW46YWRtaW4=");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = common::http::request(node.web(), "GET", "/metrics", &[ADMIN], None).await;
        if m.body.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no {text:?} in /metrics:\n{}",
            node.name,
            m.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Brokers a and b bridged both ways, b with `policy` (config text) for queue r. 20 messages
/// sent on a reach b's consumer, which takes 5 and leaves; then a consumer comes to a.
/// Returns the brokers and the consumer on a.
async fn consumer_moves_from_b_to_a(dir: &Path, policy: &str) -> (Node, Node, StompClient) {
    let [pa, pb] = free_ports::<2>();
    let b = start_with(
        dir,
        "b",
        pb,
        &format!("{}{policy}", connector(&[pa], "")),
        "127.0.0.1:0",
    );
    let a = start(dir, "a", pa, &connector(&[pb], ""));
    a.wait_log("network bridge connected", 1);
    b.wait_log("network bridge connected", 1);
    let mut on_b = b.client().await;
    on_b.subscribe(
        "s",
        "/queue/r",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    )
    .await
    .unwrap();
    a.wait_log("demand for queue://r", 1);
    let mut producer = a.client().await;
    send_all(&mut producer, "/queue/r", 0..20).await;
    // Every one stored on b (and so acked on a) before its consumer leaves.
    wait_metric(&b, "broker_network_received 20").await;
    assert_eq!(receive(&mut on_b, 5, &b).await, expected(0..5));
    on_b.disconnect().await.unwrap();
    a.wait_log("no more demand for queue://r on b", 1);
    let mut on_a = a.client().await;
    on_a.subscribe("s", "/queue/r", "client-individual", &[])
        .await
        .unwrap();
    b.wait_log("demand for queue://r on a: forwarding", 1);
    (a, b, on_a)
}

/// `replay_when_no_consumers` on b's queue: the messages b was sent for a consumer that then
/// left go back to a, where a consumer now is, each exactly once, despite a being in their
/// broker path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_when_no_consumers_sends_them_back_to_the_broker_with_a_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "[[policy.entries]]\nqueue = \"r\"\nreplay_when_no_consumers = true\nreplay_delay_ms = 1000\n";
    let (a, b, mut on_a) = consumer_moves_from_b_to_a(dir.path(), policy).await;
    let mut got = receive(&mut on_a, 15, &b).await;
    got.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(got, expected(5..20));
    nothing(&mut on_a).await;
    drop(on_a);
    // Nothing was left behind on b, nor stored twice on a.
    empty(&b, "/queue/r").await;
    empty(&a, "/queue/r").await;
}

/// Without the policy (ActiveMQ's default) they stay on b until a consumer comes back there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replay_forwarded_messages_stay_where_their_consumer_left() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, b, mut on_a) = consumer_moves_from_b_to_a(dir.path(), "").await;
    // Longer than the other test's replay delay.
    if let Some(f) = on_a.recv_timeout(Duration::from_secs(3)).await.unwrap() {
        panic!("replayed without the policy: {}", body(&f));
    }
    drop(on_a);
    let mut on_b = b.client().await;
    on_b.subscribe("s", "/queue/r", "client-individual", &[])
        .await
        .unwrap();
    let mut got = receive(&mut on_b, 15, &b).await;
    got.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(got, expected(5..20));
    nothing(&mut on_b).await;
}

/// Inside the namespace: this broker and ActiveMQ advertise themselves on
/// `multicast://default` and each bridges to the other it discovers there. ActiveMQ is told to
/// join the group on `lo` (`joinNetworkInterface`): left to itself it picks the last
/// non-loopback interface, and the namespace has none.
fn multicast_activemq_scenario() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        const GROUP: &str = "multicast://default?joinNetworkInterface=lo";
        let Some(amq) = activemq_with(
            dir.path(),
            &format!(r#"<networkConnector name="mc" uri="{GROUP}" userName="admin" password="admin"/>"#),
            &format!(r#"discoveryUri="{GROUP}""#),
        ) else {
            return;
        };
        let rust = start(
            dir.path(),
            "rust",
            free_port(),
            "openwire_discovery = \"multicast://default\"\n[[network_connectors]]\nuri = \"multicast://default\"\nuser_name = \"admin\"\npassword = \"admin\"\ninitial_reconnect_delay_ms = 100\nmax_reconnect_delay_ms = 500\n",
        );
        rust.wait_log(
            // ActiveMQ advertises its listener under the name of the address (`localhost`).
            &format!(":{}: bridging", amq.openwire),
            1,
        );
        rust.wait_log("network bridge connected to amq", 1);

        exchange_with_activemq(&rust, &amq, 20).await;
        // ActiveMQ's bridge came from its multicast discovery of this broker.
        let found = format!(
            "DiscoveryNetworkConnector - Establishing network connection from vm://amq to tcp://127.0.0.1:{}",
            rust.openwire
        );
        assert!(amq.log_text().contains(&found), "{}", amq.log_text());
    });
}
