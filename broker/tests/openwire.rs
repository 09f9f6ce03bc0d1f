//! OpenWire on the broker: the stock ActiveMQ Java client (Debian's `libactivemq-java`) runs
//! the programs in `tests/java/` against a broker in this process, and hostile bytes are shown
//! to close only their own connection.

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
/// ActiveMQ client here; CI (`CI` set) installs both, so there it is a failure.
fn compiled() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    DIR.get_or_init(|| {
        let have = StdCommand::new("javac").arg("-version").output().is_ok()
            && std::path::Path::new("/usr/share/java/activemq-client.jar").exists();
        if !have {
            assert!(
                std::env::var_os("CI").is_none(),
                "javac and libactivemq-java are needed (apt-get install default-jdk-headless libactivemq-java)"
            );
            eprintln!("SKIPPED: no javac or /usr/share/java/activemq-client.jar");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java/OpenWireChecks.java");
        let out = StdCommand::new("javac")
            .arg("-d")
            .arg(dir.path())
            .arg("-cp")
            .arg(classpath(""))
            .arg(&src)
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
    let Some(classes) = compiled() else { return };
    let child = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(classpath(&classes.display().to_string()))
        .arg("OpenWireChecks")
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
java_check!(java_client_acknowledge_redelivers_unacked, "client");
java_check!(java_transacted_commit_and_rollback, "transacted");
java_check!(java_topic_message_listener, "listener");
java_check!(java_bad_password_is_a_security_exception, "bad-password");
java_check!(java_async_send_burst_of_2000_persistent, "async-burst");
java_check!(java_properties_headers_and_bodies_round_trip, "types");
java_check!(java_selector, "selector");
