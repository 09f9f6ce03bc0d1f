//! A network bridge's consumer is recognisable in its advisories (`networkSubscription`,
//! `brokerPath`), so that other brokers' bridges do not count it as demand in a loop; an
//! ordinary consumer's advisories carry neither.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{AckMode, Broker, CoreConfig, Destination, NoLock, OpenedStore, Value};
use store_api::PersistenceAdapter;
use store_memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_consumer_advises_its_broker_path() {
    let store = Arc::new(MemoryStore::new());
    let b = Broker::new(
        CoreConfig::default(),
        Arc::new(NoLock),
        Arc::new(OpenedStore(store as Arc<dyn PersistenceAdapter>)),
    );
    b.start().await.unwrap();
    let watcher = b.connect(None).await.unwrap();
    let ws = watcher.session(AckMode::Auto).unwrap();
    let advisories = ws
        .consumer(
            Destination::topic("ActiveMQ.Advisory.Consumer.Queue.q"),
            None,
        )
        .await
        .unwrap();
    let c = b.connect(None).await.unwrap();

    let plain = c.session(AckMode::Individual).unwrap();
    let _p = plain.consumer(Destination::queue("q"), None).await.unwrap();
    let bridge = c.session(AckMode::Individual).unwrap();
    bridge.set_network_path(vec!["ID:b".into(), "ID:c".into()]);
    let _n = bridge
        .consumer(Destination::queue("q"), None)
        .await
        .unwrap();

    let first = tokio::time::timeout(Duration::from_secs(10), advisories.receive())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        !first
            .message()
            .properties
            .contains_key("networkSubscription")
    );
    assert!(!first.message().properties.contains_key("brokerPath"));
    let second = tokio::time::timeout(Duration::from_secs(10), advisories.receive())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let p = &second.message().properties;
    assert_eq!(p.get("networkSubscription"), Some(&Value::Bool(true)));
    assert_eq!(
        p.get("brokerPath"),
        Some(&Value::String("ID:b,ID:c".into()))
    );
    b.stop().await;
}
