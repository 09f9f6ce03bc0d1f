//! The engines under attack and where each keeps its data: a directory for the local files
//! (journal, index, SQLite database) and, for the database servers, a table prefix of its own
//! on the server `MYSQL_URL` / `POSTGRES_URL` names. Settings are small on purpose (256 KiB
//! journal files, checkpoints and GC every few tens of milliseconds) so that a short workload
//! crosses file rotations, checkpoints and journal GC many times.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use store_amq::{AmqConfig, AmqStore};
use store_api::PersistenceAdapter;
use store_jdbc::{JdbcConfig, JdbcStore};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use store_leveldb::{LevelDbConfig, LevelDbStore};
use test_support::database::{server_url, unique_prefix};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Kahadb,
    Amq,
    JdbcSqlite,
    JdbcMysql,
    JdbcPostgres,
    JournaledSqlite,
    JournaledMysql,
    JournaledPostgres,
    Leveldb,
}

impl Engine {
    pub const ALL: [Engine; 9] = [
        Engine::Kahadb,
        Engine::Amq,
        Engine::JdbcSqlite,
        Engine::JdbcMysql,
        Engine::JdbcPostgres,
        Engine::JournaledSqlite,
        Engine::JournaledMysql,
        Engine::JournaledPostgres,
        Engine::Leveldb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Kahadb => "kahadb",
            Engine::Amq => "amq",
            Engine::JdbcSqlite => "jdbc-sqlite",
            Engine::JdbcMysql => "jdbc-mariadb",
            Engine::JdbcPostgres => "jdbc-postgres",
            Engine::JournaledSqlite => "journaled-sqlite",
            Engine::JournaledMysql => "journaled-mariadb",
            Engine::JournaledPostgres => "journaled-postgres",
            Engine::Leveldb => "leveldb",
        }
    }

    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The variable naming the database server this engine needs, if any.
    fn server_var(self) -> Option<&'static str> {
        match self {
            Engine::JdbcMysql | Engine::JournaledMysql => Some("MYSQL_URL"),
            Engine::JdbcPostgres | Engine::JournaledPostgres => Some("POSTGRES_URL"),
            _ => None,
        }
    }

    /// Whether the engine keeps a journal of its own on local disk.
    pub fn has_journal(self) -> bool {
        matches!(
            self,
            Engine::Kahadb
                | Engine::Amq
                | Engine::JournaledSqlite
                | Engine::JournaledMysql
                | Engine::JournaledPostgres
                | Engine::Leveldb
        )
    }
}

/// Where one engine's store lives for a whole test.
#[derive(Debug, Clone)]
pub struct Place {
    pub engine: Engine,
    pub dir: PathBuf,
    /// The server URL (MariaDB/PostgreSQL engines) or the SQLite file's.
    pub url: Option<String>,
    pub prefix: String,
}

impl Place {
    /// A place in `dir`, or the reason the test must skip (a server variable is not set).
    pub fn new(engine: Engine, dir: &Path) -> Result<Place, String> {
        let url = match engine.server_var() {
            Some(var) => Some(server_url(var)?),
            None => Some(format!("sqlite:{}", dir.join("store.db").display())),
        };
        Ok(Place {
            engine,
            dir: dir.to_path_buf(),
            url,
            prefix: unique_prefix("C"),
        })
    }

    /// The place as one line, for a child process; [`Place::decode`] reads it back.
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.engine.name(),
            self.prefix,
            self.url.as_deref().unwrap_or(""),
            self.dir.display()
        )
    }

    pub fn decode(s: &str) -> Place {
        let mut parts = s.splitn(4, '|');
        let engine = Engine::parse(parts.next().unwrap()).unwrap();
        let prefix = parts.next().unwrap().to_string();
        let url = Some(parts.next().unwrap().to_string()).filter(|u| !u.is_empty());
        let dir = PathBuf::from(parts.next().unwrap());
        Place {
            engine,
            dir,
            url,
            prefix,
        }
    }

    fn jdbc(&self) -> JdbcConfig {
        let mut c = JdbcConfig::new(self.url.clone().unwrap());
        if self.engine.server_var().is_some() {
            c.table_prefix = self.prefix.clone();
        }
        c.pool_size = 4;
        c
    }

    /// Opens (and so recovers) the store.
    pub async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match self.engine {
            Engine::Kahadb => {
                let mut c = KahaDbConfig::new(self.dir.join("kahadb"));
                c.journal_max_file_length = 256 * 1024;
                c.checkpoint_interval = Duration::from_millis(50);
                c.cleanup_interval = Duration::from_millis(150);
                Arc::new(KahaDbStore::open(c).map_err(|x| e(&x))?)
            }
            Engine::Amq => {
                let mut c = AmqConfig::new(self.dir.join("amq"));
                c.max_file_length = 256 * 1024;
                c.checkpoint_interval = Duration::from_millis(50);
                c.cleanup_interval = Duration::from_millis(150);
                Arc::new(AmqStore::open(c).map_err(|x| e(&x))?)
            }
            Engine::Leveldb => {
                let mut c = LevelDbConfig::new(self.dir.join("leveldb"));
                // Small memtables so that a short workload flushes to SST files and compacts.
                c.index_write_buffer_size = 64 * 1024;
                c.index_cache_size = 1024 * 1024;
                c.log_size = 256 * 1024;
                Arc::new(LevelDbStore::open(c).map_err(|x| e(&x))?)
            }
            Engine::JdbcSqlite | Engine::JdbcMysql | Engine::JdbcPostgres => {
                Arc::new(JdbcStore::open(self.jdbc()).await.map_err(|x| e(&x))?)
            }
            Engine::JournaledSqlite | Engine::JournaledMysql | Engine::JournaledPostgres => {
                let mut c = JournaledJdbcConfig::new(self.dir.join("journal"), self.jdbc());
                c.max_file_length = 256 * 1024;
                c.checkpoint_interval = Duration::from_millis(50);
                c.checkpoint_journal_bytes = 16 * 1024;
                Arc::new(JournaledJdbcStore::open(c).await.map_err(|x| e(&x))?)
            }
        })
    }

    /// Drops the tables a server engine made (a SQLite file goes with its directory).
    pub async fn drop_tables(&self) {
        if self.engine.server_var().is_some() {
            let _ = JdbcStore::drop_tables(&self.jdbc()).await;
        }
    }
}
