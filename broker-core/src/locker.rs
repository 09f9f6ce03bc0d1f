//! The master lock and the store it guards, as the broker sees them: a [`Locker`] waits until
//! this broker holds the lock and gives a [`HeldLock`], which says when the lock is lost and
//! releases it; a [`StoreOpener`] then opens (and so recovers) the store under that lock.
//!
//! The lockers themselves (a shared file, a database row, a lease) and the engines they guard
//! live in the `engines` crate, the only one that knows them all; this crate depends on
//! `store-api` alone. [`NoLock`] is here because it needs no engine: a broker that assumes it is
//! alone.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use store_api::PersistenceAdapter;

use crate::error::Result;

/// Takes the master lock.
#[async_trait]
pub trait Locker: Send + Sync {
    /// Waits until this broker holds the lock. Runs until it succeeds or fails for a reason
    /// waiting cannot fix; the caller drops the future to stop a waiting slave.
    async fn acquire(&self) -> Result<Box<dyn HeldLock>>;
}

/// The lock a master holds.
#[async_trait]
pub trait HeldLock: Send + Sync {
    /// What is held, for the log (`<dir>/lock (epoch 3)`, `database lock as b1 ...`).
    fn describe(&self) -> String;

    /// True when this broker takes over from a master that did not stop cleanly, so that
    /// deliveries it made may never have been acknowledged in the store.
    fn took_over(&self) -> bool;

    /// Resolves when the lock is lost, with why; never for a lock that cannot be lost.
    async fn lost(&mut self) -> String;

    /// Hands the lock over (a clean stop), saying whether the next master has deliveries of
    /// this one to account for.
    async fn release(self: Box<Self>, leaving: Leaving);

    /// The concrete lock, for a [`StoreOpener`] whose store must be tied to it (a JDBC store
    /// takes the database lock's fence, so that a deposed master's writes are refused).
    fn as_any(&self) -> &dyn Any;
}

/// What a master that stops cleanly leaves for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// Every message this master delivered was acknowledged (or never left it): the next
    /// master has nothing to flag.
    Settled,
    /// Messages this master delivered were still unacknowledged when it stopped (they stay in
    /// the store and come back): the lock is handed over as after a crash, so that the next
    /// master flags what it recovers as possibly delivered, where the lock can carry that (the
    /// shared-file lock, the lease, the SQLite file lock; not the database row lock, whose
    /// holder can commit nothing while it holds the row).
    Unsettled,
}

/// Opens the store once the lock is held.
#[async_trait]
pub trait StoreOpener: Send + Sync {
    /// Opens (and so recovers) the store this broker serves, under `lock`.
    async fn open(&self, lock: &dyn HeldLock) -> Result<Arc<dyn PersistenceAdapter>>;
}

/// No lock: this broker assumes it is alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLock;

#[async_trait]
impl Locker for NoLock {
    async fn acquire(&self) -> Result<Box<dyn HeldLock>> {
        Ok(Box::new(NoLock))
    }
}

#[async_trait]
impl HeldLock for NoLock {
    fn describe(&self) -> String {
        "no lock".into()
    }

    fn took_over(&self) -> bool {
        false
    }

    async fn lost(&mut self) -> String {
        std::future::pending().await
    }

    async fn release(self: Box<Self>, _leaving: Leaving) {}

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A store opened before the broker started: [`StoreOpener::open`] hands it out, whatever
/// the lock (for embedding with an engine of one's own, and for tests).
#[derive(Clone)]
pub struct OpenedStore(pub Arc<dyn PersistenceAdapter>);

#[async_trait]
impl StoreOpener for OpenedStore {
    async fn open(&self, _lock: &dyn HeldLock) -> Result<Arc<dyn PersistenceAdapter>> {
        Ok(Arc::clone(&self.0))
    }
}
