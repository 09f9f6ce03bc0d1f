//! The master/slave life cycle in one process: a second broker on the same store waits as a
//! slave, takes over when the master stops, and a master that loses its lock stops serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker_core::{AckMode, Broker, BrokerError, BrokerState, Destination, Outgoing};
use common::{Engine, Env, recv_n, texts};

/// The broker goes serving → lock lost → stopped, and nothing else.
async fn stops_with_the_lock_lost(a: &Broker) {
    tokio::time::timeout(Duration::from_secs(10), a.stopped())
        .await
        .unwrap();
    assert_eq!(
        a.history()[3..],
        [
            BrokerState::Serving,
            BrokerState::LockLost,
            BrokerState::Stopped
        ]
    );
}

async fn wait_for(b: &Broker, state: BrokerState) {
    let mut w = b.watch_state();
    tokio::time::timeout(Duration::from_secs(20), w.wait_for(|s| *s == state))
        .await
        .unwrap_or_else(|_| panic!("the broker did not reach {state}; it is {}", b.state()))
        .unwrap();
}

/// Master A serves; slave B waits; A stops; B takes over with A's messages. With `unacked`, a
/// client of A holds a delivered message it has not acknowledged when A stops. Returns whether
/// B flagged the messages as possibly delivered before.
async fn slave_takes_over(env: &Env, unacked: bool) -> bool {
    let a = env.start().await;
    let conn = a.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let p = s.producer(Destination::queue("handover")).unwrap();
    for i in 0..20 {
        p.send(Outgoing::text(format!("m{i}"))).await.unwrap();
    }
    let holder = if unacked {
        let conn = a.connect(None).await.unwrap();
        let s = conn.session(AckMode::Client).unwrap();
        let c = s
            .consumer(Destination::queue("handover"), None)
            .await
            .unwrap();
        let got = recv_n(&c, 1).await;
        assert_eq!(texts(&got), ["m0"]);
        Some((conn, c))
    } else {
        None
    };
    let b = Arc::new(env.config().broker());
    let starting = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.start().await })
    };
    wait_for(&b, BrokerState::WaitingForLock).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.state(),
        BrokerState::WaitingForLock,
        "a slave while the master holds the lock"
    );
    assert!(matches!(
        b.connect(None).await,
        Err(BrokerError::NotServing(_))
    ));
    conn.close().await;
    // The holder's connection is still open: A stops with m0 delivered and unacknowledged.
    a.stop().await;
    if let Some((conn, _)) = holder {
        conn.close().await;
    }
    starting.await.unwrap().unwrap();
    assert_eq!(b.state(), BrokerState::Serving);
    let conn = b.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s
        .consumer(Destination::queue("handover"), None)
        .await
        .unwrap();
    let got = recv_n(&c, 20).await;
    assert_eq!(
        texts(&got),
        (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let flagged = got.iter().all(|m| m.redelivered());
    assert!(flagged || got.iter().all(|m| !m.redelivered()));
    conn.close().await;
    b.stop().await;
    assert_eq!(
        b.history(),
        [
            BrokerState::Created,
            BrokerState::WaitingForLock,
            BrokerState::Recovering,
            BrokerState::Serving,
            BrokerState::Stopping,
            BrokerState::Stopped
        ]
    );
    flagged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_file_lock_makes_the_second_broker_a_slave_until_the_master_stops() {
    let env = Env::new(Engine::KahaDb, "").unwrap();
    assert!(
        !slave_takes_over(&env, false).await,
        "the master stopped cleanly (it marked the lock file released): nothing is flagged"
    );
    let lock = std::fs::read_to_string(env.dir.path().join("kahadb/lock")).unwrap();
    assert!(
        lock.contains("epoch=2"),
        "each master writes the next epoch: {lock}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lock_on_sqlite_makes_the_second_broker_a_slave_until_the_master_stops() {
    let env = Env::new(
        Engine::JdbcSqlite,
        "[locker]\nkind = \"lease\"\nlease_ms = 1500\nkeep_alive_ms = 300\nacquire_retry_ms = 100\n",
    )
    .unwrap();
    assert!(
        !slave_takes_over(&env, false).await,
        "the master stopped cleanly (it released the lease, clearing its name): nothing is \
         flagged, as with the shared-file lock; a lease whose holder died is a take-over \
         (store-jdbc/tests/locker.rs, broker/tests/failover.rs)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lock_on_mariadb_makes_the_second_broker_a_slave_until_the_master_stops() {
    let Some(env) = Env::new(
        Engine::JdbcMysql,
        "[locker]\nkind = \"lease\"\nlease_ms = 1500\nkeep_alive_ms = 300\nacquire_retry_ms = 100\n",
    ) else {
        return;
    };
    slave_takes_over(&env, false).await;
    env.cleanup().await;
}

/// A master that stops while a client holds a delivered, unacknowledged message hands the lock
/// over as after a crash: the next master flags what it recovers as redelivered (m0 was in an
/// application's hands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_file_lock_after_a_stop_with_unacked_deliveries_flags_them() {
    let env = Env::new(Engine::KahaDb, "").unwrap();
    assert!(slave_takes_over(&env, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lock_on_sqlite_after_a_stop_with_unacked_deliveries_flags_them() {
    let env = Env::new(
        Engine::JdbcSqlite,
        "[locker]\nkind = \"lease\"\nlease_ms = 1500\nkeep_alive_ms = 300\nacquire_retry_ms = 100\n",
    )
    .unwrap();
    assert!(slave_takes_over(&env, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_lock_file_is_replaced_stops_serving() {
    let env = Env::new(Engine::KahaDb, "[locker]\nkeep_alive_ms = 50\n").unwrap();
    let a = env.start().await;
    let conn = a.connect(None).await.unwrap();
    let s = conn.session(AckMode::Auto).unwrap();
    let c = s.consumer(Destination::queue("q"), None).await.unwrap();
    let lock = env.dir.path().join("kahadb/lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, "owner=someone-else\nepoch=99\n").unwrap();
    stops_with_the_lock_lost(&a).await;
    assert!(
        c.receive().await.unwrap().is_none(),
        "consumers see the end"
    );
    assert!(matches!(
        a.connect(None).await,
        Err(BrokerError::NotServing(BrokerState::Stopped))
    ));
    assert!(s.producer(Destination::queue("q")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_master_whose_lease_is_taken_stops_serving() {
    let env = Env::new(
        Engine::JdbcSqlite,
        "[locker]\nkind = \"lease\"\nlease_ms = 1500\nkeep_alive_ms = 100\n",
    )
    .unwrap();
    let a = env.start().await;
    let url = format!("sqlite:{}/store.db", env.dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE ACTIVEMQ_LOCK SET BROKER_NAME = 'thief', EPOCH = EPOCH + 1 WHERE ID = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    stops_with_the_lock_lost(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_waiting_slave_ends_its_wait() {
    let env = Env::new(Engine::KahaDb, "").unwrap();
    let a = env.start().await;
    let b = Arc::new(env.config().broker());
    let starting = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.start().await })
    };
    wait_for(&b, BrokerState::WaitingForLock).await;
    b.stop().await;
    assert!(matches!(
        starting.await.unwrap(),
        Err(BrokerError::NotServing(BrokerState::Stopped))
    ));
    assert_eq!(a.state(), BrokerState::Serving);
    a.stop().await;
}
