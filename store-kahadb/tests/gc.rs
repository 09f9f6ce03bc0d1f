//! Journal GC and index rebuilds on real files: consumed messages let their journal files go,
//! one slow consumer's old message does not pin the rest of the journal, and deleting (or
//! corrupting) the index rebuilds exactly the same contents from the journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
    TransactionId, TxOp, Xid,
};
use store_kahadb::{KahaDbConfig, KahaDbStore};

fn config(dir: &Path) -> KahaDbConfig {
    let mut c = KahaDbConfig::new(dir);
    c.journal_max_file_length = 64 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    c
}

fn open(dir: &Path) -> KahaDbStore {
    KahaDbStore::open(config(dir)).unwrap()
}

fn q() -> Destination {
    Destination::queue("work")
}

fn msg(d: &Destination, producer: &str, n: u64) -> Message {
    Message::new(
        MessageId::new(producer, n),
        d.clone(),
        Body::Bytes(vec![b'x'; 1024].into()),
    )
}

/// Everything observable, in a comparable form.
async fn observe(store: &KahaDbStore) -> Vec<String> {
    let mut out = vec![];
    for d in store.destinations().await.unwrap() {
        if d.is_queue() {
            let qs = store.queue_store(&d).await.unwrap();
            let all = qs.browse(None, usize::MAX).await.unwrap();
            out.push(format!(
                "{d} count={} bytes={}",
                qs.count().await.unwrap(),
                qs.bytes().await.unwrap()
            ));
            out.extend(
                all.iter()
                    .map(|m| format!("  {} seq={} prio={}", m.id, m.sequence, m.priority)),
            );
        } else {
            let ts = store.topic_store(&d).await.unwrap();
            out.push(format!(
                "{d} count={} bytes={}",
                ts.count().await.unwrap(),
                ts.bytes().await.unwrap()
            ));
            for s in ts.subscriptions().await.unwrap() {
                let pending = ts
                    .browse_subscription(&s.key, None, usize::MAX)
                    .await
                    .unwrap();
                let ids: Vec<String> = pending.iter().map(|m| m.id.to_string()).collect();
                out.push(format!("  {} {:?} {ids:?}", s.key, s.selector));
            }
        }
    }
    for p in store.prepared_transactions().await.unwrap() {
        out.push(format!("prepared {:?} ops={}", p.xid, p.ops.len()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_messages_let_their_journal_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let queue = store.queue_store(&q()).await.unwrap();
    for n in 0..600 {
        queue.add(msg(&q(), "p", n)).await.unwrap();
    }
    let before = store.journal_files().len();
    assert!(
        before >= 8,
        "600 KiB of messages over 64 KiB files: {before} files"
    );
    for n in 0..600 {
        queue.remove(&MessageId::new("p", n)).await.unwrap();
    }
    // The first cleanup deletes what nothing needs and moves the queue's creation record (the
    // last thing in file 1) forward; the second deletes file 1 and what the ack rule kept.
    store.checkpoint(true).await.unwrap();
    store.checkpoint(true).await.unwrap();
    let after = store.journal_files().len();
    assert!(
        after <= 2,
        "{after} journal files left of {before} after everything was consumed"
    );
    assert!(store.stats().files_deleted >= (before - 2) as u64);
    store.close().await.unwrap();
    let store = open(dir.path());
    assert_eq!(
        store
            .queue_store(&q())
            .await
            .unwrap()
            .count()
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_message_does_not_pin_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let queue = store.queue_store(&q()).await.unwrap();
    queue.add(msg(&q(), "slow", 1)).await.unwrap();
    for n in 0..600 {
        queue.add(msg(&q(), "fast", n)).await.unwrap();
    }
    for n in 0..600 {
        queue.remove(&MessageId::new("fast", n)).await.unwrap();
    }
    let before = store.journal_files().len();
    // The first cleanup finds file 1 kept alive only by the slow message and copies it
    // forward; the next one deletes file 1 and every file the ack rule kept for it.
    store.checkpoint(true).await.unwrap();
    store.checkpoint(true).await.unwrap();
    let after = store.journal_files();
    assert!(
        after.len() <= 3,
        "{after:?} left of {before} files: the slow message pins the journal"
    );
    assert!(
        !after.contains(&1),
        "file 1 was not compacted away: {after:?}"
    );
    assert!(store.stats().records_compacted >= 1);
    let slow = queue.get(&MessageId::new("slow", 1)).await.unwrap();
    assert_eq!(slow.body, Body::Bytes(vec![b'x'; 1024].into()));
    let expected = observe(&store).await;
    store.close().await.unwrap();

    let store = open(dir.path());
    assert_eq!(observe(&store).await, expected, "after reopen");
    store.close().await.unwrap();
    // Rebuilding from what is left of the journal neither loses the slow message nor brings
    // back a consumed one (the acks that would be missing went with the files they acked).
    std::fs::remove_file(dir.path().join("db.data")).unwrap();
    std::fs::remove_file(dir.path().join("db.redo")).unwrap();
    let store = open(dir.path());
    assert_eq!(
        observe(&store).await,
        expected,
        "after rebuilding the index"
    );
}

async fn mixed_workload(store: &KahaDbStore) {
    let t = Destination::topic("events");
    let topic = store.topic_store(&t).await.unwrap();
    let queue = store.queue_store(&q()).await.unwrap();
    topic
        .add_subscription(
            SubscriptionInfo::new(SubscriptionKey::new("c", "early"), Some("x > 1".into())),
            false,
        )
        .await
        .unwrap();
    for round in 0..4u64 {
        for n in 0..80 {
            let id = round * 1000 + n;
            queue
                .add(msg(&q(), "p", id).with_priority((n % 10) as u8))
                .await
                .unwrap();
            topic.add(msg(&t, "t", id)).await.unwrap();
        }
        if round == 1 {
            topic
                .add_subscription(
                    SubscriptionInfo::new(SubscriptionKey::new("c", "retro"), None),
                    true,
                )
                .await
                .unwrap();
        }
        for n in (0..80).step_by(3) {
            queue
                .remove(&MessageId::new("p", round * 1000 + n))
                .await
                .unwrap();
            topic
                .acknowledge(
                    &SubscriptionKey::new("c", "early"),
                    &MessageId::new("t", round * 1000 + n),
                )
                .await
                .unwrap();
        }
        store.checkpoint(round % 2 == 1).await.unwrap();
    }
    let tx = TransactionId::Local(1);
    store.begin(&tx).await.unwrap();
    store
        .enlist(&tx, TxOp::Add(msg(&q(), "tx", 1)))
        .await
        .unwrap();
    store
        .enlist(
            &tx,
            TxOp::QueueAck {
                destination: q(),
                id: MessageId::new("p", 1),
            },
        )
        .await
        .unwrap();
    store.commit(&tx).await.unwrap();
    let xid = Xid {
        format_id: 9,
        global_id: vec![1, 2],
        branch_qualifier: vec![3],
    };
    let xa = TransactionId::Xa(xid.clone());
    store.begin(&xa).await.unwrap();
    store
        .enlist(&xa, TxOp::Add(msg(&q(), "xa", 1)))
        .await
        .unwrap();
    store.prepare(&xid).await.unwrap();
    store
        .queue_store(&Destination::queue("empty"))
        .await
        .unwrap();
    topic
        .delete_subscription(&SubscriptionKey::new("c", "early"))
        .await
        .unwrap();
    store.checkpoint(true).await.unwrap();
    for n in 0..5 {
        queue.add(msg(&q(), "late", n)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_index_rebuilds_the_same_contents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    mixed_workload(&store).await;
    let expected = observe(&store).await;
    assert!(
        expected.len() > 200,
        "the workload left too little to compare"
    );
    store.close().await.unwrap();
    std::fs::remove_file(dir.path().join("db.data")).unwrap();
    std::fs::remove_file(dir.path().join("db.redo")).unwrap();
    let store = open(dir.path());
    assert_eq!(observe(&store).await, expected);
    // And the rebuilt store goes on: its sequences continue above the old ones.
    let seq = store
        .queue_store(&q())
        .await
        .unwrap()
        .add(msg(&q(), "after", 1))
        .await
        .unwrap();
    let max = store
        .queue_store(&q())
        .await
        .unwrap()
        .browse(None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.sequence)
        .filter(|s| *s != seq)
        .max()
        .unwrap();
    assert!(seq > max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_index_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    mixed_workload(&store).await;
    let expected = observe(&store).await;
    store.close().await.unwrap();
    // Damage the metadata page and remove the redo that could repair it.
    let data = dir.path().join("db.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    std::fs::remove_file(dir.path().join("db.redo")).unwrap();
    let store = open(dir.path());
    assert_eq!(observe(&store).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_tree_page_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    mixed_workload(&store).await;
    let expected = observe(&store).await;
    store.close().await.unwrap();
    let data = dir.path().join("db.data");
    let mut bytes = std::fs::read(&data).unwrap();
    let pages = bytes.len() / 4096;
    // Flip one byte in every page after the metadata page: whichever the open touches first
    // is found corrupt by its checksum.
    for p in 1..pages {
        bytes[p * 4096 + 200] ^= 0x5a;
    }
    std::fs::write(&data, bytes).unwrap();
    std::fs::remove_file(dir.path().join("db.redo")).unwrap();
    let store = open(dir.path());
    assert_eq!(observe(&store).await, expected);
}
