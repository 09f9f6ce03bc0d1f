//! `kind = "replicated"`: the `replication` crate's ZooKeeper election as the broker's lock.
//!
//! Waiting for the lock is being a slave: [`ReplicatedLocker::acquire`] opens the local engine,
//! joins the group and follows masters, applying their writes, until this broker is elected;
//! the [`HeldLock`] it then returns carries the master's replicated store, which
//! [`crate::open`] hands to the broker. The lock is lost when the ZooKeeper session ends or is
//! cut for most of its timeout, or a newer epoch is elected; the broker then stops serving.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_core::{BrokerError, HeldLock, Leaving, Locker, Result};
use replication::{Master, Node, NodeConfig, ReplicatedStore, SyncMode};

use crate::config::EngineConfig;

/// The election, as a locker.
pub(crate) struct ReplicatedLocker(pub(crate) EngineConfig);

fn startup(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Startup {
        what: what.into(),
        reason: e.to_string(),
    }
}

impl ReplicatedLocker {
    fn node_config(&self) -> Result<NodeConfig> {
        let c = &self.0;
        let r = c.persistence.replicated.clone().unwrap_or_default();
        let bind = c
            .replication_bind()
            .map_err(|e| startup("persistence.replicated.bind", e))?;
        let host = r.hostname.clone().unwrap_or_else(|| {
            if bind.ip().is_unspecified() {
                // The kernel's host name (what `hostname` prints).
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "localhost".into())
            } else {
                bind.ip().to_string()
            }
        });
        Ok(NodeConfig {
            id: c.broker.name.clone(),
            replicas: r.replicas.unwrap_or(3),
            bind,
            // `hostname` may carry a port of its own, for slaves that reach this broker through
            // a NAT or a proxy (the bind port otherwise).
            advertise: if host.contains(':') {
                host
            } else {
                format!("{host}:{}", bind.port())
            },
            zk_address: r.zk_address.clone().unwrap_or_default(),
            zk_path: r
                .zk_path
                .clone()
                .unwrap_or_else(|| "/activemq/leveldb-stores".into()),
            zk_session_timeout: Duration::from_millis(r.zk_session_timeout_ms.unwrap_or(2000)),
            sync: r
                .sync
                .as_deref()
                .and_then(SyncMode::parse)
                .unwrap_or(SyncMode::QuorumMem),
            quorum_timeout: Duration::from_millis(r.quorum_timeout_ms.unwrap_or(10_000)),
            backlog_bytes: r.backlog_bytes.unwrap_or(64 << 20),
            directory: c.store_directory().unwrap_or_default(),
        })
    }
}

#[async_trait]
impl Locker for ReplicatedLocker {
    async fn acquire(&self) -> Result<Box<dyn HeldLock>> {
        let node_config = self.node_config()?;
        let local = crate::open::open_local(&self.0.replicated_local()).await?;
        tracing::info!(
            "replication: joining {} at {} as {} ({} replicas, sync {:?}); a slave until elected",
            node_config.zk_path,
            node_config.zk_address,
            node_config.id,
            node_config.replicas,
            node_config.sync
        );
        let node = Node::join(node_config, local)
            .await
            .map_err(|e| startup("cannot join the replicated group", e))?;
        let master = node
            .run_until_master()
            .await
            .map_err(|e| startup("replication stopped", e))?;
        Ok(Box::new(ReplicatedLock(Some(master))))
    }
}

/// Mastership of the group.
pub(crate) struct ReplicatedLock(Option<Master>);

impl ReplicatedLock {
    /// The store this master serves.
    pub(crate) fn store(&self) -> Option<Arc<ReplicatedStore>> {
        self.0.as_ref().map(Master::store)
    }
}

#[async_trait]
impl HeldLock for ReplicatedLock {
    fn describe(&self) -> String {
        match &self.0 {
            Some(m) => format!("replicated store master of epoch {}", m.epoch()),
            None => "replicated store (stepped down)".into(),
        }
    }

    /// Every master after the first takes over from one whose deliveries may not have been
    /// acknowledged.
    fn took_over(&self) -> bool {
        self.0.as_ref().is_some_and(|m| m.epoch() > 1)
    }

    async fn lost(&mut self) -> String {
        match &self.0 {
            Some(m) => m.lost().await,
            None => std::future::pending().await,
        }
    }

    async fn release(mut self: Box<Self>, _leaving: Leaving) {
        if let Some(m) = self.0.take() {
            m.step_down().await;
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
