//! A non-durable topic subscriber that does not keep up: what the broker drops for it (the
//! oldest of the lowest priority first, counted per topic), and that what it holds for it
//! counts against the memory limit whether the messages are persistent or not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{
    AckMode, Broker, BrokerError, CoreConfig, Destination, NoLock, OpenedStore, Outgoing,
};
use store_memory::MemoryStore;

async fn broker(config: CoreConfig) -> Broker {
    let b = Broker::new(
        config,
        Arc::new(NoLock),
        Arc::new(OpenedStore(Arc::new(MemoryStore::new()))),
    );
    b.start().await.unwrap();
    b
}

async fn dropped_for(b: &Broker, topic: &str) -> u64 {
    b.destination_stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| *s.destination.name == *topic && s.subscription.is_none())
        .map_or(0, |s| s.slow_consumer_dropped)
}

/// Three high-priority messages and then twenty low-priority ones reach a subscriber that
/// reads none of them while they arrive, with room for one in its prefetch and three waiting.
/// The high-priority ones are never the ones dropped, and of the low-priority ones the newest
/// is kept: whatever the timing of the dispatcher, only the oldest of the lowest priority go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_loses_the_oldest_of_its_lowest_priority_messages() {
    let mut config = CoreConfig::default();
    config.limits.max_pending_non_durable = 3;
    let b = broker(config).await;
    for persistent in [false, true] {
        let topic = format!("prices-{persistent}");
        let conn = b.connect(None).await.unwrap();
        let s = conn.session(AckMode::Auto).unwrap();
        let c = s
            .consumer_with_prefetch(Destination::topic(topic.as_str()), None, 1)
            .await
            .unwrap();
        let p = s.producer(Destination::topic(topic.as_str())).unwrap();
        let mut sent = Vec::new();
        for i in 1..=3 {
            sent.push((9, format!("H{i}")));
        }
        for i in 1..=20 {
            sent.push((0, format!("L{i}")));
        }
        for (priority, text) in &sent {
            p.send(
                Outgoing::text(text.as_str())
                    .priority(*priority)
                    .persistent(persistent),
            )
            .await
            .unwrap();
        }
        let dropped = dropped_for(&b, &topic).await;
        assert!(
            (19..=20).contains(&dropped),
            "one in the prefetch at most and three waiting: {dropped}"
        );
        let mut received = Vec::new();
        for _ in 0..(sent.len() as u64 - dropped) {
            let m = c
                .receive_timeout(Duration::from_secs(10))
                .await
                .unwrap()
                .expect("every message not dropped arrives");
            received.push(m.text().unwrap().to_owned());
        }
        let mut expected = vec!["H1", "H2", "H3"];
        if dropped == 19 {
            // The dispatcher ran before the last send: the newest low one is kept.
            expected.push("L20");
        }
        assert_eq!(received, expected, "persistent: {persistent}");
        conn.close().await;
        assert_eq!(
            dropped_for(&b, &topic).await,
            dropped,
            "the count outlives the subscriber"
        );
    }
    b.stop().await;
}

/// What a non-durable subscriber holds counts against `memory_bytes` for persistent messages
/// too (they are not stored for it): with the memory full, no temp store to spool to and
/// `send_fail_if_no_space`, a persistent publish to a topic with a stalled subscriber fails
/// instead of growing memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_topic_messages_held_for_a_subscriber_count_against_memory() {
    let mut config = CoreConfig::default();
    config.limits.memory_bytes = 64 * 1024;
    // Without a temp store: with one, the copies would spool there (engines' `limits` tests).
    config.limits.temp_bytes = 0;
    config.policy.send_fail_if_no_space = true;
    let b = broker(config).await;
    let conn = b.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let _stalled = s
        .consumer_with_prefetch(Destination::topic("big"), None, 1)
        .await
        .unwrap();
    let p = s.producer(Destination::topic("big")).unwrap();
    let body = vec![7u8; 1024];
    let mut refused = None;
    // Bounded: 1,000 KiB is far over the 64 KiB limit.
    for i in 0..1000 {
        match p.send(Outgoing::bytes(body.clone()).persistent(true)).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, e) = refused.expect("a publish is refused once memory is full");
    assert!(matches!(e, BrokerError::ResourceLimit(_)), "{e}");
    let (used, peak, limit) = b.memory_usage().unwrap();
    assert!(at <= 70, "refused after {at} KiB");
    // `has_room` is checked before a message is added: one message over the limit at most.
    assert!(
        peak <= limit + 2 * 1024,
        "peak {peak} used {used} limit {limit}"
    );
    conn.close().await;
    b.stop().await;
}
