//! Shared by the tests of the broker on every engine: a broker on each engine, built from TOML
//! like a user's, and helpers to receive with a deadline.
#![allow(dead_code)]

/// Each scenario `async fn name(Engine)` as a test per listed engine, in a module per engine:
/// `on_engines!([memory => Memory, kahadb => KahaDb] (scenario_a, scenario_b));` gives
/// `memory::scenario_a`, `kahadb::scenario_a`, ... (so `cargo test kahadb` runs one engine).
#[allow(unused_macros)]
macro_rules! on_engines {
    ([$($module:ident => $engine:ident),* $(,)?] $names:tt) => {
        $( on_engines!(@one $module $engine $names); )*
    };
    (@one $module:ident $engine:ident ($($name:ident),* $(,)?)) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::$engine).await;
                }
            )*
        }
    };
}

/// A restart scenario on every durable engine (the database ones when `MYSQL_URL` /
/// `POSTGRES_URL` are set).
#[allow(unused_macros)]
macro_rules! on_durable_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::Engine::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kahadb() { super::$name(KahaDb).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn amq() { super::$name(Amq).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn leveldb() { super::$name(LevelDb).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn jdbc_sqlite() { super::$name(JdbcSqlite).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn jdbc_mariadb() { super::$name(JdbcMysql).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn jdbc_postgres() { super::$name(JdbcPostgres).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn journaled_jdbc_sqlite() { super::$name(JournaledSqlite).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn journaled_jdbc_mariadb() { super::$name(JournaledMysql).await; }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn journaled_jdbc_postgres() { super::$name(JournaledPostgres).await; }
            }
        )*
    };
}

use std::time::Duration;

use broker_core::config::{BrokerSection, ConfigError, CoreConfig, LimitsSection, PolicySection};
use broker_core::{Broker, Consumer, Received};
use engines::{EngineConfig, LockerSection, PersistenceSection};
use serde::Deserialize;
use tempfile::TempDir;
use test_support::database::{prefixed, server_url, unique_prefix};

/// The sections of `broker.toml` that the core and the engines read (the program's
/// `[transports]` and `[[users]]` are not used here).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    broker: BrokerSection,
    persistence: PersistenceSection,
    locker: LockerSection,
    limits: LimitsSection,
    policy: PolicySection,
}

impl Config {
    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = broker_core::config::from_toml(text)?;
        c.engine().validate()?;
        c.core().validate_limits_and_policy()?;
        c.broker.validate()?;
        Ok(c)
    }

    fn core(&self) -> CoreConfig {
        CoreConfig {
            broker: self.broker.clone(),
            limits: self.limits.clone(),
            policy: self.policy.clone(),
        }
    }

    fn engine(&self) -> EngineConfig {
        EngineConfig {
            broker: self.broker.clone(),
            persistence: self.persistence.clone(),
            locker: self.locker.clone(),
        }
    }

    /// A broker over the engine and locker this config names, not started.
    pub fn broker(&self) -> Broker {
        engines::broker(self.core(), &self.engine())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Memory,
    KahaDb,
    Amq,
    JdbcSqlite,
    JdbcMysql,
    JdbcPostgres,
    JournaledSqlite,
    JournaledMysql,
    JournaledPostgres,
    LevelDb,
}

impl Engine {
    pub fn durable(self) -> bool {
        self != Engine::Memory
    }
}

/// A broker's config on one engine in a temporary directory, and what to clean up.
pub struct Env {
    pub dir: TempDir,
    pub engine: Engine,
    pub toml: String,
    jdbc: Option<(String, String)>,
}

impl Env {
    /// `None` (after `test_support::skip`) when the engine's database is not configured.
    pub fn new(engine: Engine, extra: &str) -> Option<Env> {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().display().to_string();
        let prefix = unique_prefix("bc");
        let db_url = |var: &str| match server_url(var) {
            Ok(u) => Some(u),
            Err(why) => {
                test_support::skip(format!("{engine:?}: {why}"));
                None
            }
        };
        let sqlite = format!("sqlite:{data}/store.db");
        let (persistence, jdbc) = match engine {
            Engine::Memory => ("[persistence]\nkind = \"memory\"\n".to_owned(), None),
            Engine::KahaDb => (
                "[persistence]\nkind = \"kahadb\"\n[persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n".to_owned(),
                None,
            ),
            Engine::Amq => (
                "[persistence]\nkind = \"amq\"\n[persistence.amq]\nmax_file_length = 1048576\npreallocate = false\n".to_owned(),
                None,
            ),
            Engine::LevelDb => (
                "[persistence]\nkind = \"leveldb\"\n[persistence.leveldb]\nindex_write_buffer_size = 262144\nindex_cache_size = 1048576\n".to_owned(),
                None,
            ),
            Engine::JdbcSqlite => (
                format!("[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{sqlite}\"\n"),
                None,
            ),
            Engine::JdbcMysql | Engine::JdbcPostgres => {
                let url = db_url(if engine == Engine::JdbcMysql { "MYSQL_URL" } else { "POSTGRES_URL" })?;
                (
                    format!("[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\n"),
                    Some((url, prefix.clone())),
                )
            }
            Engine::JournaledSqlite => (
                format!("[persistence]\nkind = \"journaled-jdbc\"\n[persistence.jdbc]\nurl = \"{sqlite}\"\n[persistence.journaled_jdbc]\nmax_file_length = 1048576\npreallocate = false\n"),
                None,
            ),
            Engine::JournaledMysql | Engine::JournaledPostgres => {
                let url = db_url(if engine == Engine::JournaledMysql { "MYSQL_URL" } else { "POSTGRES_URL" })?;
                (
                    format!("[persistence]\nkind = \"journaled-jdbc\"\n[persistence.jdbc]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\n[persistence.journaled_jdbc]\nmax_file_length = 1048576\npreallocate = false\n"),
                    Some((url, prefix.clone())),
                )
            }
        };
        let toml =
            format!("[broker]\nname = \"test\"\ndata_directory = \"{data}\"\n{persistence}{extra}");
        Some(Env {
            dir,
            engine,
            toml,
            jdbc,
        })
    }

    pub fn config(&self) -> Config {
        Config::from_toml(&self.toml).unwrap_or_else(|e| panic!("config {}: {e}", self.toml))
    }

    pub async fn start(&self) -> Broker {
        let b = self.config().broker();
        b.start().await.expect("broker starts");
        b
    }

    /// Drops the tables a database engine created.
    pub async fn cleanup(self) {
        if let Some((url, prefix)) = &self.jdbc {
            store_jdbc::JdbcStore::drop_tables(&prefixed(url, prefix))
                .await
                .expect("drop tables");
        }
    }
}

pub const WAIT: Duration = Duration::from_secs(10);

/// The next message, failing the test if none comes within `WAIT`.
pub async fn recv(c: &Consumer) -> Received {
    c.receive_timeout(WAIT)
        .await
        .expect("receive")
        .expect("a message within the deadline")
}

pub async fn recv_n(c: &Consumer, n: usize) -> Vec<Received> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(recv(c).await);
    }
    out
}

/// Asserts nothing more arrives within a short quiet period.
pub async fn assert_none(c: &Consumer) {
    if let Some(m) = c
        .receive_timeout(Duration::from_millis(300))
        .await
        .expect("receive")
    {
        panic!("unexpected message {:?}", m.message());
    }
}

pub fn texts(ms: &[Received]) -> Vec<String> {
    ms.iter()
        .map(|m| m.text().unwrap_or_default().to_owned())
        .collect()
}
