//! ActiveMQ's own example programs, unchanged, against this broker (issue 22: "the tutorial's
//! own producer/consumer examples run unchanged"). Debian's `activemq` package ships them as
//! sources under `/usr/share/doc/activemq/examples/openwire/advanced-scenarios`; the test
//! compiles them there as they are, with the stock client (`libactivemq-java`), and runs each
//! scenario the way its readme says, against a broker of its own, every scenario at once (each
//! consumer waits 20 s for more before it ends, as written). The examples log in as
//! admin/password, so the brokers have that user.
//!
//! Without the examples, `javac` or the client jars the test says SKIPPED; under
//! `BROKER_REQUIRE_JAVA` (set by `.ci/run`, which installs them) that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

use broker_core::Destination;
use common::TestBroker;

const EXAMPLES: &str = "/usr/share/doc/activemq/examples/openwire/advanced-scenarios";

fn classpath(classes: &Path) -> String {
    common::java::classpath(&classes.display().to_string())
}

/// Compiles every example as shipped; `None` (skipped) when something is missing here.
fn compile(into: &Path) -> Option<()> {
    let have = Path::new(EXAMPLES).is_dir()
        && Path::new("/usr/share/java/activemq-client.jar").exists()
        && StdCommand::new("javac").arg("-version").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("BROKER_REQUIRE_JAVA").is_none(),
            "ActiveMQ's examples need Debian's activemq and libactivemq-java and a JDK"
        );
        test_support::skip(format!(
            "no {EXAMPLES}, javac or /usr/share/java/activemq-client.jar"
        ));
        return None;
    }
    let mut sources = Vec::new();
    collect_java(Path::new(EXAMPLES), &mut sources);
    assert!(!sources.is_empty(), "no .java under {EXAMPLES}");
    let out = StdCommand::new("javac")
        .arg("-nowarn")
        .arg("-d")
        .arg(into)
        .arg("-cp")
        .arg(classpath(into))
        .args(&sources)
        .output()
        .expect("javac runs");
    assert!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

fn collect_java(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_java(&path, into);
        } else if path.extension().is_some_and(|e| e == "java") {
            into.push(path);
        }
    }
}

/// One example program, started now against `url`.
fn start(classes: &Path, class: &str, url: &str, jvm: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("java")
        .args(jvm)
        .arg("-cp")
        .arg(classpath(classes))
        .arg(class)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("java runs")
}

/// Waits for a program to end by itself (bounded), and returns what it printed.
async fn finish(child: tokio::process::Child, what: &str) -> String {
    let out: Output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within 120 s"))
        .expect("java runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !stdout.contains("Caught exception"),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

async fn broker() -> (TestBroker, String) {
    let b = TestBroker::start("[[users]]\nname = \"admin\"\npassword = \"password\"\n").await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    (b, format!("tcp://127.0.0.1:{port}"))
}

/// Waits until `n` consumers are on `destination` (bounded): a consumer started in the
/// background must be subscribed before the producer starts, since the examples' topic
/// subscribers only see what is published after they subscribed.
async fn consumers_on(b: &TestBroker, destination: Destination, n: u64) {
    for _ in 0..1200 {
        let on: u64 = b
            .broker
            .destination_stats()
            .await
            .unwrap()
            .iter()
            .filter(|s| s.destination == destination)
            .map(|s| s.consumers)
            .sum();
        if on >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{destination}: no {n} consumers within 60 s");
}

/// jms-example-queue: a consumer gets the producer's 100 messages, in order.
async fn queue(classes: &Path) {
    let (b, url) = broker().await;
    let consumer = start(classes, "example.queue.Consumer", &url, &[]);
    consumers_on(&b, Destination::queue("test-queue"), 1).await;
    finish(
        start(classes, "example.queue.Producer", &url, &[]),
        "queue Producer",
    )
    .await;
    let got = finish(consumer, "queue Consumer").await;
    assert_eq!(count(&got, ". message: "), 100, "{got}");
    assert!(got.contains("Got 99. message: "), "{got}");
    b.stop().await;
}

/// jms-example-topic: a subscriber gets the 100 messages and the END that stops it.
async fn topic(classes: &Path) {
    let (b, url) = broker().await;
    let subscriber = start(classes, "example.topic.Subscriber", &url, &[]);
    consumers_on(&b, Destination::topic("test-topic"), 1).await;
    finish(
        start(classes, "example.topic.Publisher", &url, &[]),
        "topic Publisher",
    )
    .await;
    let got = finish(subscriber, "topic Subscriber").await;
    assert_eq!(count(&got, "Received message:"), 100, "{got}");
    assert!(got.contains("Received END message!"), "{got}");
    b.stop().await;
}

/// jms-example-durable-sub: a durable subscriber (client id from `-DclientId`) gets them all.
async fn durable_sub(classes: &Path) {
    let (b, url) = broker().await;
    let subscriber = start(
        classes,
        "example.topic.durable.Subscriber",
        &url,
        &["-DclientId=example-durable"],
    );
    consumers_on(&b, Destination::topic("test-topic"), 1).await;
    finish(
        start(classes, "example.topic.durable.Publisher", &url, &[]),
        "durable Publisher",
    )
    .await;
    let got = finish(subscriber, "durable Subscriber").await;
    assert_eq!(count(&got, "Received message:"), 100, "{got}");
    assert!(got.contains("Received END message!"), "{got}");
    b.stop().await;
}

/// jms-example-temp-destinations: request/reply over a temporary queue.
async fn temp_destinations(classes: &Path) {
    let (b, url) = broker().await;
    let consumer = start(classes, "example.tempdest.Consumer", &url, &[]);
    consumers_on(&b, Destination::queue("test-queue"), 1).await;
    let requester = finish(
        start(classes, "example.tempdest.ProducerRequestReply", &url, &[]),
        "ProducerRequestReply",
    )
    .await;
    assert!(requester.contains("*** REPLY ***"), "{requester}");
    let got = finish(consumer, "tempdest Consumer").await;
    assert!(got.contains("Got 0. message: "), "{got}");
    b.stop().await;
}

/// jms-example-composite-destinations: one send to `test-queue,test-queue-foo,test-queue-bar,
/// topic://test-topic-foo` reaches the three queues and the topic (the example prints the
/// topic's as "test-topic-bar").
async fn composite(classes: &Path) {
    let (b, url) = broker().await;
    let consumer = start(classes, "example.composite.dest.Consumer", &url, &[]);
    consumers_on(&b, Destination::topic("test-topic-foo"), 1).await;
    finish(
        start(classes, "example.composite.dest.Producer", &url, &[]),
        "composite Producer",
    )
    .await;
    let got = finish(consumer, "composite Consumer").await;
    for on in [
        "test-queue",
        "test-queue-foo",
        "test-queue-bar",
        "test-topic-bar",
    ] {
        assert_eq!(
            count(&got, &format!("message on {on}: ")),
            100,
            "{on}: {got}"
        );
    }
    b.stop().await;
}

/// jms-example-queue-selector: the consumer's selector takes exactly the messages "to me".
async fn queue_selector(classes: &Path) {
    let (b, url) = broker().await;
    let consumer = start(classes, "example.queue.selector.Consumer", &url, &[]);
    consumers_on(&b, Destination::queue("test-queue"), 1).await;
    let sent = finish(
        start(classes, "example.queue.selector.Producer", &url, &[]),
        "selector Producer",
    )
    .await;
    let got = finish(consumer, "selector Consumer").await;
    let mine = count(&sent, "Sending to me");
    assert!(mine > 0 && mine < 100, "{sent}");
    assert_eq!(count(&got, ". message: "), mine, "{got}");
    b.stop().await;
}

/// jms-example-exclusive-consumer: of two consumers on `test-queue?consumer.exclusive=true`,
/// one gets all 100.
async fn exclusive(classes: &Path) {
    let (b, url) = broker().await;
    let first = start(classes, "example.queue.exclusive.Consumer", &url, &[]);
    let second = start(classes, "example.queue.exclusive.Consumer", &url, &[]);
    consumers_on(&b, Destination::queue("test-queue"), 2).await;
    finish(
        start(classes, "example.queue.exclusive.Producer", &url, &[]),
        "exclusive Producer",
    )
    .await;
    let (a, z) = (
        finish(first, "exclusive Consumer 1").await,
        finish(second, "exclusive Consumer 2").await,
    );
    let mut counts = [count(&a, ". message: "), count(&z, ". message: ")];
    counts.sort_unstable();
    assert_eq!(counts, [0, 100], "{a}\n---\n{z}");
    b.stop().await;
}

/// jms-example-message-browser: the browser lists the 100 queued messages, leaving them.
async fn message_browser(classes: &Path) {
    let (b, url) = broker().await;
    finish(
        start(classes, "example.browser.Producer", &url, &[]),
        "browser Producer",
    )
    .await;
    let got = finish(
        start(classes, "example.browser.Browser", &url, &[]),
        "Browser",
    )
    .await;
    assert_eq!(count(&got, "Browsing: "), 100, "{got}");
    assert_eq!(
        b.broker.browse("test-queue", 1000).await.unwrap().len(),
        100
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activemq_example_programs_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    if compile(dir.path()).is_none() {
        return;
    }
    let classes = dir.path();
    // All at once: each scenario takes about 30 s, mostly its consumer's 20 s wait for more.
    tokio::join!(
        queue(classes),
        topic(classes),
        durable_sub(classes),
        temp_destinations(classes),
        composite(classes),
        queue_selector(classes),
        exclusive(classes),
        message_browser(classes),
    );
}
