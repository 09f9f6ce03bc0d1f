//! Per-destination policies (`[[policy.entries]]`, ActiveMQ's `policyEntry`) through the
//! broker, on the memory and KahaDB engines: redeliveries and individual dead letter queues,
//! redelivery delay, expiry handling, removal of inactive queues and topics, and
//! `prioritized_messages` (arrival order whatever the priority, across pages and restarts).
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
        prioritized_messages_off_delivers_in_arrival_order,
        inactive_topics_are_removed_unless_someone_uses_them,
        a_subscriber_arriving_while_its_topic_is_removed_ends_up_on_a_live_one,
    )
);

on_durable_engines!(prioritized_messages_off_keeps_arrival_order_across_a_restart);

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

/// Arrival order on `fifo.>` queues and topics, priority order elsewhere; four messages
/// paged at a time, so that the store cursor's order matters and not only the window's.
const FIFO: &str = r#"
[limits]
max_page_size = 4
[[policy.entries]]
queue = "fifo.>"
prioritized_messages = false
[[policy.entries]]
topic = "fifo.>"
prioritized_messages = false
"#;

/// Priorities in no order, each used twice.
fn mixed_priority(i: usize) -> u8 {
    ((i * 7) % 10) as u8
}

async fn send_mixed(s: &broker_core::Session, d: Destination, n: usize, persistent: bool) {
    let p = s.producer(d).unwrap();
    for i in 0..n {
        p.send(
            Outgoing::text(format!("m{i}"))
                .priority(mixed_priority(i))
                .persistent(persistent),
        )
        .await
        .unwrap();
    }
}

/// Receives `n` messages and checks each kept the priority it was sent with; returns their
/// texts.
async fn received_in_order(c: &broker_core::Consumer, n: usize) -> Vec<String> {
    let got = common::recv_n(c, n).await;
    for m in &got {
        let i: usize = m.text().unwrap()[1..].parse().unwrap();
        assert_eq!(
            m.message().priority,
            mixed_priority(i),
            "priority header kept"
        );
    }
    assert_none(c).await;
    texts(&got)
}

fn arrival(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

async fn prioritized_messages_off_delivers_in_arrival_order(engine: Engine) {
    let Some(env) = Env::new(engine, FIFO) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let durable = s
        .durable_subscriber(t("fifo.t"), "sub", None)
        .await
        .unwrap();
    durable.close().await;
    send_mixed(&s, q("fifo.q"), 20, true).await;
    send_mixed(&s, q("fifo.np"), 20, false).await;
    send_mixed(&s, q("prio.q"), 20, true).await;
    send_mixed(&s, t("fifo.t"), 20, true).await;
    for name in ["fifo.q", "fifo.np"] {
        let c = s.consumer(q(name), None).await.unwrap();
        assert_eq!(received_in_order(&c, 20).await, arrival(20), "{name}");
        c.close().await;
    }
    let durable = s
        .durable_subscriber(t("fifo.t"), "sub", None)
        .await
        .unwrap();
    assert_eq!(received_in_order(&durable, 20).await, arrival(20));
    // The default: priority 9 first, FIFO within a priority.
    let c = s.consumer(q("prio.q"), None).await.unwrap();
    let mut by_priority: Vec<usize> = (0..20).collect();
    by_priority.sort_by_key(|&i| std::cmp::Reverse(mixed_priority(i)));
    let expected: Vec<String> = by_priority.iter().map(|i| format!("m{i}")).collect();
    assert_eq!(received_in_order(&c, 20).await, expected);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn prioritized_messages_off_keeps_arrival_order_across_a_restart(engine: Engine) {
    let Some(env) = Env::new(engine, FIFO) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let durable = s
        .durable_subscriber(t("fifo.t"), "sub", None)
        .await
        .unwrap();
    durable.close().await;
    send_mixed(&s, q("fifo.q"), 20, true).await;
    send_mixed(&s, t("fifo.t"), 20, true).await;
    // Half consumed before the restart: the rest comes in arrival order after it.
    let c = s.consumer(q("fifo.q"), None).await.unwrap();
    assert_eq!(texts(&common::recv_n(&c, 10).await), arrival(10));
    conn.close().await;
    broker.stop().await;
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q("fifo.q"), None).await.unwrap();
    let rest = received_in_order(&c, 10).await;
    assert_eq!(rest, arrival(20)[10..].to_vec());
    let durable = s
        .durable_subscriber(t("fifo.t"), "sub", None)
        .await
        .unwrap();
    assert_eq!(received_in_order(&durable, 20).await, arrival(20));
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

fn t(name: &str) -> Destination {
    Destination::topic(name)
}

async fn topic_names(broker: &Broker) -> Vec<String> {
    let mut names: Vec<String> = broker
        .destination_stats()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| !d.destination.is_queue() && !d.destination.name.starts_with("ActiveMQ."))
        .map(|d| d.destination.name.to_string())
        .collect();
    names.sort();
    // A durable subscription has a row of its own.
    names.dedup();
    names
}

const TOPIC_GC: &str = r#"
[policy]
gc_check_interval_ms = 100
[[policy.entries]]
topic = "gone.>"
gc_inactive_destinations = true
inactive_timeout_before_gc_ms = 300
"#;

/// ActiveMQ's topic GC: one with no subscriber, no durable subscription and no producer goes
/// (with a destination-deleted advisory, and from the store); one a durable subscription, a
/// subscriber or a producer uses stays, and so does one no entry lets go.
async fn inactive_topics_are_removed_unless_someone_uses_them(engine: Engine) {
    let Some(env) = Env::new(engine, TOPIC_GC) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let advisories = s
        .consumer(t("ActiveMQ.Advisory.Topic"), None)
        .await
        .unwrap();
    for name in ["gone.idle", "kept.idle"] {
        s.consumer(t(name), None).await.unwrap().close().await;
    }
    let durable = s
        .durable_subscriber(t("gone.durable"), "sub", None)
        .await
        .unwrap();
    durable.close().await;
    let listening = s.consumer(t("gone.listened"), None).await.unwrap();
    let producer = s.producer(t("gone.produced")).unwrap();
    producer.send(Outgoing::text("nobody hears")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while topic_names(&broker).await.contains(&"gone.idle".to_owned()) {
        assert!(Instant::now() < deadline, "gone.idle never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for every other gone.> topic to have been looked at too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        topic_names(&broker).await,
        [
            "gone.durable",
            "gone.listened",
            "gone.produced",
            "kept.idle"
        ]
    );
    let mut deleted = Vec::new();
    while let Some(m) = advisories
        .receive_timeout(Duration::from_millis(300))
        .await
        .unwrap()
    {
        let p = |k: &str| m.message().properties.get(k).cloned();
        if p("event") == Some(broker_core::Value::String("deleted".into())) {
            deleted.push(p("destination"));
        }
    }
    assert_eq!(
        deleted,
        [Some(broker_core::Value::String("topic://gone.idle".into()))]
    );
    // Used again, it comes back.
    let again = s.consumer(t("gone.idle"), None).await.unwrap();
    s.producer(t("gone.idle"))
        .unwrap()
        .send(Outgoing::text("back"))
        .await
        .unwrap();
    assert_eq!(texts(&[recv(&again).await]), ["back"]);
    drop((listening, producer));
    conn.close().await;
    broker.stop().await;
    if engine.durable() {
        // The durable subscription's topic is still in the store and recovered.
        let broker = env.start().await;
        assert!(
            topic_names(&broker)
                .await
                .contains(&"gone.durable".to_owned())
        );
        broker.stop().await;
    }
    env.cleanup().await;
}

/// A subscriber arriving while its topic is being removed must end up on a live topic and
/// hear what is sent next. Topic GC runs back to back in another task (timeout 0) while a
/// subscriber comes, hears one message and leaves, 200 times: a subscriber left on a removed
/// topic would miss its message.
async fn a_subscriber_arriving_while_its_topic_is_removed_ends_up_on_a_live_one(engine: Engine) {
    let Some(env) = Env::new(
        engine,
        // Each round recreates a removed topic, which counts as creating a destination: the
        // per-connection rate limit is raised so that the 200 rounds are not refused for it.
        "[limits]\nmax_destinations_created_per_second = 100000\n[[policy.entries]]\ntopic = \"race.>\"\ngc_inactive_destinations = true\ninactive_timeout_before_gc_ms = 0\n",
    ) else {
        return;
    };
    let broker = std::sync::Arc::new(env.start().await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let broker = std::sync::Arc::clone(&broker);
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut passes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                broker.gc_now().await.unwrap();
                passes += 1;
                tokio::task::yield_now().await;
            }
            passes
        })
    };
    let conn = broker.connect(Some("c1")).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    for i in 0..200 {
        let name = if i % 2 == 0 { "race.a" } else { "race.b" };
        let c = if i % 4 < 2 {
            s.consumer(t(name), None).await.unwrap()
        } else {
            s.durable_subscriber(t(name), "sub", None).await.unwrap()
        };
        s.producer(t(name))
            .unwrap()
            .send(Outgoing::text(format!("{i}")).persistent(true))
            .await
            .unwrap();
        let m = c
            .receive_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("round {i}: the subscriber heard nothing"));
        assert_eq!(m.text(), Some(format!("{i}").as_str()));
        c.close().await;
        if i % 4 >= 2 {
            conn.unsubscribe("sub").await.unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = gc.await.unwrap();
    assert!(passes > 0);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}
