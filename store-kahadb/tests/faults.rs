//! Failures the store must survive without losing or inventing anything: a failed fsync
//! poisons it until reopened (reads go on), a full disk fails writes with a clear error, and an
//! index cache far smaller than the index still serves everything in order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use store_api::{Body, Destination, ErrorKind, Message, MessageId, PersistenceAdapter, QueueStore};
use store_journal::fs::{Crash, SimFs};
use store_kahadb::{KahaDbConfig, KahaDbStore};

fn config() -> KahaDbConfig {
    let mut c = KahaDbConfig::new("/faults");
    c.journal_max_file_length = 64 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    c
}

fn q() -> Destination {
    Destination::queue("q")
}

/// The store opened again on `fs`, its queue, and the sequence numbers the queue holds.
async fn reopen(fs: &SimFs) -> (KahaDbStore, Arc<dyn QueueStore>, Vec<u64>) {
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    let ids = queue
        .browse(None, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    (store, queue, ids)
}

fn msg(n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        q(),
        Body::Text(format!("message {n}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_poisons_the_store_until_reopened() {
    let fs = SimFs::new();
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..5 {
        queue.add(msg(n)).await.unwrap();
    }
    fs.control().fail_fsync_in(1);
    let err = queue.add(msg(5)).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Poisoned | ErrorKind::Io),
        "{err}"
    );
    let err = queue.add(msg(6)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Poisoned, "{err}");
    assert_eq!(
        queue
            .remove(&MessageId::new("p", 0))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Poisoned
    );
    // Reads go on, and the failed add is not visible.
    assert_eq!(
        queue.get(&MessageId::new("p", 1)).await.unwrap().body,
        Body::Text("message 1".into())
    );
    assert!(queue.get(&MessageId::new("p", 5)).await.is_err());
    fs.power_loss(Crash::LoseUnsynced);
    fs.control().clear_faults();
    drop(store);
    let (_store, queue, ids) = reopen(&fs).await;
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    queue.add(msg(7)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_and_keeps_what_is_stored() {
    let fs = SimFs::new();
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..5 {
        queue.add(msg(n)).await.unwrap();
    }
    fs.control().set_disk_full_after(1);
    let err = queue.add(msg(5)).await.unwrap_err();
    assert!(
        err.to_string().contains("os error 28"),
        "the error names the cause: {err}"
    );
    assert_eq!(queue.count().await.unwrap(), 5);
    assert_eq!(queue.browse(None, 10).await.unwrap().len(), 5);
    // Space comes back: a reopen (documented) resumes writing with nothing lost.
    fs.control().clear_faults();
    drop(store);
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    queue.add(msg(5)).await.unwrap();
    assert_eq!(queue.count().await.unwrap(), 6);
}

/// Issue 32: a full disk heals without a restart. Once space is back the store reopens itself
/// in place (journal recovery and index reload, as at open): nothing stored is lost, the
/// half-written batch is cut, the handles and their batch cursor go on where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_heals_in_place_once_space_is_back() {
    let fs = SimFs::new();
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..5 {
        queue.add(msg(n)).await.unwrap();
    }
    let first: Vec<u64> = queue
        .recover_next(3)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    assert_eq!(first, vec![0, 1, 2]);
    assert!(store.write_refusal().is_none());
    assert!(
        store.resume_writes().await.unwrap(),
        "writable: nothing to do"
    );

    // Half a batch fits: the write that fails leaves a torn record behind.
    fs.control().set_disk_full_after(1);
    let err = queue.add(msg(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiskFull, "{err}");
    assert!(err.to_string().contains("/faults"), "names the path: {err}");
    assert!(
        err.to_string().contains("os error 28"),
        "names the cause: {err}"
    );
    let err = queue.remove(&MessageId::new("p", 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiskFull, "{err}");
    let refusal = store.write_refusal().expect("refused while full");
    assert!(refusal.disk_full.is_some(), "{refusal:?}");
    // Still full: no reopen.
    assert!(!store.resume_writes().await.unwrap());
    assert_eq!(
        queue.add(msg(6)).await.unwrap_err().kind(),
        ErrorKind::DiskFull
    );

    fs.control().clear_faults();
    assert!(store.resume_writes().await.unwrap(), "space is back");
    assert!(store.write_refusal().is_none());
    queue.add(msg(7)).await.unwrap();
    let ids: Vec<u64> = queue
        .browse(None, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 7]);
    // The cursor went on from where it was, across the reopen.
    let rest: Vec<u64> = queue
        .recover_next(10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    assert_eq!(rest, vec![3, 4, 7]);
    queue.remove(&MessageId::new("p", 0)).await.unwrap();

    // And what it holds now is what the files hold: a power loss and a reopen agree.
    store.close().await.unwrap();
    fs.power_loss(Crash::LoseUnsynced);
    let (_store, _queue, ids) = reopen(&fs).await;
    assert_eq!(ids, vec![1, 2, 3, 4, 7]);
}

/// A failed fsync is not a full disk: what reached the disk is unknown, so the store does not
/// reopen itself; it stays refused until the operator reopens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_does_not_heal_by_itself() {
    let fs = SimFs::new();
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    queue.add(msg(0)).await.unwrap();
    fs.control().fail_fsync_in(1);
    assert!(queue.add(msg(1)).await.is_err());
    let refusal = store.write_refusal().expect("refused");
    assert!(refusal.disk_full.is_none(), "{refusal:?}");
    assert!(!store.resume_writes().await.unwrap());
    assert_eq!(
        queue.add(msg(2)).await.unwrap_err().kind(),
        ErrorKind::Poisoned
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_index_cache_pages_a_deep_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = KahaDbConfig::new(dir.path());
    c.checkpoint_interval = Duration::ZERO;
    c.index_cache_size = 64;
    c.preallocate = false;
    let store = KahaDbStore::open(c.clone()).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..20_000u64 {
        queue
            .add(msg(n).with_priority((n % 3) as u8))
            .await
            .unwrap();
        if n % 5_000 == 4_999 {
            store.checkpoint(false).await.unwrap();
        }
    }
    store.checkpoint(false).await.unwrap();
    // Draining through the cursor touches far more index pages than the cache holds.
    let mut seen = 0u64;
    let mut last = None;
    loop {
        let batch = queue.recover_next(500).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            let key = (std::cmp::Reverse(m.priority), m.sequence);
            assert!(last.is_none_or(|l| l < key), "out of order at {}", m.id);
            last = Some(key);
        }
        seen += batch.len() as u64;
    }
    assert_eq!(seen, 20_000);
    assert!(
        store.stats().index_page_reads > 0,
        "the cache never evicted: the test proves nothing"
    );
    store.close().await.unwrap();
}

/// 1 KiB, so that 600 of them span several 64 KiB journal files.
fn big(n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        q(),
        Body::Bytes(vec![(n % 251) as u8; 1024].into()),
    )
}

/// A queue whose oldest journal file holds only `slow`: the next cleanup compacts it.
async fn one_slow_message(fs: &SimFs) -> KahaDbStore {
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    queue.add(big(1_000_000)).await.unwrap();
    for n in 0..600 {
        queue.add(big(n)).await.unwrap();
    }
    for n in 0..600 {
        queue.remove(&MessageId::new("p", n)).await.unwrap();
    }
    store
}

/// Regression: compaction pointed the index at the copies it was writing before they were
/// written, and left it there when the write failed (a full disk, found by
/// `crash-tests/tests/full_disk.rs`): reading the moved message then failed with "read past the
/// end of the file" although its original was intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_that_cannot_write_leaves_every_message_readable() {
    // A dry run counts the writes of the cleanup checkpoint; the last is the compaction's copy.
    let probe = SimFs::new();
    let store = one_slow_message(&probe).await;
    let before = probe.control().writes();
    store.checkpoint(true).await.unwrap();
    let writes = probe.control().writes() - before;
    assert!(
        store.stats().records_compacted >= 1,
        "nothing was compacted"
    );
    drop(store);

    let fs = SimFs::new();
    let store = one_slow_message(&fs).await;
    fs.control().fail_write_in(writes);
    assert!(
        store.checkpoint(true).await.is_err(),
        "the copy did not fail"
    );
    let queue = store.queue_store(&q()).await.unwrap();
    let slow = MessageId::new("p", 1_000_000);
    assert_eq!(queue.get(&slow).await.unwrap().body, big(1_000_000).body);
    let ids: Vec<MessageId> = queue
        .browse(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![slow.clone()]);
    // And after a reopen, the original is what the index finds.
    fs.control().clear_faults();
    drop(queue);
    drop(store);
    let store = KahaDbStore::open_with_fs(config(), Arc::new(fs.clone())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    assert_eq!(queue.get(&slow).await.unwrap().body, big(1_000_000).body);
    assert_eq!(queue.count().await.unwrap(), 1);
}
