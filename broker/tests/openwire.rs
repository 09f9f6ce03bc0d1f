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
use openwire::{Command, WireFormatInfo, WireFormatOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client jars and what they need, as Debian installs them.
const JARS: &[&str] = &[
    "activemq-client.jar",
    "geronimo-jms_1.1_spec.jar",
    "geronimo-j2ee-management-1.1-spec.jar",
    "hawtbuf.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];

fn classpath(extra: &str) -> String {
    let mut parts: Vec<String> = JARS
        .iter()
        .map(|j| format!("/usr/share/java/{j}"))
        .collect();
    if !extra.is_empty() {
        parts.push(extra.to_owned());
    }
    parts.join(":")
}

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
        let sources = ["OpenWireChecks.java", "TemporaryChecks.java", "GroupChecks.java"].map(|f| java_dir.join(f));
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
    let Some(classes) = compiled() else { return };
    let child = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(classpath(&classes.display().to_string()))
        .arg(class)
        .arg(port.to_string())
        .arg(check)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .unwrap_or_else(|_| panic!("{check}: the Java client did not finish within 120 s"))
        .expect("java runs");
    assert!(
        out.status.success(),
        "{check} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn broker() -> (TestBroker, u16) {
    let b = TestBroker::start("").await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    (b, port)
}

macro_rules! java_check {
    ($name:ident, $check:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (b, port) = broker().await;
            java(port, $check).await;
            b.stop().await;
        }
    };
}

java_check!(java_queue_auto_acknowledge, "auto");

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
