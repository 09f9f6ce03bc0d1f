//! engines: opens the message-store engine and the master locker a `broker.toml` names; the
//! only crate that knows them all.
//!
//! `broker-core` depends on `store-api` alone: it takes a [`broker_core::Locker`] and a
//! [`broker_core::StoreOpener`]. This crate reads the config's `[persistence]` and `[locker]`
//! sections ([`EngineConfig`]) and gives both: the engine (`memory`, `kahadb`, `amq`, `jdbc`,
//! `journaled-jdbc`, and `leveldb` behind the cargo feature of that name, on by default) opened once the lock is held, and the locker (`none`, `shared-file`,
//! `database`, `lease`). A JDBC store opened under a database or lease lock is given that lock's
//! fence, so that a deposed master cannot write. Adding an engine means editing this crate, not
//! the core.

pub mod config;

/// Whether this build has the LevelDB engine (the `leveldb` cargo feature).
pub const LEVELDB_BUILT: bool = cfg!(feature = "leveldb");
mod locker;
mod open;
mod replicated;
mod shared_file;

use std::sync::Arc;

use broker_core::config::CoreConfig;
use broker_core::{Broker, StoreOpener};

pub use config::{
    AmqSection, EngineConfig, EngineKind, JdbcSection, JournaledSection, KahaDbSection,
    LevelDbSection, LockerKind, LockerSection, PersistenceSection, ReplicatedSection, SyncKind,
};
pub use locker::locker;

/// The engine `config` names, opened (and recovered) when the broker holds its lock.
pub fn store(config: &EngineConfig) -> Arc<dyn StoreOpener> {
    Arc::new(open::ConfiguredStore(config.clone()))
}

/// A broker over the engine and the locker `config` names.
pub fn broker(core: CoreConfig, config: &EngineConfig) -> Broker {
    Broker::new(core, locker(config), store(config))
}
