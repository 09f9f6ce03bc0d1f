//! Message groups and exclusive consumers through the broker (issue 25), each scenario on the
//! memory and the KahaDB engine: a group stays on one consumer, in order; it moves when that
//! consumer closes, its unacked messages redelivered to the new owner first; `JMSXGroupSeq` -1
//! closes it; an exclusive consumer gets everything and the next one takes over when it goes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use broker_core::{
    AckMode, Consumer, Destination, GROUP_FIRST_FOR_CONSUMER, Outgoing, Received, Value,
};
use common::{Engine, Env, assert_none, recv, recv_n, texts};

on_engines!(
    [memory => Memory, kahadb => KahaDb]
    (
        each_group_stays_on_one_consumer_in_order_and_ungrouped_messages_round_robin,
        a_group_moves_when_its_consumer_closes_with_its_unacked_messages_first,
        group_seq_minus_one_closes_the_group,
        an_exclusive_consumer_gets_everything_and_the_next_takes_over,
    )
);

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

fn grouped(text: &str, group: &str, seq: i32) -> Outgoing {
    let mut o = Outgoing::text(text);
    o.group_id = Some(group.to_owned());
    o.group_seq = seq;
    o
}

fn first_for_consumer(m: &Received) -> bool {
    matches!(
        m.message().properties.get(GROUP_FIRST_FOR_CONSUMER),
        Some(Value::Bool(true))
    )
}

/// Everything a consumer has, until a quiet period.
async fn drain(c: &Consumer) -> Vec<Received> {
    let mut out = Vec::new();
    while let Some(m) = c
        .receive_timeout(std::time::Duration::from_millis(300))
        .await
        .unwrap()
    {
        out.push(m);
    }
    out
}

async fn each_group_stays_on_one_consumer_in_order_and_ungrouped_messages_round_robin(
    engine: Engine,
) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s1 = conn.session(AckMode::Auto).unwrap();
    let s2 = conn.session(AckMode::Auto).unwrap();
    let c1 = s1.consumer(q("groups"), None).await.unwrap();
    let c2 = s2.consumer(q("groups"), None).await.unwrap();
    let p = s1.producer(q("groups")).unwrap();
    for i in 0..10 {
        p.send(grouped(&format!("A-{i}"), "A", i + 1))
            .await
            .unwrap();
        p.send(grouped(&format!("B-{i}"), "B", i + 1))
            .await
            .unwrap();
        p.send(Outgoing::text(format!("plain-{i}"))).await.unwrap();
    }
    let got1 = drain(&c1).await;
    let got2 = drain(&c2).await;
    assert_eq!(got1.len() + got2.len(), 30);
    let expected = |g: &str| (0..10).map(|i| format!("{g}-{i}")).collect::<Vec<_>>();
    let of = |ms: &[Received], g: &str| {
        texts(ms)
            .into_iter()
            .filter(|t| t.starts_with(&format!("{g}-")))
            .collect::<Vec<_>>()
    };
    // Each group whole on one consumer, in order; the two groups on different consumers (the
    // first message of each goes round robin).
    for g in ["A", "B"] {
        let (on1, on2) = (of(&got1, g), of(&got2, g));
        assert!(
            (on1 == expected(g) && on2.is_empty()) || (on2 == expected(g) && on1.is_empty()),
            "group {g} split: {on1:?} / {on2:?}"
        );
    }
    assert_ne!(of(&got1, "A").is_empty(), of(&got1, "B").is_empty());
    // Only the first message of a group a consumer gets says so.
    for ms in [&got1, &got2] {
        let firsts: Vec<String> = ms
            .iter()
            .filter(|m| first_for_consumer(m))
            .map(|m| m.text().unwrap().to_owned())
            .collect();
        assert_eq!(firsts.len(), 1, "{firsts:?}");
        assert!(firsts[0].ends_with("-0"), "{firsts:?}");
    }
    // The consumers holding groups still share the ungrouped messages.
    let (p1, p2) = (of(&got1, "plain").len(), of(&got2, "plain").len());
    assert_eq!(p1 + p2, 10);
    assert!(p1 > 0 && p2 > 0, "ungrouped messages: {p1} / {p2}");
    broker.stop().await;
    env.cleanup().await;
}

async fn a_group_moves_when_its_consumer_closes_with_its_unacked_messages_first(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s1 = conn.session(AckMode::Client).unwrap();
    let s2 = conn.session(AckMode::Auto).unwrap();
    let c1 = s1.consumer(q("moving"), None).await.unwrap();
    let c2 = s2.consumer(q("moving"), None).await.unwrap();
    let p = s2.producer(q("moving")).unwrap();
    for i in 0..6 {
        p.send(grouped(&format!("A-{i}"), "A", i + 1))
            .await
            .unwrap();
    }
    // c1 owns the group: it takes three without acking them; the rest wait in its prefetch.
    let taken = recv_n(&c1, 3).await;
    assert_eq!(texts(&taken), ["A-0", "A-1", "A-2"]);
    assert!(first_for_consumer(&taken[0]));
    assert_none(&c2).await;
    // It closes: the three it had are redelivered, before those it never received, all to c2.
    c1.close().await;
    s1.close().await;
    p.send(grouped("A-6", "A", 7)).await.unwrap();
    let moved = recv_n(&c2, 7).await;
    assert_eq!(
        texts(&moved),
        ["A-0", "A-1", "A-2", "A-3", "A-4", "A-5", "A-6"]
    );
    assert!(moved[..3].iter().all(|m| m.redelivered()));
    assert!(!moved[3].redelivered());
    assert!(first_for_consumer(&moved[0]));
    assert!(moved[1..].iter().all(|m| !first_for_consumer(m)));
    assert_none(&c2).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn group_seq_minus_one_closes_the_group(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s1 = conn.session(AckMode::Auto).unwrap();
    let s2 = conn.session(AckMode::Auto).unwrap();
    let c1 = s1.consumer(q("closing"), None).await.unwrap();
    let c2 = s2.consumer(q("closing"), None).await.unwrap();
    let p = s1.producer(q("closing")).unwrap();
    p.send(grouped("A-0", "A", 1)).await.unwrap();
    p.send(grouped("A-1", "A", 2)).await.unwrap();
    assert_eq!(texts(&recv_n(&c1, 2).await), ["A-0", "A-1"]);
    // The last of the group still goes to its owner; then the group is free.
    p.send(grouped("A-last", "A", -1)).await.unwrap();
    let last = recv(&c1).await;
    assert_eq!(last.text(), Some("A-last"));
    assert!(!first_for_consumer(&last));
    // The next message of that id starts a new group, assigned round robin: to c2 this time.
    p.send(grouped("A-again", "A", 1)).await.unwrap();
    let again = recv(&c2).await;
    assert_eq!(again.text(), Some("A-again"));
    assert!(first_for_consumer(&again));
    assert_none(&c1).await;
    broker.stop().await;
    env.cleanup().await;
}

async fn an_exclusive_consumer_gets_everything_and_the_next_takes_over(engine: Engine) {
    let env = Env::new(engine, "").unwrap();
    let broker = env.start().await;
    let conn = broker.connect(None).await.unwrap();
    let s1 = conn.session(AckMode::Client).unwrap();
    let s2 = conn.session(AckMode::Auto).unwrap();
    let s3 = conn.session(AckMode::Auto).unwrap();
    let plain = s3.consumer(q("exclusive"), None).await.unwrap();
    let e1 = s1
        .exclusive_consumer(q("exclusive"), None, None)
        .await
        .unwrap();
    let e2 = s2
        .exclusive_consumer(q("exclusive"), None, None)
        .await
        .unwrap();
    let p = s3.producer(q("exclusive")).unwrap();
    for i in 0..6 {
        p.send(Outgoing::text(format!("m-{i}"))).await.unwrap();
    }
    assert_eq!(texts(&recv_n(&e1, 3).await), ["m-0", "m-1", "m-2"]);
    assert_none(&e2).await;
    assert_none(&plain).await;
    // e1 goes with three unacked: the next exclusive consumer takes over, redelivered first.
    e1.close().await;
    s1.close().await;
    p.send(Outgoing::text("m-6")).await.unwrap();
    let taken = recv_n(&e2, 7).await;
    assert_eq!(
        texts(&taken),
        ["m-0", "m-1", "m-2", "m-3", "m-4", "m-5", "m-6"]
    );
    assert!(taken[..3].iter().all(|m| m.redelivered()));
    assert_none(&plain).await;
    // With no exclusive consumer left, the queue is an ordinary one again.
    e2.close().await;
    p.send(Outgoing::text("m-7")).await.unwrap();
    assert_eq!(recv(&plain).await.text(), Some("m-7"));
    broker.stop().await;
    env.cleanup().await;
}
