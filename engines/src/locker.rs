//! The locker a config names: none, the shared-file lock of the file engines
//! ([`crate::shared_file`]), or store-jdbc's `database` (a row lock held for the master's life)
//! and `lease` (a lease row with a fencing epoch) lockers.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_core::{BrokerError, HeldLock, Leaving, Locker, NoLock, Result};
use store_jdbc::Fence;
use store_jdbc::locker::{LockerConfig, LockerKind as JdbcLockerKind, MasterLock};

use crate::config::{EngineConfig, LockerKind};
use crate::shared_file::SharedFileLocker;

/// The locker `config` asks for, its settings filled in.
pub fn locker(config: &EngineConfig) -> Arc<dyn Locker> {
    if config.persistence.kind == crate::config::EngineKind::Replicated {
        return Arc::new(crate::replicated::ReplicatedLocker(config.clone()));
    }
    let retry = Duration::from_millis(config.locker.acquire_retry_ms.unwrap_or(1000));
    match config.locker_kind() {
        LockerKind::None => Arc::new(NoLock),
        LockerKind::SharedFile => Arc::new(SharedFileLocker {
            dir: config.store_directory().unwrap_or_default(),
            owner: config.broker.name.clone(),
            retry,
            keep_alive: Duration::from_millis(config.locker.keep_alive_ms.unwrap_or(1000)),
        }),
        kind @ (LockerKind::Database | LockerKind::Lease) => {
            let url = config.locker_url().unwrap_or_default().to_owned();
            let mut c = LockerConfig::new(
                url,
                if kind == LockerKind::Lease {
                    JdbcLockerKind::Lease
                } else {
                    JdbcLockerKind::Database
                },
            );
            c.broker_name = config.broker.name.clone();
            if let Some(p) = config.locker.table_prefix.clone().or_else(|| {
                config
                    .persistence
                    .jdbc
                    .as_ref()
                    .and_then(|j| j.table_prefix.clone())
            }) {
                c.table_prefix = p;
            }
            if let Some(ms) = config.locker.lease_ms {
                c.lease = Duration::from_millis(ms);
            }
            c.keep_alive = config.locker.keep_alive_ms.map(Duration::from_millis);
            c.acquire_retry = retry;
            c.message_format = config.message_format();
            Arc::new(DatabaseLocker(c))
        }
    }
}

/// store-jdbc's database or lease locker.
struct DatabaseLocker(LockerConfig);

#[async_trait]
impl Locker for DatabaseLocker {
    async fn acquire(&self) -> Result<Box<dyn HeldLock>> {
        let lock =
            store_jdbc::locker::acquire(&self.0)
                .await
                .map_err(|e| BrokerError::Startup {
                    what: "cannot take the database lock".into(),
                    reason: e.to_string(),
                })?;
        Ok(Box::new(DatabaseLock(lock)))
    }
}

/// A held database or lease lock.
pub(crate) struct DatabaseLock(MasterLock);

impl DatabaseLock {
    /// The fence to give the JDBC store this lock guards.
    pub(crate) fn fence(&self) -> Fence {
        self.0.fence()
    }
}

#[async_trait]
impl HeldLock for DatabaseLock {
    fn describe(&self) -> String {
        format!(
            "database lock as {} (epoch {:?})",
            self.0.owner(),
            self.0.epoch()
        )
    }

    /// See store-jdbc's `MasterLock::took_over`: the previous holder did not give the lock up
    /// cleanly.
    fn took_over(&self) -> bool {
        self.0.took_over()
    }

    async fn lost(&mut self) -> String {
        self.0.lost().await
    }

    async fn release(self: Box<Self>, leaving: Leaving) {
        match leaving {
            Leaving::Settled => self.0.release().await,
            Leaving::Unsettled => self.0.release_unsettled().await,
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
