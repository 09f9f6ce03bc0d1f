//! The openwire message format on MariaDB keeps ActiveMQ's schema exactly: the three tables
//! with ActiveMQ's columns and nothing else (no pending-ack table, no `EPOCH`, no bookkeeping
//! rows), `MSG` is the OpenWire marshalling with `MSGID_PROD` as ActiveMQ writes it; the
//! database locker runs on that schema and the lease locker is refused, naming why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, MySqlConnection, Row};
use store_api::SubscriptionKey;
use store_api::{Body, Destination, Message, MessageId, PersistenceAdapter, SubscriptionInfo};
use store_jdbc::locker::{self, LockerConfig, LockerKind};
use store_jdbc::{JdbcError, JdbcStore, MessageFormat};
use test_support::database::{drop_tables_blocking, prefixed, server_url, unique_prefix};

struct Tables(store_jdbc::JdbcConfig);

impl Drop for Tables {
    fn drop(&mut self) {
        drop_tables_blocking(self.0.clone());
    }
}

fn place() -> Option<(String, Tables)> {
    let url = match server_url("MYSQL_URL") {
        Ok(url) => url,
        Err(why) => {
            test_support::skip(why);
            return None;
        }
    };
    let mut config = prefixed(&url, &unique_prefix("OS"));
    config.message_format = MessageFormat::OpenWire;
    Some((url, Tables(config)))
}

/// `table -> [column]` of the tables under `prefix`, in column order.
async fn schema(url: &str, prefix: &str) -> Vec<(String, Vec<String>)> {
    let mut c = MySqlConnection::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE CONCAT(?, '%') ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .bind(prefix.replace('_', "\\_"))
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in rows {
        let table: String = r.get(0);
        let column: String = r.get(1);
        let table = table.strip_prefix(prefix).unwrap_or(&table).to_owned();
        match out.last_mut() {
            Some((t, cols)) if *t == table => cols.push(column),
            _ => out.push((table, vec![column])),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_and_rows_are_activemqs() {
    let Some((url, tables)) = place() else { return };
    let prefix = tables.0.table_prefix.clone();
    let store = JdbcStore::open(tables.0.clone()).await.unwrap();
    let q = Destination::queue("orders");
    let t = Destination::topic("prices");
    let qs = store.queue_store(&q).await.unwrap();
    let ts = store.topic_store(&t).await.unwrap();
    let key = SubscriptionKey::new("client", "sub");
    ts.add_subscription(SubscriptionInfo::new(key.clone(), None), false)
        .await
        .unwrap();
    let id = MessageId::new("ID:host-1-2-3:1:4:7", 9);
    qs.add(Message::new(id.clone(), q.clone(), Body::Text("hi".into())))
        .await
        .unwrap();
    ts.add(Message::new(
        MessageId::new("stomp-3", 1),
        t.clone(),
        Body::Text("p".into()),
    ))
    .await
    .unwrap();
    store.close().await.unwrap();

    let cols = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        schema(&url, &prefix).await,
        vec![
            (
                "ACTIVEMQ_ACKS".to_owned(),
                cols(&[
                    "CONTAINER",
                    "SUB_DEST",
                    "CLIENT_ID",
                    "SUB_NAME",
                    "SELECTOR",
                    "LAST_ACKED_ID",
                    "PRIORITY",
                    "XID"
                ])
            ),
            (
                "ACTIVEMQ_LOCK".to_owned(),
                cols(&["ID", "TIME", "BROKER_NAME"])
            ),
            (
                "ACTIVEMQ_MSGS".to_owned(),
                cols(&[
                    "ID",
                    "CONTAINER",
                    "MSGID_PROD",
                    "MSGID_SEQ",
                    "EXPIRATION",
                    "MSG",
                    "PRIORITY",
                    "XID"
                ])
            ),
        ]
    );

    let mut c = MySqlConnection::connect(url.as_str()).await.unwrap();
    let msgs: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CONTAINER, MSGID_PROD, MSGID_SEQ, MSG FROM {prefix}ACTIVEMQ_MSGS ORDER BY ID"
    )))
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].0, "queue://orders");
    // The OpenWire door's producer (`<connection>:<session>:<producer>`) is ActiveMQ's
    // ProducerId.toString() already.
    assert_eq!(msgs[0].1, "ID:host-1-2-3:1:4:7");
    assert_eq!(msgs[0].2, 9);
    assert_eq!(msgs[1].0, "topic://prices");
    assert_eq!(
        msgs[1].1, "stomp-3:-1:-1",
        "a producer that is not OpenWire's"
    );
    // ActiveMQ's marshalling: size prefix, then ActiveMQTextMessage's type (28).
    let m = &msgs[0].3;
    assert_eq!(
        u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
        m.len() - 4
    );
    assert_eq!(m[4], 28);
    // Every ACKS row is an ActiveMQ one: the two destination markers (priority 11) and the
    // subscription's row (priority 0), nothing of this engine's own.
    let acks: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CONTAINER, CLIENT_ID, PRIORITY FROM {prefix}ACTIVEMQ_ACKS ORDER BY CONTAINER, PRIORITY"
    )))
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        acks,
        vec![
            ("queue://orders".to_owned(), "queue://orders".to_owned(), 11),
            ("topic://prices".to_owned(), "client".to_owned(), 0),
            ("topic://prices".to_owned(), "topic://prices".to_owned(), 11),
        ]
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_locker_runs_on_activemqs_schema_and_the_lease_is_refused() {
    let Some((url, tables)) = place() else { return };
    let mut config = LockerConfig::new(url.clone(), LockerKind::Database);
    config.table_prefix = tables.0.table_prefix.clone();
    config.message_format = MessageFormat::OpenWire;
    let lock = locker::acquire(&config).await.unwrap();
    assert!(lock.fence().is_held());
    let names: Vec<String> = schema(&url, &config.table_prefix)
        .await
        .into_iter()
        .filter(|(t, _)| t == "ACTIVEMQ_LOCK")
        .flat_map(|(_, c)| c)
        .collect();
    assert_eq!(names, ["ID", "TIME", "BROKER_NAME"]);
    lock.release().await;

    config.kind = LockerKind::Lease;
    match locker::acquire(&config).await {
        Err(JdbcError::Config(why)) => assert!(why.contains("EPOCH"), "{why}"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a lease on ActiveMQ's schema"),
    }
}
