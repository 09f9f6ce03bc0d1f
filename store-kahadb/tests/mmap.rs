//! Journal GC and compaction while consumers read old bodies through maps of sealed journal
//! files (`mmap_reads`, `mmap_replay`), on real files, for KahaDB and for the AMQ engine (its
//! cleanup is the same GC): files are deleted and records copied forward under the readers;
//! no read returns wrong bytes, none crashes the process (a SIGBUS would kill this test
//! binary), no map of a deleted file is left behind, and reopening — replaying through maps,
//! and rebuilding the index from the journal through maps — finds the same contents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use store_amq::AmqConfig;
use store_api::{Body, Destination, Message, MessageId, PersistenceAdapter, QueueStore};
use store_kahadb::KahaDbConfig;
use store_kahadb::index_storage::{EngineConfig, JournaledStore};

const MESSAGES: u64 = 1200;
/// Every this many messages one is never consumed: it keeps its journal file alive until
/// compaction copies it forward.
const SLOW_EVERY: u64 = 100;

fn q() -> Destination {
    Destination::queue("work")
}

fn id(n: u64) -> MessageId {
    MessageId::new("p", n)
}

/// Message `n`'s body: its number, then bytes that depend on it, so a body read from the wrong
/// place cannot pass for the right one.
fn body(n: u64) -> Body {
    let mut b = format!("message {n} ").into_bytes();
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while b.len() < 700 + (n as usize * 31) % 700 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.push(x as u8);
    }
    Body::Bytes(b.into())
}

fn kahadb_config(dir: &Path) -> KahaDbConfig {
    let mut c = KahaDbConfig::new(dir);
    c.journal_max_file_length = 64 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    c.mmap_replay = true;
    c.mmap_reads = true;
    c
}

fn amq_config(dir: &Path) -> AmqConfig {
    let mut c = AmqConfig::new(dir);
    c.max_file_length = 64 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    c.mmap_replay = true;
    c.mmap_reads = true;
    c
}

/// The lines of /proc/self/maps naming a deleted file under `dir`.
fn maps_of_deleted(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains(&dir) && l.ends_with("(deleted)"))
        .map(str::to_owned)
        .collect()
}

/// The ids left in the queue, each checked against its body.
async fn contents(queue: &Arc<dyn QueueStore>) -> BTreeSet<u64> {
    let mut left = BTreeSet::new();
    for m in queue.browse(None, usize::MAX).await.unwrap() {
        let n: u64 = m.id.producer_seq;
        assert_eq!(m.body, body(n), "body of {}", m.id);
        left.insert(n);
    }
    left
}

async fn gc_under_mapped_readers<C: EngineConfig + Clone>(
    config: C,
    dir: &Path,
    delete_index: impl Fn(&Path),
) {
    let store = JournaledStore::open(config.clone()).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..MESSAGES {
        queue.add(Message::new(id(n), q(), body(n))).await.unwrap();
    }
    let files_before = store.journal_files().len();
    assert!(files_before > 10, "{files_before} journal files");

    // Readers fetch messages at random and browse from the head, checking every body; the
    // consumer acks all but the slow messages in order and runs a cleanup (GC and compaction)
    // every 100 acks, deleting journal files under the readers. The consumer paces the
    // readers (`allowance`: reads they may have done by now), which would otherwise take the
    // index lock from it nearly all the time.
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let allowance = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut readers = Vec::new();
    for r in 0..2u64 {
        let (queue, acked, stop, reads, allowance) = (
            queue.clone(),
            acked.clone(),
            stop.clone(),
            reads.clone(),
            allowance.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut x = 0x2545_F491_4F6C_DD1Du64 + r;
            for round in 0..1_000_000u64 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                if reads.load(Ordering::Relaxed) >= allowance.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                if round % 50 == 0 {
                    for m in queue.browse(None, 100).await.unwrap() {
                        assert_eq!(m.body, body(m.id.producer_seq), "browsed {}", m.id);
                    }
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = x % MESSAGES;
                match queue.get(&id(n)).await {
                    Ok(m) => assert_eq!(m.body, body(n), "body of message {n}"),
                    Err(e) => assert!(
                        acked.lock().contains(&n),
                        "message {n}, not consumed, cannot be read: {e}"
                    ),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let slow: BTreeSet<u64> = (0..MESSAGES).filter(|n| n % SLOW_EVERY == 1).collect();
    let mut since_cleanup = 0;
    for n in (0..MESSAGES).filter(|n| !slow.contains(n)) {
        acked.lock().insert(n);
        queue.remove(&id(n)).await.unwrap();
        allowance.fetch_add(2, Ordering::Relaxed);
        since_cleanup += 1;
        if since_cleanup == 100 {
            since_cleanup = 0;
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.checkpoint_blocking(true))
                .await
                .unwrap()
                .unwrap();
            // Let the readers catch up (mapping what is left) before the next cleanup deletes
            // more.
            for _ in 0..2000 {
                if reads.load(Ordering::Relaxed) >= allowance.load(Ordering::Relaxed)
                    || Instant::now() > deadline
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    for _ in 0..3 {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.checkpoint_blocking(true))
            .await
            .unwrap()
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("a reader failed");
    }
    let stats = store.stats();
    assert!(
        stats.files_deleted > 0 && stats.records_compacted > 0,
        "the cleanups deleted and compacted files: {stats:?}"
    );
    assert!(
        store.journal_files().len() < files_before / 2,
        "{:?} left of {files_before} files",
        store.journal_files()
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(
        contents(&queue).await,
        slow,
        "the slow messages are all that is left"
    );
    let stale = maps_of_deleted(dir);
    assert!(
        stale.is_empty(),
        "maps of deleted journal files remain: {stale:?}"
    );
    store.close().await.unwrap();

    // Reopen (replay after the last checkpoint), then rebuild the index from the journal, both
    // through maps.
    let store = JournaledStore::<C>::open(config.clone()).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    assert_eq!(contents(&queue).await, slow, "after reopening");
    store.close().await.unwrap();
    delete_index(dir);
    let store = JournaledStore::<C>::open(config).unwrap();
    assert!(
        store.stats().records_replayed_at_open > 0,
        "the index was rebuilt"
    );
    let queue = store.queue_store(&q()).await.unwrap();
    assert_eq!(contents(&queue).await, slow, "after rebuilding the index");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kahadb_gc_and_compaction_under_mapped_readers() {
    let dir = tempfile::tempdir().unwrap();
    gc_under_mapped_readers::<KahaDbConfig>(kahadb_config(dir.path()), dir.path(), |d| {
        for name in ["db.data", "db.redo"] {
            std::fs::remove_file(d.join(name)).unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amq_cleanup_and_compaction_under_mapped_readers() {
    let dir = tempfile::tempdir().unwrap();
    gc_under_mapped_readers::<AmqConfig>(amq_config(dir.path()), dir.path(), |d| {
        std::fs::remove_file(d.join("journal").join("data-control")).unwrap();
        std::fs::remove_dir_all(d.join("kr-store")).unwrap();
    })
    .await;
}
