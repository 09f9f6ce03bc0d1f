//! OpenWire on the broker: the stock ActiveMQ Java client (Debian's `libactivemq-java`) runs
//! the programs in `tests/java/` against a broker in this process, and hostile bytes are shown
//! to close only their own connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use common::TestBroker;
use common::java::classpath;
use common::process::BrokerProcess;
use openwire::{Command, WireFormatInfo, WireFormatOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The compiled test programs (once per test binary), or `None` when there is no JDK or no
/// ActiveMQ client here; `.ci/run` installs both and sets `BROKER_REQUIRE_JAVA`, so there it is a failure.
fn compiled() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    DIR.get_or_init(|| {
        let have = StdCommand::new("javac").arg("-version").output().is_ok()
            && std::path::Path::new("/usr/share/java/activemq-client.jar").exists();
        if !have {
            assert!(
                std::env::var_os("BROKER_REQUIRE_JAVA").is_none(),
                "javac and libactivemq-java are needed (apt-get install default-jdk-headless libactivemq-java)"
            );
            test_support::skip("no javac or /usr/share/java/activemq-client.jar");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let java_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java");
        let sources = [
            "OpenWireChecks.java",
            "TemporaryChecks.java",
            "GroupChecks.java",
            "XaChecks.java",
            "FailoverChecks.java",
        ]
        .map(|f| java_dir.join(f));
        let out = StdCommand::new("javac")
            .arg("-d")
            .arg(dir.path())
            .arg("-cp")
            .arg(classpath(""))
            .args(&sources)
            .output()
            .expect("javac runs");
        assert!(
            out.status.success(),
            "javac failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().to_path_buf();
        Some((dir, path))
    })
    .as_ref()
    .map(|(_, p)| p)
}

/// Runs one check of `OpenWireChecks` against `port`; fails the test with its output.
async fn java(port: u16, check: &str) {
    java_in("OpenWireChecks", port, check).await;
}

/// Runs one check of the Java program `class` against `port`.
async fn java_in(class: &str, port: u16, check: &str) {
    java_at(class, &port.to_string(), &[], check).await;
}

/// Runs one check of `class` against `target` (a port, or a broker URL such as
/// `ssl://127.0.0.1:PORT`) with `jvm` options; fails the test with its output.
async fn java_at(class: &str, target: &str, jvm: &[String], check: &str) {
    let Some(out) = java_output(class, target, jvm, check).await else {
        return;
    };
    assert!(
        out.status.success(),
        "{check} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the Java program said and how it ended; `None` when Java is not here.
async fn java_output(
    class: &str,
    target: &str,
    jvm: &[String],
    check: &str,
) -> Option<std::process::Output> {
    let classes = compiled()?;
    let child = tokio::process::Command::new("java")
        .args(jvm)
        .arg("-cp")
        .arg(classpath(&classes.display().to_string()))
        .arg(class)
        .arg(target)
        .arg(check)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .unwrap_or_else(|_| panic!("{check}: the Java client did not finish within 120 s"))
        .expect("java runs");
    Some(out)
}

async fn broker() -> (TestBroker, u16) {
    let b = TestBroker::start("").await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    (b, port)
}

/// A broker on JDBC over MariaDB (`MYSQL_URL`) in tables of its own, and their config for
/// dropping them afterwards; `None` (skipped) without `MYSQL_URL`.
async fn mariadb_broker() -> Option<(TestBroker, u16, store_jdbc::JdbcConfig)> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let url = match std::env::var("MYSQL_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            test_support::skip("the Java checks on MariaDB: MYSQL_URL is not set");
            return None;
        }
    };
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = format!("ow{}_{n}_", std::process::id());
    let b = TestBroker::start(&format!(
        "[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\n"
    ))
    .await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    let mut config = store_jdbc::JdbcConfig::new(url);
    config.table_prefix = prefix;
    Some((b, port, config))
}

/// One check of `OpenWireChecks` as two tests: on KahaDB and on JDBC over MariaDB (issue 22:
/// the Java suite on both).
macro_rules! java_check {
    ($name:ident, $check:literal) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kahadb() {
                let (b, port) = broker().await;
                java(port, $check).await;
                b.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                if compiled().is_none() {
                    return;
                }
                let Some((b, port, tables)) = mariadb_broker().await else {
                    return;
                };
                java(port, $check).await;
                b.stop().await;
                store_jdbc::JdbcStore::drop_tables(&tables).await.unwrap();
            }
        }
    };
}

java_check!(java_queue_auto_acknowledge, "auto");

/// `ssl://` (issue 22): the stock client over TLS, trusting the broker's certificate through
/// a truststore made with the JDK's `keytool`, sends and receives persistent messages; without
/// that truststore it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_over_tls_with_a_truststore() {
    if compiled().is_none() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    // The client checks the host name: the certificate names the address it dials.
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let truststore = certs.path().join("trust.p12");
    let made = StdCommand::new("keytool")
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "broker",
            "-storetype",
            "PKCS12",
        ])
        .args(["-storepass", "changeit", "-file"])
        .arg(&cert)
        .arg("-keystore")
        .arg(&truststore)
        .output()
        .expect("keytool runs");
    assert!(
        made.status.success(),
        "keytool: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let b = TestBroker::start(&format!(
        "[transports]\nstomp = \"127.0.0.1:0\"\nopenwire_tls = \"127.0.0.1:0\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let url = format!(
        "ssl://127.0.0.1:{}",
        b.server.openwire_tls.expect("OpenWire TLS listener").port()
    );
    let trust = [
        format!("-Djavax.net.ssl.trustStore={}", truststore.display()),
        "-Djavax.net.ssl.trustStorePassword=changeit".to_owned(),
    ];
    java_at("OpenWireChecks", &url, &trust, "auto").await;
    let untrusting = java_output("OpenWireChecks", &url, &[], "auto")
        .await
        .expect("java");
    assert!(
        !untrusting.status.success(),
        "a client without the truststore must not connect"
    );
    let why = String::from_utf8_lossy(&untrusting.stderr);
    assert!(why.contains("SSL") || why.contains("certificat"), "{why}");
    b.stop().await;
}

macro_rules! xa_check {
    ($name:ident, $check:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (b, port) = broker().await;
            java_in("XaChecks", port, $check).await;
            assert!(
                b.broker.prepared_transactions().unwrap().is_empty(),
                "no branch left prepared"
            );
            b.stop().await;
        }
    };
}

// XA (issue 22): `ActiveMQXAConnectionFactory`, `XASession.getXAResource()`.
xa_check!(java_xa_two_phase_commit_delivers_after_commit, "two-phase");
xa_check!(
    java_xa_rollback_after_prepare_delivers_nothing,
    "rollback-prepared"
);
xa_check!(java_xa_one_phase_commit, "one-phase");
xa_check!(
    java_xa_rolled_back_receive_is_redelivered_once,
    "receive-rollback"
);

/// Starts `broker start --config <file>`; returns it and the OpenWire port it announced.
fn spawn_broker(config: &std::path::Path) -> (BrokerProcess, u16) {
    let broker = BrokerProcess::start(config, "info");
    let addr: std::net::SocketAddr = broker
        .announced("listening for OpenWire on tcp://", Duration::from_secs(60))
        .parse()
        .expect("an address");
    (broker, addr.port())
}

/// XA recovery (issue 22): a branch prepared by a client that then went away survives a
/// SIGKILL of the broker; after the restart on the same store the client's
/// `recover(TMSTARTRSCAN)` lists it, and its commit delivers the message exactly once.
async fn xa_prepared_branch_survives_kill_9(persistence: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\ndata_directory = \"{}\"\n{persistence}\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:0\"\nwebsocket = \"\"\nweb = \"\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (broker, port) = spawn_broker(&config);
    java_in("XaChecks", port, "prepare-and-leave").await;
    broker.kill9();
    drop(broker);
    let (broker, port) = spawn_broker(&config);
    java_in("XaChecks", port, "recover-and-commit").await;
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_xa_prepared_branch_survives_kill_9_on_kahadb() {
    if compiled().is_none() {
        return;
    }
    xa_prepared_branch_survives_kill_9("[persistence]\nkind = \"kahadb\"\n").await;
}

/// The same on JDBC over MariaDB (`MYSQL_URL`), in tables of its own, dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_xa_prepared_branch_survives_kill_9_on_mariadb() {
    if compiled().is_none() {
        return;
    }
    let url = match std::env::var("MYSQL_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => return test_support::skip("XA recovery on MariaDB: MYSQL_URL is not set"),
    };
    let prefix = format!("owxa{}_", std::process::id());
    // The database locker: a killed broker's lock goes with its connection.
    xa_prepared_branch_survives_kill_9(&format!(
        "[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\n[locker]\nkind = \"database\"\n"
    ))
    .await;
    let mut c = store_jdbc::JdbcConfig::new(url);
    c.table_prefix = prefix;
    store_jdbc::JdbcStore::drop_tables(&c).await.unwrap();
}

/// The failover transport (issue 22): a Java producer on `failover:(tcp://...)` sends 400
/// persistent messages synchronously; after its 150th returned, the broker is killed with
/// SIGKILL and started again on the same port and store. The client reconnects by itself and
/// resends what was in flight, with the same JMSMessageID, so a message the dead broker had
/// already stored is recognised and not stored twice: every message whose send returned is
/// consumed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_failover_transport_survives_kill_9_of_the_broker() {
    use tokio::io::AsyncBufReadExt;
    let Some(classes) = compiled() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A fixed port: the restarted broker must be where the client reconnects to.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\ndata_directory = \"{}\"\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:{port}\"\nwebsocket = \"\"\nweb = \"\"\nmqtt = \"\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (broker, _) = spawn_broker(&config);
    let mut producer = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(classpath(&classes.display().to_string()))
        .args(["FailoverChecks", &port.to_string(), "produce", "400"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("java runs");
    let mut lines = tokio::io::BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut killed = false;
    let mut restarted = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("the producer finishes within 120 s")
            .unwrap();
        let Some(line) = line else {
            let out = producer.wait_with_output().await.unwrap();
            panic!(
                "the producer ended before DONE: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if line == "DONE" {
            break;
        }
        if line == "SENT 150" && !killed {
            broker.kill9();
            killed = true;
            restarted = Some(spawn_broker(&config).0);
        }
    }
    assert!(killed, "the broker was killed mid-stream");
    assert!(producer.wait().await.unwrap().success());
    java_in("FailoverChecks", port, "consume").await;
    drop(restarted);
    drop(broker);
}

/// A durable subscriber across a broker restart (issue 22): what was published while it was
/// away, before the restart, is delivered after it, with its selector still applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_durable_subscriber_across_a_broker_restart() {
    if compiled().is_none() {
        return;
    }
    let (b, port) = broker().await;
    java(port, "durable-before-restart").await;
    let b = b.restart().await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    java(port, "durable-after-restart").await;
    b.stop().await;
}

/// Message groups and exclusive consumers with the stock JMS client (issue 25).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_message_groups_each_on_one_consumer_in_order() {
    let (b, port) = broker().await;
    java_in("GroupChecks", port, "groups").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_exclusive_consumer_and_failover() {
    let (b, port) = broker().await;
    java_in("GroupChecks", port, "exclusive").await;
    b.stop().await;
}
java_check!(java_client_acknowledge_redelivers_unacked, "client");
java_check!(java_transacted_commit_and_rollback, "transacted");
java_check!(java_poison_ack_dead_letters_at_once, "poison");
java_check!(java_topic_message_listener, "listener");
java_check!(java_bad_password_is_a_security_exception, "bad-password");
java_check!(java_async_send_burst_of_2000_persistent, "async-burst");
java_check!(java_properties_headers_and_bodies_round_trip, "types");
java_check!(java_selector, "selector");
java_check!(
    java_oversized_selector_is_invalid_selector_exception,
    "big-selector"
);
java_check!(java_durable_subscriber_across_client_restart, "durable");
java_check!(java_stream_object_and_plain_messages, "more-types");
java_check!(java_individual_acknowledge, "individual");
java_check!(java_idle_connection_kept_alive, "keepalive");
java_check!(
    java_client_id_in_use_and_durable_temporary_topic_refused,
    "refusals"
);
java_check!(java_prefetch_0_pulls, "prefetch0");
java_check!(java_wildcards_virtual_topics_and_composites, "destinations");
java_check!(java_advisories_carry_their_commands, "advisories");
java_check!(
    java_message_id_is_the_producers_and_correlates,
    "message-id"
);
java_check!(
    java_unseen_prefetch_comes_back_not_redelivered,
    "unseen-prefetch"
);

macro_rules! temporary_check {
    ($name:ident, $check:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (b, port) = broker().await;
            java_in("TemporaryChecks", port, $check).await;
            // Whatever the program made is gone with its connections.
            assert!(b.broker.temporary_destinations().unwrap().is_empty());
            b.stop().await;
        }
    };
}

temporary_check!(java_request_reply_over_a_temporary_queue, "request-reply");
temporary_check!(
    java_temporary_queue_gone_with_its_connection,
    "gone-with-connection"
);
temporary_check!(java_temporary_topic_reaches_each_subscriber, "temp-topic");
temporary_check!(java_queue_browser_with_and_without_selector, "browser");

/// The consumer cap over OpenWire: the Java client gets a `ResourceAllocationException`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_consumer_cap_is_a_resource_allocation_exception() {
    let b = TestBroker::start("[limits]\nmax_consumers_per_connection = 5\n").await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    java(port, "consumer-cap").await;
    b.stop().await;
}

/// `[[authorization]]` over OpenWire: a refused send is the Java client's
/// `JMSSecurityException` (ActiveMQ's `java.lang.SecurityException`), and nothing arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_refused_send_is_a_jms_security_exception() {
    let b = TestBroker::start(
        r#"
[[users]]
name = "admin"
password = "adminpw"
groups = ["admins"]
[[users]]
name = "app"
password = "apppw"
groups = ["apps"]
[[authorization]]
queue = ">"
read = ["admins"]
write = ["admins"]
admin = ["admins"]
[[authorization]]
queue = "orders.>"
read = ["apps"]
write = ["apps"]
"#,
    )
    .await;
    let mut admin = b.client_as("admin", "adminpw", None).await;
    admin.send("/queue/orders.in", "first", &[]).await.unwrap();
    admin.send("/queue/secret", "first", &[]).await.unwrap();
    let port = b.server.openwire.expect("OpenWire listener").port();
    java(port, "not-authorized").await;
    let stats = b.broker.destination_stats().await.unwrap();
    let pending = |name: &str| {
        stats
            .iter()
            .find(|s| s.destination.is_queue() && &*s.destination.name == name)
            .map(|s| s.pending)
    };
    assert_eq!(pending("orders.in"), Some(2));
    assert_eq!(
        pending("secret"),
        Some(1),
        "the refused send changed nothing"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_to_openwire() {
    let (b, port) = broker().await;
    let mut s = b.client().await;
    // Raw, so that the text message has no content-length (the client adds one otherwise).
    s.write_raw(
        b"SEND\ndestination:/queue/ow.fromstomp\ncolour:red\ncorrelation-id:c-9\nreceipt:t\n\nhello java\0",
    )
    .await
    .unwrap();
    assert_eq!(common::recv(&mut s).await.command, "RECEIPT");
    s.send("/queue/ow.fromstomp", &b"a\0b"[..], &[])
        .await
        .unwrap();
    java(port, "from-stomp").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openwire_to_stomp() {
    let (b, port) = broker().await;
    java(port, "to-stomp").await;
    if compiled().is_none() {
        return b.stop().await;
    }
    let mut s = b.client().await;
    s.subscribe("s", "/queue/ow.tostomp", "auto", &[])
        .await
        .unwrap();
    let m = common::recv(&mut s).await;
    assert_eq!(common::body(&m), "hello stomp");
    assert_eq!(m.get("colour"), Some("blue"));
    assert_eq!(m.get("n"), Some("5"));
    assert_eq!(m.get("correlation-id"), Some("c-7"));
    assert_eq!(m.get("priority"), Some("6"));
    assert_eq!(m.get("persistent"), Some("true"));
    b.stop().await;
}

/// Reads until the broker closes the connection; returns the commands it sent.
async fn until_closed(mut sock: TcpStream) -> Vec<Command> {
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            match sock.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the broker closes the connection");
    let wf = openwire::WireFormat::default();
    let mut out = Vec::new();
    while let Ok(Some(c)) = openwire::decode(&mut buf, &wf) {
        out.push(c);
    }
    out
}

fn connection_error(cmds: &[Command]) -> String {
    cmds.iter()
        .find_map(|c| match c {
            Command::ConnectionError(e) => e.exception.as_ref()?.message.clone(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConnectionError in {cmds:?}"))
}

/// A client speaking proper OpenWire still works while hostile ones are refused.
async fn still_serves(port: u16) {
    java(port, "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_wire_format_info_closes_only_that_connection() {
    let (b, port) = broker().await;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A plausible size, then a type byte that is no command.
    sock.write_all(&[0, 0, 0, 5, 0xEE, 1, 2, 3, 4])
        .await
        .unwrap();
    let cmds = until_closed(sock).await;
    assert!(matches!(cmds.first(), Some(Command::WireFormatInfo(_))));
    let why = connection_error(&cmds);
    assert!(why.contains("malformed"), "{why}");
    still_serves(port).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_magic_is_refused() {
    let (b, port) = broker().await;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut info = WireFormatInfo::new(12, &WireFormatOptions::broker_default()).unwrap();
    info.magic = *b"NotAMQ!!";
    let mut buf = BytesMut::new();
    openwire::encode(
        &Command::WireFormatInfo(info),
        &openwire::WireFormat::default(),
        &mut buf,
    )
    .unwrap();
    sock.write_all(&buf).await.unwrap();
    let cmds = until_closed(sock).await;
    let why = connection_error(&cmds);
    assert!(why.contains("wire format refused"), "{why}");
    still_serves(port).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_from_its_size() {
    let (b, port) = broker().await;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // 1 GiB announced: refused at once, nothing of it buffered.
    sock.write_all(&[0x40, 0, 0, 0, 1]).await.unwrap();
    let cmds = until_closed(sock).await;
    let why = connection_error(&cmds);
    assert!(why.contains("exceeds"), "{why}");
    still_serves(port).await;
    b.stop().await;
}

/// An OpenWire client written by hand, for what the Java client does only after a network
/// failure: the wire format agreed, commands sent as given, answers read.
struct RawClient {
    sock: TcpStream,
    buf: BytesMut,
    wf: openwire::WireFormat,
}

impl RawClient {
    async fn connect(port: u16) -> RawClient {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let ours = WireFormatInfo::new(12, &WireFormatOptions::broker_default()).unwrap();
        let mut out = BytesMut::new();
        openwire::encode(
            &Command::WireFormatInfo(ours.clone()),
            &openwire::WireFormat::default(),
            &mut out,
        )
        .unwrap();
        sock.write_all(&out).await.unwrap();
        let mut c = RawClient {
            sock,
            buf: BytesMut::new(),
            wf: openwire::WireFormat::default(),
        };
        let Command::WireFormatInfo(theirs) = c
            .read_until(|c| matches!(c, Command::WireFormatInfo(_)))
            .await
        else {
            unreachable!()
        };
        c.wf = openwire::negotiate(&theirs, &ours).unwrap();
        c
    }

    async fn send(&mut self, cmd: Command) {
        let mut out = BytesMut::new();
        openwire::encode(&cmd, &self.wf, &mut out).unwrap();
        self.sock.write_all(&out).await.unwrap();
    }

    /// The first command `wanted` accepts (others are skipped), at most 20 s away.
    async fn read_until(&mut self, wanted: impl Fn(&Command) -> bool) -> Command {
        let read = async {
            loop {
                while let Some(c) = openwire::decode(&mut self.buf, &self.wf).unwrap() {
                    if wanted(&c) {
                        return c;
                    }
                }
                let n = self.sock.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "the broker closed the connection");
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("an answer from the broker")
    }

    /// The answer to command `id`: Ok for a Response, Err(the exception's class and message)
    /// for an ExceptionResponse.
    async fn answer(&mut self, id: i32) -> Result<(), String> {
        match self
            .read_until(|c| match c {
                Command::Response(r) => r.correlation_id == id,
                Command::ExceptionResponse(r) => r.correlation_id == id,
                _ => false,
            })
            .await
        {
            Command::ExceptionResponse(r) => Err(r
                .exception
                .map(|t| {
                    format!(
                        "{}: {}",
                        t.class_name.unwrap_or_default(),
                        t.message.unwrap_or_default()
                    )
                })
                .unwrap_or_default()),
            _ => Ok(()),
        }
    }

    /// Logs in as `user` with connection id `id`, then creates temporary queue `temp`.
    async fn login_with_temp_queue(
        &mut self,
        id: &str,
        user: &str,
        temp: &str,
    ) -> Result<(), String> {
        self.send(Command::ConnectionInfo(openwire::ConnectionInfo {
            command_id: 1,
            response_required: true,
            connection_id: openwire::ConnectionId { value: id.into() },
            client_id: Some(format!("{id}-client")),
            user_name: Some(user.into()),
            password: Some(user.into()),
            fault_tolerant: true,
            ..openwire::ConnectionInfo::default()
        }))
        .await;
        self.answer(1).await?;
        self.send(Command::DestinationInfo(openwire::DestinationInfo {
            command_id: 2,
            response_required: true,
            connection_id: openwire::ConnectionId { value: id.into() },
            destination: openwire::Destination {
                kind: openwire::DestinationKind::TempQueue,
                physical_name: temp.into(),
            },
            operation_type: openwire::DestinationInfo::ADD,
            ..openwire::DestinationInfo::default()
        }))
        .await;
        self.answer(2).await
    }
}

/// The failover transport reconnecting before the broker has noticed its old connection die
/// (no FIN: a cable pulled) replays its ConnectionInfo with the same connection id and client
/// id, and re-creates its temporary queue: the stale connection is closed and the replay is
/// accepted, as ActiveMQ's "Killing previous stale connection". Another user sending the same
/// connection id is refused and closes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_with_its_connection_id_replaces_the_stale_connection() {
    let (b, port) = {
        let b = TestBroker::start(
            "[[users]]\nname = \"admin\"\npassword = \"admin\"\n\
             [[users]]\nname = \"other\"\npassword = \"other\"\n",
        )
        .await;
        let port = b.server.openwire.expect("OpenWire listener").port();
        (b, port)
    };
    let (id, temp) = ("ID:client-host-1-1-1:1", "ID:client-host-1-1-1:1:1");
    let mut stale = RawClient::connect(port).await;
    stale
        .login_with_temp_queue(id, "admin", temp)
        .await
        .unwrap();

    // Another user cannot take the id over; the stale connection stays.
    let mut intruder = RawClient::connect(port).await;
    let refused = intruder
        .login_with_temp_queue(id, "other", temp)
        .await
        .unwrap_err();
    assert!(
        refused.contains("InvalidClientIDException") && refused.contains("another user"),
        "{refused}"
    );

    // The same client again: accepted, temporary queue and all.
    let mut again = RawClient::connect(port).await;
    again
        .login_with_temp_queue(id, "admin", temp)
        .await
        .expect("the reconnect replaces the stale connection");
    // The stale connection was closed by the broker.
    let closed = until_closed(stale.sock).await;
    assert!(
        !closed
            .iter()
            .any(|c| matches!(c, Command::Response(r) if r.correlation_id > 2)),
        "{closed:?}"
    );
    // The replacement is the connection in use: a new consumer on its temporary queue is its.
    again
        .send(Command::SessionInfo(openwire::SessionInfo {
            command_id: 3,
            response_required: true,
            session_id: openwire::SessionId {
                connection_id: id.into(),
                value: 1,
            },
        }))
        .await;
    again.answer(3).await.unwrap();
    again
        .send(Command::ConsumerInfo(Box::new(openwire::ConsumerInfo {
            command_id: 4,
            response_required: true,
            consumer_id: openwire::ConsumerId {
                connection_id: id.into(),
                session_id: 1,
                value: 1,
            },
            destination: Some(openwire::Destination {
                kind: openwire::DestinationKind::TempQueue,
                physical_name: temp.into(),
            }),
            prefetch_size: 10,
            ..openwire::ConsumerInfo::default()
        })))
        .await;
    again.answer(4).await.expect("its own temporary queue");
    drop(intruder);
    b.stop().await;
}
