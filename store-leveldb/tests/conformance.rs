//! The whole conformance kit against the LevelDB engine on real files in a temporary
//! directory, with reopen variants and the model-based test (which reopens too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_leveldb::{LevelDbConfig, LevelDbStore};
use tempfile::TempDir;

struct LevelDbFactory {
    dir: TempDir,
}

impl LevelDbFactory {
    fn new() -> Self {
        LevelDbFactory {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

#[async_trait]
impl StoreFactory for LevelDbFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        let mut config = LevelDbConfig::new(self.dir.path());
        // Small memtables and cache so that scenarios reach SST files, not only the log.
        config.index_write_buffer_size = 256 * 1024;
        config.index_cache_size = 1024 * 1024;
        // Small journal files, so that scenarios roll and collect them.
        config.log_size = 256 * 1024;
        let store = tokio::task::spawn_blocking(move || LevelDbStore::open(config))
            .await
            .map_err(|e| store_api::StoreError::Backend {
                backend: "leveldb",
                source: Box::new(e),
            })??;
        Ok(Arc::new(store))
    }

    fn durable(&self) -> bool {
        true
    }
}

store_api::conformance_tests!(LevelDbFactory::new(), durable = true);
