//! `broker import-kahadb` against a real ActiveMQ: Debian's ActiveMQ 5.17 runs on KahaDB in a
//! temp dir, the stock Java client leaves messages in it (queues partly consumed, transactions
//! committed and rolled back, durable subscriptions one partly consumed), ActiveMQ is killed
//! with SIGKILL, its KahaDB directory is imported twice into a fresh broker.toml, and the Java
//! client finds exactly the pending messages in this broker, once each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestBroker;

const AMQ_JAR: &str = "/usr/share/activemq/bin/activemq.jar";
const JARS: &[&str] = &[
    "activemq-client.jar",
    "geronimo-jms_1.1_spec.jar",
    "geronimo-j2ee-management-1.1-spec.jar",
    "hawtbuf.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];

fn classpath(extra: &Path) -> String {
    let mut parts: Vec<String> = JARS
        .iter()
        .map(|j| format!("/usr/share/java/{j}"))
        .collect();
    parts.push(extra.display().to_string());
    parts.join(":")
}

/// ActiveMQ, killed (SIGKILL) when dropped, whatever the test did.
struct ActiveMq(Child);

impl Drop for ActiveMq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_activemq(base: &Path, port: u16) -> ActiveMq {
    let conf = base.join("conf");
    let data = base.join("data");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        conf.join("activemq.xml"),
        format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="import"
          dataDirectory="{data}">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"#,
            data = data.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(base.join("activemq.log")).unwrap();
    let child = Command::new("java")
        .arg("-Xmx256M")
        .arg(format!("-Dactivemq.base={}", base.display()))
        .arg("-Dactivemq.home=/usr/share/activemq")
        .arg(format!("-Dactivemq.conf={}", conf.display()))
        .arg(format!("-Dactivemq.data={}", data.display()))
        .arg("-jar")
        .arg(AMQ_JAR)
        .arg("start")
        .arg(format!(
            "xbean:file:{}",
            conf.join("activemq.xml").display()
        ))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("java starts");
    let amq = ActiveMq(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "ActiveMQ did not listen within 90 s:\n{}",
            std::fs::read_to_string(base.join("activemq.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    amq
}

/// Java and ActiveMQ here, or a skip (a failure under `BROKER_REQUIRE_JAVA`).
fn java_and_activemq() -> bool {
    let have = Command::new("javac").arg("-version").output().is_ok()
        && Path::new("/usr/share/java/activemq-client.jar").exists()
        && Path::new(AMQ_JAR).exists();
    if !have {
        assert!(
            std::env::var_os("BROKER_REQUIRE_JAVA").is_none(),
            "javac, libactivemq-java and activemq are needed (apt-get install default-jdk-headless libactivemq-java activemq)"
        );
        test_support::skip("no javac, activemq-client.jar or /usr/share/activemq");
    }
    have
}

fn run_java(classes: &Path, port: u16, mode: &str, ids: &Path) {
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(classpath(classes))
        .arg("KahaDbImport")
        .arg(port.to_string())
        .arg(mode)
        .arg(ids)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "KahaDbImport {mode} did not finish within 120 s:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "KahaDbImport {mode} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn import(kahadb: &Path, config: &Path) -> String {
    let (ok, stderr) = try_import(kahadb, config, &[]);
    assert!(ok, "import failed:\n{stderr}");
    stderr
}

fn try_import(kahadb: &Path, config: &Path, flags: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_broker"))
        .arg("import-kahadb")
        .arg(kahadb)
        .arg("--config")
        .arg(config)
        .args(flags)
        .output()
        .expect("broker runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The reader on ActiveMQ's real journal with bytes overwritten or cut at pseudo-random places
/// (a fixed-seed generator, so a failure repeats): it decodes or fails, never panics.
fn mutated_journals_never_panic(kahadb: &Path) {
    let journal = std::fs::read(kahadb.join("db-1.log")).unwrap();
    // What the test wrote is a few kilobytes at the front; the rest is preallocated zeros.
    let used = journal.len().min(64 * 1024);
    let original = &journal[..used];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n.max(1)
    };
    let live = broker::import::kahadb::fuzz_journal(original);
    assert!(
        live >= 3,
        "the intact journal replays to {live} destinations"
    );
    let end = original
        .windows(5)
        .position(|w| w == b"-qMa4")
        .unwrap_or(used)
        .max(1);
    for _ in 0..2000 {
        let mut data = original.to_vec();
        for _ in 0..=next(3) {
            let at = next(end);
            data[at] = next(256) as u8;
        }
        let cut = if next(4) == 0 { next(end) } else { used };
        broker::import::kahadb::fuzz_journal(&data[..cut]);
    }
}

/// A copy of the journal with one byte flipped in its first batch: the import stops naming
/// the file and offset; with `--skip-damaged` it goes on and says what it skipped.
fn damaged_journal_is_refused_or_skipped(kahadb: &Path) {
    let copy = tempfile::tempdir().unwrap();
    let mut journal = std::fs::read(kahadb.join("db-1.log")).unwrap();
    // Past the first batch control record (28 bytes) and record head: inside its payload.
    journal[40] ^= 0xff;
    std::fs::write(copy.path().join("db-1.log"), &journal).unwrap();
    let target = tempfile::tempdir().unwrap();
    let config = target.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\ndata_directory = \"{}\"\n[persistence]\nkind = \"memory\"\n",
            target.path().display()
        ),
    )
    .unwrap();
    let (ok, stderr) = try_import(copy.path(), &config, &[]);
    assert!(!ok, "a damaged journal was imported:\n{stderr}");
    assert!(
        stderr.contains("db-1.log at offset 0: batch checksum mismatch"),
        "{stderr}"
    );
    let (ok, stderr) = try_import(copy.path(), &config, &["--skip-damaged"]);
    assert!(ok, "--skip-damaged failed:\n{stderr}");
    assert!(
        stderr.contains("damaged, skipped:") && stderr.contains("db-1.log@0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activemq_kahadb_pending_messages_are_imported_once() {
    if !java_and_activemq() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let classes = work.path().join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java/KahaDbImport.java");
    let out = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(classpath(&classes))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let amq_base = work.path().join("amq");
    let port = free_port();
    let amq = start_activemq(&amq_base, port);
    let ids = work.path().join("ids.txt");
    run_java(&classes, port, "fill", &ids);
    // Acks are journalled by KahaDB's writer thread shortly after the client's call returns.
    std::thread::sleep(Duration::from_secs(2));
    drop(amq);
    let kahadb = amq_base.join("data/kahadb");
    damaged_journal_is_refused_or_skipped(&kahadb);
    mutated_journals_never_panic(&kahadb);

    let target = tempfile::tempdir().unwrap();
    let config = target.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\nname = \"stomp-test\"\ndata_directory = \"{}\"\n\
             [persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n",
            target.path().display()
        ),
    )
    .unwrap();
    let first = import(&kahadb, &config);
    eprintln!("first import:\n{first}");
    assert!(first.contains("imported 11 messages"), "{first}");
    assert!(
        first.contains("2 durable subscriptions, 1 prepared XA"),
        "{first}"
    );
    let second = import(&kahadb, &config);
    eprintln!("second import:\n{second}");
    assert!(second.contains("imported 0 messages"), "{second}");
    assert!(
        second.contains("already present (not imported again): 12"),
        "{second}"
    );

    std::fs::remove_file(&config).unwrap();
    let b = TestBroker::start_in(target, "").await;
    let port = b.server.openwire.expect("OpenWire listener").port();
    let classes2 = classes.clone();
    tokio::task::spawn_blocking(move || run_java(&classes2, port, "check", &ids))
        .await
        .unwrap();
}
