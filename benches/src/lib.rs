//! Shared set-up for the store benchmarks: every engine opened the same way, and the
//! workloads written once against the store traits, so engines are compared on equal terms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_amq::{AmqConfig, AmqStore};
use store_api::{Body, Destination, Message, MessageId, PersistenceAdapter, QueueStore};
use store_jdbc::{JdbcConfig, JdbcStore};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use store_memory::MemoryStore;
use tempfile::TempDir;

/// An engine under test, with what it needs kept alive and a way to read its fsync count.
pub struct Engine {
    pub name: &'static str,
    pub store: Arc<dyn PersistenceAdapter>,
    kahadb: Option<KahaDbStore>,
    amq: Option<AmqStore>,
    jdbc: Option<(JdbcStore, JdbcConfig)>,
    journaled: Option<JournaledJdbcStore>,
    _dir: Option<TempDir>,
}

impl Engine {
    pub fn memory() -> Engine {
        Engine {
            name: "memory",
            store: Arc::new(MemoryStore::new()),
            kahadb: None,
            amq: None,
            jdbc: None,
            journaled: None,
            _dir: None,
        }
    }

    /// AMQ in a fresh temporary directory: its defaults (sync always, 32 MiB preallocated logs,
    /// snapshot every 20 s).
    pub fn amq() -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = AmqStore::open(AmqConfig::new(dir.path())).expect("open amq");
        Engine {
            name: "amq",
            store: Arc::new(store.clone()),
            kahadb: None,
            amq: Some(store),
            jdbc: None,
            journaled: None,
            _dir: Some(dir),
        }
    }

    /// KahaDB in a fresh temporary directory, ActiveMQ's defaults (sync always, 32 MiB
    /// preallocated journal files), background checkpoints on.
    pub fn kahadb() -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = KahaDbConfig::new(dir.path());
        if std::env::var_os("BENCH_NO_PREALLOCATE").is_some() {
            config.preallocate = false;
        }
        if std::env::var_os("BENCH_SYNC_NEVER").is_some() {
            config.sync = store_api::SyncPolicy::Never;
        }
        let store = KahaDbStore::open(config).expect("open kahadb");
        Engine {
            name: "kahadb",
            store: Arc::new(store.clone()),
            kahadb: Some(store),
            amq: None,
            jdbc: None,
            journaled: None,
            _dir: Some(dir),
        }
    }

    /// JDBC on SQLite in a fresh temporary directory (WAL, synchronous=FULL: a commit is on
    /// disk when it returns).
    pub fn jdbc_sqlite(rt: &tokio::runtime::Runtime) -> Option<Engine> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("bench.db").display());
        Engine::jdbc("jdbc-sqlite", rt, JdbcConfig::new(url), Some(dir))
    }

    /// JDBC on the MySQL/MariaDB server `MYSQL_URL` names, in tables of a fresh prefix that are
    /// dropped afterwards; `None` (with a note) when it is not set.
    pub fn jdbc_mysql(rt: &tokio::runtime::Runtime) -> Option<Engine> {
        Engine::jdbc_env("jdbc-mariadb", "MYSQL_URL", rt)
    }

    /// JDBC on the PostgreSQL server `POSTGRES_URL` names.
    pub fn jdbc_postgres(rt: &tokio::runtime::Runtime) -> Option<Engine> {
        Engine::jdbc_env("jdbc-postgres", "POSTGRES_URL", rt)
    }

    fn jdbc_env(name: &'static str, var: &str, rt: &tokio::runtime::Runtime) -> Option<Engine> {
        let Ok(url) = std::env::var(var) else {
            eprintln!("SKIPPED: {name}: {var} is not set");
            return None;
        };
        let mut config = JdbcConfig::new(url);
        config.table_prefix = format!("BENCH{}_", std::process::id());
        Engine::jdbc(name, rt, config, None)
    }

    fn jdbc(
        name: &'static str,
        rt: &tokio::runtime::Runtime,
        config: JdbcConfig,
        dir: Option<TempDir>,
    ) -> Option<Engine> {
        let store = rt
            .block_on(JdbcStore::open(config.clone()))
            .expect("open jdbc");
        Some(Engine {
            name,
            store: Arc::new(store.clone()),
            kahadb: None,
            amq: None,
            jdbc: Some((store, config)),
            journaled: None,
            _dir: dir,
        })
    }

    /// Journaled JDBC over SQLite: the journal in a fresh temporary directory, ActiveMQ's
    /// checkpoint defaults (5 minutes, or 32 MiB of journal).
    pub fn journaled_sqlite(rt: &tokio::runtime::Runtime) -> Option<Engine> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("bench.db").display());
        Engine::journaled("journaled-sqlite", rt, JdbcConfig::new(url), dir)
    }

    /// Journaled JDBC over the MySQL/MariaDB server `MYSQL_URL` names.
    pub fn journaled_mysql(rt: &tokio::runtime::Runtime) -> Option<Engine> {
        let Ok(url) = std::env::var("MYSQL_URL") else {
            eprintln!("SKIPPED: journaled-mariadb: MYSQL_URL is not set");
            return None;
        };
        let mut config = JdbcConfig::new(url);
        config.table_prefix = format!("BENCHJ{}_", std::process::id());
        let dir = tempfile::tempdir().expect("temp dir");
        Engine::journaled("journaled-mariadb", rt, config, dir)
    }

    fn journaled(
        name: &'static str,
        rt: &tokio::runtime::Runtime,
        jdbc: JdbcConfig,
        dir: TempDir,
    ) -> Option<Engine> {
        let mut config = JournaledJdbcConfig::new(dir.path().join("journal"), jdbc.clone());
        if std::env::var_os("BENCH_NO_PREALLOCATE").is_some() {
            config.preallocate = false;
        }
        let store = rt
            .block_on(JournaledJdbcStore::open(config))
            .expect("open journaled jdbc");
        let server = !jdbc.url.starts_with("sqlite");
        Some(Engine {
            name,
            store: Arc::new(store.clone()),
            kahadb: None,
            amq: None,
            jdbc: server.then(|| (store.jdbc().clone(), jdbc)),
            journaled: Some(store),
            _dir: Some(dir),
        })
    }

    /// fsyncs of data files so far (journal), where the engine has any; for JDBC, database
    /// commits (each one a log flush on the server).
    pub fn fsyncs(&self) -> Option<u64> {
        match (&self.kahadb, &self.amq, &self.journaled, &self.jdbc) {
            (Some(k), _, _, _) => Some(k.stats().journal.fsyncs),
            (_, Some(a), _, _) => Some(a.stats().journal.fsyncs),
            (_, _, Some(j), _) => Some(j.journal_fsyncs()),
            (_, _, _, Some((j, _))) => Some(j.commit_stats().0),
            _ => None,
        }
    }

    /// Drops the tables of a server-backed JDBC engine (after close).
    pub fn cleanup(&self, rt: &tokio::runtime::Runtime) {
        if let Some((_, config)) = &self.jdbc
            && !config.url.starts_with("sqlite")
        {
            let _ = rt.block_on(JdbcStore::drop_tables(config));
        }
    }
}

/// A persistent message with a body of `size` bytes.
pub fn message(d: &Destination, producer: &str, n: u64, size: usize) -> Message {
    Message::new(
        MessageId::new(producer, n),
        d.clone(),
        Body::Bytes(vec![0x5a; size].into()),
    )
}

/// Adds `count` messages from `writers` concurrent tasks; returns the elapsed time.
pub async fn add_concurrently(
    queue: Arc<dyn QueueStore>,
    writers: usize,
    count: u64,
    size: usize,
    run: u64,
) -> Duration {
    let start = Instant::now();
    let per = count.div_ceil(writers as u64);
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let q = queue.clone();
        let d = q.destination().clone();
        tasks.push(tokio::spawn(async move {
            let producer = format!("bench-{run}-{w}");
            for n in 0..per {
                q.add(message(&d, &producer, n, size)).await.expect("add");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    start.elapsed()
}

/// Adds then acknowledges each of `count` messages in turn (a queue in steady state).
pub async fn add_then_ack(
    queue: Arc<dyn QueueStore>,
    count: u64,
    size: usize,
    run: u64,
) -> Duration {
    let d = queue.destination().clone();
    let producer = format!("bench-ack-{run}");
    let start = Instant::now();
    for n in 0..count {
        let m = message(&d, &producer, n, size);
        let id = m.id.clone();
        queue.add(m).await.expect("add");
        queue.remove(&id).await.expect("ack");
    }
    start.elapsed()
}
