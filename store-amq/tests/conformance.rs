//! The whole conformance kit against the AMQ store on real files, with reopen variants and the
//! model-based test.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use store_amq::{AmqConfig, AmqStore};
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result, StoreError};
use tempfile::TempDir;

struct AmqFactory {
    dir: TempDir,
}

impl AmqFactory {
    fn new() -> Self {
        AmqFactory {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

#[async_trait]
impl StoreFactory for AmqFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        let mut config = AmqConfig::new(self.dir.path());
        config.max_file_length = 1024 * 1024;
        config.checkpoint_interval = Duration::from_millis(300);
        config.cleanup_interval = Duration::from_millis(600);
        config.preallocate = false;
        let store = tokio::task::spawn_blocking(move || AmqStore::open(config))
            .await
            .map_err(|e| StoreError::Backend {
                backend: "amq",
                source: Box::new(e),
            })??;
        Ok(Arc::new(store))
    }

    fn durable(&self) -> bool {
        true
    }
}

store_api::conformance_tests!(AmqFactory::new(), durable = true);
