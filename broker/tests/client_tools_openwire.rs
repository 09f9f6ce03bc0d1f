//! `broker producer` and `broker consumer` pointed at the OpenWire port (ActiveMQ's
//! `tcp://host:61616`): they speak OpenWire there, and what they send or take is what a STOMP
//! client sees on the other side; refusals surface as errors naming the Java exception class.
//! browse is a queue browser there; purge and dstat still speak STOMP only and say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestBroker;
use common::process::BIN;

/// Runs the `broker` executable with `args`; (success, stdout, stderr).
async fn tool(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the tool finishes")
        .expect("the tool runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tool `base` with `extra` arguments; its stdout. Panics with its stderr if it fails.
async fn run(base: &[&str], extra: &[&str]) -> String {
    let (ok, out, err) = tool(&[base, extra].concat()).await;
    assert!(ok, "{base:?} {extra:?}: {err}");
    out
}

/// `broker producer` of `count` messages to `destination` at `url`.
async fn produce(url: &str, destination: &str, count: u32, extra: &[&str]) -> String {
    let count = count.to_string();
    let base = ["producer", "--url", url, "--destination", destination];
    run(&[&base[..], &["--count", &count]].concat(), extra).await
}

/// `broker consumer` of `count` messages from `destination` at `url`, giving up after 10 idle
/// seconds.
async fn consume(url: &str, destination: &str, count: u32, extra: &[&str]) -> String {
    let count = count.to_string();
    let base = ["consumer", "--url", url, "--destination", destination];
    let until = ["--count", &count, "--idle-secs", "10"];
    run(&[&base[..], &until[..]].concat(), extra).await
}

fn urls(b: &TestBroker) -> (String, String) {
    let ow = b.server.openwire.expect("OpenWire listener");
    let stomp = b.endpoint();
    (format!("tcp://{ow}"), stomp.to_string())
}

/// The printed bodies of a `consumer --print` run, sorted.
fn bodies(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .filter(|l| !l.starts_with("RESULT"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn expected(prefix: &str, n: u64) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    v.sort();
    v
}

async fn pending(b: &TestBroker, queue: &str) -> Option<u64> {
    let stats = b.broker.destination_stats().await.unwrap();
    stats
        .iter()
        .find(|s| s.destination.is_queue() && &*s.destination.name == queue)
        .map(|s| s.pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openwire_producer_to_stomp_consumer_and_back() {
    let b = TestBroker::start("").await;
    let (ow, stomp) = urls(&b);
    // Synchronous sends over OpenWire, one Response each.
    let q = "/queue/tools.a";
    let out = produce(&ow, q, 50, &["--message", "m{n}", "--receipts", "every"]).await;
    assert!(out.contains("RESULT msgs_per_sec="), "{out}");
    // Asynchronous sends with the last one waited for, and transactions of 7.
    let last = ["--receipts", "last", "--persistent", "false"];
    produce(
        &ow,
        q,
        30,
        &[&["--message", "l{n}"][..], &last[..]].concat(),
    )
    .await;
    produce(
        &ow,
        q,
        20,
        &["--message", "t{n}", "--transaction-batch", "7"],
    )
    .await;
    assert_eq!(pending(&b, "tools.a").await, Some(100));
    let out = consume(&stomp, q, 100, &["--print"]).await;
    let mut want = expected("m", 50);
    want.extend(expected("l", 30));
    want.extend(expected("t", 20));
    want.sort();
    assert_eq!(bodies(&out), want);

    // STOMP producer, OpenWire consumer, each ack mode.
    produce(&stomp, "/queue/tools.b", 90, &["--message", "s{n}"]).await;
    let mut got = Vec::new();
    for ack in ["auto", "client", "client-individual"] {
        let extra = ["--ack", ack, "--print", "--prefetch", "8"];
        let out = consume(&ow, "/queue/tools.b", 30, &extra).await;
        assert!(
            out.contains("RESULT received=30 redelivered=0"),
            "{ack}: {out}"
        );
        got.extend(bodies(&out));
    }
    got.sort();
    assert_eq!(got, expected("s", 90));
    assert_eq!(pending(&b, "tools.b").await, Some(0), "all acknowledged");
    b.stop().await;
}

/// A consumer that stops before the queue is empty gives back what it had prefetched and not
/// consumed as never delivered (RemoveInfo's lastDeliveredSequenceId), as the Java client
/// does: the next consumer does not see them as redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openwire_consumer_gives_back_its_unconsumed_prefetch() {
    let b = TestBroker::start("").await;
    let (ow, _) = urls(&b);
    produce(&ow, "/queue/tools.c", 40, &["--message", "c{n}"]).await;
    let out = consume(&ow, "/queue/tools.c", 10, &[]).await;
    assert!(out.contains("RESULT received=10 redelivered=0"), "{out}");
    assert_eq!(pending(&b, "tools.c").await, Some(30));
    let out = consume(&ow, "/queue/tools.c", 30, &[]).await;
    assert!(out.contains("RESULT received=30 redelivered=0"), "{out}");
    b.stop().await;
}

const AUTHZ: &str = r#"
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
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_openwire_name_the_java_exception() {
    let b = TestBroker::start(AUTHZ).await;
    let (ow, _) = urls(&b);
    let (ok, _, err) = tool(&[
        "producer",
        "--url",
        &ow,
        "--user",
        "app",
        "--password",
        "nope",
        "--count",
        "1",
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains("password is invalid") && err.contains("java.lang.SecurityException"),
        "{err}"
    );
    // Allowed: orders.in; refused: secret, on the synchronous send and on the asynchronous
    // ones (the broker closes the connection with a ConnectionError saying why). The queues
    // exist already (creating one needs admin rights).
    let mut admin = b.client_as("admin", "adminpw", None).await;
    admin.send("/queue/orders.in", "first", &[]).await.unwrap();
    admin.send("/queue/secret", "first", &[]).await.unwrap();
    let app = ["--user", "app", "--password", "apppw", "--count", "3"];
    produce(&ow, "/queue/orders.in", 3, &app[..4]).await;
    for receipts in ["every", "last"] {
        let (ok, _, err) = tool(
            &[
                &["producer", "--url", &ow, "--destination", "/queue/secret"][..],
                &app[..],
                &["--receipts", receipts][..],
            ]
            .concat(),
        )
        .await;
        assert!(!ok, "{receipts}");
        assert!(
            err.contains("java.lang.SecurityException") && err.contains("secret"),
            "{receipts}: {err}"
        );
    }
    assert_eq!(pending(&b, "orders.in").await, Some(4));
    assert_eq!(pending(&b, "secret").await, Some(1), "nothing got in");
    // A consumer refused its subscription says so too.
    let (ok, _, err) = tool(
        &[
            &["consumer", "--url", &ow, "--destination", "/queue/secret"][..],
            &app[..],
        ]
        .concat(),
    )
    .await;
    assert!(!ok);
    assert!(err.contains("java.lang.SecurityException"), "{err}");
    b.stop().await;
}

/// purge and dstat speak STOMP only: pointed at the OpenWire port they say so at once instead
/// of a decoding error or a retry loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_dstat_say_they_speak_stomp() {
    let b = TestBroker::start("").await;
    let (ow, _) = urls(&b);
    let failover = format!("failover:({ow})");
    for args in [
        vec!["purge", "--url", &failover, "--destination", "/queue/x"],
        vec!["dstat", "--url", &ow],
    ] {
        let (ok, _, err) = tool(&args).await;
        assert!(!ok, "{args:?}");
        assert!(
            err.contains("speaks OpenWire") && err.contains("STOMP only"),
            "{args:?}: {err}"
        );
    }
    b.stop().await;
}

/// browse over OpenWire is a queue browser: every message, in order, none taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_over_openwire_lists_without_taking() {
    let b = TestBroker::start("").await;
    let (ow, _) = urls(&b);
    let mut c = b.client().await;
    for i in 0..5 {
        c.send(
            "/queue/tools.br",
            format!("b{i}"),
            &[("persistent", "true")],
        )
        .await
        .unwrap();
    }
    let (ok, out, err) = tool(&["browse", "--url", &ow, "--destination", "/queue/tools.br"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.ends_with(&format!("priority=4 persistent=true b{i}")),
            "{l}"
        );
    }
    assert!(err.contains("5 message(s)"), "{err}");
    assert_eq!(pending(&b, "tools.br").await, Some(5));
    b.stop().await;
}

/// `ssl://` to the OpenWire TLS port: the same detection inside TLS, the CA from `--ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_over_openwire_tls() {
    let certs = tempfile::tempdir().unwrap();
    let cert = common::TestCert::write(certs.path());
    let b = TestBroker::start(&cert.transports("openwire_tls = \"127.0.0.1:0\"\n")).await;
    let port = b.server.openwire_tls.expect("OpenWire TLS listener").port();
    // The certificate names localhost.
    let url = format!("ssl://localhost:{port}");
    let ca = cert.cert.to_str().unwrap();
    produce(
        &url,
        "/queue/tools.tls",
        5,
        &["--ca", ca, "--message", "x{n}"],
    )
    .await;
    let out = consume(&url, "/queue/tools.tls", 5, &["--ca", ca, "--print"]).await;
    assert_eq!(bodies(&out), expected("x", 5));
    b.stop().await;
}

/// `--protocol openwire` skips the STOMP probe; pointed at a STOMP port it says the port sent
/// no WireFormatInfo. `--protocol stomp` at an OpenWire port says the port speaks OpenWire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_protocol() {
    let b = TestBroker::start("").await;
    let (ow, stomp) = urls(&b);
    let out = produce(&ow, "/queue/tools.p", 4, &["--protocol", "openwire"]).await;
    assert!(out.contains("RESULT"), "{out}");
    assert_eq!(pending(&b, "tools.p").await, Some(4));
    let (ok, _, err) = tool(&[
        "producer",
        "--url",
        &stomp,
        "--protocol",
        "openwire",
        "--count",
        "1",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("sent no OpenWire WireFormatInfo"), "{err}");
    let (ok, _, err) = tool(&[
        "producer",
        "--url",
        &ow,
        "--protocol",
        "stomp",
        "--count",
        "1",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("speaks OpenWire"), "{err}");
    b.stop().await;
}

/// `--prefetch 0` over OpenWire pulls each message (MessagePull), as the Java client's
/// `receive(timeout)` does with prefetch 0: it gets every message, and a pull that finds the
/// queue empty ends the run after the idle time instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_0_consumer_pulls_each_message() {
    let b = TestBroker::start("").await;
    let (ow, _) = urls(&b);
    produce(&ow, "/queue/tools.pull", 12, &["--message", "p{n}"]).await;
    let out = consume(&ow, "/queue/tools.pull", 5, &["--prefetch", "0", "--print"]).await;
    assert!(out.contains("RESULT received=5 redelivered=0"), "{out}");
    // Nothing was prefetched past the five: the rest are still there, never delivered.
    assert_eq!(pending(&b, "tools.pull").await, Some(7));
    // Asked for more than there are: the seven, then an empty pull, then the idle time ends it.
    let (ok, out, err) = tool(&[
        "consumer",
        "--url",
        &ow,
        "--destination",
        "/queue/tools.pull",
        "--count",
        "10",
        "--idle-secs",
        "1",
        "--prefetch",
        "0",
        "--print",
    ])
    .await;
    assert!(
        out.contains("RESULT received=7 redelivered=0"),
        "{ok} {out} {err}"
    );
    let mut got = bodies(&out);
    got.retain(|l| l.starts_with('p'));
    assert_eq!(got.len(), 7, "{out}");
    assert_eq!(pending(&b, "tools.pull").await, Some(0));
    b.stop().await;
}
