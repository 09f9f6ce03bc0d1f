//! Test places for the JDBC engine: a SQLite file in a temp dir, or a fresh table prefix on
//! the MariaDB/MySQL or PostgreSQL server named by `MYSQL_URL` / `POSTGRES_URL`. Tables are
//! dropped when the factory is.

use std::sync::Arc;

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_jdbc::{JdbcConfig, JdbcStore};
use tempfile::TempDir;

use crate::database::{drop_tables_blocking, server_config, server_url, sqlite_config};

pub struct JdbcFactory {
    pub config: Option<JdbcConfig>,
    skip: Option<String>,
    _dir: Option<TempDir>,
}

impl JdbcFactory {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        JdbcFactory {
            config: Some(sqlite_config(dir.path())),
            skip: None,
            _dir: Some(dir),
        }
    }

    /// A fresh prefix on the server `var` names, or a skip when it is not set.
    pub fn from_env(var: &str) -> Self {
        let (config, skip) = match server_url(var) {
            Ok(url) => (Some(server_config(url, "T")), None),
            Err(why) => (None, Some(why)),
        };
        JdbcFactory {
            config,
            skip,
            _dir: None,
        }
    }

    pub fn mysql() -> Self {
        JdbcFactory::from_env("MYSQL_URL")
    }

    /// A fresh prefix on `MYSQL_URL` in the openwire message format (ActiveMQ's schema).
    pub fn mysql_openwire() -> Self {
        let mut f = JdbcFactory::mysql();
        if let Some(c) = f.config.as_mut() {
            c.message_format = store_jdbc::MessageFormat::OpenWire;
        }
        f
    }

    /// A fresh prefix on `POSTGRES_URL` in the openwire message format.
    pub fn postgres_openwire() -> Self {
        let mut f = JdbcFactory::postgres();
        if let Some(c) = f.config.as_mut() {
            c.message_format = store_jdbc::MessageFormat::OpenWire;
        }
        f
    }

    pub fn postgres() -> Self {
        JdbcFactory::from_env("POSTGRES_URL")
    }

    pub fn config(&self) -> &JdbcConfig {
        self.config.as_ref().expect("factory not skipped")
    }
}

impl Drop for JdbcFactory {
    fn drop(&mut self) {
        let Some(config) = self.config.take() else {
            return;
        };
        if self._dir.is_some() {
            return; // the temp dir goes with its file
        }
        drop_tables_blocking(config);
    }
}

#[async_trait]
impl StoreFactory for JdbcFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        Ok(Arc::new(JdbcStore::open(self.config().clone()).await?))
    }

    fn durable(&self) -> bool {
        true
    }

    fn skip_reason(&self) -> Option<String> {
        self.skip.clone()
    }
}
