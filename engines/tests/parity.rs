//! The same messaging scenario through the broker on every engine, and, for each durable
//! engine, a restart: what was pending before the stop is received exactly once after it.
//! MariaDB and PostgreSQL run when `MYSQL_URL` / `POSTGRES_URL` are set (`.ci/run` sets both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use broker_core::{AckMode, Destination, Outgoing, Value, Xid};
use common::{Engine, Env, assert_none, recv, recv_n, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    parity(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kahadb() {
    parity(Engine::KahaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amq() {
    parity(Engine::Amq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leveldb() {
    parity(Engine::LevelDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_sqlite() {
    parity(Engine::JdbcSqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_mariadb() {
    parity(Engine::JdbcMysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_postgres() {
    parity(Engine::JdbcPostgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_jdbc_sqlite() {
    parity(Engine::JournaledSqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_jdbc_mariadb() {
    parity(Engine::JournaledMysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_jdbc_postgres() {
    parity(Engine::JournaledPostgres).await;
}

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

fn t(name: &str) -> Destination {
    Destination::topic(name)
}

fn xid(n: u8) -> Xid {
    Xid {
        format_id: 7,
        global_id: vec![n, 1, 2],
        branch_qualifier: vec![3],
    }
}

async fn parity(engine: Engine) {
    let Some(env) = Env::new(engine, "[policy]\nmaximum_redeliveries = 1\n") else {
        return;
    };
    let broker = env.start().await;
    let conn = broker.connect(Some("parity")).await.unwrap();
    let auto = conn.session(AckMode::Auto).unwrap();

    // Priority order on a queue.
    let p = auto.producer(q("orders")).unwrap();
    for (i, prio) in [4u8, 8, 1, 8, 4].into_iter().enumerate() {
        p.send(Outgoing::text(format!("{prio}-{i}")).priority(prio))
            .await
            .unwrap();
    }
    let c = auto.consumer(q("orders"), None).await.unwrap();
    assert_eq!(
        texts(&recv_n(&c, 5).await),
        ["8-1", "8-3", "4-0", "4-4", "1-2"]
    );
    c.close().await;

    // CLIENT ack is cumulative; the rest comes back flagged.
    let client = conn.session(AckMode::Client).unwrap();
    for i in 1..=3 {
        p.send(Outgoing::text(format!("c{i}"))).await.unwrap();
    }
    let c = client.consumer(q("orders"), None).await.unwrap();
    let got = recv_n(&c, 3).await;
    client.acknowledge(&got[1]).await.unwrap();
    client.close().await;
    let c = auto.consumer(q("orders"), None).await.unwrap();
    let back = recv(&c).await;
    assert_eq!((back.text(), back.redelivered()), (Some("c3"), true));
    c.close().await;

    // Transactions: rollback discards sends and redelivers receives; commit applies both.
    let tx = conn.session(AckMode::Transacted).unwrap();
    let tp = tx.producer(q("tx")).unwrap();
    tp.send(Outgoing::text("rolled back")).await.unwrap();
    tx.rollback().await.unwrap();
    tp.send(Outgoing::text("committed")).await.unwrap();
    tx.commit().await.unwrap();
    let tc = tx.consumer(q("tx"), None).await.unwrap();
    assert_eq!(recv(&tc).await.text(), Some("committed"));
    tx.rollback().await.unwrap();
    let again = recv(&tc).await;
    assert!(again.redelivered());
    tx.commit().await.unwrap();
    assert_none(&tc).await;
    tc.close().await;

    // Past maximum_redeliveries (1) a message moves to the DLQ.
    tp.send(Outgoing::text("poison")).await.unwrap();
    tx.commit().await.unwrap();
    let tc = tx.consumer(q("tx"), None).await.unwrap();
    for _ in 0..2 {
        assert_eq!(recv(&tc).await.text(), Some("poison"));
        tx.rollback().await.unwrap();
    }
    assert_none(&tc).await;
    tc.close().await;
    let dead = broker.browse("ActiveMQ.DLQ", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(matches!(
        dead[0].properties.get("dlqDeliveryFailureCause"),
        Some(Value::String(_))
    ));

    // A durable subscription away: persistent messages wait, non-persistent ones do not.
    let sub = auto
        .durable_subscriber(t("feed"), "keeper", Some("n >= 0"))
        .await
        .unwrap();
    sub.close().await;
    let tpub = auto.producer(t("feed")).unwrap();
    for i in 0..5 {
        tpub.send(Outgoing::text(format!("f{i}")).property("n", Value::I32(i)))
            .await
            .unwrap();
    }
    tpub.send(Outgoing::text("skipped by the selector").property("n", Value::I32(-1)))
        .await
        .unwrap();
    tpub.send(Outgoing::text("not kept").persistent(false))
        .await
        .unwrap();

    // Pending work for the restart: 10 queue messages, 5 for the subscription, one XA
    // transaction prepared with an ack and an add.
    let rq = auto.producer(q("restart")).unwrap();
    for i in 0..10 {
        rq.send(Outgoing::text(format!("r{i}"))).await.unwrap();
    }
    p.send(Outgoing::text("held by xa")).await.unwrap();
    tx.xa_start(xid(1)).await.unwrap();
    let xc = tx.consumer(q("orders"), None).await.unwrap();
    assert_eq!(recv(&xc).await.text(), Some("held by xa"));
    tx.producer(q("xa-out"))
        .unwrap()
        .send(Outgoing::text("xa add"))
        .await
        .unwrap();
    tx.xa_prepare().await.unwrap();
    xc.close().await;

    let broker = if engine.durable() {
        conn.close().await;
        broker.stop().await;
        let b = env.start().await;
        assert_eq!(
            b.prepared_transactions().unwrap(),
            [xid(1)],
            "{engine:?}: prepared XA survives"
        );
        b
    } else {
        conn.close().await;
        broker
    };

    let conn = broker.connect(Some("parity")).await.unwrap();
    let auto = conn.session(AckMode::Auto).unwrap();
    let rc = auto.consumer(q("restart"), None).await.unwrap();
    let got: BTreeSet<String> = texts(&recv_n(&rc, 10).await).into_iter().collect();
    assert_eq!(
        got,
        (0..10).map(|i| format!("r{i}")).collect::<BTreeSet<_>>()
    );
    assert_none(&rc).await;
    let sub = auto
        .durable_subscriber(t("feed"), "keeper", Some("n >= 0"))
        .await
        .unwrap();
    assert_eq!(
        texts(&recv_n(&sub, 5).await),
        ["f0", "f1", "f2", "f3", "f4"]
    );
    assert_none(&sub).await;
    let oc = auto.consumer(q("orders"), None).await.unwrap();
    assert_none(&oc).await;
    broker.commit_prepared(&xid(1)).await.unwrap();
    assert_none(&oc).await;
    let out = broker.browse("xa-out", 10).await.unwrap();
    assert_eq!(out.len(), 1, "{engine:?}: the committed XA add is stored");
    assert_eq!(broker.browse("ActiveMQ.DLQ", 10).await.unwrap().len(), 1);
    conn.close().await;
    broker.stop().await;
    env.cleanup().await;
}
