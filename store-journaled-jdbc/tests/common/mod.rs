//! Test places: a journal in a temp dir in front of a SQLite file there, or of a fresh table
//! prefix on the MariaDB/MySQL server `MYSQL_URL` names (dropped afterwards).

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_jdbc::{JdbcConfig, JdbcStore};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use tempfile::TempDir;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "J{:x}_{:x}_{:x}_",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

pub struct Factory {
    /// Checkpoint after every journal record instead of every 64 KiB.
    pub eager: bool,
    pub dir: TempDir,
    pub jdbc: Option<JdbcConfig>,
    skip: Option<String>,
    server: bool,
}

impl Factory {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        let mut jdbc = JdbcConfig::new(url);
        jdbc.pool_size = 4;
        Factory {
            eager: false,
            dir,
            jdbc: Some(jdbc),
            skip: None,
            server: false,
        }
    }

    /// SQLite, checkpointing after every change: reads go through the database part of the
    /// merge far more often.
    pub fn sqlite_eager() -> Self {
        let mut f = Factory::sqlite();
        f.eager = true;
        f
    }

    pub fn mysql() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var("MYSQL_URL") {
            Ok(url) if !url.is_empty() => {
                let mut jdbc = JdbcConfig::new(url);
                jdbc.table_prefix = unique_prefix();
                jdbc.pool_size = 4;
                Factory {
                    eager: false,
                    dir,
                    jdbc: Some(jdbc),
                    skip: None,
                    server: true,
                }
            }
            _ => Factory {
                eager: false,
                dir,
                jdbc: None,
                skip: Some("MYSQL_URL is not set; `.ci/run` sets it".into()),
                server: false,
            },
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

impl Drop for Factory {
    fn drop(&mut self) {
        let Some(config) = self.jdbc.take() else {
            return;
        };
        if !self.server {
            return;
        }
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(JdbcStore::drop_tables(&config));
            }
        })
        .join();
    }
}

#[async_trait]
impl StoreFactory for Factory {
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
