//! Advisory topics (`ActiveMQ.Advisory.*`, ActiveMQ's names) through the broker, on the memory
//! and KahaDB engines: consumers, producers, destinations, connections, expired and
//! dead-lettered messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use broker_core::{AckMode, Consumer, Destination, Outgoing, Received, Value};
use common::{Engine, Env, assert_none, recv};

on_engines!(
    [memory => Memory, kahadb => KahaDb]
    (
        consumer_and_producer_advisories_count_them_as_they_come_and_go,
        destination_advisories_tell_creation_and_deletion,
        expired_and_dead_lettered_messages_are_advised,
        a_wildcard_watcher_hears_connections_but_advisories_are_not_advised,
    )
);

fn topic(name: &str) -> Destination {
    Destination::topic(name)
}

fn prop(m: &Received, key: &str) -> Value {
    m.message()
        .properties
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("no {key} in {:?}", m.message().properties))
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// The next advisory on `c`, skipping none.
async fn advisory(c: &Consumer) -> Received {
    let m = recv(c).await;
    assert_eq!(m.message().message_type.as_deref(), Some("Advisory"));
    assert!(!m.message().persistent);
    m
}

async fn consumer_and_producer_advisories_count_them_as_they_come_and_go(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s0 = conn.session(AckMode::Auto).unwrap();
    let consumers = s0
        .consumer(topic("ActiveMQ.Advisory.Consumer.Queue.orders"), None)
        .await
        .unwrap();
    let producers = s0
        .consumer(topic("ActiveMQ.Advisory.Producer.Queue.orders"), None)
        .await
        .unwrap();
    let other = broker.connect(None).await.unwrap();
    let s1 = other.session(AckMode::Auto).unwrap();
    let q = Destination::queue("orders");
    let a = s1.consumer(q.clone(), None).await.unwrap();
    let m = advisory(&consumers).await;
    assert_eq!(prop(&m, "event"), s("started"));
    assert_eq!(prop(&m, "consumerCount"), Value::I32(1));
    assert_eq!(prop(&m, "destination"), s("queue://orders"));
    assert_eq!(prop(&m, "connectionId"), s(other.id()));
    let b = s1.consumer(q.clone(), None).await.unwrap();
    assert_eq!(
        prop(&advisory(&consumers).await, "consumerCount"),
        Value::I32(2)
    );
    a.close().await;
    let m = advisory(&consumers).await;
    assert_eq!(prop(&m, "event"), s("stopped"));
    assert_eq!(prop(&m, "consumerCount"), Value::I32(1));
    drop(b);
    assert_eq!(
        prop(&advisory(&consumers).await, "consumerCount"),
        Value::I32(0)
    );
    let p = s1.producer(q.clone()).unwrap();
    let m = advisory(&producers).await;
    assert_eq!(prop(&m, "event"), s("started"));
    assert_eq!(prop(&m, "producerCount"), Value::I32(1));
    drop(p);
    let m = advisory(&producers).await;
    assert_eq!(prop(&m, "event"), s("stopped"));
    assert_eq!(prop(&m, "producerCount"), Value::I32(0));
    // Nothing about other destinations.
    let elsewhere = s1
        .consumer(Destination::queue("elsewhere"), None)
        .await
        .unwrap();
    elsewhere.close().await;
    assert_none(&consumers).await;
    other.close().await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn destination_advisories_tell_creation_and_deletion(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s0 = conn.session(AckMode::Auto).unwrap();
    let queues = s0
        .consumer(topic("ActiveMQ.Advisory.Queue"), None)
        .await
        .unwrap();
    let topics = s0
        .consumer(topic("ActiveMQ.Advisory.Topic"), None)
        .await
        .unwrap();
    s0.producer(Destination::queue("fresh"))
        .unwrap()
        .send(Outgoing::text("x"))
        .await
        .unwrap();
    let m = advisory(&queues).await;
    assert_eq!(prop(&m, "event"), s("created"));
    assert_eq!(prop(&m, "destination"), s("queue://fresh"));
    s0.producer(topic("fresh.news"))
        .unwrap()
        .send(Outgoing::text("y"))
        .await
        .unwrap();
    let m = advisory(&topics).await;
    assert_eq!(prop(&m, "destination"), s("topic://fresh.news"));
    // A second send creates nothing.
    s0.producer(Destination::queue("fresh"))
        .unwrap()
        .send(Outgoing::text("again"))
        .await
        .unwrap();
    broker.delete_queue("fresh").await.unwrap();
    let m = advisory(&queues).await;
    assert_eq!(prop(&m, "event"), s("deleted"));
    assert_eq!(prop(&m, "destination"), s("queue://fresh"));
    assert_none(&queues).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn expired_and_dead_lettered_messages_are_advised(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s0 = conn.session(AckMode::Auto).unwrap();
    let expired = s0
        .consumer(topic("ActiveMQ.Advisory.Expired.Queue.perishable"), None)
        .await
        .unwrap();
    let dlqd = s0
        .consumer(
            topic("ActiveMQ.Advisory.MessageDLQd.Queue.perishable"),
            None,
        )
        .await
        .unwrap();
    let id = s0
        .producer(Destination::queue("perishable"))
        .unwrap()
        .send(
            Outgoing::text("milk")
                .persistent(true)
                .time_to_live(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    broker.expire_now().await.unwrap();
    let m = advisory(&expired).await;
    assert_eq!(prop(&m, "orignalMessageId"), s(&id.to_string()));
    let m = advisory(&dlqd).await;
    assert_eq!(prop(&m, "orignalMessageId"), s(&id.to_string()));
    assert_eq!(prop(&m, "deadLetterQueue"), s("queue://ActiveMQ.DLQ"));
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}

async fn a_wildcard_watcher_hears_connections_but_advisories_are_not_advised(engine: Engine) {
    let Some(env) = Env::new(engine, "") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s0 = conn.session(AckMode::Auto).unwrap();
    let all = s0
        .consumer(topic("ActiveMQ.Advisory.>"), None)
        .await
        .unwrap();
    let other = broker.connect(Some("watched-client")).await.unwrap();
    let m = advisory(&all).await;
    assert_eq!(
        m.message().destination,
        topic("ActiveMQ.Advisory.Connection")
    );
    assert_eq!(prop(&m, "event"), s("started"));
    assert_eq!(prop(&m, "clientId"), s("watched-client"));
    other.close().await;
    let m = advisory(&all).await;
    assert_eq!(prop(&m, "event"), s("stopped"));
    // Subscribing to an advisory topic is not itself advised, nor is its creation.
    let more = s0
        .consumer(topic("ActiveMQ.Advisory.Consumer.Queue.nothing"), None)
        .await
        .unwrap();
    more.close().await;
    assert_none(&all).await;
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}
