//! The AMQ store's own guarantees: recovery replays only what came after the last snapshot,
//! a deleted or damaged snapshot falls back to a full replay with the same contents, a torn
//! control slot falls back to the other, and consumed logs are deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use store_amq::{AmqConfig, AmqStore};
use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
};

fn config(dir: &Path) -> AmqConfig {
    let mut c = AmqConfig::new(dir);
    c.max_file_length = 64 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    c
}

fn q() -> Destination {
    Destination::queue("orders")
}

fn t() -> Destination {
    Destination::topic("prices")
}

fn msg(d: &Destination, n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        d.clone(),
        Body::Bytes(vec![7u8; 512].into()),
    )
}

async fn workload(store: &AmqStore, from: u64, to: u64) {
    let queue = store.queue_store(&q()).await.unwrap();
    let topic = store.topic_store(&t()).await.unwrap();
    let key = SubscriptionKey::new("c", "s");
    if topic.lookup_subscription(&key).await.unwrap().is_none() {
        topic
            .add_subscription(SubscriptionInfo::new(key.clone(), None), false)
            .await
            .unwrap();
    }
    for n in from..to {
        queue.add(msg(&q(), n)).await.unwrap();
        topic.add(msg(&t(), n)).await.unwrap();
        if n % 3 == 0 {
            queue.remove(&MessageId::new("p", n)).await.unwrap();
            topic
                .acknowledge(&key, &MessageId::new("p", n))
                .await
                .unwrap();
        }
    }
}

async fn observe(store: &AmqStore) -> (Vec<u64>, Vec<u64>, u64, u64) {
    let queue = store.queue_store(&q()).await.unwrap();
    let topic = store.topic_store(&t()).await.unwrap();
    let key = SubscriptionKey::new("c", "s");
    let qs = queue
        .browse(None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    let ts = topic
        .browse_subscription(&key, None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    (
        qs,
        ts,
        queue.bytes().await.unwrap(),
        topic.bytes().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_replays_only_what_came_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = AmqStore::open(config(dir.path())).unwrap();
    workload(&store, 0, 300).await;
    store.checkpoint(false).await.unwrap();
    workload(&store, 300, 310).await;
    let expected = observe(&store).await;
    // An unclean stop: no closing checkpoint.
    drop(store);
    let store = AmqStore::open(config(dir.path())).unwrap();
    assert_eq!(observe(&store).await, expected);
    let replayed = store.stats().records_replayed_at_open;
    assert!(
        (10..=40).contains(&replayed),
        "replayed {replayed} records; the 10 steps after the snapshot make about 27"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_snapshot_means_a_full_replay_with_the_same_contents() {
    let dir = tempfile::tempdir().unwrap();
    let store = AmqStore::open(config(dir.path())).unwrap();
    workload(&store, 0, 200).await;
    store.checkpoint(true).await.unwrap();
    workload(&store, 200, 260).await;
    let expected = observe(&store).await;
    store.close().await.unwrap();
    for entry in std::fs::read_dir(dir.path().join("kr-store")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let store = AmqStore::open(config(dir.path())).unwrap();
    assert_eq!(observe(&store).await, expected);
    assert!(
        store.stats().records_replayed_at_open > 400,
        "a full replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_control_slot_falls_back_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = AmqStore::open(config(dir.path())).unwrap();
    workload(&store, 0, 100).await;
    store.close().await.unwrap();
    let expected = {
        let store = AmqStore::open(config(dir.path())).unwrap();
        let o = observe(&store).await;
        store.close().await.unwrap();
        o
    };
    let control = dir.path().join("journal").join("data-control");
    let mut bytes = std::fs::read(&control).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&control, bytes).unwrap();
    let store = AmqStore::open(config(dir.path())).unwrap();
    assert_eq!(observe(&store).await, expected);
    assert!(
        store.stats().records_replayed_at_open < 20,
        "slot B named the snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_logs_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = AmqStore::open(config(dir.path())).unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..400 {
        queue.add(msg(&q(), n)).await.unwrap();
    }
    let before = store.journal_files().len();
    for n in 0..400 {
        queue.remove(&MessageId::new("p", n)).await.unwrap();
    }
    store.checkpoint(true).await.unwrap();
    store.checkpoint(true).await.unwrap();
    let after = store.journal_files().len();
    assert!(
        before >= 3 && after <= 2,
        "{before} logs before, {after} after"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("data-")), "{names:?}");
}
