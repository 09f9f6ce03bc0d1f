//! Damage to the engine's files: a flipped byte in the middle of an SST file, of RocksDB's
//! log or of the engine's journal (a record the open replays, or a body it only reads), of a
//! store that crashed before any flush; RocksDB's log lost after the journal let its records
//! go; a journal file holding stored bodies gone; a commit RocksDB kept while the crash took
//! its journal record. Opening or reading then fails with a `Corrupt`
//! error naming the damaged file, or returns exactly what was written: synced messages are
//! never silently dropped or altered. With `repair = true`, RocksDB's repair salvages what it
//! can and the store opens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use store_api::{
    Body, Destination, ErrorKind, Message, MessageId, PersistenceAdapter, QueueStore, StoreError,
};
use store_leveldb::{LevelDbConfig, LevelDbStore};

/// 1.6 MB of bodies, in the journal; RocksDB's log holds their entries (written out from its
/// buffer when a store is dropped without a close).
const COUNT: u64 = 400;

fn q() -> Destination {
    Destination::queue("q")
}

fn body(n: u64) -> Body {
    Body::Bytes(vec![(n % 251) as u8; 4096].into())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `COUNT` synced messages; with `flush`, moves them into SST files and closes, without,
/// leaves them only in the write-ahead log, as a crash would.
fn build(dir: &Path, flush: bool) {
    build_with(LevelDbConfig::new(dir), flush, |_| {});
}

fn build_with(config: LevelDbConfig, flush: bool, before_crash: impl FnOnce(&LevelDbStore)) {
    rt().block_on(async {
        let store = LevelDbStore::open(config).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        add_all(queue.as_ref()).await;
        if flush {
            store.checkpoint(false).await.unwrap();
            store.close().await.unwrap();
        } else {
            // A crash: no close, whose flush would move everything out of the log.
            before_crash(&store);
            drop(queue);
            drop(store);
        }
    });
}

/// Adds `COUNT` synced messages, `p`/0 to `p`/`COUNT - 1`.
async fn add_all(queue: &dyn QueueStore) {
    for n in 0..COUNT {
        queue
            .add(Message::new(MessageId::new("p", n), q(), body(n)))
            .await
            .unwrap();
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

/// Flips every bit of one byte at the middle of the largest file with that extension.
fn damage(dir: &Path, ext: &str) -> PathBuf {
    let path = files(dir, ext)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    path
}

fn names(e: &StoreError, file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    e.kind() == ErrorKind::Corrupt && e.to_string().contains(&name)
}

/// Opens and reads everything; every outcome must be either the exact message or a `Corrupt`
/// error naming `damaged`. Returns how many reads failed (the open counting for all).
fn read_all(dir: &Path, damaged: &Path, repair: bool) -> u64 {
    let mut config = LevelDbConfig::new(dir);
    config.repair = repair;
    let store = match LevelDbStore::open(config) {
        Ok(s) => s,
        Err(e) => {
            let e = StoreError::from(e);
            assert!(
                names(&e, damaged),
                "open must name {}: {e}",
                damaged.display()
            );
            return COUNT;
        }
    };
    rt().block_on(async {
        let queue = store.queue_store(&q()).await.unwrap();
        let mut failed = 0;
        for n in 0..COUNT {
            match queue.get(&MessageId::new("p", n)).await {
                Ok(m) => assert_eq!(m.body, body(n), "message {n} changed"),
                Err(e) => {
                    assert!(
                        names(&e, damaged) || (repair && e.kind() == ErrorKind::NotFound),
                        "reading {n} must name {}: {e}",
                        damaged.display()
                    );
                    failed += 1;
                }
            }
        }
        store.close().await.unwrap();
        failed
    })
}

#[test]
fn a_damaged_sst_file_is_named_never_silently_skipped() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), true);
    let damaged = damage(dir.path(), "sst");
    let failed = read_all(dir.path(), &damaged, false);
    assert!(failed > 0, "a damaged block was read without an error");
}

#[test]
fn a_damaged_rocksdb_log_loses_nothing_the_journal_replays_what_it_cut() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), false);
    let damaged = damage(dir.path(), "log");
    // RocksDB recovers up to the damaged record; the journal holds everything after it.
    assert_eq!(read_all(dir.path(), &damaged, false), 0);
}

#[test]
fn a_damaged_journal_record_fails_the_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LevelDbConfig::new(dir.path());
    // Bigger than everything written: one journal file, its first half data.
    config.log_size = 2 * COUNT * 4096;
    build_with(config, false, |_| {});
    let journal = dir.path().join("journal");
    let damaged = files(&journal, "dat")
        .into_iter()
        .next()
        .expect("a journal file");
    damage_quarter(&damaged);
    let e = StoreError::from(
        LevelDbStore::open(LevelDbConfig::new(dir.path()))
            .err()
            .expect("the open must fail"),
    );
    assert!(names(&e, &damaged), "the error names the journal file: {e}");
}

/// Damages the byte a quarter into the file (in a journal file, inside what was written).
fn damage_quarter(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 4;
    bytes[at] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_rocksdb_log_lost_after_the_journal_let_go_is_refused_not_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LevelDbConfig::new(dir.path());
    // Many small journal files, which the collector deletes once RocksDB's log is synced and
    // no stored message's body is in them: the first half of the messages is acknowledged.
    config.log_size = 64 * 1024;
    let journal = dir.path().join("journal");
    rt().block_on(async {
        let store = LevelDbStore::open(config).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        add_all(queue.as_ref()).await;
        for n in 0..COUNT / 2 {
            queue.remove(&MessageId::new("p", n)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while journal.join("log-1.dat").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no journal file deleted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A crash: no close.
        drop(queue);
        drop(store);
    });
    // The stored half's bodies (800 KiB) are in files that were kept.
    let kept = files(&journal, "dat").len() as u64;
    assert!(
        kept * 64 * 1024 >= COUNT / 2 * 4096,
        "files holding stored bodies are kept: {kept} left"
    );
    // RocksDB's log is what held those records (no memtable was flushed): lose it.
    for log in files(dir.path(), "log") {
        std::fs::remove_file(log).unwrap();
    }
    let e = StoreError::from(
        LevelDbStore::open(LevelDbConfig::new(dir.path()))
            .err()
            .expect("the open must fail"),
    );
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("journal file 1 is gone"), "{e}");
}

#[test]
fn a_missing_journal_file_holding_stored_bodies_fails_the_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LevelDbConfig::new(dir.path());
    config.log_size = 64 * 1024;
    // Flushed and closed: the open replays nothing, so only the bodies need the file.
    build_with(config, true, |_| {});
    let gone = dir.path().join("journal").join("log-2.dat");
    std::fs::remove_file(&gone).unwrap();
    let e = StoreError::from(
        LevelDbStore::open(LevelDbConfig::new(dir.path()))
            .err()
            .expect("the open must fail"),
    );
    assert!(names(&e, &gone), "the error names the missing file: {e}");
}

#[test]
fn a_damaged_body_in_a_journal_file_the_open_does_not_replay_is_named_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LevelDbConfig::new(dir.path());
    config.log_size = 2 * COUNT * 4096;
    build_with(config, true, |_| {});
    let damaged = files(&dir.path().join("journal"), "dat")
        .into_iter()
        .next()
        .expect("a journal file");
    damage_quarter(&damaged);
    let failed = read_all(dir.path(), &damaged, false);
    assert!(failed > 0, "a damaged body was read without an error");
}

#[test]
fn repair_salvages_a_damaged_log_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), false);
    let damaged = damage(dir.path(), "log");
    // Whatever repair keeps reads back exactly; what it dropped is NotFound.
    read_all(dir.path(), &damaged, true);
}

#[test]
fn a_journal_tail_lost_while_rocksdb_kept_it_is_never_written_over_silently() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = LevelDbConfig::new(dir.path());
        c.log_size = 4 * COUNT * 4096;
        c
    };
    build_with(config(), false, |_| {});
    // The crash took the journal's tail (never acknowledged, as if its fsync had not come)
    // while RocksDB's copy of those batches reached the disk: zero the journal from a quarter
    // of its data on.
    let journal = files(&dir.path().join("journal"), "dat");
    // (the next file may be there too, preallocated and empty)
    assert!(journal[0].ends_with("log-1.dat"));
    let mut bytes = std::fs::read(&journal[0]).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[end / 4..].fill(0);
    std::fs::write(&journal[0], bytes).unwrap();
    // Messages written after that open must survive the next crash: they go where the lost
    // tail was, and replay must not skip them.
    let logs_at_open = rt().block_on(async {
        let store = LevelDbStore::open(config()).unwrap();
        let logs_at_open: Vec<(PathBuf, u64)> = files(dir.path(), "log")
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p).unwrap().len();
                (p, len)
            })
            .collect();
        let queue = store.queue_store(&q()).await.unwrap();
        for n in 0..100 {
            queue
                .add(Message::new(MessageId::new("after", n), q(), body(n)))
                .await
                .unwrap();
        }
        drop(queue);
        drop(store);
        logs_at_open
    });
    // A kill -9 loses what RocksDB's log buffer held (a drop writes it out): cut its logs back
    // to what they held after the open.
    for p in files(dir.path(), "log") {
        match logs_at_open.iter().find(|(q, _)| *q == p) {
            Some((_, len)) => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(*len))
                .unwrap(),
            None => std::fs::remove_file(&p).unwrap(),
        }
    }
    rt().block_on(async {
        let store = LevelDbStore::open(config()).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        for n in 0..100 {
            let m = queue.get(&MessageId::new("after", n)).await.unwrap();
            assert_eq!(m.body, body(n));
        }
        // Whatever of the first run's messages came back is exact.
        for n in 0..COUNT {
            if let Ok(m) = queue.get(&MessageId::new("p", n)).await {
                assert_eq!(m.body, body(n), "message {n} changed");
            }
        }
        store.close().await.unwrap();
    });
}

#[test]
fn a_commit_rocksdb_kept_while_the_crash_took_its_journal_record_stays_whole() {
    use store_api::{TransactionId, TxOp};
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal").join("log-1.dat");
    let data_end = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
    };
    // X stored, then a transaction that sends Y and acks X, as a consumer that forwards does.
    let before_commit = rt().block_on(async {
        let store = LevelDbStore::open(LevelDbConfig::new(dir.path())).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        queue
            .add(Message::new(MessageId::new("x", 0), q(), body(0)))
            .await
            .unwrap();
        let before_commit = data_end(&journal);
        let tx = TransactionId::Local(1);
        store.begin(&tx).await.unwrap();
        store
            .enlist(
                &tx,
                TxOp::Add(Message::new(MessageId::new("y", 0), q(), body(1))),
            )
            .await
            .unwrap();
        store
            .enlist(
                &tx,
                TxOp::QueueAck {
                    destination: q(),
                    id: MessageId::new("x", 0),
                },
            )
            .await
            .unwrap();
        store.commit(&tx).await.unwrap();
        // A crash: no close (dropping the store writes RocksDB's log buffer out).
        drop(queue);
        drop(store);
        before_commit
    });
    // The crash took the commit's journal record (never acknowledged) while RocksDB kept it.
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[before_commit..].fill(0);
    std::fs::write(&journal, bytes).unwrap();
    rt().block_on(async {
        let store = LevelDbStore::open(LevelDbConfig::new(dir.path())).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        let x = queue.get(&MessageId::new("x", 0)).await.ok();
        let y = queue.get(&MessageId::new("y", 0)).await.ok();
        match (x, y) {
            // Committed whole: Y with its body, X gone.
            (None, Some(y)) => assert_eq!(y.body, body(1)),
            // Or not at all.
            (Some(x), None) => assert_eq!(x.body, body(0)),
            (x, y) => panic!(
                "half a transaction: x {:?}, y {:?}",
                x.map(|m| m.id),
                y.map(|m| m.id)
            ),
        }
        store.close().await.unwrap();
    });
}
