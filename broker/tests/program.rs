//! The `broker` executable as users run it: start from a config file, serve STOMP, log to
//! `data/broker.log`, stop cleanly on SIGTERM; a bad config is refused naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use broker::client::StompClient;
use broker::url::parse;
use common::process::{BIN, admin, spawn, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_serves_logs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "127.0.0.1:0");
    let (mut child, url) = spawn(&config);
    let opts = admin();
    let endpoint = parse(&url).unwrap().remove(0);
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    c.send("/queue/p", "kept", &[("persistent", "true")])
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop");
    let log = std::fs::read_to_string(dir.path().join("data/broker.log")).unwrap();
    assert!(
        log.contains("serving (master)") && log.contains("SIGTERM"),
        "{log}"
    );
    assert!(
        log.contains("admin/admin"),
        "the default-user warning is logged"
    );
    // Started again, it still has the message.
    let (mut child, url) = spawn(&config);
    let endpoint = parse(&url).unwrap().remove(0);
    let mut c = StompClient::connect(&endpoint, &opts).await.unwrap();
    c.subscribe("s", "/queue/p", "auto", &[]).await.unwrap();
    let m = c
        .recv_timeout(Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.body[..], b"kept");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    for (text, key, reason) in [
        (
            "[persistence]\nkind = \"kahadb\"\n[persistence.kahadb]\njournal_max_fil = 5\n",
            "persistence.kahadb.journal_max_fil",
            "unknown field",
        ),
        (
            "[persistence]\nkind = \"journaled-jdbc\"\n[persistence.jdbc]\nurl = \"sqlite:x.db\"\n[locker]\nkind = \"database\"\n",
            "locker.kind",
            "journal is local to this machine",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(BIN)
            .args(["start", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains(reason), "{err}");
    }
}

/// `broker passwd` reads the password from stdin and prints an argon2id PHC string that the
/// broker accepts as a `[[users]] password`; empty input is refused.
#[test]
fn passwd_prints_a_hash_of_stdin() {
    use std::io::Write as _;
    use std::process::Stdio;
    let run = |input: &str| {
        let mut child = Command::new(BIN)
            .arg("passwd")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("s3cret\n");
    assert!(out.status.success(), "{out:?}");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let config = broker::BrokerConfig::from_toml(&format!(
        "[[users]]\nname = \"u\"\npassword = \"{hash}\"\n"
    ))
    .unwrap();
    let users = config.users();
    assert!(users.check("u", "s3cret"));
    assert!(!users.check("u", "s3cret\n") && !users.check("u", "other"));
    assert!(!users.has_clear_text());
    assert_eq!(
        run("\n").status.code(),
        Some(2),
        "an empty password is refused"
    );
}

/// The producer and consumer speak whichever protocol the URL's port speaks: pointed at the
/// OpenWire port (ActiveMQ's 61616), through a `failover:` URL too, they speak OpenWire.
/// (purge and dstat speak STOMP only: `tests/client_tools_openwire.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_tools_pointed_at_the_openwire_port_speak_openwire() {
    let b = common::TestBroker::start("").await;
    let openwire = b.server.openwire.expect("OpenWire listener");
    let out = tokio::process::Command::new(BIN)
        .args(["producer", "--url"])
        .arg(format!("failover:(tcp://{openwire})"))
        .args(["--destination", "/queue/x", "--count", "1"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the tool finishes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("RESULT msgs_per_sec="));
    let mut c = b.client().await;
    c.subscribe("s", "/queue/x", "auto", &[]).await.unwrap();
    let m = common::recv(&mut c).await;
    assert_eq!(m.body.len(), 1024, "the default --size");
    b.stop().await;
}
