//! Shared set-up for the store benchmarks: every engine opened the same way, and the
//! workloads written once against the store traits, so engines are compared on equal terms.

pub mod workloads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_amq::{AmqConfig, AmqStore};
use store_api::{Body, Destination, Message, MessageId, PersistenceAdapter, QueueStore};
use store_jdbc::{JdbcConfig, JdbcStore};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use store_leveldb::{LevelDbConfig, LevelDbStore};
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

    /// KahaDB with a given sync policy (the report's `periodic` rows).
    pub fn kahadb_sync(sync: store_api::SyncPolicy) -> Engine {
        Engine::kahadb_with(|c| c.sync = sync)
    }

    /// AMQ with a given sync policy.
    pub fn amq_sync(sync: store_api::SyncPolicy) -> Engine {
        Engine::amq_with(|c| c.sync = sync)
    }

    /// KahaDB in a fresh temporary directory, with its config adjusted by `adjust`.
    fn kahadb_with(adjust: impl FnOnce(&mut KahaDbConfig)) -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = KahaDbConfig::new(dir.path());
        adjust(&mut config);
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

    /// LevelDB (RocksDB) in a fresh temporary directory: ActiveMQ's defaults (`sync`, 100 MiB
    /// log, 256 MiB cache, 6 MiB write buffer); `sync` off under `BENCH_SYNC_NEVER`.
    pub fn leveldb() -> Engine {
        Engine::leveldb_with(|c| {
            if std::env::var_os("BENCH_SYNC_NEVER").is_some() {
                c.sync = false;
            }
        })
    }

    /// LevelDB with its config adjusted by `adjust`.
    pub fn leveldb_with(adjust: impl FnOnce(&mut LevelDbConfig)) -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = LevelDbConfig::new(dir.path());
        adjust(&mut config);
        let store = LevelDbStore::open(config).expect("open leveldb");
        Engine {
            name: "leveldb",
            store: Arc::new(store),
            kahadb: None,
            amq: None,
            jdbc: None,
            journaled: None,
            _dir: Some(dir),
        }
    }

    /// AMQ in a fresh temporary directory, with its config adjusted by `adjust`.
    fn amq_with(adjust: impl FnOnce(&mut AmqConfig)) -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = AmqConfig::new(dir.path());
        adjust(&mut config);
        let store = AmqStore::open(config).expect("open amq");
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

    /// The engine's temporary directory, if it has one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// Bytes written to local disk so far: the journal's bytes for the file engines (plus the
    /// SQLite files for the journaled engine over SQLite), the SQLite files for JDBC on
    /// SQLite; `None` for a database server, whose disk is not ours to read.
    pub fn disk_bytes(&self) -> Option<u64> {
        let sqlite_files = || {
            self._dir.as_ref().map(|d| {
                std::fs::read_dir(d.path())
                    .map(|it| {
                        it.filter_map(|e| e.ok())
                            .filter(|e| e.file_name().to_string_lossy().starts_with("bench.db"))
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum::<u64>()
                    })
                    .unwrap_or(0)
            })
        };
        if self.name == "jdbc-sqlite" {
            return sqlite_files();
        }
        if self.name == "leveldb" {
            // Everything RocksDB keeps: log, SST files, manifest.
            return self._dir.as_ref().map(|d| {
                std::fs::read_dir(d.path())
                    .map(|it| {
                        it.filter_map(|e| e.ok())
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum::<u64>()
                    })
                    .unwrap_or(0)
            });
        }
        match (&self.kahadb, &self.amq, &self.journaled, &self.jdbc) {
            (Some(k), _, _, _) => Some(k.stats().journal.bytes),
            (_, Some(a), _, _) => Some(a.stats().journal.bytes),
            (_, _, Some(j), None) => Some(j.journal_bytes() + sqlite_files().unwrap_or(0)),
            (_, _, Some(_), Some(_)) => None,
            (_, _, _, Some(_)) => None,
            _ => Some(0),
        }
    }

    /// AMQ in a fresh temporary directory: its defaults (sync always, 32 MiB preallocated logs,
    /// snapshot every 20 s).
    pub fn amq() -> Engine {
        Engine::amq_with(|_| {})
    }

    /// KahaDB in a fresh temporary directory, ActiveMQ's defaults (sync always, 32 MiB
    /// preallocated journal files), background checkpoints on.
    pub fn kahadb() -> Engine {
        Engine::kahadb_with(|config| {
            if std::env::var_os("BENCH_NO_PREALLOCATE").is_some() {
                config.preallocate = false;
            }
            if std::env::var_os("BENCH_SYNC_NEVER").is_some() {
                config.sync = store_api::SyncPolicy::Never;
            }
        })
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
        if self.name == "leveldb" {
            // fsyncs of the engine's journal (RocksDB's own log is not synced per write).
            return self
                .store
                .metrics()
                .into_iter()
                .find(|(n, _)| *n == "leveldb_journal_fsyncs")
                .map(|(_, v)| v);
        }
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

/// The disk's own ceiling for one synchronous writer: `count` writes of `size` bytes, each
/// followed by `fdatasync`, at growing offsets of a file preallocated (zero-filled, synced)
/// beforehand — the "fdatasync/s on a preallocated file" a journal under sync `always` is
/// measured against. A store's rate divided by this, both measured in one run, is a figure that
/// survives a noisy or differently fast disk.
pub struct DiskCeiling {
    file: std::fs::File,
    len: u64,
    at: u64,
    _dir: TempDir,
}

impl DiskCeiling {
    /// A 64 MiB preallocated file in a temp dir on the same file system the engines use.
    pub fn new() -> std::io::Result<DiskCeiling> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("ceiling.dat"))?;
        let len = 64 << 20;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(len >> 20) {
            file.write_all(&zeros)?;
        }
        file.sync_all()?;
        Ok(DiskCeiling {
            file,
            len,
            at: 0,
            _dir: dir,
        })
    }

    /// Writes and fdatasyncs `count` records of `size` bytes one after another; the time taken.
    pub fn write_sync(&mut self, count: u64, size: usize) -> std::io::Result<Duration> {
        use std::os::unix::fs::FileExt;
        let record = vec![0x5au8; size];
        let start = Instant::now();
        for _ in 0..count {
            if self.at + size as u64 > self.len {
                self.at = 0;
            }
            self.file.write_all_at(&record, self.at)?;
            self.file.sync_data()?;
            self.at += size as u64;
        }
        Ok(start.elapsed())
    }
}
