//! Test places for the JDBC engine: a SQLite file in a temp dir, or a fresh table prefix on
//! the MariaDB/MySQL or PostgreSQL server named by `MYSQL_URL` / `POSTGRES_URL`. Tables are
//! dropped when the factory is.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_jdbc::{JdbcConfig, JdbcStore};
use tempfile::TempDir;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A table prefix no other test (in this process or another) uses.
pub fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "T{:x}_{:x}_{:x}_",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

pub struct JdbcFactory {
    pub config: Option<JdbcConfig>,
    skip: Option<String>,
    _dir: Option<TempDir>,
}

impl JdbcFactory {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        let mut config = JdbcConfig::new(url);
        config.pool_size = 4;
        JdbcFactory {
            config: Some(config),
            skip: None,
            _dir: Some(dir),
        }
    }

    /// A fresh prefix on the server `var` names, or a skip when it is not set.
    pub fn from_env(var: &str) -> Self {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => {
                let mut config = JdbcConfig::new(url);
                config.table_prefix = unique_prefix();
                config.pool_size = 4;
                JdbcFactory {
                    config: Some(config),
                    skip: None,
                    _dir: None,
                }
            }
            _ => JdbcFactory {
                config: None,
                skip: Some(format!("{var} is not set; `.ci/run` sets it")),
                _dir: None,
            },
        }
    }

    pub fn mysql() -> Self {
        JdbcFactory::from_env("MYSQL_URL")
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
        // Drop may run inside a runtime, where another cannot block: use a thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                && let Err(e) = rt.block_on(JdbcStore::drop_tables(&config))
            {
                eprintln!("could not drop test tables {}*: {e}", config.table_prefix);
            }
        })
        .join();
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

mod proxy;
#[allow(unused_imports)]
pub use proxy::{Proxy, host_port};
