//! The whole conformance kit against the memory store. It is not durable, so the reopen
//! variants are generated as ignored and show as such in the test output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_memory::MemoryStore;

struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        Ok(Arc::new(MemoryStore::new()))
    }

    fn durable(&self) -> bool {
        false
    }
}

store_api::conformance_tests!(MemoryFactory, durable = false);
