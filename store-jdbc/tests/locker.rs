//! Master election against real servers: two lockers on one database give exactly one master;
//! releasing, killing the master's connection or the master freezing hands over to the other;
//! a deposed lease master's writes are refused by the fencing epoch, also when it froze inside
//! a write transaction that share-locks the lock row.
//!
//! MariaDB and PostgreSQL tests read `MYSQL_URL` / `POSTGRES_URL` and say SKIPPED without them (fail under `CI=true`);
//! SQLite always runs. `took_over` is true exactly when the previous holder did not give the
//! lock up cleanly. Take-over times are printed (for the notes), never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use store_api::{Body, Destination, Message, MessageId, PersistenceAdapter, StoreError};
use store_jdbc::locker::{self, LockerConfig, LockerKind, MasterLock};
use store_jdbc::{JdbcConfig, JdbcError, JdbcStore};
use test_support::database::{prefixed, server_url, unique_prefix};
use test_support::{Proxy, host_port};

/// A database for one test: its URL and a fresh prefix, dropped at the end.
struct Place {
    url: String,
    prefix: String,
    _dir: Option<tempfile::TempDir>,
}

impl Place {
    fn get(db: &str) -> Option<Place> {
        match db {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("lock.db").display());
                Some(Place {
                    url,
                    prefix: String::new(),
                    _dir: Some(dir),
                })
            }
            _ => {
                let var = if db == "mysql" {
                    "MYSQL_URL"
                } else {
                    "POSTGRES_URL"
                };
                match server_url(var) {
                    Ok(url) => Some(Place {
                        url,
                        prefix: unique_prefix("T"),
                        _dir: None,
                    }),
                    Err(why) => {
                        test_support::skip(why);
                        None
                    }
                }
            }
        }
    }

    fn locker(&self, kind: LockerKind, name: &str) -> LockerConfig {
        let mut c = LockerConfig::new(&self.url, kind);
        c.table_prefix = self.prefix.clone();
        c.broker_name = name.into();
        c.lease = Duration::from_millis(1500);
        c.keep_alive = Some(Duration::from_millis(300));
        c.acquire_retry = Duration::from_millis(200);
        c
    }

    fn store(&self, lock: &MasterLock) -> JdbcConfig {
        let mut c = JdbcConfig::new(&self.url);
        c.table_prefix = self.prefix.clone();
        c.pool_size = 2;
        c.fence = Some(lock.fence());
        c
    }

    async fn cleanup(self) {
        if self._dir.is_none() {
            JdbcStore::drop_tables(&prefixed(&self.url, &self.prefix))
                .await
                .unwrap();
        }
    }
}

fn msg(queue: &str, n: u64) -> Message {
    Message::new(
        MessageId::new("p", n),
        Destination::queue(queue),
        Body::Text("x".into()),
    )
}

async fn one_master(db: &str, kind: LockerKind) {
    let Some(place) = Place::get(db) else { return };
    let a = locker::acquire(&place.locker(kind, "a")).await.unwrap();
    assert!(a.is_held());
    let b_config = place.locker(kind, "b");
    let b = tokio::spawn(async move { locker::acquire(&b_config).await });
    // B must still be waiting while A holds the lock, through several of its retries.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !b.is_finished(),
        "a second master while the first holds the lock"
    );
    assert!(a.is_held());
    let released = Instant::now();
    a.release().await;
    let b = tokio::time::timeout(Duration::from_secs(30), b)
        .await
        .expect("the slave took over")
        .unwrap()
        .unwrap();
    eprintln!(
        "{db} {kind:?}: take-over after release in {:?}",
        released.elapsed()
    );
    assert!(b.is_held());
    b.release().await;
    place.cleanup().await;
}

/// Kills the master's lock connection from outside, as a DBA or a network failure would.
async fn killed_connection(db: &str) {
    let Some(place) = Place::get(db) else { return };
    let mut a = locker::acquire(&place.locker(LockerKind::Database, "a"))
        .await
        .unwrap();
    let b_config = place.locker(LockerKind::Database, "b");
    let b = tokio::spawn(async move { locker::acquire(&b_config).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_finished());
    let id = a.connection_id().expect("a connection id");
    let kill = match db {
        "mysql" => format!("KILL {id}"),
        _ => format!("SELECT pg_terminate_backend({id})"),
    };
    run_admin(&place.url, &kill).await;
    let killed = Instant::now();
    let b = tokio::time::timeout(Duration::from_secs(30), b)
        .await
        .expect("the slave took over")
        .unwrap()
        .unwrap();
    eprintln!(
        "{db} database locker: take-over after killing the master's connection in {:?}",
        killed.elapsed()
    );
    let why = tokio::time::timeout(Duration::from_secs(10), a.lost())
        .await
        .expect("the old master noticed");
    assert!(
        !a.is_held(),
        "the old master still thinks it holds the lock: {why}"
    );
    assert!(b.is_held());
    b.release().await;
    place.cleanup().await;
}

async fn run_admin(url: &str, sql: &str) {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }
}

/// A master that freezes (stops renewing, keeps its fence) is deposed when its lease runs out,
/// and then every write it tries is refused by the epoch check.
async fn frozen_lease_master_is_fenced(db: &str) {
    let Some(place) = Place::get(db) else { return };
    let a = locker::acquire(&place.locker(LockerKind::Lease, "a"))
        .await
        .unwrap();
    let store_a = JdbcStore::open(place.store(&a)).await.unwrap();
    let qa = store_a.queue_store(&Destination::queue("q")).await.unwrap();
    qa.add(msg("q", 1)).await.unwrap();
    let fence_a = a.fence();
    let epoch_a = a.epoch().unwrap();
    a.abandon();
    let frozen = Instant::now();
    let b = locker::acquire(&place.locker(LockerKind::Lease, "b"))
        .await
        .unwrap();
    eprintln!(
        "{db} lease locker: take-over from a frozen master in {:?} (lease 1.5 s)",
        frozen.elapsed()
    );
    assert!(b.epoch().unwrap() > epoch_a);
    assert!(fence_a.is_held(), "the frozen master does not know yet");
    let err = qa.add(msg("q", 2)).await.unwrap_err();
    match &err {
        StoreError::Backend { source, .. } => assert!(
            matches!(
                source.downcast_ref::<JdbcError>(),
                Some(JdbcError::Fenced { .. })
            ),
            "{err}"
        ),
        other => panic!("expected a fencing error, got {other}"),
    }
    assert!(!fence_a.is_held(), "a fenced store revokes its fence");
    // The new master sees exactly what the old one committed, and writes.
    let store_b = JdbcStore::open(place.store(&b)).await.unwrap();
    let qb = store_b.queue_store(&Destination::queue("q")).await.unwrap();
    assert_eq!(qb.count().await.unwrap(), 1);
    qb.add(msg("q", 3)).await.unwrap();
    store_a.close().await.unwrap();
    store_b.close().await.unwrap();
    b.release().await;
    place.cleanup().await;
}

/// True when another session holds a lock on the lock row (asked without waiting).
async fn lock_row_is_locked(place: &Place) -> bool {
    use sqlx::Connection;
    let table = format!("{}ACTIVEMQ_LOCK", place.prefix);
    let probe = sqlx::AssertSqlSafe(format!(
        "SELECT ID FROM {table} WHERE ID = 1 FOR UPDATE NOWAIT"
    ));
    if place.url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(&place.url).await.unwrap();
        let mut tx = c.begin().await.unwrap();
        let locked = sqlx::raw_sql(probe).execute(&mut *tx).await.is_err();
        tx.rollback().await.unwrap();
        locked
    } else {
        let mut c = sqlx::PgConnection::connect(&place.url).await.unwrap();
        let mut tx = c.begin().await.unwrap();
        let locked = sqlx::raw_sql(probe).execute(&mut *tx).await.is_err();
        drop(tx); // the failed statement aborted the transaction; dropping rolls it back
        locked
    }
}

/// A lease master frozen inside a write transaction, which share-locks the lock row to check
/// its epoch, does not hold off the slave: the database ends the idle transaction (the fence's
/// limit, half the lease), the slave takes the lease when it runs out, and the thawed master
/// is fenced. Every add the old master had answered Ok is on the new master's side.
async fn master_frozen_inside_a_write_transaction_is_taken_over(db: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let Some(place) = Place::get(db) else { return };
    let proxy = Proxy::start(host_port(&place.url)).await;
    let a = locker::acquire(&place.locker(LockerKind::Lease, "a"))
        .await
        .unwrap();
    let mut config = place.store(&a);
    config.url = proxy.url_through(&place.url);
    let store_a = JdbcStore::open(config).await.unwrap();
    let qa = store_a.queue_store(&Destination::queue("q")).await.unwrap();
    // Four producers keep A's writer inside transactions nearly all the time.
    let answered_ok = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (q, ok) = (qa.clone(), answered_ok.clone());
            tokio::spawn(async move {
                for n in 1.. {
                    let m = Message::new(
                        MessageId::new(format!("p{p}"), n),
                        Destination::queue("q"),
                        Body::Text("x".into()),
                    );
                    match q.add(m).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => break,
                    };
                }
            })
        })
        .collect();
    // Freeze A until it is caught holding the lock row inside a transaction.
    let mut attempts = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        proxy.freeze();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if lock_row_is_locked(&place).await {
            break;
        }
        proxy.thaw();
        attempts += 1;
        assert!(
            attempts < 500,
            "A's writer was never caught inside a transaction"
        );
    }
    let fence_a = a.fence();
    a.abandon(); // a frozen master renews nothing either
    let frozen = Instant::now();
    let b = tokio::time::timeout(
        Duration::from_secs(30),
        locker::acquire(&place.locker(LockerKind::Lease, "b")),
    )
    .await
    .expect("the slave took over from a master frozen inside a write transaction")
    .unwrap();
    eprintln!(
        "{db} lease locker: take-over from a master frozen inside a write transaction in {:?} (lease 1.5 s)",
        frozen.elapsed()
    );
    proxy.thaw();
    for p in producers {
        tokio::time::timeout(Duration::from_secs(30), p)
            .await
            .expect("the thawed master's producers stopped on an error")
            .unwrap();
    }
    assert!(
        qa.add(msg("q", 0)).await.is_err(),
        "the thawed master wrote beside the new one"
    );
    assert!(!fence_a.is_held(), "the thawed master was fenced");
    let store_b = JdbcStore::open(place.store(&b)).await.unwrap();
    let qb = store_b.queue_store(&Destination::queue("q")).await.unwrap();
    assert_eq!(
        qb.count().await.unwrap(),
        answered_ok.load(Ordering::Relaxed),
        "the new master holds exactly what the old one answered Ok"
    );
    store_a.close().await.unwrap();
    store_b.close().await.unwrap();
    b.release().await;
    place.cleanup().await;
}

/// After the lock is released, a store behind its fence refuses writes.
async fn released_lock_refuses_writes(db: &str, kind: LockerKind) {
    let Some(place) = Place::get(db) else { return };
    let a = locker::acquire(&place.locker(kind, "a")).await.unwrap();
    let store = JdbcStore::open(place.store(&a)).await.unwrap();
    let q = store.queue_store(&Destination::queue("q")).await.unwrap();
    q.add(msg("q", 1)).await.unwrap();
    a.release().await;
    let err = q.add(msg("q", 2)).await.unwrap_err();
    assert!(err.to_string().contains("lock"), "{err}");
    // Reads still work: nothing stored is lost.
    assert_eq!(q.count().await.unwrap(), 1);
    store.close().await.unwrap();
    place.cleanup().await;
}

/// True when a session of this test's database waits for a lock on this test's lock row.
async fn someone_waits_for_the_lock_row(place: &Place) -> bool {
    use sqlx::Connection;
    let table = format!("{}ACTIVEMQ_LOCK", place.prefix);
    if place.url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(&place.url).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            // A locking read that is still running: the holder's session is idle, and a
            // free row would have been answered at once. (MariaDB waits for it in the
            // optimizer's const-table read, which INNODB_TRX does not list as LOCK WAIT.)
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE CONCAT('%', ?, '%FOR UPDATE%')",
        )
        .bind(&table)
        .fetch_one(&mut c)
        .await
        .unwrap();
        n > 0
    } else {
        let mut c = sqlx::PgConnection::connect(&place.url).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query ILIKE '%' || $1 || '%'",
        )
        .bind(&table)
        .fetch_one(&mut c)
        .await
        .unwrap();
        n > 0
    }
}

/// Regression (issue 33): a slave whose very first attempt at the row lock blocked in the
/// server until the master's connection died took the lock on that first attempt and so
/// believed it had not taken over; the broker then did not flag the dead master's
/// unacknowledged deliveries as redelivered. Pinned here by killing the master exactly while
/// the slave's statement waits for the row. Also: a lock given up cleanly is no take-over, a
/// lease or lock file whose holder died is one.
async fn took_over_only_from_a_holder_that_died(db: &str, kind: LockerKind) {
    let Some(place) = Place::get(db) else { return };
    let row_lock = kind == LockerKind::Database && db != "sqlite";
    let slow = |name: &str| {
        let mut c = place.locker(kind, name);
        if row_lock {
            // A long lock wait: the slave's statement blocks in the server rather than
            // returning and being retried, which is where the race lived.
            c.acquire_retry = Duration::from_secs(20);
        }
        c
    };
    let a = locker::acquire(&slow("a")).await.unwrap();
    assert!(
        !a.took_over(),
        "nobody held the lock before the first master"
    );
    a.release().await;
    let b = locker::acquire(&slow("b")).await.unwrap();
    assert!(!b.took_over(), "the first master released the lock cleanly");

    let c_config = slow("c");
    let c = tokio::spawn(async move { locker::acquire(&c_config).await });
    if row_lock {
        let until = Instant::now() + Duration::from_secs(20);
        while !someone_waits_for_the_lock_row(&place).await {
            assert!(Instant::now() < until, "the slave never waited for the row");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let id = b.connection_id().expect("a connection id");
        let kill = match db {
            "mysql" => format!("KILL {id}"),
            _ => format!("SELECT pg_terminate_backend({id})"),
        };
        run_admin(&place.url, &kill).await;
        drop(b);
    } else {
        // Dies without releasing: the lease lapses, the file lock goes with the process.
        drop(b);
    }
    let c = tokio::time::timeout(Duration::from_secs(60), c)
        .await
        .expect("the slave took over")
        .unwrap()
        .unwrap();
    assert!(
        c.took_over(),
        "{db} {kind:?}: the slave took the lock from a master that died, yet says it did not take over"
    );
    // A master leaving with deliveries unacknowledged hands over as a take-over, where the lock
    // can carry it (not the row lock, whose holder commits nothing).
    c.release_unsettled().await;
    let d = locker::acquire(&slow("d")).await.unwrap();
    assert_eq!(
        d.took_over(),
        !row_lock,
        "{db} {kind:?}: after an unsettled release"
    );
    d.release().await;
    let e = locker::acquire(&slow("e")).await.unwrap();
    assert!(!e.took_over(), "{db} {kind:?}: after a clean release");
    e.release().await;
    place.cleanup().await;
}

macro_rules! per_db {
    ($($name:ident: $body:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $body.await
            }
        )*
    };
}

per_db! {
    mysql_database_locker_one_master: one_master("mysql", LockerKind::Database);
    mysql_lease_locker_one_master: one_master("mysql", LockerKind::Lease);
    postgres_database_locker_one_master: one_master("postgres", LockerKind::Database);
    postgres_lease_locker_one_master: one_master("postgres", LockerKind::Lease);
    sqlite_file_locker_one_master: one_master("sqlite", LockerKind::Database);
    sqlite_lease_locker_one_master: one_master("sqlite", LockerKind::Lease);
    mysql_killed_connection_hands_over: killed_connection("mysql");
    postgres_killed_connection_hands_over: killed_connection("postgres");
    mysql_frozen_lease_master_is_fenced: frozen_lease_master_is_fenced("mysql");
    postgres_frozen_lease_master_is_fenced: frozen_lease_master_is_fenced("postgres");
    sqlite_frozen_lease_master_is_fenced: frozen_lease_master_is_fenced("sqlite");
    mysql_master_frozen_inside_a_write_transaction_is_taken_over: master_frozen_inside_a_write_transaction_is_taken_over("mysql");
    postgres_master_frozen_inside_a_write_transaction_is_taken_over: master_frozen_inside_a_write_transaction_is_taken_over("postgres");
    mysql_released_lease_refuses_writes: released_lock_refuses_writes("mysql", LockerKind::Lease);
    postgres_released_database_lock_refuses_writes: released_lock_refuses_writes("postgres", LockerKind::Database);
    sqlite_released_file_lock_refuses_writes: released_lock_refuses_writes("sqlite", LockerKind::Database);
    mysql_database_lock_taken_over_while_the_first_attempt_waits: took_over_only_from_a_holder_that_died("mysql", LockerKind::Database);
    postgres_database_lock_taken_over_while_the_first_attempt_waits: took_over_only_from_a_holder_that_died("postgres", LockerKind::Database);
    mysql_lease_taken_over_from_a_dead_holder: took_over_only_from_a_holder_that_died("mysql", LockerKind::Lease);
    postgres_lease_taken_over_from_a_dead_holder: took_over_only_from_a_holder_that_died("postgres", LockerKind::Lease);
    sqlite_lease_taken_over_from_a_dead_holder: took_over_only_from_a_holder_that_died("sqlite", LockerKind::Lease);
    sqlite_file_lock_taken_over_from_a_dead_holder: took_over_only_from_a_holder_that_died("sqlite", LockerKind::Database);
}
