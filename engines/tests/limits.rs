//! `limits.store_bytes` (ActiveMQ's `storeUsage`) and producer flow control on every engine: a
//! producer past the limit is held until a consumer drains the store, then goes on with nothing
//! lost; with `send_fail_if_no_space` it is refused at once, naming the limit. And the
//! connection and producer caps.
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
    let mut last = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last {
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
