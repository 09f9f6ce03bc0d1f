//! What the JDBC engine promises beyond the conformance kit, on each database: concurrent
//! committers never leave a message behind the cursor (ActiveMQ's AMQ-5266), names are stored
//! literally (no SQL injection, case and trailing spaces kept), and a lost connection is a
//! clear error that leaves nothing half written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use store_api::{
    Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo, SubscriptionKey,
    TransactionId, TxOp,
};
use store_jdbc::{JdbcConfig, JdbcStore};
use test_support::database::unique_prefix;
use test_support::{JdbcFactory, Proxy, host_port};

fn msg(d: &Destination, producer: &str, n: u64) -> Message {
    Message::new(
        MessageId::new(producer, n),
        d.clone(),
        Body::Text(format!("{producer}-{n}")),
    )
}

/// Eight producers commit three-message transactions while one consumer pages with the batch
/// cursor and acks: every message arrives exactly once, none stays stuck behind the cursor.
async fn concurrent_committers_never_strand_a_message(config: JdbcConfig) {
    const PRODUCERS: u64 = 8;
    const TXS: u64 = 25;
    const PER_TX: u64 = 3;
    let store = Arc::new(JdbcStore::open(config).await.unwrap());
    let d = Destination::queue("orders");
    let q = store.queue_store(&d).await.unwrap();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (store, d) = (store.clone(), d.clone());
        producers.push(tokio::spawn(async move {
            for t in 0..TXS {
                let tx = TransactionId::Local(p * 1000 + t);
                store.begin(&tx).await.unwrap();
                for i in 0..PER_TX {
                    let m = msg(&d, &format!("p{p}"), t * PER_TX + i);
                    store.enlist(&tx, TxOp::Add(m)).await.unwrap();
                }
                store.commit(&tx).await.unwrap();
            }
        }));
    }
    let total = PRODUCERS * TXS * PER_TX;
    let mut seen = HashSet::new();
    let consume = async {
        while (seen.len() as u64) < total {
            let batch = q.recover_next(10).await.unwrap();
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            for m in batch {
                assert!(seen.insert(m.id.clone()), "{} delivered twice", m.id);
                q.remove(&m.id).await.unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), consume)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "stuck: {} of {total} messages reached the cursor",
                seen.len()
            )
        });
    for p in producers {
        p.await.unwrap();
    }
    assert_eq!(q.count().await.unwrap(), 0);
    assert!(q.recover_next(10).await.unwrap().is_empty());
    store.close().await.unwrap();
}

/// Concurrent adds share one transaction in multi-row inserts; when two of them carry the same
/// id, exactly one is stored and the other is told it is a duplicate.
async fn concurrent_duplicates_are_reported_exactly(config: JdbcConfig) {
    let store = Arc::new(JdbcStore::open(config).await.unwrap());
    let d = Destination::queue("dups");
    let q = store.queue_store(&d).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let (q, d) = (q.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            // Writers w and w+4 add the same 50 ids.
            for n in 0..50 {
                outcomes.push(q.add(msg(&d, &format!("p{}", w % 4), n)).await);
            }
            outcomes
        }));
    }
    let (mut ok, mut dup) = (0, 0);
    for t in tasks {
        for r in t.await.unwrap() {
            match r {
                Ok(_) => ok += 1,
                Err(store_api::StoreError::Duplicate(_)) => dup += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
    assert_eq!((ok, dup), (200, 200));
    assert_eq!(q.count().await.unwrap(), 200);
    store.close().await.unwrap();
}

const NASTY: &[&str] = &[
    "q'; DROP TABLE ACTIVEMQ_MSGS; --",
    "\"quoted\" `back` \\slash",
    "ünïcødé 名前 🚀",
    "Orders",
    "orders",
    "orders ",
    "%_like_wildcards_%",
];

/// Hostile and look-alike names are stored and found literally.
async fn names_are_stored_literally(config: JdbcConfig) {
    let store = JdbcStore::open(config.clone()).await.unwrap();
    for (i, name) in NASTY.iter().enumerate() {
        let q = store.queue_store(&Destination::queue(*name)).await.unwrap();
        q.add(msg(&Destination::queue(*name), name, i as u64))
            .await
            .unwrap();
        let t = store.topic_store(&Destination::topic(*name)).await.unwrap();
        let selector = format!("name = '{name}' OR x = 'O''Brien'; --");
        t.add_subscription(
            SubscriptionInfo::new(SubscriptionKey::new(*name, *name), Some(selector)),
            false,
        )
        .await
        .unwrap();
        t.add(msg(&Destination::topic(*name), name, i as u64))
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let store = JdbcStore::open(config).await.unwrap();
    let mut expected: Vec<Destination> = NASTY
        .iter()
        .flat_map(|n| [Destination::queue(*n), Destination::topic(*n)])
        .collect();
    expected.sort();
    assert_eq!(store.destinations().await.unwrap(), expected);
    for (i, name) in NASTY.iter().enumerate() {
        let q = store.queue_store(&Destination::queue(*name)).await.unwrap();
        assert_eq!(q.count().await.unwrap(), 1, "queue {name:?}");
        let m = q.get(&MessageId::new(*name, i as u64)).await.unwrap();
        assert_eq!(m.body, Body::Text(format!("{name}-{i}")));
        let t = store.topic_store(&Destination::topic(*name)).await.unwrap();
        let subs = t.subscriptions().await.unwrap();
        assert_eq!(subs.len(), 1, "topic {name:?}");
        assert_eq!(subs[0].key, SubscriptionKey::new(*name, *name));
        assert_eq!(
            subs[0].selector.as_deref(),
            Some(format!("name = '{name}' OR x = 'O''Brien'; --").as_str())
        );
        assert_eq!(t.pending_count(&subs[0].key).await.unwrap(), 1);
    }
    store.close().await.unwrap();
}

/// Cutting the database connection fails the callers with a database error and leaves
/// nothing half written; once the database is back the store carries on.
async fn lost_connection_is_a_clear_error(url: &str, prefix: String) {
    let proxy = Proxy::start(host_port(url)).await;
    let mut config = JdbcConfig::new(proxy.url_through(url));
    config.table_prefix = prefix;
    config.pool_size = 2;
    config.acquire_timeout = Duration::from_secs(2);
    let store = JdbcStore::open(config.clone()).await.unwrap();
    let d = Destination::queue("q");
    let q = store.queue_store(&d).await.unwrap();
    q.add(msg(&d, "p", 1)).await.unwrap();
    proxy.cut();
    let err = q.add(msg(&d, "p", 2)).await.unwrap_err();
    assert!(err.to_string().contains("database error"), "{err}");
    let tx = TransactionId::Local(1);
    store.begin(&tx).await.unwrap();
    for n in 3..6 {
        store.enlist(&tx, TxOp::Add(msg(&d, "p", n))).await.unwrap();
    }
    let err = store.commit(&tx).await.unwrap_err();
    assert!(err.to_string().contains("database error"), "{err}");
    assert!(q.count().await.is_err(), "reads fail too while cut off");
    proxy.restore();
    // Nothing of the failed add or the failed transaction was written.
    assert_eq!(q.count().await.unwrap(), 1);
    store.commit(&tx).await.unwrap();
    q.add(msg(&d, "p", 2)).await.unwrap();
    assert_eq!(q.count().await.unwrap(), 5);
    store.close().await.unwrap();
    JdbcStore::drop_tables(&config).await.unwrap();
}

/// A write after the server closed the writer's idle connection (here a cut and restored
/// proxy; in production the server's idle timeout, a restart, a DBA's KILL) succeeds: nothing
/// of it had been sent, so the writer reconnects and carries on instead of failing it.
async fn closed_idle_connection_is_replaced(url: &str, prefix: String) {
    let proxy = Proxy::start(host_port(url)).await;
    let mut config = JdbcConfig::new(proxy.url_through(url));
    config.table_prefix = prefix;
    config.pool_size = 2;
    let store = JdbcStore::open(config.clone()).await.unwrap();
    let d = Destination::queue("q");
    let q = store.queue_store(&d).await.unwrap();
    q.add(msg(&d, "p", 1)).await.unwrap();
    proxy.cut();
    proxy.restore();
    q.add(msg(&d, "p", 2))
        .await
        .expect("the first write after the connection was closed");
    let tx = TransactionId::Local(1);
    store.begin(&tx).await.unwrap();
    store.enlist(&tx, TxOp::Add(msg(&d, "p", 3))).await.unwrap();
    proxy.cut();
    proxy.restore();
    store
        .commit(&tx)
        .await
        .expect("the first commit after the connection was closed");
    assert_eq!(q.count().await.unwrap(), 3);
    store.close().await.unwrap();
    JdbcStore::drop_tables(&config).await.unwrap();
}

/// One test per database for each scenario: `module: scenario_fn`.
macro_rules! per_db {
    ($($module:ident: $scenario:ident),* $(,)?) => {
        $(
            mod $module {
                use super::*;

                async fn run(f: JdbcFactory) {
                    match f.config.clone() {
                        Some(c) => $scenario(c).await,
                        None => test_support::skip(format!("no database URL for {}", stringify!($module))),
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(JdbcFactory::sqlite()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    run(JdbcFactory::mysql()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(JdbcFactory::postgres()).await
                }
            }
        )*
    };
}

per_db!(
    concurrent_committers: concurrent_committers_never_strand_a_message,
    duplicates: concurrent_duplicates_are_reported_exactly,
    names: names_are_stored_literally,
);

/// One test per database server for each scenario that takes a URL and a table prefix; each
/// says SKIPPED when its URL variable is not set.
macro_rules! per_server {
    ($($name:ident: $scenario:ident($var:literal);)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                match std::env::var($var) {
                    Ok(url) => $scenario(&url, unique_prefix("T")).await,
                    Err(_) => test_support::skip(format!("{} is not set", $var)),
                }
            }
        )*
    };
}

per_server! {
    mysql_lost_connection: lost_connection_is_a_clear_error("MYSQL_URL");
    postgres_lost_connection: lost_connection_is_a_clear_error("POSTGRES_URL");
    mysql_closed_idle_connection: closed_idle_connection_is_replaced("MYSQL_URL");
    postgres_closed_idle_connection: closed_idle_connection_is_replaced("POSTGRES_URL");
}
