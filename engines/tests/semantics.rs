//! JMS semantics through the broker, each scenario on the memory, the KahaDB and the LevelDB
//! engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use broker_core::{AckMode, BrokerError, Destination, Outgoing, Value, Xid};
use common::{Engine, Env, assert_none, recv, recv_n, texts};

on_engines!(
    [memory => Memory, kahadb => KahaDb, leveldb => LevelDb]
    (
        queue_gives_each_message_to_one_competing_consumer,
        topic_gives_every_subscriber_a_copy_while_connected,
        durable_subscription_keeps_messages_while_away_until_unsubscribed,
        auto_ack_consumes_on_receive,
        client_ack_is_cumulative_and_the_rest_is_redelivered,
        individual_ack_acks_exactly_one,
        dups_ok_acks_what_was_received_when_the_session_closes,
        recover_redelivers_unacked_messages,
        transaction_commit_and_rollback_cover_sends_and_acks,
        redelivery_past_the_maximum_goes_to_the_dead_letter_queue,
        consumer_loss_redelivers_its_unacked_messages,
        closing_a_consumer_gives_back_its_prefetched_messages_undelivered,
        selectors_filter_queues_and_durable_subscriptions,
        a_bad_selector_is_an_error_for_the_subscriber,
        higher_priority_is_delivered_first,
        expired_messages_are_never_delivered,
        non_persistent_messages_never_touch_the_store,
        a_deep_queue_pages_within_the_memory_limit,
        xa_prepare_then_commit_or_rollback,
        client_ids_and_durable_subscriptions_are_checked,
        nack_redelivers_and_counts_toward_the_dead_letter_queue,
        an_ack_can_join_another_sessions_transaction,
        an_ack_returning_to_its_consumer_is_kept_there_by_an_xa_rollback,
        closing_a_consumer_ends_a_receive_waiting_in_another_task,
        a_resend_with_the_same_client_id_is_stored_once,
    )
);

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

fn t(name: &str) -> Destination {
    Destination::topic(name)
}

async fn queue_gives_each_message_to_one_competing_consumer(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s1 = conn.session(AckMode::Auto).unwrap();
    let s2 = conn.session(AckMode::Auto).unwrap();
    let c1 = s1.consumer_with_prefetch(q("work"), None, 1).await.unwrap();
    let c2 = s2.consumer_with_prefetch(q("work"), None, 1).await.unwrap();
    let p = s1.producer(q("work")).unwrap();
    for i in 0..40 {
        p.send(Outgoing::text(format!("m{i}"))).await.unwrap();
    }
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        got1.push(recv(&c1).await.text().unwrap().to_owned());
        got2.push(recv(&c2).await.text().unwrap().to_owned());
    }
    assert_none(&c1).await;
    assert_none(&c2).await;
    let all: BTreeSet<String> = got1.iter().chain(&got2).cloned().collect();
    assert_eq!(
        all.len(),
        40,
        "every message exactly once across the two consumers"
    );
    assert!(!got1.is_empty() && !got2.is_empty());
    broker.stop().await;
    env.cleanup().await;
}

async fn topic_gives_every_subscriber_a_copy_while_connected(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(t("news")).unwrap();
    p.send(Outgoing::text("before anyone listened"))
        .await
        .unwrap();
    let a = s.consumer(t("news"), None).await.unwrap();
    let b = s.consumer(t("news"), None).await.unwrap();
    for i in 0..5 {
        p.send(Outgoing::text(format!("n{i}"))).await.unwrap();
    }
    assert_eq!(texts(&recv_n(&a, 5).await), ["n0", "n1", "n2", "n3", "n4"]);
    assert_eq!(texts(&recv_n(&b, 5).await), ["n0", "n1", "n2", "n3", "n4"]);
    b.close().await;
    p.send(Outgoing::text("after b left")).await.unwrap();
    assert_eq!(recv(&a).await.text(), Some("after b left"));
    assert_none(&a).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn durable_subscription_keeps_messages_while_away_until_unsubscribed(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let sub_conn = broker.connect(Some("client-1")).await.unwrap();
    let s = sub_conn.session(AckMode::Auto).unwrap();
    let sub = s
        .durable_subscriber(t("prices"), "watcher", None)
        .await
        .unwrap();
    let pub_conn = broker.connect(None).await.unwrap();
    let ps = pub_conn.session(AckMode::Auto).unwrap();
    let p = ps.producer(t("prices")).unwrap();
    p.send(Outgoing::text("p1")).await.unwrap();
    assert_eq!(recv(&sub).await.text(), Some("p1"));
    sub.close().await;
    for i in 2..=4 {
        p.send(Outgoing::text(format!("p{i}"))).await.unwrap();
    }
    let stats = broker.destination_stats().await.unwrap();
    let sub_stats = stats.iter().find(|s| s.subscription.is_some()).unwrap();
    assert_eq!((sub_stats.pending, sub_stats.consumers), (3, 0));
    let again = s
        .durable_subscriber(t("prices"), "watcher", None)
        .await
        .unwrap();
    assert_eq!(texts(&recv_n(&again, 3).await), ["p2", "p3", "p4"]);
    assert_none(&again).await;
    assert!(
        matches!(
            sub_conn.unsubscribe("watcher").await,
            Err(BrokerError::Invalid(_))
        ),
        "an active subscription cannot be deleted"
    );
    again.close().await;
    sub_conn.unsubscribe("watcher").await.unwrap();
    p.send(Outgoing::text("p5")).await.unwrap();
    let fresh = s
        .durable_subscriber(t("prices"), "watcher", None)
        .await
        .unwrap();
    assert_none(&fresh).await;
    assert!(broker.durable_subscriptions().await.unwrap().len() == 1);
    broker.stop().await;
    env.cleanup().await;
}

async fn auto_ack_consumes_on_receive(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("a")).unwrap();
    p.send(Outgoing::text("x")).await.unwrap();
    let c = s.consumer(q("a"), None).await.unwrap();
    let m = recv(&c).await;
    assert!(!m.redelivered());
    s.close().await;
    let s2 = conn.session(AckMode::Auto).unwrap();
    let c2 = s2.consumer(q("a"), None).await.unwrap();
    assert_none(&c2).await;
    assert_eq!(broker.browse("a", 10).await.unwrap().len(), 0);
    broker.stop().await;
    env.cleanup().await;
}

async fn client_ack_is_cumulative_and_the_rest_is_redelivered(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Client).unwrap();
    let p = s.producer(q("c")).unwrap();
    for i in 1..=5 {
        p.send(Outgoing::text(format!("m{i}"))).await.unwrap();
    }
    let c = s.consumer(q("c"), None).await.unwrap();
    let got = recv_n(&c, 5).await;
    s.acknowledge(&got[2]).await.unwrap();
    assert!(
        s.acknowledge(&got[1]).await.is_err(),
        "m2 was acked with m3 and is not awaiting an ack any more"
    );
    s.close().await;
    let s2 = conn.session(AckMode::Client).unwrap();
    let c2 = s2.consumer(q("c"), None).await.unwrap();
    let again = recv_n(&c2, 2).await;
    assert_eq!(texts(&again), ["m4", "m5"]);
    assert!(
        again
            .iter()
            .all(|m| m.redelivered() && m.message().redelivery_count == 1)
    );
    s2.acknowledge(&again[1]).await.unwrap();
    assert_none(&c2).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn individual_ack_acks_exactly_one(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Individual).unwrap();
    let p = s.producer(q("i")).unwrap();
    for i in 1..=3 {
        p.send(Outgoing::text(format!("m{i}"))).await.unwrap();
    }
    let c = s.consumer(q("i"), None).await.unwrap();
    let got = recv_n(&c, 3).await;
    s.acknowledge(&got[1]).await.unwrap();
    s.close().await;
    let s2 = conn.session(AckMode::Individual).unwrap();
    let c2 = s2.consumer(q("i"), None).await.unwrap();
    let again = recv_n(&c2, 2).await;
    assert_eq!(texts(&again), ["m1", "m3"]);
    assert!(again.iter().all(|m| m.redelivered()));
    broker.stop().await;
    env.cleanup().await;
}

async fn dups_ok_acks_what_was_received_when_the_session_closes(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::DupsOk).unwrap();
    let p = s.producer(q("d")).unwrap();
    for i in 0..100 {
        p.send(Outgoing::text(format!("m{i}"))).await.unwrap();
    }
    let c = s.consumer(q("d"), None).await.unwrap();
    recv_n(&c, 100).await;
    s.close().await;
    let s2 = conn.session(AckMode::Auto).unwrap();
    assert_none(&s2.consumer(q("d"), None).await.unwrap()).await;
    assert_eq!(broker.browse("d", 10).await.unwrap().len(), 0);
    broker.stop().await;
    env.cleanup().await;
}

async fn recover_redelivers_unacked_messages(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Client).unwrap();
    s.producer(q("r"))
        .unwrap()
        .send(Outgoing::text("once"))
        .await
        .unwrap();
    let c = s.consumer(q("r"), None).await.unwrap();
    assert!(!recv(&c).await.redelivered());
    s.recover().await.unwrap();
    let m = recv(&c).await;
    assert!(m.redelivered());
    assert_eq!(m.message().redelivery_count, 1);
    s.acknowledge(&m).await.unwrap();
    broker.stop().await;
    env.cleanup().await;
}

async fn transaction_commit_and_rollback_cover_sends_and_acks(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let tx = conn.session(AckMode::Transacted).unwrap();
    let watcher = conn.session(AckMode::Client).unwrap();
    let p = tx.producer(q("t")).unwrap();
    p.send(Outgoing::text("a")).await.unwrap();
    p.send(Outgoing::text("b").persistent(false)).await.unwrap();
    let look = watcher.consumer(q("t"), None).await.unwrap();
    assert_none(&look).await;
    tx.rollback().await.unwrap();
    assert_none(&look).await;
    p.send(Outgoing::text("c")).await.unwrap();
    p.send(Outgoing::text("d").persistent(false)).await.unwrap();
    tx.commit().await.unwrap();
    let seen = recv_n(&look, 2).await;
    assert_eq!(
        texts(&seen).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["c".to_owned(), "d".to_owned()])
    );
    watcher.recover().await.unwrap();
    look.close().await;
    // Consume in a transaction: rollback redelivers, commit removes.
    let c = tx.consumer(q("t"), None).await.unwrap();
    let first = recv_n(&c, 2).await;
    tx.rollback().await.unwrap();
    let second = recv_n(&c, 2).await;
    assert!(second.iter().all(|m| m.redelivered()));
    assert_eq!(
        texts(&first).into_iter().collect::<BTreeSet<_>>(),
        texts(&second).into_iter().collect::<BTreeSet<_>>()
    );
    // A send and an ack in one commit.
    tx.producer(q("t2"))
        .unwrap()
        .send(Outgoing::text("moved"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_none(&c).await;
    assert!(broker.browse("t", 10).await.unwrap().is_empty());
    assert_eq!(broker.browse("t2", 10).await.unwrap().len(), 1);
    assert!(matches!(
        conn.session(AckMode::Auto).unwrap().commit().await,
        Err(BrokerError::Invalid(_))
    ));
    broker.stop().await;
    env.cleanup().await;
}

async fn redelivery_past_the_maximum_goes_to_the_dead_letter_queue(engine: Engine) {
    let env = Env::new(engine, "[policy]\nmaximum_redeliveries = 2\n").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Transacted).unwrap();
    s.producer(q("poison"))
        .unwrap()
        .send(Outgoing::text("bad"))
        .await
        .unwrap();
    s.commit().await.unwrap();
    let c = s.consumer(q("poison"), None).await.unwrap();
    for attempt in 0..3 {
        let m = recv(&c).await;
        assert_eq!(m.message().redelivery_count, attempt);
        s.rollback().await.unwrap();
    }
    assert_none(&c).await;
    let dlq_session = conn.session(AckMode::Auto).unwrap();
    let dlq = dlq_session.consumer(q("ActiveMQ.DLQ"), None).await.unwrap();
    let dead = recv(&dlq).await;
    assert_eq!(dead.text(), Some("bad"));
    let cause = dead
        .message()
        .properties
        .get("dlqDeliveryFailureCause")
        .cloned();
    assert!(
        matches!(&cause, Some(Value::String(c)) if c.contains("maximum_redeliveries is 2")),
        "{cause:?}"
    );
    assert_eq!(
        dead.message().properties.get("originalDestination"),
        Some(&Value::String("queue://poison".into()))
    );
    assert!(broker.browse("poison", 10).await.unwrap().is_empty());
    broker.stop().await;
    env.cleanup().await;
}

async fn consumer_loss_redelivers_its_unacked_messages(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let lost = broker.connect(None).await.unwrap();
    let s = lost.session(AckMode::Client).unwrap();
    s.producer(q("l"))
        .unwrap()
        .send(Outgoing::text("in flight"))
        .await
        .unwrap();
    let c = s.consumer(q("l"), None).await.unwrap();
    recv(&c).await;
    drop(c);
    drop(s);
    drop(lost); // no close: the connection is simply gone
    let other = broker.connect(None).await.unwrap();
    let s2 = other.session(AckMode::Auto).unwrap();
    let c2 = s2.consumer(q("l"), None).await.unwrap();
    let m = recv(&c2).await;
    assert_eq!(m.text(), Some("in flight"));
    assert!(m.redelivered());
    broker.stop().await;
    env.cleanup().await;
}

async fn closing_a_consumer_gives_back_its_prefetched_messages_undelivered(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("pf")).unwrap();
    for i in 0..10 {
        p.send(Outgoing::text(format!("m{i}"))).await.unwrap();
    }
    let greedy = s.consumer(q("pf"), None).await.unwrap();
    assert_eq!(recv(&greedy).await.text(), Some("m0"));
    greedy.close().await;
    let next = s.consumer(q("pf"), None).await.unwrap();
    let rest = recv_n(&next, 9).await;
    assert_eq!(
        texts(&rest),
        (1..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert!(
        rest.iter().all(|m| !m.redelivered()),
        "prefetched is not delivered"
    );
    broker.stop().await;
    env.cleanup().await;
}

async fn selectors_filter_queues_and_durable_subscriptions(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("sel")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let reds = s
        .consumer(q("colors"), Some("color = 'red' AND size > 2"))
        .await
        .unwrap();
    let sub = s
        .durable_subscriber(t("events"), "big", Some("size BETWEEN 5 AND 10"))
        .await
        .unwrap();
    let pq = s.producer(q("colors")).unwrap();
    let pt = s.producer(t("events")).unwrap();
    for (color, size) in [("red", 1), ("blue", 7), ("red", 3), ("red", 9)] {
        let m = || {
            Outgoing::text(format!("{color}{size}"))
                .property("color", Value::String(color.into()))
                .property("size", Value::I32(size))
        };
        pq.send(m()).await.unwrap();
        pt.send(m()).await.unwrap();
    }
    assert_eq!(texts(&recv_n(&reds, 2).await), ["red3", "red9"]);
    assert_none(&reds).await;
    assert_eq!(texts(&recv_n(&sub, 2).await), ["blue7", "red9"]);
    assert_none(&sub).await;
    // Messages the queue selector did not match wait for another consumer.
    let all = s.consumer(q("colors"), None).await.unwrap();
    assert_eq!(texts(&recv_n(&all, 2).await), ["red1", "blue7"]);
    // The subscription's selector acked what it skipped: nothing is left pending.
    sub.close().await;
    let stats = broker.destination_stats().await.unwrap();
    let sub_stats = stats.iter().find(|s| s.subscription.is_some()).unwrap();
    assert_eq!(sub_stats.pending, 0);
    broker.stop().await;
    env.cleanup().await;
}

async fn a_bad_selector_is_an_error_for_the_subscriber(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("bad")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let e = s
        .consumer(q("x"), Some("color = 'red"))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, BrokerError::Selector(_)), "{e}");
    assert!(e.to_string().contains("unterminated string"), "{e}");
    let e = s
        .durable_subscriber(t("x"), "d", Some("a LIKE 5"))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, BrokerError::Selector(_)), "{e}");
    // The broker carries on.
    s.producer(q("x"))
        .unwrap()
        .send(Outgoing::text("fine"))
        .await
        .unwrap();
    let c = s.consumer(q("x"), None).await.unwrap();
    assert_eq!(recv(&c).await.text(), Some("fine"));
    broker.stop().await;
    env.cleanup().await;
}

async fn higher_priority_is_delivered_first(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("prio")).unwrap();
    for (i, prio) in [1u8, 9, 4, 9, 0, 7].into_iter().enumerate() {
        p.send(Outgoing::text(format!("{prio}-{i}")).priority(prio))
            .await
            .unwrap();
    }
    assert!(matches!(
        p.send(Outgoing::text("x").priority(10)).await,
        Err(BrokerError::Invalid(_))
    ));
    let c = s.consumer(q("prio"), None).await.unwrap();
    assert_eq!(
        texts(&recv_n(&c, 6).await),
        ["9-1", "9-3", "7-5", "4-2", "1-0", "0-4"]
    );
    broker.stop().await;
    env.cleanup().await;
}

async fn expired_messages_are_never_delivered(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("exp")).unwrap();
    p.send(Outgoing::text("stale").time_to_live(Duration::from_millis(1)))
        .await
        .unwrap();
    p.send(
        Outgoing::text("stale-np")
            .persistent(false)
            .time_to_live(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    p.send(Outgoing::text("fresh").time_to_live(Duration::from_secs(600)))
        .await
        .unwrap();
    p.send(Outgoing::text("swept").time_to_live(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The sweep finds expired messages no consumer has paged in.
    broker.expire_now().await.unwrap();
    let c = s.consumer(q("exp"), None).await.unwrap();
    assert_eq!(recv(&c).await.text(), Some("fresh"));
    assert_none(&c).await;
    let dlq = s.consumer(q("ActiveMQ.DLQ"), None).await.unwrap();
    let dead = recv_n(&dlq, 2).await;
    let mut names = texts(&dead);
    names.sort();
    assert_eq!(
        names,
        ["stale", "swept"],
        "persistent expired messages are dead-lettered"
    );
    assert!(dead.iter().all(|m| m.message().expiration == 0));
    assert_none(&dlq).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn non_persistent_messages_never_touch_the_store(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("np")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let sub = s
        .durable_subscriber(t("np-topic"), "d", None)
        .await
        .unwrap();
    s.producer(q("np"))
        .unwrap()
        .send(Outgoing::text("fleeting").persistent(false))
        .await
        .unwrap();
    s.producer(t("np-topic"))
        .unwrap()
        .send(Outgoing::text("fleeting too").persistent(false))
        .await
        .unwrap();
    assert!(
        broker.browse("np", 10).await.unwrap().is_empty(),
        "not in the store"
    );
    let stats = broker.destination_stats().await.unwrap();
    let topic = stats
        .iter()
        .find(|s| s.destination == t("np-topic") && s.subscription.is_none())
        .unwrap();
    assert_eq!(topic.pending, 0, "the topic store kept nothing");
    let c = s.consumer(q("np"), None).await.unwrap();
    let m = recv(&c).await;
    assert_eq!(m.text(), Some("fleeting"));
    assert!(!m.message().persistent);
    assert_eq!(recv(&sub).await.text(), Some("fleeting too"));
    broker.stop().await;
    env.cleanup().await;
}

async fn a_deep_queue_pages_within_the_memory_limit(engine: Engine) {
    let env = Env::new(
        engine,
        "[limits]\nmemory_bytes = 65536\nmax_page_size = 16\n",
    )
    .unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q("deep")).unwrap();
    let body = vec![7u8; 1024];
    let n = 1500;
    for i in 0..n {
        p.send(Outgoing::bytes(body.clone()).property("i", Value::I32(i)))
            .await
            .unwrap();
    }
    let (used, peak, limit) = broker.memory_usage().unwrap();
    assert_eq!(
        (used, peak),
        (0, 0),
        "nothing is paged in without a consumer"
    );
    let c = s.consumer_with_prefetch(q("deep"), None, 8).await.unwrap();
    for i in 0..n {
        let m = recv(&c).await;
        assert_eq!(m.message().properties.get("i"), Some(&Value::I32(i)));
    }
    let (_, peak, _) = broker.memory_usage().unwrap();
    let total = n as u64 * 1024;
    // A page (16) plus the prefetch (8) of ~1.1 KiB messages may overshoot the limit once.
    assert!(peak <= limit + 24 * 1200, "peak {peak} vs limit {limit}");
    assert!(
        peak * 10 < total,
        "peak {peak} is far below the {total} bytes queued"
    );
    broker.stop().await;
    env.cleanup().await;
}

async fn xa_prepare_then_commit_or_rollback(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    s.producer(q("xa-in"))
        .unwrap()
        .send(Outgoing::text("job"))
        .await
        .unwrap();
    let xs = conn.session(AckMode::Transacted).unwrap();
    let xid = |n: u8| Xid {
        format_id: 1,
        global_id: vec![n],
        branch_qualifier: vec![0],
    };
    xs.xa_start(xid(1)).await.unwrap();
    let c = xs.consumer(q("xa-in"), None).await.unwrap();
    assert_eq!(recv(&c).await.text(), Some("job"));
    xs.producer(q("xa-out"))
        .unwrap()
        .send(Outgoing::text("result"))
        .await
        .unwrap();
    xs.xa_prepare().await.unwrap();
    c.close().await;
    assert_eq!(broker.prepared_transactions().unwrap(), [xid(1)]);
    let watch_in = s.consumer(q("xa-in"), None).await.unwrap();
    let watch_out = s.consumer(q("xa-out"), None).await.unwrap();
    assert_none(&watch_in).await;
    assert_none(&watch_out).await;
    broker.rollback_prepared(&xid(1)).await.unwrap();
    let again = recv(&watch_in).await;
    assert!(again.redelivered());
    assert_none(&watch_out).await;
    // Once more, committed this time.
    watch_in.close().await;
    let s2 = conn.session(AckMode::Auto).unwrap();
    s2.producer(q("xa-in"))
        .unwrap()
        .send(Outgoing::text("job2"))
        .await
        .unwrap();
    xs.xa_start(xid(2)).await.unwrap();
    let c = xs.consumer(q("xa-in"), None).await.unwrap();
    assert_eq!(recv(&c).await.text(), Some("job2"));
    xs.producer(q("xa-out"))
        .unwrap()
        .send(Outgoing::text("result2"))
        .await
        .unwrap();
    xs.xa_prepare().await.unwrap();
    broker.commit_prepared(&xid(2)).await.unwrap();
    assert_eq!(recv(&watch_out).await.text(), Some("result2"));
    assert!(broker.prepared_transactions().unwrap().is_empty());
    assert!(broker.browse("xa-in", 10).await.unwrap().is_empty());
    broker.stop().await;
    env.cleanup().await;
}

async fn client_ids_and_durable_subscriptions_are_checked(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let a = broker.connect(Some("same")).await.unwrap();
    assert!(matches!(
        broker.connect(Some("same")).await,
        Err(BrokerError::ClientIdInUse(_))
    ));
    let anonymous = broker.connect(None).await.unwrap();
    let s = anonymous.session(AckMode::Auto).unwrap();
    assert!(matches!(
        s.durable_subscriber(t("x"), "d", None).await,
        Err(BrokerError::Invalid(_))
    ));
    let sa = a.session(AckMode::Auto).unwrap();
    let _d = sa.durable_subscriber(t("x"), "d", None).await.unwrap();
    assert!(
        matches!(
            sa.durable_subscriber(t("x"), "d", None).await,
            Err(BrokerError::Invalid(_))
        ),
        "one active consumer per durable subscription"
    );
    a.close().await;
    broker.connect(Some("same")).await.unwrap();
    broker.stop().await;
    assert!(matches!(
        broker.connect(None).await,
        Err(BrokerError::NotServing(_))
    ));
    env.cleanup().await;
}

async fn nack_redelivers_and_counts_toward_the_dead_letter_queue(engine: Engine) {
    let env = Env::new(engine, "[policy]\nmaximum_redeliveries = 1\n").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Individual).unwrap();
    s.producer(q("n"))
        .unwrap()
        .send(Outgoing::text("refused"))
        .await
        .unwrap();
    let c = s.consumer(q("n"), None).await.unwrap();
    let m = recv(&c).await;
    s.nack(&m).await.unwrap();
    assert!(s.nack(&m).await.is_err(), "already refused");
    let m = recv(&c).await;
    assert_eq!(m.message().redelivery_count, 1);
    s.nack(&m).await.unwrap();
    assert_none(&c).await;
    assert_eq!(broker.browse("ActiveMQ.DLQ", 10).await.unwrap().len(), 1);
    broker.stop().await;
    env.cleanup().await;
}

async fn an_ack_can_join_another_sessions_transaction(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let client = conn.session(AckMode::Client).unwrap();
    let tx = conn.session(AckMode::Transacted).unwrap();
    client
        .producer(q("in"))
        .unwrap()
        .send(Outgoing::text("work"))
        .await
        .unwrap();
    let c = client.consumer(q("in"), None).await.unwrap();
    let m = recv(&c).await;
    client.acknowledge_in(&m, &tx).await.unwrap();
    tx.producer(q("out"))
        .unwrap()
        .send(Outgoing::text("done"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let m = recv(&c).await;
    assert!(m.redelivered(), "the rollback gave the message back");
    assert!(broker.browse("out", 10).await.unwrap().is_empty());
    client.acknowledge_in(&m, &tx).await.unwrap();
    tx.producer(q("out"))
        .unwrap()
        .send(Outgoing::text("done"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_none(&c).await;
    assert!(broker.browse("in", 10).await.unwrap().is_empty());
    assert_eq!(broker.browse("out", 10).await.unwrap().len(), 1);
    broker.stop().await;
    env.cleanup().await;
}

/// `acknowledge_in_returning` (the OpenWire door's XA acks): a rolled-back branch, prepared
/// or not, gives the message back to the session that received it, unacked, instead of to the
/// queue, where it would reach a second consumer while the first client redelivers it from
/// its own buffer; with that session closed it is redelivered from the queue.
async fn an_ack_returning_to_its_consumer_is_kept_there_by_an_xa_rollback(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let auto = conn.session(AckMode::Auto).unwrap();
    let p = auto.producer(q("xa-back")).unwrap();
    p.send(Outgoing::text("job")).await.unwrap();
    let ind = conn.session(AckMode::Individual).unwrap();
    let c = ind.consumer(q("xa-back"), None).await.unwrap();
    let m = recv(&c).await;
    let other = auto.consumer(q("xa-back"), None).await.unwrap();
    let xid = |n: u8| Xid {
        format_id: 7,
        global_id: vec![n],
        branch_qualifier: vec![1],
    };
    let xs = conn.session(AckMode::Transacted).unwrap();
    // Prepared, then rolled back: back with `ind`.
    xs.xa_start(xid(1)).await.unwrap();
    ind.acknowledge_in_returning(&m, &xs).await.unwrap();
    xs.xa_prepare().await.unwrap();
    broker.rollback_prepared(&xid(1)).await.unwrap();
    assert_none(&other).await;
    // Rolled back before prepare: the same.
    xs.xa_start(xid(2)).await.unwrap();
    ind.acknowledge_in_returning(&m, &xs).await.unwrap();
    xs.rollback().await.unwrap();
    assert_none(&other).await;
    // Still awaiting its ack in `ind`, which can ack it in a branch that commits.
    xs.xa_start(xid(3)).await.unwrap();
    ind.acknowledge_in_returning(&m, &xs).await.unwrap();
    xs.xa_prepare().await.unwrap();
    broker.commit_prepared(&xid(3)).await.unwrap();
    assert_none(&other).await;
    assert!(broker.browse("xa-back", 10).await.unwrap().is_empty());
    // With `ind` closed while the branch is prepared, a rollback redelivers from the queue.
    p.send(Outgoing::text("job2")).await.unwrap();
    other.close().await;
    let m = recv(&c).await;
    let other = auto.consumer(q("xa-back"), None).await.unwrap();
    xs.xa_start(xid(4)).await.unwrap();
    ind.acknowledge_in_returning(&m, &xs).await.unwrap();
    xs.xa_prepare().await.unwrap();
    ind.close().await;
    assert_none(&other).await;
    broker.rollback_prepared(&xid(4)).await.unwrap();
    let again = recv(&other).await;
    assert_eq!(again.text(), Some("job2"));
    assert!(again.redelivered());
    broker.stop().await;
    env.cleanup().await;
}

async fn closing_a_consumer_ends_a_receive_waiting_in_another_task(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Client).unwrap();
    let c = std::sync::Arc::new(s.consumer(q("idle"), None).await.unwrap());
    let waiting = {
        let c = std::sync::Arc::clone(&c);
        tokio::spawn(async move { c.receive().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(10), c.close())
        .await
        .expect("close does not wait for the blocked receive");
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(r.unwrap().is_none(), "the waiting receive sees the end");
    broker.stop().await;
    env.cleanup().await;
}

/// A client that gives its own message ids (OpenWire's JMSMessageID) keeps them, and a resend
/// of one already stored (the failover transport resends what was in flight when its
/// connection broke) is answered as sent and not stored twice: on a queue and on a topic with
/// a durable subscription, across a broker restart while it is still stored (the store's
/// `Duplicate`), and after it was consumed (the producer audit).
async fn a_resend_with_the_same_client_id_is_stored_once(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(Some("resender")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let sub = s
        .durable_subscriber(t("resent.t"), "keep", None)
        .await
        .unwrap();
    sub.close().await;
    // One client producer per destination, as a real client's ids are.
    let given_to = |d: &Destination, seq: u64, text: &str| {
        let mut out = Outgoing::text(text);
        out.id = Some(broker_core::MessageId::new(
            format!("ID:client-1:1:1:{}", d.name),
            seq,
        ));
        out
    };
    for d in [q("resent.q"), t("resent.t")] {
        let given = |seq, text| given_to(&d, seq, text);
        let p = s.producer(d.clone()).unwrap();
        let first = p.send(given(1, "one")).await.unwrap();
        assert_eq!(first.producer_seq, 1);
        // The same id again: answered as sent, the first copy stands.
        assert_eq!(p.send(given(1, "one again")).await.unwrap(), first);
        p.send(given(2, "two")).await.unwrap();
    }
    conn.close().await;
    let broker = if engine.durable() {
        broker.stop().await;
        env.start().await
    } else {
        broker
    };
    let conn = broker.connect(Some("resender")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    // After a restart the store still knows the ids.
    for d in [q("resent.q"), t("resent.t")] {
        let p = s.producer(d.clone()).unwrap();
        p.send(given_to(&d, 2, "two again")).await.unwrap();
    }
    let c = s.consumer(q("resent.q"), None).await.unwrap();
    let got = recv_n(&c, 2).await;
    assert_eq!(texts(&got), ["one", "two"]);
    assert_eq!(
        got[0].message().id.to_string(),
        "ID:client-1:1:1:resent.q:1"
    );
    assert_none(&c).await;
    let sub = s
        .durable_subscriber(t("resent.t"), "keep", None)
        .await
        .unwrap();
    assert_eq!(texts(&recv_n(&sub, 2).await), ["one", "two"]);
    assert_none(&sub).await;
    // Stored, consumed (gone from the store), then resent: the producer audit knows it.
    let given = |seq, text| given_to(&q("resent.q"), seq, text);
    let p = s.producer(q("resent.q")).unwrap();
    p.send(given(3, "three")).await.unwrap();
    assert_eq!(texts(&recv_n(&c, 1).await), ["three"]);
    p.send(given(3, "three again")).await.unwrap();
    assert_none(&c).await;
    // A later sequence that comes before an earlier one is no duplicate (a bridge forwards
    // out of order): both are delivered.
    p.send(given(5, "five")).await.unwrap();
    p.send(given(4, "four")).await.unwrap();
    assert_eq!(texts(&recv_n(&c, 2).await), ["five", "four"]);
    broker.stop().await;
    env.cleanup().await;
}
