//! Damage to RocksDB's files: a flipped byte in the middle of an SST file or of the
//! write-ahead log of a store that crashed before any flush. Opening or reading then fails with a `Corrupt` error naming the damaged
//! file, or returns exactly what was written: synced messages are never silently dropped or
//! altered. With `repair = true`, RocksDB's repair salvages what it can and the store opens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use store_api::{Body, Destination, ErrorKind, Message, MessageId, PersistenceAdapter, StoreError};
use store_leveldb::{LevelDbConfig, LevelDbStore};

const COUNT: u64 = 200;

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
    rt().block_on(async {
        let store = LevelDbStore::open(LevelDbConfig::new(dir)).unwrap();
        let queue = store.queue_store(&q()).await.unwrap();
        for n in 0..COUNT {
            queue
                .add(Message::new(MessageId::new("p", n), q(), body(n)))
                .await
                .unwrap();
        }
        if flush {
            store.checkpoint(false).await.unwrap();
            store.close().await.unwrap();
        } else {
            // A crash: no close, whose flush would move everything out of the log.
            drop(queue);
            drop(store);
        }
    });
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
fn a_damaged_log_record_fails_the_open_naming_the_log() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), false);
    assert!(files(dir.path(), "sst").is_empty() || !files(dir.path(), "log").is_empty());
    let damaged = damage(dir.path(), "log");
    let mut config = LevelDbConfig::new(dir.path());
    config.repair = false;
    let e = StoreError::from(
        LevelDbStore::open(config)
            .err()
            .expect("the open must fail"),
    );
    assert!(names(&e, &damaged), "the error names the log: {e}");
}

#[test]
fn repair_salvages_a_damaged_log_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), false);
    let damaged = damage(dir.path(), "log");
    // Whatever repair keeps reads back exactly; what it dropped is NotFound.
    read_all(dir.path(), &damaged, true);
}
