//! Per-destination policies (`[[policy.entries]]`, ActiveMQ's `policyEntry`) through the
//! broker, on the memory and KahaDB engines: redeliveries and individual dead letter queues,
//! redelivery delay, expiry handling, and removal of inactive queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use broker_core::{AckMode, Broker, Destination, Outgoing};
use common::{Engine, Env, assert_none, recv, texts};

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

on_engines!(
    [memory => Memory, kahadb => KahaDb]
    (
        an_entry_sets_redeliveries_and_an_individual_dead_letter_queue,
        a_redelivery_waits_its_delay_and_does_not_hold_back_the_rest,
        expired_messages_follow_their_destination_policy,
        inactive_queues_are_removed_when_their_entry_says_so,
        a_queue_memory_limit_holds_back_its_own_producers_only,
    )
);

const ENTRIES: &str = r#"
[policy]
gc_check_interval_ms = 100
[[policy.entries]]
queue = "orders.>"
maximum_redeliveries = 1
dead_letter_strategy = "individual"
[[policy.entries]]
queue = "slow.>"
redelivery_delay_ms = 400
[[policy.entries]]
queue = "quiet.>"
expired = "discard"
[[policy.entries]]
queue = "temp.>"
gc_inactive_destinations = true
inactive_timeout_before_gc_ms = 300
"#;

/// Receives `m`'s message again and again, recovering each time, until it stops coming.
async fn fail_until_gone(broker: &Broker, queue: &str) -> usize {
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Client).unwrap();
    let c = s.consumer(q(queue), None).await.unwrap();
    let mut deliveries = 0;
    while let Some(_m) = c.receive_timeout(Duration::from_millis(500)).await.unwrap() {
        deliveries += 1;
        assert!(deliveries < 20, "never dead-lettered");
        s.recover().await.unwrap();
    }
    conn.close().await;
    deliveries
}

async fn an_entry_sets_redeliveries_and_an_individual_dead_letter_queue(engine: Engine) {
    let Some(env) = Env::new(engine, ENTRIES) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    for name in ["orders.eu", "plain"] {
        s.producer(q(name))
            .unwrap()
            .send(Outgoing::text(name).persistent(true))
            .await
            .unwrap();
    }
    // orders.>: one redelivery, then its own DLQ. Elsewhere: [policy]'s 6, the shared DLQ.
    assert_eq!(fail_until_gone(&broker, "orders.eu").await, 2);
    assert_eq!(fail_until_gone(&broker, "plain").await, 7);
    let own = s
        .consumer(q("ActiveMQ.DLQ.Queue.orders.eu"), None)
        .await
        .unwrap();
    assert_eq!(texts(&[recv(&own).await]), ["orders.eu"]);
    assert_none(&own).await;
    let shared = s.consumer(q("ActiveMQ.DLQ"), None).await.unwrap();
    assert_eq!(texts(&[recv(&shared).await]), ["plain"]);
    assert_none(&shared).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_redelivery_waits_its_delay_and_does_not_hold_back_the_rest(engine: Engine) {
    let Some(env) = Env::new(engine, ENTRIES) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Individual).unwrap();
    let c = s.consumer(q("slow.jobs"), None).await.unwrap();
    let p = s.producer(q("slow.jobs")).unwrap();
    p.send(Outgoing::text("first")).await.unwrap();
    let m = recv(&c).await;
    let failed = Instant::now();
    s.nack(&m).await.unwrap();
    p.send(Outgoing::text("second")).await.unwrap();
    // The next message is not held back by the one waiting out its delay.
    let next = recv(&c).await;
    assert_eq!(texts(&[next]), ["second"]);
    let again = recv(&c).await;
    assert!(
        failed.elapsed() >= Duration::from_millis(400),
        "redelivered {:?} after a failure with a 400 ms redelivery delay",
        failed.elapsed()
    );
    assert_eq!(texts(std::slice::from_ref(&again)), ["first"]);
    assert_eq!(again.message().redelivery_count, 1);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn expired_messages_follow_their_destination_policy(engine: Engine) {
    let Some(env) = Env::new(engine, ENTRIES) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    for name in ["quiet.a", "loud.a"] {
        s.producer(q(name))
            .unwrap()
            .send(
                Outgoing::text(name)
                    .persistent(true)
                    .time_to_live(Duration::from_millis(50)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    broker.expire_now().await.unwrap();
    // quiet.>: discarded; elsewhere the default, the DLQ.
    let dlq = s.consumer(q("ActiveMQ.DLQ"), None).await.unwrap();
    assert_eq!(texts(&[recv(&dlq).await]), ["loud.a"]);
    assert_none(&dlq).await;
    for name in ["quiet.a", "loud.a"] {
        let c = s.consumer(q(name), None).await.unwrap();
        assert_none(&c).await;
    }
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn queue_names(broker: &Broker) -> Vec<String> {
    let mut names: Vec<String> = broker
        .destination_stats()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.destination.is_queue())
        .map(|d| d.destination.name.to_string())
        .collect();
    names.sort();
    names
}

async fn inactive_queues_are_removed_when_their_entry_says_so(engine: Engine) {
    let Some(env) = Env::new(engine, ENTRIES) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    for name in ["temp.idle", "temp.full", "kept.idle"] {
        let c = s.consumer(q(name), None).await.unwrap();
        c.close().await;
    }
    s.producer(q("temp.full"))
        .unwrap()
        .send(Outgoing::text("waiting").persistent(true))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue_names(&broker).await.contains(&"temp.idle".to_owned()) {
        assert!(Instant::now() < deadline, "temp.idle never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One with a message, and one no entry lets go, stay.
    assert_eq!(queue_names(&broker).await, ["kept.idle", "temp.full"]);
    conn.close().await;
    broker.stop().await;
    if !engine.durable() {
        env.cleanup().await;
        return;
    }
    // Gone from the store too: not recovered at the next start; the others are.
    let broker = env.start().await;
    assert_eq!(queue_names(&broker).await, ["kept.idle", "temp.full"]);
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("temp.full"), None).await.unwrap();
    assert_eq!(texts(&[recv(&c).await]), ["waiting"]);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

/// ActiveMQ's per-queue `memoryLimit` (`memory_limit_bytes`): non-persistent sends to a queue
/// at its own limit are refused (here: `send_fail_if_no_space`) while other queues take more,
/// draining makes room again, and persistent messages beyond it wait in the store and all
/// arrive, paged in under the limit.
async fn a_queue_memory_limit_holds_back_its_own_producers_only(engine: Engine) {
    let Some(env) = Env::new(
        engine,
        "[policy]\nsend_fail_if_no_space = true\n[[policy.entries]]\nqueue = \"small.>\"\nmemory_limit_bytes = 8192\n",
    ) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let small = s.producer(q("small.q")).unwrap();
    let other = s.producer(q("other.q")).unwrap();
    let kib = |i: usize| {
        Outgoing::bytes(vec![b'x'; 1024])
            .persistent(false)
            .property("n", broker_core::Value::I64(i as i64))
    };
    let mut sent = 0;
    let refusal = loop {
        match small.send(kib(sent)).await {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100, "the queue's limit never held");
    };
    assert!((6..=9).contains(&sent), "{sent} KiB messages fit in 8 KiB");
    assert!(
        refusal.to_string().contains("small.q")
            && refusal.to_string().contains("memory_limit_bytes"),
        "{refusal}"
    );
    // Another queue is not held back by it.
    for i in 0..20 {
        other.send(kib(i)).await.unwrap();
    }
    // Draining makes room.
    let c = s.consumer(q("small.q"), None).await.unwrap();
    for _ in 0..sent {
        recv(&c).await;
    }
    // (The acks free the memory as they are applied, a moment after the receives.)
    let mut tries = 0;
    while let Err(e) = small.send(kib(0)).await {
        tries += 1;
        assert!(tries < 250, "no room after draining: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recv(&c).await;
    c.close().await;
    // Persistent messages wait in the store: 40 KiB into an 8 KiB queue, all delivered.
    if engine.durable() {
        for i in 0..40 {
            small
                .send(
                    Outgoing::bytes(vec![b'y'; 1024])
                        .persistent(true)
                        .property("n", broker_core::Value::I64(i)),
                )
                .await
                .unwrap();
        }
        let c = s.consumer(q("small.q"), None).await.unwrap();
        for _ in 0..40 {
            recv(&c).await;
        }
        assert_none(&c).await;
    }
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}
