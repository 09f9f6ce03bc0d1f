//! The lifetime rules of temporary queues and topics in broker-core: owned by the connection
//! that made them, consumed only by it, sent to by anyone, never in the store, and gone with
//! their messages (and their memory) when deleted or when the owner closes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{
    AckMode, Broker, BrokerError, CoreConfig, Destination, DestinationKind, NoLock, OpenedStore,
    Outgoing,
};
use store_api::PersistenceAdapter;
use store_memory::MemoryStore;

async fn broker() -> (Broker, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let b = Broker::new(
        CoreConfig::default(),
        Arc::new(NoLock),
        Arc::new(OpenedStore(
            Arc::clone(&store) as Arc<dyn PersistenceAdapter>
        )),
    );
    b.start().await.unwrap();
    (b, store)
}

const WAIT: Duration = Duration::from_secs(10);

/// Waits (bounded) until the broker's message memory is back to `bytes`.
async fn memory_back_to(b: &Broker, bytes: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let used = b.memory_usage().unwrap().0;
        if used == bytes {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "memory still {used}, expected {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_queue_serves_its_owner_and_dies_with_it() {
    let (b, store) = broker().await;
    let owner = b.connect(None).await.unwrap();
    let other = b.connect(None).await.unwrap();
    let tmp = owner.create_temporary(DestinationKind::Queue).unwrap();
    assert!(
        tmp.name.starts_with(&format!("{}:", owner.id())),
        "named after its connection: {}",
        tmp.name
    );
    assert_eq!(
        b.temporary_destinations().unwrap(),
        vec![(tmp.clone(), owner.id().to_owned())]
    );

    // Another connection sends, persistent: the message is held in memory, never stored.
    let s = other.session(AckMode::Auto).unwrap();
    let p = s.temporary_producer(tmp.clone()).unwrap();
    p.send(Outgoing::text("reply").persistent(true))
        .await
        .unwrap();
    assert!(
        !store.destinations().await.unwrap().contains(&tmp),
        "a temporary queue never reaches the store"
    );
    assert!(b.memory_usage().unwrap().0 > 0, "counted against memory");
    let stats = b.destination_stats().await.unwrap();
    let row = stats.iter().find(|r| r.destination == tmp).expect("listed");
    assert_eq!(row.pending, 1);
    assert!(
        b.browse(&tmp.name, 10).await.is_err() && b.purge(&tmp.name).await.is_err(),
        "the admin calls for store-backed queues leave a temporary one alone"
    );
    assert!(!store.destinations().await.unwrap().contains(&tmp));

    // Only the owner may consume.
    let Err(refused) = s.consumer(tmp.clone(), None).await else {
        panic!("another connection consumed from a temporary queue");
    };
    assert!(
        matches!(&refused, BrokerError::InvalidDestination(m) if m.contains("Cannot subscribe to remote temporary destination")),
        "{refused}"
    );
    let mine = owner.session(AckMode::Auto).unwrap();
    let c = mine.consumer(tmp.clone(), None).await.unwrap();
    let m = c.receive_timeout(WAIT).await.unwrap().expect("the reply");
    assert_eq!(m.text(), Some("reply"));
    assert!(m.message().persistent, "the delivery mode is kept");
    memory_back_to(&b, 0).await;

    // Two messages left waiting go with the owner, memory and all.
    p.send(Outgoing::text("a")).await.unwrap();
    p.send(Outgoing::text("b").persistent(false)).await.unwrap();
    c.close().await;
    assert!(b.memory_usage().unwrap().0 > 0);
    owner.close().await;
    memory_back_to(&b, 0).await;
    assert!(b.temporary_destinations().unwrap().is_empty());
    assert!(
        !b.destination_stats()
            .await
            .unwrap()
            .iter()
            .any(|r| r.destination == tmp),
        "gone from the console's list"
    );
    let err = p.send(Outgoing::text("late")).await.unwrap_err();
    assert!(
        matches!(&err, BrokerError::InvalidDestination(m) if m.contains(&*tmp.name)),
        "the error names it: {err}"
    );
    assert!(s.temporary_producer(tmp.clone()).is_err());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_for_the_owner_and_waits_for_no_consumer() {
    let (b, _store) = broker().await;
    let (mut events, live) = b.watch_temporaries().unwrap();
    assert!(live.is_empty());
    let owner = b.connect(None).await.unwrap();
    let other = b.connect(None).await.unwrap();
    let tmp = Destination::queue(format!("{}:7", owner.id()));
    owner.add_temporary(&tmp).unwrap();
    owner.add_temporary(&tmp).unwrap(); // again: a no-op
    assert!(
        other.add_temporary(&tmp).is_err(),
        "another connection's name"
    );
    assert!(other.delete_temporary(&tmp).is_err(), "not the owner");
    let created = events.recv().await.unwrap();
    assert!(created.created && created.destination == tmp && created.owner == owner.id());

    let s = owner.session(AckMode::Auto).unwrap();
    let c = s.temporary_consumer(tmp.clone(), None, None).await.unwrap();
    let Err(busy) = owner.delete_temporary(&tmp) else {
        panic!("deleted with a consumer");
    };
    assert!(busy.to_string().contains("active subscription"), "{busy}");
    c.close().await;
    owner.delete_temporary(&tmp).unwrap();
    let deleted = events.recv().await.unwrap();
    assert!(!deleted.created && deleted.destination == tmp);
    assert!(
        s.temporary_consumer(tmp.clone(), None, None).await.is_err(),
        "deleted"
    );
    assert!(owner.delete_temporary(&tmp).is_err(), "deleted already");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_topic_gives_each_subscriber_a_copy() {
    let (b, store) = broker().await;
    let owner = b.connect(None).await.unwrap();
    let other = b.connect(None).await.unwrap();
    let tmp = owner.create_temporary(DestinationKind::Topic).unwrap();
    let s = owner.session(AckMode::Auto).unwrap();
    let c1 = s.consumer(tmp.clone(), None).await.unwrap();
    let c2 = s.consumer(tmp.clone(), Some("n > 1")).await.unwrap();
    let os = other.session(AckMode::Auto).unwrap();
    assert!(os.consumer(tmp.clone(), None).await.is_err());
    assert!(
        os.durable_subscriber(tmp.clone(), "d", None).await.is_err(),
        "no durable subscription on a temporary topic"
    );
    let p = os.temporary_producer(tmp.clone()).unwrap();
    for n in 1..=2 {
        p.send(Outgoing::text(format!("t{n}")).property("n", store_api::Value::I32(n)))
            .await
            .unwrap();
    }
    for want in ["t1", "t2"] {
        let m = c1.receive_timeout(WAIT).await.unwrap().expect("c1");
        assert_eq!(m.text(), Some(want));
    }
    let m = c2.receive_timeout(WAIT).await.unwrap().expect("c2");
    assert_eq!(m.text(), Some("t2"));
    assert!(!store.destinations().await.unwrap().contains(&tmp));
    owner.close().await;
    assert!(p.send(Outgoing::text("late")).await.is_err());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transacted_send_to_a_temporary_queue_arrives_at_commit_unstored() {
    let (b, store) = broker().await;
    let owner = b.connect(None).await.unwrap();
    let tmp = owner.create_temporary(DestinationKind::Queue).unwrap();
    let other = b.connect(None).await.unwrap();
    let tx = other.session(AckMode::Transacted).unwrap();
    let p = tx.temporary_producer(tmp.clone()).unwrap();
    p.send(Outgoing::text("in tx").persistent(true))
        .await
        .unwrap();
    let c = owner
        .session(AckMode::Auto)
        .unwrap()
        .consumer(tmp.clone(), None)
        .await
        .unwrap();
    assert!(
        c.receive_timeout(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none(),
        "nothing before the commit"
    );
    tx.commit().await.unwrap();
    let m = c
        .receive_timeout(WAIT)
        .await
        .unwrap()
        .expect("after commit");
    assert_eq!(m.text(), Some("in tx"));
    assert!(!store.destinations().await.unwrap().contains(&tmp));
    b.stop().await;
}
