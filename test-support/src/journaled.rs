//! Test places for the journaled JDBC engine: a journal in a temp dir in front of a SQLite
//! file there, or of a fresh table prefix on the MariaDB/MySQL server `MYSQL_URL` or the
//! PostgreSQL server `POSTGRES_URL` names (dropped afterwards).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_jdbc::JdbcConfig;
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use tempfile::TempDir;

use crate::database::{drop_tables_blocking, server_config, server_url, sqlite_config};

pub struct JournaledFactory {
    /// Checkpoint after every journal record instead of every 64 KiB.
    pub eager: bool,
    pub dir: TempDir,
    pub jdbc: Option<JdbcConfig>,
    skip: Option<String>,
    server: bool,
}

impl JournaledFactory {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let jdbc = sqlite_config(dir.path());
        JournaledFactory::in_dir(dir, Ok(jdbc), false)
    }

    /// SQLite, checkpointing after every change: reads go through the database part of the
    /// merge far more often.
    pub fn sqlite_eager() -> Self {
        let mut f = JournaledFactory::sqlite();
        f.eager = true;
        f
    }

    pub fn mysql() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let jdbc = server_url("MYSQL_URL").map(|url| server_config(url, "J"));
        JournaledFactory::in_dir(dir, jdbc, true)
    }

    pub fn postgres() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let jdbc = server_url("POSTGRES_URL").map(|url| server_config(url, "J"));
        JournaledFactory::in_dir(dir, jdbc, true)
    }

    /// The journal in `dir`, in front of `jdbc` (or skipped, saying why); `server`: the tables
    /// are dropped at the end.
    fn in_dir(dir: TempDir, jdbc: std::result::Result<JdbcConfig, String>, server: bool) -> Self {
        let (jdbc, skip) = match jdbc {
            Ok(c) => (Some(c), None),
            Err(why) => (None, Some(why)),
        };
        JournaledFactory {
            eager: false,
            dir,
            jdbc,
            skip,
            server,
        }
    }

    pub fn config(&self) -> JournaledJdbcConfig {
        let jdbc = self.jdbc.clone().expect("not skipped");
        let mut c = JournaledJdbcConfig::new(self.dir.path().join("journal"), jdbc);
        c.max_file_length = 1024 * 1024;
        c.preallocate = false;
        c.checkpoint_interval = Duration::from_millis(200);
        c.checkpoint_journal_bytes = if self.eager { 1 } else { 64 * 1024 };
        c
    }
}

impl Drop for JournaledFactory {
    fn drop(&mut self) {
        let Some(config) = self.jdbc.take() else {
            return;
        };
        if self.server {
            drop_tables_blocking(config);
        }
    }
}

#[async_trait]
impl StoreFactory for JournaledFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        Ok(Arc::new(JournaledJdbcStore::open(self.config()).await?))
    }

    fn durable(&self) -> bool {
        true
    }

    fn skip_reason(&self) -> Option<String> {
        self.skip.clone()
    }
}
