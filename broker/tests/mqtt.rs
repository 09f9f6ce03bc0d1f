//! The MQTT 3.1.1 door against a real `broker` process (KahaDB in a tempdir, ephemeral ports),
//! driven by clients nobody here wrote — Python's paho-mqtt 1.6 and Debian's
//! `mosquitto_pub`/`mosquitto_sub` — and by raw bytes for what no client sends: QoS 0/1/2,
//! a persistent session across `kill -9`, retained and will messages, MQTT ↔ STOMP, bad
//! credentials, client id takeover, and malformed packets that close only their own
//! connection. Without paho or the mosquitto clients a test says SKIPPED (and fails under
//! `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use broker::client::{ConnectOptions, StompClient};
use broker::url::Endpoint;
use bytes::{Bytes, BytesMut};
use common::process::BrokerProcess;
use mqtt_codec::{Connect, ConnectReturnCode, Packet, Publish, QoS, Subscribe, Will};

/// A `broker start` child with STOMP and MQTT on ephemeral ports; killed when dropped.
struct MqttBroker {
    process: BrokerProcess,
    stomp: u16,
    mqtt: u16,
}

impl MqttBroker {
    fn start(dir: &std::path::Path) -> MqttBroker {
        MqttBroker::start_with(dir, "")
    }

    /// With `transports` (lines ending in a newline) added to the `[transports]` section.
    fn start_with(dir: &std::path::Path, transports: &str) -> MqttBroker {
        let config = dir.join("broker.toml");
        std::fs::write(
            &config,
            format!(
                "[broker]\ndata_directory = \"{}\"\n[persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:0\"\nwebsocket = \"\"\nweb = \"\"\nmqtt = \"127.0.0.1:0\"\n{transports}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let process = BrokerProcess::start(&config, "info,broker::mqtt=debug");
        let port = |marker: &str| -> u16 {
            let addr = process.announced(marker, Duration::from_secs(60));
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        let stomp = port("listening for STOMP on tcp://");
        let mqtt = port("listening for MQTT on mqtt://");
        MqttBroker {
            process,
            stomp,
            mqtt,
        }
    }

    fn kill9(self) {
        self.process.kill9();
    }

    /// Whether a logged line holds all of `parts` (waits for the log to catch up).
    fn logged(&self, parts: &[&str]) -> bool {
        for _ in 0..200 {
            if self
                .process
                .log()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    async fn stomp(&self) -> StompClient {
        StompClient::connect(
            &Endpoint {
                host: "127.0.0.1".into(),
                port: self.stomp,
                tls: false,
            },
            &ConnectOptions {
                login: "admin".into(),
                passcode: "admin".into(),
                client_id: None,
                ca: None,
            },
        )
        .await
        .expect("STOMP connect")
    }
}

fn has_paho() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        test_support::skip(
            "paho-mqtt is not installed (python3 -m pip install 'paho-mqtt>=1.6,<2')",
        );
    }
    ok
}

fn has_mosquitto_clients() -> bool {
    let ok = ["mosquitto_pub", "mosquitto_sub"]
        .iter()
        .all(|c| Command::new(c).arg("--help").output().is_ok());
    if !ok {
        test_support::skip(
            "mosquitto_pub/mosquitto_sub are not installed (apt-get install mosquitto-clients)",
        );
    }
    ok
}

/// Runs one scenario of `tests/interop/mqtt_paho.py`; panics with its output on failure.
fn paho(port: u16, scenario: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mqtt_paho.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {scenario}")),
        "paho scenario {scenario} failed:\n{stdout}\n{stderr}"
    );
}

/// A minimal blocking MQTT client over the codec, for what the real clients cannot show.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw {
    fn open(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw {
            s,
            buf: BytesMut::new(),
        }
    }

    fn connect_with(port: u16, client_id: &str, will: Option<Will>) -> (Raw, ConnectReturnCode) {
        let mut r = Raw::open(port);
        r.send_connect(client_id, true, will);
        match r.recv() {
            Some(Packet::ConnAck(a)) => (r, a.code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send_connect(&mut self, client_id: &str, clean_session: bool, will: Option<Will>) {
        self.send(&Packet::Connect(Connect {
            client_id: client_id.into(),
            clean_session,
            keep_alive: 60,
            will,
            username: Some("admin".into()),
            password: Some(Bytes::from_static(b"admin")),
        }));
    }

    fn connect(port: u16, client_id: &str) -> Raw {
        let (r, code) = Raw::connect_with(port, client_id, None);
        assert_eq!(code, ConnectReturnCode::Accepted);
        r
    }

    fn send(&mut self, p: &Packet) {
        self.s.write_all(&p.to_bytes().unwrap()).unwrap();
    }

    /// The next packet within `wait`, for a check that nothing more comes; `None` if none.
    fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let got = loop {
            if let Some(p) = mqtt_codec::decode(&mut self.buf, 1 << 24).unwrap() {
                break Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("connection closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None;
                }
                Err(e) => panic!("read: {e}"),
            }
        };
        self.s
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        got
    }

    /// The next packet; `None` once the server closed the connection.
    fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = mqtt_codec::decode(&mut self.buf, 1 << 24).unwrap() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), qos)],
        }));
        assert!(matches!(self.recv(), Some(Packet::SubAck(_))));
    }

    fn publish(&mut self, topic: &str, payload: &[u8], id: u16) {
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: Some(id),
            payload: Bytes::copy_from_slice(payload),
        }));
        assert_eq!(self.recv(), Some(Packet::PubAck(id)));
    }

    /// The next PUBLISH, acked.
    fn message(&mut self) -> Publish {
        loop {
            match self.recv() {
                Some(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        self.send(&Packet::PubAck(id));
                    }
                    return p;
                }
                Some(_) => {}
                None => panic!("connection closed while waiting for a PUBLISH"),
            }
        }
    }
}

#[test]
fn paho_qos_0_1_2_round_trips_bad_credentials_and_will() {
    if !has_paho() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    paho(b.mqtt, "qos_round_trips");
    paho(b.mqtt, "bad_credentials");
    assert!(b.logged(&["WARN", "authentication failed", "CONNACK 4"]));
    paho(b.mqtt, "will");
}

#[test]
fn paho_persistent_session_and_retained_messages_survive_kill_9() {
    if !has_paho() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    paho(b.mqtt, "session_setup");
    // Published while the subscriber is away, every one PUBACKed, then the broker dies.
    paho(b.mqtt, "session_publish");
    b.kill9();
    let b = MqttBroker::start(dir.path());
    paho(b.mqtt, "session_resume");
}

#[test]
fn mosquitto_clients_persistent_session_and_qos_2() {
    if !has_mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    let port = b.mqtt.to_string();
    let auth = ["-u", "admin", "-P", "admin", "-h", "127.0.0.1", "-p", &port];
    let run = |tool: &str, args: &[&str]| {
        let out = Command::new(tool).args(auth).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // -E: subscribe and exit, leaving a persistent session (-c) for client id mos-sub.
    run(
        "mosquitto_sub",
        &["-c", "-i", "mos-sub", "-q", "2", "-t", "mos/#", "-E"],
    );
    for (q, m) in [("1", "one"), ("2", "two")] {
        run("mosquitto_pub", &["-q", q, "-t", "mos/t", "-m", m]);
    }
    let got = run(
        "mosquitto_sub",
        &[
            "-c", "-i", "mos-sub", "-q", "2", "-t", "mos/#", "-C", "2", "-W", "30", "-v",
        ],
    );
    assert_eq!(got.lines().collect::<Vec<_>>(), ["mos/t one", "mos/t two"]);
    // Bad credentials: refused.
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "admin", "-P", "nope"])
        .args(["-t", "x", "-m", "y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_and_stomp_reach_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    let mut stomp = b.stomp().await;
    stomp
        .subscribe("s", "/topic/from.mqtt", "auto", &[])
        .await
        .unwrap();
    let port = b.mqtt;
    tokio::task::spawn_blocking(move || {
        let mut m = Raw::connect(port, "bridge-pub");
        m.publish("from/mqtt", b"\x00binary\xff", 1);
    })
    .await
    .unwrap();
    let f = stomp
        .recv_timeout(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.get("destination"), Some("/topic/from.mqtt"));
    assert_eq!(&f.body[..], b"\x00binary\xff");

    let sub = tokio::task::spawn_blocking(move || {
        let mut m = Raw::connect(port, "bridge-sub");
        m.subscribe("to/mqtt/#", QoS::AtLeastOnce);
        m
    })
    .await
    .unwrap();
    stomp
        .send("/topic/to.mqtt.x", "from stomp", &[("persistent", "true")])
        .await
        .unwrap();
    let p = tokio::task::spawn_blocking(move || {
        let mut m = sub;
        m.message()
    })
    .await
    .unwrap();
    assert_eq!(p.topic, "to/mqtt/x");
    assert_eq!(&p.payload[..], b"from stomp");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[test]
fn a_second_connect_with_the_same_client_id_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    let mut first = Raw::connect(b.mqtt, "twin");
    let mut second = Raw::connect(b.mqtt, "twin");
    assert_eq!(first.recv(), None, "the first connection is closed");
    second.subscribe("twin/x", QoS::AtLeastOnce);
    Raw::connect(b.mqtt, "twin-pub").publish("twin/x", b"hi", 1);
    assert_eq!(&second.message().payload[..], b"hi");
    // An empty client id with cleanSession=true gets one; a will to a wildcard is malformed.
    let (_anon, code) = Raw::connect_with(b.mqtt, "", None);
    assert_eq!(code, ConnectReturnCode::Accepted);
}

#[test]
fn a_resumed_session_answers_connack_before_its_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    let mut sub = Raw::open(b.mqtt);
    sub.send_connect("resume-order", false, None);
    assert!(matches!(sub.recv(), Some(Packet::ConnAck(_))));
    sub.subscribe("order/#", QoS::AtLeastOnce);
    sub.send(&Packet::Disconnect);
    assert_eq!(sub.recv(), None);
    let mut publisher = Raw::connect(b.mqtt, "resume-pub");
    for i in 1..=20u16 {
        publisher.publish("order/t", format!("m{i}").as_bytes(), i);
    }
    // Never acked, so each resume finds the whole backlog waiting. `order/#` is two JMS
    // subscriptions (`order` and `order.>`), each with its own credit: with one shared, the
    // pump of `order` could take it all and `order.>`'s backlog never came. The CONNACK comes
    // first every time ([MQTT-3.2.0-1]: the pumps wait for it).
    // Five rounds: each counts a redelivery, and the seventh would send them to the DLQ
    // (maximum_redeliveries 6).
    for round in 0..5 {
        let mut r = Raw::open(b.mqtt);
        r.send_connect("resume-order", false, None);
        match r.recv() {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, ConnectReturnCode::Accepted);
                assert!(a.session_present, "round {round}");
            }
            other => panic!("round {round}: expected CONNACK first, got {other:?}"),
        }
        match r.recv() {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"m1", "round {round}"),
            other => panic!("round {round}: expected the backlog, got {other:?}"),
        }
    }
}

/// A CONNECT packet for the raw cases, as bytes.
fn connect_bytes(id: &str) -> Vec<u8> {
    Packet::Connect(Connect {
        client_id: id.into(),
        clean_session: true,
        keep_alive: 0,
        will: None,
        username: Some("admin".into()),
        password: Some(Bytes::from_static(b"admin")),
    })
    .to_bytes()
    .unwrap()
    .to_vec()
}

#[test]
fn malformed_packets_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    let mut healthy = Raw::connect(b.mqtt, "healthy");
    healthy.subscribe("ok/#", QoS::AtLeastOnce);
    // (bytes after a valid CONNECT or not, the bytes, what the WARN names)
    let cases: Vec<(bool, Vec<u8>, &str)> = vec![
        (false, vec![0x00, 0x00], "reserved packet type 0"),
        (
            false,
            vec![0x30, 0x03, 0, 1, b'a'],
            "expected CONNECT, got PUBLISH",
        ),
        (
            false,
            {
                let mut c = connect_bytes("x");
                c[8] = 3; // protocol level 3
                c
            },
            "protocol level 3",
        ),
        (
            false,
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
            "remaining length longer than 4 bytes",
        ),
        (true, vec![0xc1, 0x00], "PINGREQ with reserved flag bits"),
        (true, vec![0x36, 0x05, 0, 1, b'a', 0, 1], "QoS 3 in PUBLISH"),
        (
            true,
            vec![0x32, 0x05, 0, 1, b'a', 0, 0],
            "packet id 0 in PUBLISH",
        ),
        (
            true,
            vec![0x30, 0x05, 0, 3, b'a', b'/', b'#'],
            "wildcard in topic name",
        ),
        (true, vec![0x30, 0x04, 0, 2, 0xc3, 0x28], "not valid UTF-8"),
        (
            true,
            vec![0x82, 0x02, 0, 1],
            "SUBSCRIBE without a topic filter",
        ),
        (true, vec![0x30, 0xff, 0xff, 0xff, 0x7f], "over the limit"),
        (
            true,
            connect_bytes("again"),
            "CONNECT is not a packet a client sends after CONNECT",
        ),
    ];
    for (i, (after_connect, bytes, why)) in cases.iter().enumerate() {
        let mut r = if *after_connect {
            Raw::connect(b.mqtt, &format!("bad-{i}"))
        } else {
            Raw::open(b.mqtt)
        };
        r.s.write_all(bytes).unwrap();
        loop {
            match r.recv() {
                None => break,
                // A protocol level the broker does not speak is answered before the close.
                Some(Packet::ConnAck(a)) => {
                    assert_eq!(a.code, ConnectReturnCode::UnacceptableProtocolVersion)
                }
                Some(other) => panic!("case {i}: unexpected {other:?}"),
            }
        }
        assert!(b.logged(&["WARN", why]), "case {i}: no WARN naming {why:?}");
        // The others keep working.
        Raw::connect(b.mqtt, "ok-pub").publish("ok/x", format!("after {i}").as_bytes(), 1);
        assert_eq!(healthy.message().payload, format!("after {i}").into_bytes());
    }
}

#[test]
fn keep_alive_expiry_closes_the_connection_and_publishes_the_will() {
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start(dir.path());
    let mut watcher = Raw::connect(b.mqtt, "ka-watcher");
    watcher.subscribe("ka/#", QoS::AtLeastOnce);
    let mut silent = Raw::open(b.mqtt);
    silent.send(&Packet::Connect(Connect {
        client_id: "ka-silent".into(),
        clean_session: true,
        keep_alive: 1,
        will: Some(Will {
            topic: "ka/will".into(),
            payload: Bytes::from_static(b"timed out"),
            qos: QoS::AtLeastOnce,
            retain: false,
        }),
        username: Some("admin".into()),
        password: Some(Bytes::from_static(b"admin")),
    }));
    assert!(matches!(silent.recv(), Some(Packet::ConnAck(_))));
    // Silent past 1.5 s: closed by the broker (the read bound is 30 s).
    assert_eq!(silent.recv(), None);
    assert!(b.logged(&["keep-alive", "closing the connection"]));
    let will = watcher.message();
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("ka/will", &b"timed out"[..])
    );
}

#[test]
fn qos_1_deliveries_in_flight_are_bounded_by_mqtt_max_inflight() {
    let dir = tempfile::tempdir().unwrap();
    let b = MqttBroker::start_with(dir.path(), "mqtt_max_inflight = 3\n");
    let mut slow = Raw::connect(b.mqtt, "slow");
    slow.subscribe("flow/x", QoS::AtLeastOnce);
    let mut publisher = Raw::connect(b.mqtt, "flow-pub");
    for i in 1..=6u16 {
        publisher.publish("flow/x", format!("m{i}").as_bytes(), i);
    }
    let mut ids = Vec::new();
    for i in 1..=3 {
        match slow.recv() {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.payload, format!("m{i}").into_bytes());
                ids.push(p.packet_id.unwrap());
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    // Three unacknowledged: the fourth waits in the store...
    assert_eq!(slow.recv_within(Duration::from_millis(500)), None);
    // ...until one PUBACK makes room for exactly one more.
    slow.send(&Packet::PubAck(ids[0]));
    match slow.recv() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"m4"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert_eq!(slow.recv_within(Duration::from_millis(500)), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_default_mqtt_port_is_skipped_not_fatal() {
    // Port 1883 held, by a Mosquitto on this machine or else by this test.
    let _held = std::net::TcpListener::bind("127.0.0.1:1883");
    // `mqtt` unset (the section only names mqtt_max_inflight): the default is tried.
    let b = common::TestBroker::start(
        "[transports]\nstomp = \"127.0.0.1:0\"\nmqtt_max_inflight = 100\n",
    )
    .await;
    assert_eq!(b.server.mqtt, None);
    let mut c = b.client().await;
    c.send("/queue/still.up", "yes", &[]).await.unwrap();
}
