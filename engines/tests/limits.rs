//! `limits.store_bytes` (ActiveMQ's `storeUsage`) and producer flow control on every engine: a
//! producer past the limit is held until a consumer drains the store, then goes on with nothing
//! lost; with `send_fail_if_no_space` it is refused at once, naming the limit. And the
//! connection and producer caps. And `limits.temp_bytes` (ActiveMQ's `tempUsage`): with memory
//! full, non-persistent messages spool to `<data_directory>/tmp_storage` instead of holding
//! their producer, come back in order, and leave nothing on disk once consumed; the temp
//! store's own limit holds or refuses the producer, naming `limits.temp_bytes`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broker_core::{AckMode, BrokerError, Destination, Outgoing};
use common::{Engine, Env, assert_none, recv, texts};

on_engines!(
    [memory => Memory]
    (
        a_full_store_holds_the_producer_until_consumers_drain_it,
        a_full_store_refuses_at_once_when_the_policy_says_so,
        connections_and_producers_are_capped,
        connections_per_user_and_destinations_are_capped,
        non_persistent_messages_past_memory_spool_to_disk_and_come_back_in_order,
        a_stalled_topic_subscriber_spools_too,
        virtual_topic_copies_spool_too,
        a_slow_subscribers_spooled_messages_count_towards_its_pending_limit,
        the_temp_store_is_emptied_at_start,
        a_full_temp_store_refuses_at_once_naming_the_key,
        a_full_temp_store_holds_the_producer_until_consumers_drain_it,
    )
);
on_engines!(
    [kahadb => KahaDb]
    (
        non_persistent_messages_past_memory_spool_to_disk_and_come_back_in_order,
        the_temp_store_is_emptied_at_start,
    )
);
on_durable_engines!(a_full_store_holds_the_producer_until_consumers_drain_it);

const SMALL_STORE: &str = "[limits]\nstore_bytes = 65536\nstore_usage_check_interval_ms = 20\n";
const COUNT: usize = 40;

fn body(i: usize) -> String {
    format!("{i:04}{}", "x".repeat(4096))
}

async fn a_full_store_holds_the_producer_until_consumers_drain_it(engine: Engine) {
    let Some(env) = Env::new(engine, SMALL_STORE) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let q = Destination::queue("flow");
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let s = conn.session(AckMode::Auto).unwrap();
        let p = s.producer(q.clone()).unwrap();
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            for i in 0..COUNT {
                p.send(Outgoing::text(body(i)).persistent(true))
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // 40 messages of 4 KiB do not fit in 64 KiB: the producer stops short of the end.
    // Held means no progress while the store is full: a pause alone can be a slow database
    // on a loaded machine, so the store's use must have reached the limit too.
    let mut last = usize::MAX;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::SeqCst);
        let full = broker.store_usage().is_ok_and(|(used, _)| used >= 60_000);
        if now == last && full {
            break;
        }
        last = now;
    }
    let held_at = sent.load(Ordering::SeqCst);
    assert!(
        held_at < COUNT && !producer.is_finished(),
        "the producer was not held: {held_at} of {COUNT} sent"
    );
    let (used, limit) = broker.store_usage().unwrap();
    assert_eq!(limit, 65536);
    assert!(used >= 60_000, "store use {used} when held");
    // A consumer drains: the producer goes on, and every message arrives once, in order.
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q, None).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..COUNT {
        got.extend(texts(&[recv(&c).await]));
    }
    producer.await.unwrap();
    assert_eq!(got, (0..COUNT).map(body).collect::<Vec<_>>());
    assert_none(&c).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_full_store_refuses_at_once_when_the_policy_says_so(engine: Engine) {
    let extra = format!("{SMALL_STORE}[policy]\nsend_fail_if_no_space = true\n");
    let Some(env) = Env::new(engine, &extra) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(Destination::queue("refused")).unwrap();
    let mut refused = None;
    for i in 0..COUNT {
        match p.send(Outgoing::text(body(i)).persistent(true)).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
        // Let the monitor measure between sends.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (at, e) = refused.expect("a send past the limit is refused");
    assert!(at < COUNT);
    assert!(
        matches!(&e, BrokerError::ResourceLimit(m) if m.contains("limits.store_bytes")),
        "{e:?}"
    );
    // Non-persistent messages do not use the store and still go.
    p.send(Outgoing::text("light").persistent(false))
        .await
        .unwrap();
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn connections_and_producers_are_capped(engine: Engine) {
    let extra = "[limits]\nmax_connections = 2\nmax_producers_per_connection = 2\n";
    let Some(env) = Env::new(engine, extra) else {
        return;
    };
    let broker = env.start().await;
    let a = broker.connect(None).await.unwrap();
    let b = broker.connect(Some("second")).await.unwrap();
    match broker.connect(Some("third")).await {
        Err(BrokerError::ConnectionLimit { key, .. }) => assert_eq!(key, "limits.max_connections"),
        other => panic!("a third connection: {:?}", other.map(|c| c.id().to_owned())),
    }
    // The refused one's client id is free again, and a closed connection frees its place.
    b.close().await;
    let c = broker.connect(Some("third")).await.unwrap();
    let s = a.session(AckMode::Auto).unwrap();
    let p1 = s.producer(Destination::queue("p1")).unwrap();
    let _p2 = s.producer(Destination::queue("p2")).unwrap();
    match s.producer(Destination::queue("p3")) {
        Err(BrokerError::ConnectionLimit { key, .. }) => {
            assert_eq!(key, "limits.max_producers_per_connection")
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("a third producer on one connection"),
    }
    drop(p1);
    s.producer(Destination::queue("p3")).unwrap();
    c.close().await;
    a.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn connections_per_user_and_destinations_are_capped(engine: Engine) {
    let extra = "[limits]\nmax_connections_per_user = 2\nmax_destinations = 3\n";
    let Some(env) = Env::new(engine, extra) else {
        return;
    };
    let broker = env.start().await;
    let map = Arc::new(broker_core::authorization::AuthorizationMap::default());
    let user =
        |name: &str| broker_core::authorization::Subject::new(name, Vec::new(), Arc::clone(&map));
    let a = broker.connect(None).await.unwrap();
    a.set_subject(user("app")).unwrap();
    let b = broker.connect(None).await.unwrap();
    b.set_subject(user("app")).unwrap();
    let c = broker.connect(None).await.unwrap();
    match c.set_subject(user("app")) {
        Err(BrokerError::ConnectionLimit { key, .. }) => {
            assert_eq!(key, "limits.max_connections_per_user")
        }
        other => panic!("a third connection of one user: {other:?}"),
    }
    // Another user is not held back by the first one's connections.
    c.set_subject(user("other")).unwrap();
    // A closed connection frees its user's place.
    b.close().await;
    let d = broker.connect(None).await.unwrap();
    d.set_subject(user("app")).unwrap();

    let s = a.session(AckMode::Auto).unwrap();
    let mut made = 0;
    let mut refused = None;
    for i in 0..10 {
        match s
            .consumer(Destination::queue(format!("capped.{i}")), None)
            .await
        {
            Ok(_) => made += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        Some(BrokerError::ConnectionLimit { key, .. }) => {
            assert_eq!(key, "limits.max_destinations")
        }
        other => panic!("destinations past the cap: {other:?} after {made}"),
    }
    assert!(made <= 3, "{made} destinations made under a cap of 3");
    // An existing destination can still be used.
    if made > 0 {
        s.consumer(Destination::queue("capped.0"), None)
            .await
            .unwrap();
    }
    for conn in [a, c, d] {
        conn.close().await;
    }
    broker.stop().await;
    env.cleanup().await;
}

/// 64 KiB of memory, 4 MiB of temp store, and a send that finds no room fails at once: so a
/// send that succeeds past the memory did not wait for it.
const SPOOL: &str = "[limits]\nmemory_bytes = 65536\ntemp_bytes = 4194304\n[policy]\nsend_fail_if_no_space = true\n";
/// 100 messages of 4 KiB: six times the memory.
const MANY: usize = 100;

fn spool_files(env: &Env) -> usize {
    std::fs::read_dir(env.dir.path().join("tmp_storage")).map_or(0, |d| d.count())
}

/// Waits (10 s at most) for the temp store's files to be deleted: that runs off the async
/// workers, after the records are freed.
async fn assert_spool_files_gone(env: &Env) {
    for _ in 0..200 {
        if spool_files(env) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} temp store files left after consumption",
        spool_files(env)
    );
}

async fn non_persistent_messages_past_memory_spool_to_disk_and_come_back_in_order(engine: Engine) {
    let Some(env) = Env::new(engine, SPOOL) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let q = Destination::queue("spooled");
    let p = s.producer(q.clone()).unwrap();
    for i in 0..MANY {
        p.send(Outgoing::text(body(i)).persistent(false))
            .await
            .unwrap_or_else(|e| panic!("send {i} was refused: {e}"));
    }
    let (used, limit) = broker.temp_usage().unwrap();
    assert_eq!(limit, 4_194_304);
    assert!(
        used > 300_000,
        "temp store use {used} after 400 KiB past 64 KiB of memory"
    );
    assert!(spool_files(&env) > 0, "spooled to files under tmp_storage");
    let (_, peak, memory_limit) = broker.memory_usage().unwrap();
    assert!(
        peak <= memory_limit + 8 * 1024,
        "memory peak {peak} of {memory_limit}"
    );
    let stats = broker.destination_stats().await.unwrap();
    let pending = stats.iter().find(|d| d.destination == q).unwrap().pending;
    assert_eq!(pending, MANY as u64, "spooled messages count as pending");

    let c = s.consumer(q, None).await.unwrap();
    let got = texts(&common::recv_n(&c, MANY).await);
    assert_eq!(got, (0..MANY).map(body).collect::<Vec<_>>());
    assert_none(&c).await;
    assert_eq!(
        broker.temp_usage().unwrap().0,
        0,
        "consumed: nothing left spooled"
    );
    let (_, peak, _) = broker.memory_usage().unwrap();
    // Paging back in takes what fits in the room left, one message over at most; the
    // consumer's prefetch holds messages until they are acked.
    assert!(
        peak <= memory_limit + 8 * 1024,
        "memory peak {peak} while paging in"
    );
    assert_spool_files_gone(&env).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_stalled_topic_subscriber_spools_too(engine: Engine) {
    let Some(env) = Env::new(engine, SPOOL) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let t = Destination::topic("spooled");
    let a = s.consumer_with_prefetch(t.clone(), None, 1).await.unwrap();
    let b = s.consumer_with_prefetch(t.clone(), None, 1).await.unwrap();
    let p = s.producer(t).unwrap();
    for i in 0..MANY {
        p.send(Outgoing::text(body(i)).persistent(i % 2 == 0))
            .await
            .unwrap_or_else(|e| panic!("publish {i} was refused: {e}"));
    }
    let (used, _) = broker.temp_usage().unwrap();
    assert!(used > 300_000, "temp store use {used}");
    // One record per message, shared by both subscribers.
    assert!(
        used < MANY as u64 * 4300,
        "temp store use {used} for {MANY} messages"
    );
    for c in [&a, &b] {
        let got = texts(&common::recv_n(c, MANY).await);
        assert_eq!(got, (0..MANY).map(body).collect::<Vec<_>>());
    }
    assert_none(&a).await;
    assert_eq!(broker.temp_usage().unwrap().0, 0);
    assert_spool_files_gone(&env).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

/// `max_pending_non_durable` counts a subscriber's messages in memory and in the temp store
/// together: past it the oldest are dropped wherever they are, so a stalled subscriber holds
/// at most that many, on disk too.
async fn a_slow_subscribers_spooled_messages_count_towards_its_pending_limit(engine: Engine) {
    let extra = "[limits]\nmemory_bytes = 65536\ntemp_bytes = 4194304\nmax_pending_non_durable = 20\n[policy]\nsend_fail_if_no_space = true\n";
    let Some(env) = Env::new(engine, extra) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let t = Destination::topic("slow.spooled");
    let c = s.consumer_with_prefetch(t.clone(), None, 1).await.unwrap();
    let p = s.producer(t.clone()).unwrap();
    for i in 0..MANY {
        p.send(Outgoing::text(body(i)).persistent(false))
            .await
            .unwrap_or_else(|e| panic!("publish {i} was refused: {e}"));
    }
    let (used, _) = broker.temp_usage().unwrap();
    assert!(used > 0, "nothing spooled");
    assert!(
        used <= 21 * 4300,
        "temp store use {used} past 20 pending messages"
    );
    let mut got = Vec::new();
    while let Some(m) = c.receive_timeout(Duration::from_millis(500)).await.unwrap() {
        got.extend(texts(&[m]));
    }
    assert!((20..=22).contains(&got.len()), "{} received", got.len());
    // The newest are kept, in order.
    assert_eq!(
        got[got.len() - 20..],
        (80..MANY).map(body).collect::<Vec<_>>()
    );
    let dropped = broker
        .destination_stats()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.destination == t && d.subscription.is_none())
        .map_or(0, |d| d.slow_consumer_dropped);
    assert_eq!(dropped as usize, MANY - got.len());
    assert_eq!(broker.temp_usage().unwrap().0, 0);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

/// The copies of a virtual-topic send (a send to several destinations at once) spool as
/// sends to each would.
async fn virtual_topic_copies_spool_too(engine: Engine) {
    let Some(env) = Env::new(engine, SPOOL) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s
        .consumer_with_prefetch(
            Destination::queue("Consumer.A.VirtualTopic.Spooled"),
            None,
            1,
        )
        .await
        .unwrap();
    let p = s
        .producer(Destination::topic("VirtualTopic.Spooled"))
        .unwrap();
    for i in 0..MANY {
        p.send(Outgoing::text(body(i)).persistent(false))
            .await
            .unwrap_or_else(|e| panic!("publish {i} was refused: {e}"));
    }
    assert!(broker.temp_usage().unwrap().0 > 300_000);
    let got = texts(&common::recv_n(&c, MANY).await);
    assert_eq!(got, (0..MANY).map(body).collect::<Vec<_>>());
    assert_none(&c).await;
    assert_eq!(broker.temp_usage().unwrap().0, 0);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn the_temp_store_is_emptied_at_start(engine: Engine) {
    let Some(env) = Env::new(engine, SPOOL) else {
        return;
    };
    let q = Destination::queue("spooled");
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(q.clone()).unwrap();
    for i in 0..MANY {
        p.send(Outgoing::text(body(i)).persistent(false))
            .await
            .unwrap();
    }
    p.send(Outgoing::text("kept").persistent(true))
        .await
        .unwrap();
    assert!(spool_files(&env) > 0);
    conn.close().await;
    broker.stop().await;
    // What a crash would leave behind.
    let dir = env.dir.path().join("tmp_storage");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("spool-1.log"), b"AMQSPOOL from a run that crashed").unwrap();

    let broker = env.start().await;
    assert!(!dir.exists(), "tmp_storage is wiped at start");
    assert_eq!(broker.temp_usage().unwrap().0, 0);
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q, None).await.unwrap();
    if engine.durable() {
        // Non-persistent messages are gone with the run; persistent ones are not.
        assert_eq!(texts(&[recv(&c).await]), ["kept"]);
    }
    assert_none(&c).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

/// 64 KiB of memory and 64 KiB of temp store.
const SMALL_TEMP: &str = "[limits]\nmemory_bytes = 65536\ntemp_bytes = 65536\n";

async fn a_full_temp_store_refuses_at_once_naming_the_key(engine: Engine) {
    let extra = format!("{SMALL_TEMP}[policy]\nsend_fail_if_no_space = true\n");
    let Some(env) = Env::new(engine, &extra) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(Destination::queue("refused")).unwrap();
    let mut refused = None;
    for i in 0..MANY {
        if let Err(e) = p.send(Outgoing::text(body(i)).persistent(false)).await {
            refused = Some((i, e));
            break;
        }
    }
    let (at, e) = refused.expect("a send past memory and temp store is refused");
    // About 16 messages fill the memory and 16 more the temp store.
    assert!((20..MANY).contains(&at), "refused at {at}");
    assert!(
        matches!(&e, BrokerError::ResourceLimit(m) if m.contains("limits.temp_bytes")),
        "{e:?}"
    );
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_full_temp_store_holds_the_producer_until_consumers_drain_it(engine: Engine) {
    let extra = format!("{SMALL_TEMP}[policy]\nsend_timeout_ms = 60000\n");
    let Some(env) = Env::new(engine, &extra) else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let q = Destination::queue("held");
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let s = conn.session(AckMode::Auto).unwrap();
        let p = s.producer(q.clone()).unwrap();
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            for i in 0..COUNT * 2 {
                p.send(Outgoing::text(body(i)).persistent(false))
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Held means no progress while the store is full: a pause alone can be a slow database
    // on a loaded machine, so the store's use must have reached the limit too.
    let mut last = usize::MAX;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::SeqCst);
        let full = broker.store_usage().is_ok_and(|(used, _)| used >= 60_000);
        if now == last && full {
            break;
        }
        last = now;
    }
    let held_at = sent.load(Ordering::SeqCst);
    assert!(
        held_at < COUNT * 2 && !producer.is_finished(),
        "the producer was not held: {held_at} of {} sent",
        COUNT * 2
    );
    let (used, limit) = broker.temp_usage().unwrap();
    assert!(used >= limit, "temp store use {used} of {limit} when held");
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(q, None).await.unwrap();
    let got = texts(&common::recv_n(&c, COUNT * 2).await);
    producer.await.unwrap();
    assert_eq!(got, (0..COUNT * 2).map(body).collect::<Vec<_>>());
    assert_none(&c).await;
    assert_eq!(broker.temp_usage().unwrap().0, 0);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}
