//! The `broker` executable as users run it: start from a config file, serve STOMP, log to
//! `data/broker.log`, stop cleanly on SIGTERM; a bad config is refused naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use broker::client::{ConnectOptions, StompClient};
use broker::url::parse;
use common::process::{BIN, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_serves_logs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\ndata_directory = \"{}\"\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:0\"\nweb = \"127.0.0.1:0\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (mut child, url) = spawn(&config);
    let opts = ConnectOptions {
        login: "admin".into(),
        passcode: "admin".into(),
        ..ConnectOptions::default()
    };
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
