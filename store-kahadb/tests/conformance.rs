//! The whole conformance kit against KahaDB on real files in a temporary directory, with
//! reopen variants and the model-based test (which reopens too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use tempfile::TempDir;

struct KahaFactory {
    dir: TempDir,
}

impl KahaFactory {
    fn new() -> Self {
        KahaFactory {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

#[async_trait]
impl StoreFactory for KahaFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        let mut config = KahaDbConfig::new(self.dir.path());
        // Small files so that scenarios cross file boundaries and GC has work to do.
        config.journal_max_file_length = 1024 * 1024;
        config.checkpoint_interval = Duration::from_millis(200);
        config.cleanup_interval = Duration::from_millis(400);
        config.preallocate = false;
        let path = self.dir.path().to_path_buf();
        let store = tokio::task::spawn_blocking(move || {
            let mut c = config;
            c.directory = path;
            KahaDbStore::open(c)
        })
        .await
        .map_err(|e| store_api::StoreError::Backend {
            backend: "kahadb",
            source: Box::new(e),
        })??;
        Ok(Arc::new(store))
    }

    fn durable(&self) -> bool {
        true
    }
}

store_api::conformance_tests!(KahaFactory::new(), durable = true);
