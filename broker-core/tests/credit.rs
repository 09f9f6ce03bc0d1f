//! Prefetch 0 is credit: a consumer opened with it is handed only what its protocol door
//! grants, and a pull that times out takes its credit back, so no message ever waits for a
//! consumer that has no room while another consumer could take it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{AckMode, Broker, CoreConfig, Destination, NoLock, OpenedStore, Outgoing};
use store_api::PersistenceAdapter;
use store_memory::MemoryStore;

async fn broker() -> Broker {
    let store = Arc::new(MemoryStore::new());
    let b = Broker::new(
        CoreConfig::default(),
        Arc::new(NoLock),
        Arc::new(OpenedStore(store as Arc<dyn PersistenceAdapter>)),
    );
    b.start().await.unwrap();
    b
}

const WAIT: Duration = Duration::from_secs(10);

fn text(r: &broker_core::Received) -> String {
    match &r.message().body {
        store_api::Body::Text(t) => t.clone(),
        other => panic!("not a text message: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_credit_is_handed_nothing_and_hides_nothing() {
    let b = broker().await;
    let c = b.connect(None).await.unwrap();
    let s = c.session(AckMode::Individual).unwrap();
    let q = Destination::queue("credit.q");
    let credited = s.consumer_with_prefetch(q.clone(), None, 0).await.unwrap();
    let p = s.producer(q.clone()).unwrap();
    for m in ["m1", "m2", "m3"] {
        p.send(Outgoing::text(m)).await.unwrap();
    }
    // No credit: nothing is handed over, and nothing is reserved for it.
    assert!(
        credited
            .receive_timeout(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
    credited.grant(1);
    let first = credited.receive_timeout(WAIT).await.unwrap().expect("one");
    assert_eq!(text(&first), "m1");
    // Its one credit is spent: another consumer gets m2 and m3 at once, none is held back.
    let other = s.consumer_with_prefetch(q.clone(), None, 10).await.unwrap();
    let a = other.receive_timeout(WAIT).await.unwrap().expect("m2");
    let b2 = other.receive_timeout(WAIT).await.unwrap().expect("m3");
    assert_eq!((text(&a), text(&b2)), ("m2".into(), "m3".into()));
    assert!(
        credited
            .receive_timeout(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_times_out_takes_its_credit_back() {
    let b = broker().await;
    let c = b.connect(None).await.unwrap();
    let s = c.session(AckMode::Individual).unwrap();
    let q = Destination::queue("credit.pull");
    let puller = s.consumer_with_prefetch(q.clone(), None, 0).await.unwrap();
    // Nothing there: the pull ends empty, and its credit is gone with it.
    assert!(
        puller
            .pull(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none()
    );
    let p = s.producer(q.clone()).unwrap();
    p.send(Outgoing::text("later")).await.unwrap();
    // So the message sent afterwards goes to the next consumer, not to the idle puller.
    let other = s.consumer_with_prefetch(q.clone(), None, 1).await.unwrap();
    let m = other.receive_timeout(WAIT).await.unwrap().expect("later");
    assert_eq!(text(&m), "later");
    // And a pull with a message waiting gets it.
    p.send(Outgoing::text("pulled")).await.unwrap();
    other.close().await;
    let m = puller.pull(WAIT).await.unwrap().expect("pulled");
    assert_eq!(text(&m), "pulled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_consumer_spends_one_credit_across_all_its_queues() {
    let b = broker().await;
    let c = b.connect(None).await.unwrap();
    let s = c.session(AckMode::Individual).unwrap();
    for name in ["fan.a", "fan.b", "fan.c"] {
        s.producer(Destination::queue(name))
            .unwrap()
            .send(Outgoing::text(name))
            .await
            .unwrap();
    }
    let wild = s
        .consumer_with_prefetch(Destination::queue("fan.>"), None, 0)
        .await
        .unwrap();
    wild.grant(2);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(text(
            &wild.receive_timeout(WAIT).await.unwrap().expect("one"),
        ));
    }
    // Two credits, two messages, though three queues had one each.
    assert!(
        wild.receive_timeout(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none(),
        "a third message with two credits (got {got:?})"
    );
    wild.grant(1);
    got.push(text(
        &wild.receive_timeout(WAIT).await.unwrap().expect("third"),
    ));
    got.sort();
    assert_eq!(got, vec!["fan.a", "fan.b", "fan.c"]);
}
