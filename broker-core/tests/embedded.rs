//! broker-core on its own: a broker over a store handed to it (store-memory) and no lock, with
//! no engine crate in sight. The scenarios on every engine are in `engines/tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{
    AckMode, Broker, BrokerState, CoreConfig, Destination, NoLock, OpenedStore, Outgoing,
};
use store_memory::MemoryStore;

#[tokio::test]
async fn a_broker_over_a_given_store_serves_and_stops() {
    let b = Broker::new(
        CoreConfig::default(),
        Arc::new(NoLock),
        Arc::new(OpenedStore(Arc::new(MemoryStore::new()))),
    );
    b.start().await.unwrap();
    assert_eq!(b.state(), BrokerState::Serving);
    assert_eq!(b.store_kind().unwrap(), "memory");
    let conn = b.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(Destination::queue("q")).unwrap();
    p.send(Outgoing::text("hello")).await.unwrap();
    let c = s.consumer(Destination::queue("q"), None).await.unwrap();
    let m = c
        .receive_timeout(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(m.text(), Some("hello"));
    conn.close().await;
    b.stop().await;
    assert_eq!(b.state(), BrokerState::Stopped);
    assert!(b.history().contains(&BrokerState::Recovering));
}
