//! What the journaled engine adds to the contract: adds acked within one checkpoint cycle never
//! reach the database; a power loss between journal write and checkpoint loses nothing that was
//! acknowledged; checkpoints trim the journal; a database locker is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, StoreError, SubscriptionInfo,
    SubscriptionKey, TransactionId, TxOp,
};
use store_journal::fs::{Crash, SimFs};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use test_support::JournaledFactory;

fn msg(d: &Destination, n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        d.clone(),
        Body::Text(format!("message {n}")),
    )
}

/// Checkpoints only when asked.
fn manual(f: &JournaledFactory) -> JournaledJdbcConfig {
    let mut c = f.config();
    c.checkpoint_interval = Duration::from_secs(3600);
    c.checkpoint_journal_bytes = u64::MAX;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_acked_within_a_cycle_write_no_rows() {
    let f = JournaledFactory::sqlite();
    let store = JournaledJdbcStore::open(manual(&f)).await.unwrap();
    let q = Destination::queue("orders");
    let t = Destination::topic("prices");
    let queue = store.queue_store(&q).await.unwrap();
    let topic = store.topic_store(&t).await.unwrap();
    let sub = SubscriptionKey::new("client", "sub");
    topic
        .add_subscription(SubscriptionInfo::new(sub.clone(), None), false)
        .await
        .unwrap();
    let before = store.jdbc().journaled().checkpoint_message_statements();
    for n in 0..100 {
        queue.add(msg(&q, n)).await.unwrap();
        topic.add(msg(&t, n)).await.unwrap();
    }
    for n in 0..100 {
        queue.remove(&MessageId::new("p", n)).await.unwrap();
        topic
            .acknowledge(&sub, &MessageId::new("p", n))
            .await
            .unwrap();
    }
    store.checkpoint(false).await.unwrap();
    assert_eq!(
        store.jdbc().journaled().checkpoint_message_statements() - before,
        0,
        "200 adds and their 200 acks in one cycle ran statements on message rows"
    );
    let db = store.jdbc();
    assert_eq!(db.queue_store(&q).await.unwrap().count().await.unwrap(), 0);
    assert_eq!(db.topic_store(&t).await.unwrap().count().await.unwrap(), 0);

    // The control: adds not acked in the cycle are written (in multi-row inserts: 100 message
    // rows in chunks of 64, then the 50 pending rows of the subscription).
    let before = store.jdbc().journaled().checkpoint_message_statements();
    for n in 100..150 {
        queue.add(msg(&q, n)).await.unwrap();
        topic.add(msg(&t, n)).await.unwrap();
    }
    store.checkpoint(false).await.unwrap();
    assert_eq!(
        store.jdbc().journaled().checkpoint_message_statements() - before,
        3
    );
    assert_eq!(db.queue_store(&q).await.unwrap().count().await.unwrap(), 50);
    assert_eq!(
        db.topic_store(&t)
            .await
            .unwrap()
            .pending_count(&sub)
            .await
            .unwrap(),
        50
    );
    store.close().await.unwrap();
}

/// The acknowledged workload: 40 queue adds with 15 acked, a committed transaction of 3 adds
/// and 1 ack, a rolled-back one, 10 topic messages with 4 acked.
async fn workload(store: &JournaledJdbcStore) {
    let q = Destination::queue("orders");
    let t = Destination::topic("prices");
    let queue = store.queue_store(&q).await.unwrap();
    let topic = store.topic_store(&t).await.unwrap();
    let sub = SubscriptionKey::new("client", "sub");
    topic
        .add_subscription(SubscriptionInfo::new(sub.clone(), None), false)
        .await
        .unwrap();
    // The subscription went to the database: everything below lives only in the journal.
    for n in 0..40 {
        queue.add(msg(&q, n)).await.unwrap();
    }
    for n in 0..15 {
        queue.remove(&MessageId::new("p", n)).await.unwrap();
    }
    let tx = TransactionId::Local(1);
    store.begin(&tx).await.unwrap();
    for n in 100..103 {
        store.enlist(&tx, TxOp::Add(msg(&q, n))).await.unwrap();
    }
    store
        .enlist(
            &tx,
            TxOp::QueueAck {
                destination: q.clone(),
                id: MessageId::new("p", 20),
            },
        )
        .await
        .unwrap();
    store.commit(&tx).await.unwrap();
    let rolled = TransactionId::Local(2);
    store.begin(&rolled).await.unwrap();
    store
        .enlist(&rolled, TxOp::Add(msg(&q, 200)))
        .await
        .unwrap();
    store.rollback(&rolled).await.unwrap();
    for n in 0..10 {
        topic.add(msg(&t, n)).await.unwrap();
    }
    for n in 0..4 {
        topic
            .acknowledge(&sub, &MessageId::new("p", n))
            .await
            .unwrap();
    }
}

async fn check(store: &JournaledJdbcStore) {
    let q = Destination::queue("orders");
    let t = Destination::topic("prices");
    let queue = store.queue_store(&q).await.unwrap();
    let mut ids: Vec<u64> = Vec::new();
    loop {
        let batch = queue.recover_next(7).await.unwrap();
        if batch.is_empty() {
            break;
        }
        ids.extend(batch.iter().map(|m| m.id.producer_seq));
    }
    let expected: Vec<u64> = (15..40).filter(|n| *n != 20).chain(100..103).collect();
    assert_eq!(ids, expected);
    assert_eq!(queue.count().await.unwrap(), expected.len() as u64);
    let topic = store.topic_store(&t).await.unwrap();
    let sub = SubscriptionKey::new("client", "sub");
    let pending: Vec<u64> = topic
        .browse_subscription(&sub, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.producer_seq)
        .collect();
    assert_eq!(pending, (4..10).collect::<Vec<_>>());
    assert_eq!(topic.count().await.unwrap(), 6);
}

/// Drops the store and waits until it is gone all the way (its checkpoint worker may be in the
/// middle of a checkpoint), so nothing of it writes after the simulated power loss.
async fn dropped(store: JournaledJdbcStore) {
    let probe = store.drop_probe();
    drop(store);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !probe.gone() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped store never went"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn power_loss(crash: Crash) {
    let f = JournaledFactory::sqlite();
    let fs = SimFs::new();
    let store = JournaledJdbcStore::open_with_fs(manual(&f), Arc::new(fs.clone()))
        .await
        .unwrap();
    workload(&store).await;
    assert_eq!(store.checkpoints(), 1, "only the checkpoint at open ran");
    // The power goes: the store is dropped without closing (no checkpoint), the journal keeps
    // what was synced.
    dropped(store).await;
    fs.power_loss(crash);
    let store = JournaledJdbcStore::open_with_fs(manual(&f), Arc::new(fs.clone()))
        .await
        .unwrap();
    check(&store).await;
    // Recovery checkpointed the replay into the database; a second crash replays nothing
    // twice.
    dropped(store).await;
    fs.power_loss(crash);
    let store = JournaledJdbcStore::open_with_fs(manual(&f), Arc::new(fs.clone()))
        .await
        .unwrap();
    check(&store).await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_before_a_checkpoint_loses_nothing_acknowledged() {
    power_loss(Crash::LoseUnsynced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_with_a_torn_write_loses_nothing_acknowledged() {
    power_loss(Crash::TearLastWrite(7)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_trim_the_journal() {
    let f = JournaledFactory::sqlite();
    let mut config = manual(&f);
    config.max_file_length = 64 * 1024;
    let store = JournaledJdbcStore::open(config).await.unwrap();
    let q = Destination::queue("big");
    let queue = store.queue_store(&q).await.unwrap();
    for n in 0..300 {
        let m = Message::new(
            MessageId::new("p", n),
            q.clone(),
            Body::Bytes(vec![7u8; 1024].into()),
        );
        queue.add(m).await.unwrap();
    }
    let files = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("journal-"))
            })
            .count()
    };
    let journal = f.dir.path().join("journal");
    assert!(files(&journal) > 3, "300 KiB over 64 KiB files");
    store.checkpoint(false).await.unwrap();
    assert_eq!(
        files(&journal),
        1,
        "only the file being appended to is left"
    );
    assert_eq!(queue.count().await.unwrap(), 300);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locker_is_refused() {
    let f = JournaledFactory::sqlite();
    let mut config = f.config();
    config.jdbc.fence = Some(store_jdbc::Fence::new());
    let err = JournaledJdbcStore::open(config).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("locker"), "{err}");
}

/// The filter of database ids lets most adds skip the duplicate lookup; a duplicate of an id
/// the database holds (checkpointed in this run, or found there at open) is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_of_checkpointed_ids_are_refused() {
    let f = JournaledFactory::sqlite();
    let q = Destination::queue("orders");
    let store = JournaledJdbcStore::open(manual(&f)).await.unwrap();
    let queue = store.queue_store(&q).await.unwrap();
    for n in 0..100 {
        queue.add(msg(&q, n)).await.unwrap();
    }
    store.checkpoint(false).await.unwrap();
    for n in [0, 57, 99] {
        let err = queue.add(msg(&q, n)).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate(_)), "{err}");
    }
    store.close().await.unwrap();
    let store = JournaledJdbcStore::open(manual(&f)).await.unwrap();
    let queue = store.queue_store(&q).await.unwrap();
    for n in [3, 42] {
        let err = queue.add(msg(&q, n)).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate(_)), "{err}");
    }
    queue.add(msg(&q, 100)).await.unwrap();
    assert_eq!(queue.count().await.unwrap(), 101);
    store.close().await.unwrap();
}
