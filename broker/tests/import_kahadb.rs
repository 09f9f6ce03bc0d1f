//! `broker import-kahadb` against a real ActiveMQ: Debian's ActiveMQ 5.17 runs on KahaDB in a
//! temp dir, the stock Java client leaves messages in it (queues partly consumed, transactions
//! committed and rolled back, durable subscriptions one partly consumed), ActiveMQ is killed
//! with SIGKILL, its KahaDB directory is imported twice into a fresh broker.toml, and the Java
//! client finds exactly the pending messages in this broker, once each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestBroker;
use common::activemq::{self, ActiveMq};
use test_support::free_port;

/// Debian's ActiveMQ on KahaDB (in `<base>/data/kahadb`), listening on `port`.
fn start_activemq(base: &Path, port: u16) -> ActiveMq {
    let kahadb = base.join("data/kahadb");
    let amq = ActiveMq::spawn(
        base,
        port,
        "",
        &format!(
            r#"<persistenceAdapter><kahaDB directory="{}"/></persistenceAdapter>"#,
            kahadb.display()
        ),
        &[],
    );
    amq.wait_listening(Duration::from_secs(90));
    amq
}

fn classpath(classes: &Path) -> String {
    common::java::classpath(&classes.display().to_string())
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
    if !activemq::available(&[]) {
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
