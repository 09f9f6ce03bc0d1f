//! Opening the engine a config names, once the lock is held: its section of `broker.toml`
//! mapped onto the engine's own config. File engines open on a blocking thread: their recovery
//! reads and fsyncs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_core::{BrokerError, HeldLock, Result, StoreOpener};
use store_amq::{AmqConfig, AmqStore};
use store_api::PersistenceAdapter;
use store_jdbc::{Fence, JdbcConfig, JdbcStore};
use store_journaled_jdbc::{JournaledJdbcConfig, JournaledJdbcStore};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use store_memory::MemoryStore;

use crate::config::{EngineConfig, EngineKind};
use crate::locker::DatabaseLock;

fn ms(v: Option<u64>, default: Duration) -> Duration {
    v.map_or(default, Duration::from_millis)
}

fn startup(engine: EngineKind, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Startup {
        what: format!("cannot open the {} store", engine.name()),
        reason: e.to_string(),
    }
}

pub(crate) fn jdbc_config(config: &EngineConfig, fence: Option<Fence>) -> Option<JdbcConfig> {
    let s = config.persistence.jdbc.as_ref()?;
    let mut c = JdbcConfig::new(s.url.clone()?);
    if let Some(v) = s.pool_size {
        c.pool_size = v;
    }
    if let Some(v) = &s.table_prefix {
        c.table_prefix = v.clone();
    }
    if let Some(v) = s.create_tables_on_startup {
        c.create_tables_on_startup = v;
    }
    if let Some(v) = s.max_batch {
        c.max_batch = v;
    }
    c.acquire_timeout = ms(s.acquire_timeout_ms, c.acquire_timeout);
    c.message_format = config.message_format();
    c.fence = fence;
    Some(c)
}

/// The engine a config names, opened when the broker holds its lock.
pub(crate) struct ConfiguredStore(pub(crate) EngineConfig);

#[async_trait]
impl StoreOpener for ConfiguredStore {
    /// A database lock's fence goes to a JDBC store, so that a deposed master's writes are
    /// refused.
    async fn open(&self, lock: &dyn HeldLock) -> Result<Arc<dyn PersistenceAdapter>> {
        if let Some(store) = lock
            .as_any()
            .downcast_ref::<crate::replicated::ReplicatedLock>()
            .and_then(crate::replicated::ReplicatedLock::store)
        {
            return Ok(store);
        }
        let fence = lock
            .as_any()
            .downcast_ref::<DatabaseLock>()
            .map(DatabaseLock::fence);
        open(&self.0, fence).await
    }
}

/// Opens a replicated store's local engine (no lock: the election guards it).
pub(crate) async fn open_local(config: &EngineConfig) -> Result<Arc<dyn PersistenceAdapter>> {
    open(config, None).await
}

/// Opens (and so recovers) the configured engine.
async fn open(config: &EngineConfig, fence: Option<Fence>) -> Result<Arc<dyn PersistenceAdapter>> {
    let kind = config.persistence.kind;
    let dir = config.store_directory();
    match kind {
        EngineKind::Memory => Ok(Arc::new(MemoryStore::new())),
        EngineKind::Kahadb => {
            let mut c = KahaDbConfig::new(dir.unwrap_or_default());
            c.sync = config.kahadb_sync();
            if let Some(s) = &config.persistence.kahadb {
                if let Some(v) = s.journal_max_file_length {
                    c.journal_max_file_length = v;
                }
                if let Some(v) = s.journal_max_write_batch_size {
                    c.journal_max_write_batch_size = v;
                }
                c.checkpoint_interval = ms(s.checkpoint_interval_ms, c.checkpoint_interval);
                c.cleanup_interval = ms(s.cleanup_interval_ms, c.cleanup_interval);
                if let Some(v) = s.index_cache_size {
                    c.index_cache_size = v;
                }
                if let Some(v) = s.index_write_batch_size {
                    c.index_write_batch_size = v;
                }
                if let Some(v) = s.ignore_missing_journal_files {
                    c.ignore_missing_journal_files = v;
                }
                if let Some(v) = s.preallocate {
                    c.preallocate = v;
                }
                if let Some(v) = s.enable_ack_compaction {
                    c.enable_compaction = v;
                }
                if let Some(v) = s.compaction_threshold {
                    c.compaction_threshold = v;
                }
                if let Some(v) = s.cleanup_on_stop {
                    c.cleanup_on_stop = v;
                }
                if let Some(v) = s.leader_writes {
                    c.leader_writes = v;
                }
                if let Some(v) = s.mmap_replay {
                    c.mmap_replay = v;
                }
                if let Some(v) = s.mmap_reads {
                    c.mmap_reads = v;
                }
                c.ack_sync_delay = ms(s.ack_sync_delay_ms, c.ack_sync_delay);
            }
            let store = tokio::task::spawn_blocking(move || KahaDbStore::open(c))
                .await
                .map_err(|e| startup(kind, e))?
                .map_err(|e| startup(kind, e))?;
            Ok(Arc::new(store))
        }
        EngineKind::Amq => {
            let mut c = AmqConfig::new(dir.unwrap_or_default());
            c.sync = config.amq_sync();
            if let Some(s) = &config.persistence.amq {
                if let Some(v) = s.max_file_length {
                    c.max_file_length = v;
                }
                c.checkpoint_interval = ms(s.checkpoint_interval_ms, c.checkpoint_interval);
                c.cleanup_interval = ms(s.cleanup_interval_ms, c.cleanup_interval);
                if let Some(v) = s.ignore_corrupt_logs {
                    c.ignore_corrupt_logs = v;
                }
                if let Some(v) = s.preallocate {
                    c.preallocate = v;
                }
                if let Some(v) = s.leader_writes {
                    c.leader_writes = v;
                }
                if let Some(v) = s.mmap_replay {
                    c.mmap_replay = v;
                }
                if let Some(v) = s.mmap_reads {
                    c.mmap_reads = v;
                }
                c.ack_sync_delay = ms(s.ack_sync_delay_ms, c.ack_sync_delay);
            }
            let store = tokio::task::spawn_blocking(move || AmqStore::open(c))
                .await
                .map_err(|e| startup(kind, e))?
                .map_err(|e| startup(kind, e))?;
            Ok(Arc::new(store))
        }
        EngineKind::Jdbc => {
            let c = jdbc_config(config, fence).ok_or_else(|| startup(kind, "no url"))?;
            let store = JdbcStore::open(c).await.map_err(|e| startup(kind, e))?;
            Ok(Arc::new(store))
        }
        EngineKind::JournaledJdbc => {
            let jdbc = jdbc_config(config, None).ok_or_else(|| startup(kind, "no url"))?;
            let mut c = JournaledJdbcConfig::new(dir.unwrap_or_default(), jdbc);
            c.sync = config.journaled_sync();
            if let Some(s) = &config.persistence.journaled_jdbc {
                c.checkpoint_interval = ms(s.checkpoint_interval_ms, c.checkpoint_interval);
                if let Some(v) = s.checkpoint_journal_bytes {
                    c.checkpoint_journal_bytes = v;
                }
                if let Some(v) = s.max_overlay_bytes {
                    c.max_overlay_bytes = v;
                }
                if let Some(v) = s.max_file_length {
                    c.max_file_length = v;
                }
                if let Some(v) = s.preallocate {
                    c.preallocate = v;
                }
            }
            let store = JournaledJdbcStore::open(c)
                .await
                .map_err(|e| startup(kind, e))?;
            Ok(Arc::new(store))
        }
        EngineKind::Leveldb => open_leveldb(config, dir.unwrap_or_default()).await,
        EngineKind::Replicated => Err(startup(
            kind,
            "a replicated store is opened by its election (the broker's locker), not directly",
        )),
    }
}

#[cfg(feature = "leveldb")]
async fn open_leveldb(
    config: &EngineConfig,
    dir: std::path::PathBuf,
) -> Result<Arc<dyn PersistenceAdapter>> {
    use store_leveldb::{LevelDbConfig, LevelDbStore};
    let kind = EngineKind::Leveldb;
    let mut c = LevelDbConfig::new(dir);
    if let Some(s) = &config.persistence.leveldb {
        if let Some(v) = s.sync {
            c.sync = v;
        }
        if let Some(v) = s.log_size {
            c.log_size = v;
        }
        if let Some(v) = s.index_cache_size {
            c.index_cache_size = v;
        }
        if let Some(v) = s.index_write_buffer_size {
            c.index_write_buffer_size = v;
        }
        if let Some(v) = s.verify_checksums {
            c.verify_checksums = v;
        }
        if let Some(v) = s.paranoid_checks {
            c.paranoid_checks = v;
        }
        if let Some(v) = s.repair {
            c.repair = v;
        }
        c.ack_sync_delay = ms(s.ack_sync_delay_ms, c.ack_sync_delay);
    }
    let store = tokio::task::spawn_blocking(move || LevelDbStore::open(c))
        .await
        .map_err(|e| startup(kind, e))?
        .map_err(|e| startup(kind, e))?;
    Ok(Arc::new(store))
}

/// Config validation refuses `kind = "leveldb"` in this build; this is the same refusal for a
/// caller that skipped it.
#[cfg(not(feature = "leveldb"))]
async fn open_leveldb(
    _config: &EngineConfig,
    _dir: std::path::PathBuf,
) -> Result<Arc<dyn PersistenceAdapter>> {
    Err(startup(
        EngineKind::Leveldb,
        "this broker was built without the `leveldb` cargo feature",
    ))
}
