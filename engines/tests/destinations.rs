//! ActiveMQ's destination features through the broker (issue 25): wildcard consumers, composite
//! sends and virtual topics, each scenario on the memory and the KahaDB engine, and what of
//! them is stored surviving restarts on every durable engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;

use broker_core::{AckMode, BrokerError, Destination, Outgoing};
use common::{Engine, Env, assert_none, recv, recv_n, texts};

on_durable_engines!(
    composite_and_virtual_topic_copies_survive_a_restart,
    a_durable_wildcard_subscription_survives_restarts,
);

on_engines!(
    [memory => Memory, kahadb => KahaDb]
    (
        a_wildcard_topic_subscriber_hears_every_matching_topic_even_new_ones,
        a_wildcard_queue_consumer_drains_every_matching_queue_even_new_ones,
        wildcard_sends_and_malformed_names_are_refused_and_create_nothing,
        a_composite_send_delivers_one_copy_to_each_destination,
        a_transacted_composite_send_commits_or_rolls_back_every_copy,
        a_virtual_topic_copies_to_each_consumer_queue,
        a_durable_wildcard_subscription_keeps_every_matching_topic_even_new_ones,
    )
);

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

fn t(name: &str) -> Destination {
    Destination::topic(name)
}

/// (destination name, text) of each received message, sorted.
fn arrivals(ms: &[broker_core::Received]) -> BTreeSet<(String, String)> {
    ms.iter()
        .map(|m| {
            (
                m.message().destination.name.to_string(),
                m.text().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn a_wildcard_topic_subscriber_hears_every_matching_topic_even_new_ones(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    // `orders.eu` exists before the subscriptions; the others appear after.
    let eu = s.producer(t("orders.eu")).unwrap();
    eu.send(Outgoing::text("before")).await.unwrap();
    let all = s.consumer(t("orders.>"), None).await.unwrap();
    let one = s.consumer(t("orders.*"), None).await.unwrap();
    eu.send(Outgoing::text("eu")).await.unwrap();
    for (topic, text) in [
        ("orders.us.west", "us-west"),
        ("orders", "bare"),
        ("invoices.eu", "invoice"),
        ("orders.jp", "jp"),
    ] {
        s.producer(t(topic))
            .unwrap()
            .send(Outgoing::text(text))
            .await
            .unwrap();
    }
    assert_eq!(
        arrivals(&recv_n(&all, 3).await),
        set(&[
            ("orders.eu", "eu"),
            ("orders.us.west", "us-west"),
            ("orders.jp", "jp")
        ])
    );
    assert_none(&all).await;
    assert_eq!(
        arrivals(&recv_n(&one, 2).await),
        set(&[("orders.eu", "eu"), ("orders.jp", "jp")])
    );
    assert_none(&one).await;
    // Once closed it is off every topic, old and new.
    all.close().await;
    eu.send(Outgoing::text("after")).await.unwrap();
    assert_eq!(recv(&one).await.text(), Some("after"));
    assert!(
        all.receive_timeout(std::time::Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
    broker.stop().await;
    env.cleanup().await;
}

async fn a_wildcard_queue_consumer_drains_every_matching_queue_even_new_ones(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Client).unwrap();
    let send = |queue: &'static str, text: &'static str| {
        let s = s.clone();
        async move {
            s.producer(q(queue))
                .unwrap()
                .send(Outgoing::text(text))
                .await
                .unwrap();
        }
    };
    send("jobs.a", "a1").await;
    send("jobs.a", "a2").await;
    let c = s.consumer(q("jobs.*"), None).await.unwrap();
    send("jobs.b", "b1").await;
    send("jobs.b.deep", "not-one-element").await;
    send("other", "other").await;
    let got = recv_n(&c, 3).await;
    assert_eq!(
        arrivals(&got),
        set(&[("jobs.a", "a1"), ("jobs.a", "a2"), ("jobs.b", "b1")])
    );
    assert_none(&c).await;
    // Acks reach the queue each message came from: acking the last acks all (CLIENT is
    // cumulative over the session), and nothing comes back after a reconnect.
    s.acknowledge(got.last().unwrap()).await.unwrap();
    c.close().await;
    let s2 = conn.session(AckMode::Auto).unwrap();
    let again = s2.consumer(q("jobs.>"), None).await.unwrap();
    assert_eq!(
        arrivals(&recv_n(&again, 1).await),
        set(&[("jobs.b.deep", "not-one-element")])
    );
    assert_none(&again).await;
    // A queue neither wildcard matches kept its message.
    let plain = s2.consumer(q("other"), None).await.unwrap();
    assert_eq!(recv(&plain).await.text(), Some("other"));
    broker.stop().await;
    env.cleanup().await;
}

async fn wildcard_sends_and_malformed_names_are_refused_and_create_nothing(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    for d in [
        q("a.*"),
        t("a.>"),
        q("a,b.*"),
        q("a.>.b"),
        t("a*"),
        q("a,,b"),
        q("x,queue://"),
    ] {
        let e = s
            .producer(d.clone())
            .unwrap()
            .send(Outgoing::text("x"))
            .await
            .unwrap_err();
        assert!(matches!(e, BrokerError::DestinationName(_)), "{d}: {e}");
        assert!(e.to_string().contains("invalid destination name"), "{e}");
    }
    let e = s
        .producer(q("a.*"))
        .unwrap()
        .send(Outgoing::text("x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot be sent to"), "{e}");
    let Err(e) = s.consumer(q("a.>.b"), None).await else {
        panic!("a malformed wildcard consumer was accepted");
    };
    assert!(matches!(e, BrokerError::DestinationName(_)), "{e}");
    let Err(e) = s.consumer(q("a,b"), None).await else {
        panic!("a composite consumer was accepted");
    };
    assert!(e.to_string().contains("composite"), "{e}");
    let Err(e) = s.durable_subscriber(t("a.>.b"), "sub", None).await else {
        panic!("a durable subscription on a malformed wildcard was accepted");
    };
    assert!(matches!(e, BrokerError::DestinationName(_)), "{e}");
    let stats = broker.destination_stats().await.unwrap();
    assert!(
        stats.is_empty(),
        "nothing created: {:?}",
        stats
            .iter()
            .map(|s| s.destination.to_string())
            .collect::<Vec<_>>()
    );
    broker.stop().await;
    env.cleanup().await;
}

async fn a_composite_send_delivers_one_copy_to_each_destination(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let durable = s.durable_subscriber(t("c"), "sub", None).await.unwrap();
    let plain = s.consumer(t("c"), None).await.unwrap();
    let p = s.producer(q("a,b,topic://c,queue://a")).unwrap();
    p.send(Outgoing::text("one")).await.unwrap();
    p.send(Outgoing::text("two").persistent(false))
        .await
        .unwrap();
    let a = s.consumer(q("a"), None).await.unwrap();
    let b = s.consumer(q("b"), None).await.unwrap();
    for c in [&a, &b, &durable, &plain] {
        // Sorted: a non-persistent message may overtake a persistent one still in the store.
        let mut got = texts(&recv_n(c, 2).await);
        got.sort();
        assert_eq!(got, ["one", "two"]);
        assert_none(c).await;
    }
    broker.stop().await;
    env.cleanup().await;
}

async fn a_transacted_composite_send_commits_or_rolls_back_every_copy(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let tx = conn.session(AckMode::Transacted).unwrap();
    let p = tx.producer(q("ta,tb")).unwrap();
    p.send(Outgoing::text("rolled back")).await.unwrap();
    tx.rollback().await.unwrap();
    p.send(Outgoing::text("committed")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let a = s.consumer(q("ta"), None).await.unwrap();
    let b = s.consumer(q("tb"), None).await.unwrap();
    assert_none(&a).await;
    tx.commit().await.unwrap();
    assert_eq!(recv(&a).await.text(), Some("committed"));
    assert_eq!(recv(&b).await.text(), Some("committed"));
    assert_none(&a).await;
    assert_none(&b).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_virtual_topic_copies_to_each_consumer_queue(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    // Group A load-balances over two consumers; group B has one; a plain subscriber on the
    // topic still gets its copy.
    let a1 = s
        .consumer_with_prefetch(q("Consumer.A.VirtualTopic.Orders"), None, 1)
        .await
        .unwrap();
    let a2 = s
        .consumer_with_prefetch(q("Consumer.A.VirtualTopic.Orders"), None, 1)
        .await
        .unwrap();
    let b = s
        .consumer(q("Consumer.B.VirtualTopic.Orders"), None)
        .await
        .unwrap();
    let sub = s.consumer(t("VirtualTopic.Orders"), None).await.unwrap();
    let p = s.producer(t("VirtualTopic.Orders")).unwrap();
    for i in 0..4 {
        p.send(Outgoing::text(format!("o{i}"))).await.unwrap();
    }
    // Either member of group A may take any message (each takes the next once it has room),
    // so they are read in turns until the group has all four or the deadline passes.
    let (mut group_a, mut per_member) = (Vec::new(), [0; 2]);
    let deadline = std::time::Instant::now() + common::WAIT;
    while group_a.len() < 4 && std::time::Instant::now() < deadline {
        for (i, c) in [&a1, &a2].into_iter().enumerate() {
            if let Some(m) = c
                .receive_timeout(std::time::Duration::from_millis(20))
                .await
                .unwrap()
            {
                group_a.push(m.text().unwrap_or_default().to_owned());
                per_member[i] += 1;
            }
        }
    }
    group_a.sort();
    assert!(
        per_member.iter().all(|&n| n > 0),
        "both members served: {per_member:?}"
    );
    assert_eq!(group_a, ["o0", "o1", "o2", "o3"]);
    assert_none(&a1).await;
    assert_none(&a2).await;
    let got_b = recv_n(&b, 4).await;
    assert_eq!(texts(&got_b), ["o0", "o1", "o2", "o3"]);
    assert_eq!(
        &*got_b[0].message().destination.name,
        "Consumer.B.VirtualTopic.Orders"
    );
    assert_eq!(texts(&recv_n(&sub, 4).await), ["o0", "o1", "o2", "o3"]);
    // A group that did not exist at the send has nothing; other topics are not virtual.
    let late = s
        .consumer(q("Consumer.C.VirtualTopic.Orders"), None)
        .await
        .unwrap();
    assert_none(&late).await;
    let plain = s.consumer(q("Consumer.A.Orders"), None).await.unwrap();
    s.producer(t("Orders"))
        .unwrap()
        .send(Outgoing::text("x"))
        .await
        .unwrap();
    assert_none(&plain).await;
    broker.stop().await;
    env.cleanup().await;
}

/// Stored copies of composite and virtual-topic sends, and queues a wildcard consumer finds
/// at start, survive a restart on a durable engine.
async fn composite_and_virtual_topic_copies_survive_a_restart(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    {
        let broker = env.start().await;
        let conn = broker.connect(None).await.unwrap();
        let s = conn.session(AckMode::Auto).unwrap();
        // The consumer queues exist (created by a consumer that leaves).
        for group in ["A", "B"] {
            let c = s
                .consumer(q(&format!("Consumer.{group}.VirtualTopic.Stock")), None)
                .await
                .unwrap();
            c.close().await;
        }
        s.producer(q("kept.one,kept.two"))
            .unwrap()
            .send(Outgoing::text("composite"))
            .await
            .unwrap();
        s.producer(t("VirtualTopic.Stock"))
            .unwrap()
            .send(Outgoing::text("virtual"))
            .await
            .unwrap();
        conn.close().await;
        broker.stop().await;
    }
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let kept = s.consumer(q("kept.>"), None).await.unwrap();
    assert_eq!(
        arrivals(&recv_n(&kept, 2).await),
        set(&[("kept.one", "composite"), ("kept.two", "composite")])
    );
    assert_none(&kept).await;
    let groups = s
        .consumer(q("Consumer.*.VirtualTopic.Stock"), None)
        .await
        .unwrap();
    assert_eq!(
        arrivals(&recv_n(&groups, 2).await),
        set(&[
            ("Consumer.A.VirtualTopic.Stock", "virtual"),
            ("Consumer.B.VirtualTopic.Stock", "virtual")
        ])
    );
    assert_none(&groups).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_durable_wildcard_subscription_keeps_every_matching_topic_even_new_ones(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let send = |topic: &'static str, text: &'static str| {
        let s = s.clone();
        async move {
            s.producer(t(topic))
                .unwrap()
                .send(Outgoing::text(text))
                .await
                .unwrap();
        }
    };
    send("orders.eu", "before").await;
    let sub = s
        .durable_subscriber(t("orders.>"), "w", None)
        .await
        .unwrap();
    send("orders.eu", "live").await;
    assert_eq!(
        arrivals(&recv_n(&sub, 1).await),
        set(&[("orders.eu", "live")])
    );
    let Err(e) = s.durable_subscriber(t("orders.>"), "w", None).await else {
        panic!("a second consumer on one durable subscription was accepted");
    };
    assert!(e.to_string().contains("in use"), "{e}");
    sub.close().await;
    // While away: an existing topic, a topic that did not exist, a topic it does not match.
    send("orders.eu", "kept-eu").await;
    send("orders.new.york", "kept-new").await;
    send("invoices.eu", "not-matched").await;
    let sub = s
        .durable_subscriber(t("orders.>"), "w", None)
        .await
        .unwrap();
    assert_eq!(
        arrivals(&recv_n(&sub, 2).await),
        set(&[("orders.eu", "kept-eu"), ("orders.new.york", "kept-new")])
    );
    assert_none(&sub).await;
    sub.close().await;
    conn.unsubscribe("w").await.unwrap();
    send("orders.eu", "after-unsubscribe").await;
    send("orders.newer", "after-unsubscribe").await;
    let sub = s
        .durable_subscriber(t("orders.>"), "w", None)
        .await
        .unwrap();
    assert_none(&sub).await;
    broker.stop().await;
    env.cleanup().await;
}

/// A durable subscription on a wildcard survives restarts and picks up a topic created after
/// the restart while its subscriber is away.
async fn a_durable_wildcard_subscription_survives_restarts(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    {
        let broker = env.start().await;
        let conn = broker.connect(Some("c1")).await.unwrap();
        let s = conn.session(AckMode::Auto).unwrap();
        s.durable_subscriber(t("stock.*"), "w", None)
            .await
            .unwrap()
            .close()
            .await;
        conn.close().await;
        send_to(&broker, "stock.eu", "first-run").await;
        broker.stop().await;
    }
    {
        let broker = env.start().await;
        send_to(&broker, "stock.us", "second-run-new-topic").await;
        send_to(&broker, "stock.us.ny", "not-matched").await;
        let conn = broker.connect(Some("c1")).await.unwrap();
        let s = conn.session(AckMode::Auto).unwrap();
        let sub = s.durable_subscriber(t("stock.*"), "w", None).await.unwrap();
        assert_eq!(
            arrivals(&recv_n(&sub, 2).await),
            set(&[
                ("stock.eu", "first-run"),
                ("stock.us", "second-run-new-topic")
            ])
        );
        assert_none(&sub).await;
        sub.close().await;
        conn.close().await;
        broker.stop().await;
    }
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let sub = s.durable_subscriber(t("stock.*"), "w", None).await.unwrap();
    assert_none(&sub).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn send_to(broker: &broker_core::Broker, topic: &str, text: &str) {
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    s.producer(t(topic))
        .unwrap()
        .send(Outgoing::text(text))
        .await
        .unwrap();
    conn.close().await;
}
