//! The engine's part of `broker.toml`: `[persistence]` (the kind, and that engine's settings
//! with ActiveMQ's names in snake case) and `[locker]`.
//!
//! ```toml
//! [persistence]
//! kind = "jdbc"                  # memory | kahadb | amq | jdbc | journaled-jdbc | leveldb
//! [persistence.jdbc]
//! url = "mysql://root@127.0.0.1:3306/test"
//! message_format = "native"      # native | openwire (ActiveMQ's MSG and schema, shared with ActiveMQ)
//!
//! [locker]
//! kind = "lease"                 # none | shared-file | database | lease (default per engine)
//! ```
//!
//! Every key is optional; none at all is the embedded default: KahaDB under
//! `<data_directory>/kahadb`, guarded by a shared-file lock.

use std::path::PathBuf;
use std::time::Duration;

use broker_core::config::{BrokerSection, ConfigError};
use serde::Deserialize;
use store_api::SyncPolicy;
use store_jdbc::MessageFormat;

/// What this crate reads: `[persistence]` and `[locker]`, with `[broker]` for the broker's name
/// (the lock's owner) and its data directory (where the file engines live by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineConfig {
    pub broker: BrokerSection,
    pub persistence: PersistenceSection,
    pub locker: LockerSection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    Memory,
    #[default]
    Kahadb,
    Amq,
    Jdbc,
    JournaledJdbc,
    /// RocksDB; accepted in every build so that a broker built without the `leveldb` feature
    /// says so by name instead of calling the kind unknown.
    Leveldb,
    /// A local engine (`[persistence.replicated] local`) replicated to the other brokers of a
    /// group elected through ZooKeeper (the `replication` crate).
    Replicated,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
            EngineKind::Kahadb => "kahadb",
            EngineKind::Amq => "amq",
            EngineKind::Jdbc => "jdbc",
            EngineKind::JournaledJdbc => "journaled-jdbc",
            EngineKind::Leveldb => "leveldb",
            EngineKind::Replicated => "replicated",
        }
    }
}

/// The engine and its settings. Only the section of the chosen `kind` may be present, except
/// that `journaled-jdbc` also uses `[persistence.jdbc]` for its database.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceSection {
    pub kind: EngineKind,
    pub kahadb: Option<KahaDbSection>,
    pub amq: Option<AmqSection>,
    pub jdbc: Option<JdbcSection>,
    pub journaled_jdbc: Option<JournaledSection>,
    pub leveldb: Option<LevelDbSection>,
    pub replicated: Option<ReplicatedSection>,
}

/// `[persistence.replicated]`: ActiveMQ's `replicatedLevelDB` attributes in snake case, over
/// any local engine (whose own section configures it).
///
/// ```toml
/// [persistence]
/// kind = "replicated"
/// [persistence.replicated]
/// local = "kahadb"
/// replicas = 3
/// bind = "tcp://0.0.0.0:61615"
/// zk_address = "zk1:2181,zk2:2181,zk3:2181"
/// zk_path = "/activemq/leveldb-stores"
/// hostname = "broker1.example.com"
/// sync = "quorum_mem"
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicatedSection {
    /// The engine each broker keeps its copy in: kahadb (default), amq, leveldb or memory.
    pub local: Option<EngineKind>,
    /// Brokers in the group; a write needs `replicas / 2 + 1`. Default 3.
    pub replicas: Option<usize>,
    /// The replication listener of this broker when it is master. Default
    /// `tcp://0.0.0.0:61615`.
    pub bind: Option<String>,
    /// ZooKeeper's `host:port[,host:port...]`. Required.
    pub zk_address: Option<String>,
    /// Default `/activemq/leveldb-stores`.
    pub zk_path: Option<String>,
    /// The host slaves connect to (with the bind port, or `host:port` when they reach this
    /// broker through a NAT or a proxy). Default: the bind address if it is not a wildcard,
    /// else this machine's host name.
    pub hostname: Option<String>,
    /// `quorum_mem` (ActiveMQ's default), `quorum_disk` or `local_disk`.
    pub sync: Option<String>,
    /// Default 2 000 (ActiveMQ's `zkSessionTimeout`).
    pub zk_session_timeout_ms: Option<u64>,
    /// How long a write waits for a quorum before it fails. Default 10 000.
    pub quorum_timeout_ms: Option<u64>,
    /// Recent records the master keeps for slaves that reconnect. Default 64 MiB.
    pub backlog_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncKind {
    #[default]
    Always,
    Periodic,
    Never,
}

fn sync_policy(
    kind: SyncKind,
    interval_ms: Option<u64>,
    key: &str,
) -> Result<SyncPolicy, ConfigError> {
    match (kind, interval_ms) {
        (SyncKind::Always, None) => Ok(SyncPolicy::Always),
        (SyncKind::Never, None) => Ok(SyncPolicy::Never),
        (SyncKind::Periodic, None) => Ok(SyncPolicy::Periodic(SyncPolicy::DEFAULT_INTERVAL)),
        (SyncKind::Periodic, Some(0)) => Err(ConfigError::new(
            format!("{key}.sync_interval_ms"),
            "must be above 0",
        )),
        (SyncKind::Periodic, Some(ms)) => Ok(SyncPolicy::Periodic(Duration::from_millis(ms))),
        (_, Some(_)) => Err(ConfigError::new(
            format!("{key}.sync_interval_ms"),
            "applies only with sync = \"periodic\"",
        )),
    }
}

/// KahaDB settings, with ActiveMQ's names in snake case and its defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KahaDbSection {
    /// Default `<data_directory>/kahadb`.
    pub directory: Option<PathBuf>,
    pub journal_max_file_length: Option<u64>,
    pub journal_max_write_batch_size: Option<usize>,
    pub sync: SyncKind,
    pub sync_interval_ms: Option<u64>,
    pub checkpoint_interval_ms: Option<u64>,
    pub cleanup_interval_ms: Option<u64>,
    pub index_cache_size: Option<usize>,
    pub index_write_batch_size: Option<usize>,
    pub ignore_missing_journal_files: Option<bool>,
    pub preallocate: Option<bool>,
    pub enable_ack_compaction: Option<bool>,
    pub compaction_threshold: Option<u64>,
    pub cleanup_on_stop: Option<bool>,
    /// See `store_kahadb::KahaDbConfig::leader_writes`.
    pub leader_writes: Option<bool>,
    /// Replay (open, index rebuild) reads sealed journal files through read-only maps.
    /// Default true.
    pub mmap_replay: Option<bool>,
    /// Old message bodies are read through maps of sealed files (a cache of at most 128 MiB
    /// of maps, which counts in the resident memory). Default true.
    pub mmap_reads: Option<bool>,
    /// How long an ack no client waits for may wait to share the fsync of a write someone
    /// does wait for (see `store_kahadb::KahaDbConfig::ack_sync_delay`). Default 2; 0 syncs
    /// every ack on its own.
    pub ack_sync_delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmqSection {
    /// Default `<data_directory>/amq`.
    pub directory: Option<PathBuf>,
    pub max_file_length: Option<u64>,
    pub sync: SyncKind,
    pub sync_interval_ms: Option<u64>,
    pub checkpoint_interval_ms: Option<u64>,
    pub cleanup_interval_ms: Option<u64>,
    pub ignore_corrupt_logs: Option<bool>,
    pub preallocate: Option<bool>,
    /// See `store_kahadb::KahaDbConfig::leader_writes`.
    pub leader_writes: Option<bool>,
    /// As in `[persistence.kahadb]`. Default true.
    pub mmap_replay: Option<bool>,
    /// As in `[persistence.kahadb]`. Default true.
    pub mmap_reads: Option<bool>,
    /// As in `[persistence.kahadb]`. Default 2.
    pub ack_sync_delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JdbcSection {
    /// `mysql://…`, `postgres://…` or `sqlite:path`. Required.
    pub url: Option<String>,
    pub pool_size: Option<u32>,
    pub table_prefix: Option<String>,
    pub create_tables_on_startup: Option<bool>,
    pub max_batch: Option<usize>,
    pub acquire_timeout_ms: Option<u64>,
    /// What `ACTIVEMQ_MSGS.MSG` holds: `native` (the default: this engine's encoding and its
    /// additions to ActiveMQ's schema) or `openwire` (ActiveMQ's marshalling in ActiveMQ's
    /// schema exactly, so that an ActiveMQ 5.x broker can be master or slave of the same
    /// database; the locker is then `database`).
    pub message_format: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournaledSection {
    /// The local journal. Default `<data_directory>/journal`.
    pub directory: Option<PathBuf>,
    pub checkpoint_interval_ms: Option<u64>,
    pub checkpoint_journal_bytes: Option<u64>,
    pub max_overlay_bytes: Option<u64>,
    pub max_file_length: Option<u64>,
    pub sync: SyncKind,
    pub sync_interval_ms: Option<u64>,
    pub preallocate: Option<bool>,
}

/// LevelDB (RocksDB) settings, with the names of ActiveMQ's `<levelDB>` attributes in snake
/// case; `store_leveldb::LevelDbConfig` documents each one and its default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LevelDbSection {
    /// Default `<data_directory>/leveldb`.
    pub directory: Option<PathBuf>,
    /// Default true: every write waits for a (shared) fsync of the engine's journal.
    pub sync: Option<bool>,
    /// Each journal file's size (ActiveMQ's `logSize`). Default 32 MiB (ActiveMQ: 100 MiB).
    pub log_size: Option<u64>,
    pub index_cache_size: Option<usize>,
    pub index_write_buffer_size: Option<usize>,
    pub verify_checksums: Option<bool>,
    pub paranoid_checks: Option<bool>,
    /// Run RocksDB's repair before opening (drops what it cannot read). Default false.
    pub repair: Option<bool>,
    /// As `[persistence.kahadb] ack_sync_delay_ms`. Default 2; 0 syncs every ack on its own.
    pub ack_sync_delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockerKind {
    /// No lock: this broker assumes it is alone.
    None,
    /// `flock` on `lock` in the store's directory (file engines).
    SharedFile,
    /// ActiveMQ's `DefaultDatabaseLocker`: a row lock held for the master's life.
    Database,
    /// A lease row with a fencing epoch.
    Lease,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LockerSection {
    /// Default: `shared-file` for kahadb, amq and journaled-jdbc, `lease` for jdbc, `none` for
    /// memory.
    pub kind: Option<LockerKind>,
    /// The database of a `database`/`lease` locker; default the JDBC engine's url.
    pub url: Option<String>,
    pub table_prefix: Option<String>,
    /// Lease length (lease locker). Default 10 000.
    pub lease_ms: Option<u64>,
    /// How often the master renews / checks its lock. Default: a third of the lease for the
    /// database lockers, 1 000 for the shared-file lock.
    pub keep_alive_ms: Option<u64>,
    /// How long a slave waits between attempts. Default 1 000.
    pub acquire_retry_ms: Option<u64>,
}

impl EngineConfig {
    /// The locker this config asks for, default filled in.
    pub fn locker_kind(&self) -> LockerKind {
        self.locker.kind.unwrap_or(match self.persistence.kind {
            // The ZooKeeper election is the lock.
            EngineKind::Memory | EngineKind::Replicated => LockerKind::None,
            // ActiveMQ's schema has no fencing epoch for the lease locker.
            EngineKind::Jdbc if self.message_format() == MessageFormat::OpenWire => {
                LockerKind::Database
            }
            EngineKind::Jdbc => LockerKind::Lease,
            EngineKind::Kahadb
            | EngineKind::Amq
            | EngineKind::JournaledJdbc
            | EngineKind::Leveldb => LockerKind::SharedFile,
        })
    }

    /// The directory of a file engine (where the shared-file lock lives), if it has one.
    pub fn store_directory(&self) -> Option<PathBuf> {
        let data = &self.broker.data_directory;
        let p = &self.persistence;
        match p.kind {
            EngineKind::Memory | EngineKind::Jdbc => None,
            // The local engine's directory (the replication position file lives there), or
            // `<data_directory>/replicated` for a memory one.
            EngineKind::Replicated => Some(
                self.replicated_local()
                    .store_directory()
                    .unwrap_or_else(|| data.join("replicated")),
            ),
            EngineKind::Kahadb => Some(
                p.kahadb
                    .as_ref()
                    .and_then(|s| s.directory.clone())
                    .unwrap_or_else(|| data.join("kahadb")),
            ),
            EngineKind::Amq => Some(
                p.amq
                    .as_ref()
                    .and_then(|s| s.directory.clone())
                    .unwrap_or_else(|| data.join("amq")),
            ),
            EngineKind::JournaledJdbc => Some(
                p.journaled_jdbc
                    .as_ref()
                    .and_then(|s| s.directory.clone())
                    .unwrap_or_else(|| data.join("journal")),
            ),
            EngineKind::Leveldb => Some(
                p.leveldb
                    .as_ref()
                    .and_then(|s| s.directory.clone())
                    .unwrap_or_else(|| data.join("leveldb")),
            ),
        }
    }

    /// The JDBC message format (checked by [`EngineConfig::validate`]; native when invalid).
    pub fn message_format(&self) -> MessageFormat {
        self.persistence
            .jdbc
            .as_ref()
            .and_then(|j| j.message_format.as_deref())
            .and_then(|f| MessageFormat::parse(f).ok())
            .unwrap_or_default()
    }

    /// The database url the engine uses, if any.
    pub fn jdbc_url(&self) -> Option<&str> {
        self.persistence
            .jdbc
            .as_ref()
            .and_then(|j| j.url.as_deref())
    }

    /// The database url of a database locker: its own, or the engine's.
    pub fn locker_url(&self) -> Option<&str> {
        self.locker.url.as_deref().or_else(|| self.jdbc_url())
    }

    /// Checks `[persistence]` and `[locker]`, and that they go together.
    /// The local engine of a replicated store, as a config of its own (the kind `local` names,
    /// with its section from this config).
    pub fn replicated_local(&self) -> EngineConfig {
        let mut local = self.clone();
        local.persistence.kind = self
            .persistence
            .replicated
            .as_ref()
            .and_then(|r| r.local)
            .unwrap_or(EngineKind::Kahadb);
        local.persistence.replicated = None;
        local.locker = LockerSection {
            kind: Some(LockerKind::None),
            ..LockerSection::default()
        };
        local
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.persistence.kind == EngineKind::Replicated {
            return self.validate_replicated();
        }
        if self.persistence.replicated.is_some() {
            return Err(ConfigError::new(
                "persistence.replicated",
                format!(
                    "is set, but persistence.kind is \"{}\"",
                    self.persistence.kind.name()
                ),
            ));
        }
        let p = &self.persistence;
        let kind = p.kind;
        let stray = [
            (
                "persistence.kahadb",
                p.kahadb.is_some(),
                kind == EngineKind::Kahadb,
            ),
            ("persistence.amq", p.amq.is_some(), kind == EngineKind::Amq),
            (
                "persistence.jdbc",
                p.jdbc.is_some(),
                matches!(kind, EngineKind::Jdbc | EngineKind::JournaledJdbc),
            ),
            (
                "persistence.journaled_jdbc",
                p.journaled_jdbc.is_some(),
                kind == EngineKind::JournaledJdbc,
            ),
            (
                "persistence.leveldb",
                p.leveldb.is_some(),
                kind == EngineKind::Leveldb,
            ),
        ];
        for (key, present, allowed) in stray {
            if present && !allowed {
                return Err(ConfigError::new(
                    key,
                    format!("is set, but persistence.kind is \"{}\"", kind.name()),
                ));
            }
        }
        if matches!(kind, EngineKind::Jdbc | EngineKind::JournaledJdbc) && self.jdbc_url().is_none()
        {
            return Err(ConfigError::new(
                "persistence.jdbc.url",
                format!("is required with persistence.kind = \"{}\"", kind.name()),
            ));
        }
        if let Some(k) = &p.kahadb {
            sync_policy(k.sync, k.sync_interval_ms, "persistence.kahadb")?;
            if k.journal_max_file_length.is_some_and(|n| n < 64 * 1024) {
                return Err(ConfigError::new(
                    "persistence.kahadb.journal_max_file_length",
                    "must be at least 65536",
                ));
            }
        }
        if let Some(a) = &p.amq {
            sync_policy(a.sync, a.sync_interval_ms, "persistence.amq")?;
            if a.max_file_length.is_some_and(|n| n < 64 * 1024) {
                return Err(ConfigError::new(
                    "persistence.amq.max_file_length",
                    "must be at least 65536",
                ));
            }
        }
        if let Some(j) = &p.journaled_jdbc {
            sync_policy(j.sync, j.sync_interval_ms, "persistence.journaled_jdbc")?;
        }
        if let Some(l) = &p.leveldb {
            if l.index_write_buffer_size.is_some_and(|n| n < 64 * 1024) {
                return Err(ConfigError::new(
                    "persistence.leveldb.index_write_buffer_size",
                    "must be at least 65536",
                ));
            }
            if l.log_size.is_some_and(|n| n < 1024 * 1024) {
                return Err(ConfigError::new(
                    "persistence.leveldb.log_size",
                    "must be at least 1048576",
                ));
            }
            if l.index_cache_size == Some(0) {
                return Err(ConfigError::new(
                    "persistence.leveldb.index_cache_size",
                    "must be above 0",
                ));
            }
        }
        // After the section's own checks, so a wrong value is named even on a build without
        // the engine.
        if kind == EngineKind::Leveldb && !crate::LEVELDB_BUILT {
            return Err(ConfigError::new(
                "persistence.kind",
                "\"leveldb\" needs a broker built with `cargo build --features leveldb` (it links Debian's librocksdb-dev)",
            ));
        }
        if let Some(j) = &p.jdbc
            && j.pool_size == Some(0)
        {
            return Err(ConfigError::new(
                "persistence.jdbc.pool_size",
                "must be at least 1",
            ));
        }

        if let Some(f) = p.jdbc.as_ref().and_then(|j| j.message_format.as_deref()) {
            let format = MessageFormat::parse(f).map_err(|_| {
                ConfigError::new(
                    "persistence.jdbc.message_format",
                    format!("`{f}`: use \"native\" or \"openwire\""),
                )
            })?;
            if format == MessageFormat::OpenWire {
                if kind == EngineKind::JournaledJdbc {
                    return Err(ConfigError::new(
                        "persistence.jdbc.message_format",
                        "\"openwire\" is for sharing the database with ActiveMQ, which journaled-jdbc's local journal rules out; use kind = \"jdbc\"",
                    ));
                }
                if self.locker_kind() == LockerKind::Lease {
                    return Err(ConfigError::new(
                        "locker.kind",
                        "\"lease\" needs the lock row's EPOCH column, which ActiveMQ's schema (persistence.jdbc.message_format = \"openwire\") does not have; use \"database\" (ActiveMQ's own locker, the default in this mode)",
                    ));
                }
            }
        }

        let locker = self.locker_kind();
        match locker {
            LockerKind::SharedFile if self.store_directory().is_none() => {
                return Err(ConfigError::new(
                    "locker.kind",
                    format!(
                        "\"shared-file\" needs a file engine; persistence.kind \"{}\" keeps no files (use \"lease\" or \"database\" with jdbc)",
                        kind.name()
                    ),
                ));
            }
            LockerKind::Database | LockerKind::Lease => {
                if kind == EngineKind::JournaledJdbc {
                    return Err(ConfigError::new(
                        "locker.kind",
                        "journaled-jdbc cannot run under a database lock: its journal is local to this machine, so a slave taking over the database would not see the messages still in the master's journal; use kahadb, or jdbc without the journal, for master/slave",
                    ));
                }
                if kind == EngineKind::Memory {
                    return Err(ConfigError::new(
                        "locker.kind",
                        "a memory store keeps nothing a slave could take over; use locker.kind = \"none\"",
                    ));
                }
                if self.locker_url().is_none() {
                    return Err(ConfigError::new(
                        "locker.url",
                        "is required for a database or lease locker when the engine is not jdbc",
                    ));
                }
            }
            _ => {}
        }
        if locker != LockerKind::Database && locker != LockerKind::Lease {
            for (key, set) in [
                ("locker.url", self.locker.url.is_some()),
                ("locker.table_prefix", self.locker.table_prefix.is_some()),
                ("locker.lease_ms", self.locker.lease_ms.is_some()),
            ] {
                if set {
                    return Err(ConfigError::new(
                        key,
                        "applies only to the \"database\" and \"lease\" lockers",
                    ));
                }
            }
        }
        if let Some(0) = self.locker.lease_ms {
            return Err(ConfigError::new("locker.lease_ms", "must be above 0"));
        }
        if let (Some(ka), LockerKind::Lease) = (self.locker.keep_alive_ms, locker) {
            let lease = self.locker.lease_ms.unwrap_or(10_000);
            if ka == 0 || ka > lease / 3 {
                return Err(ConfigError::new(
                    "locker.keep_alive_ms",
                    format!(
                        "must be above 0 and at most a third of the lease ({lease} ms), so the master renews before its lease can lapse"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn kahadb_sync(&self) -> SyncPolicy {
        self.persistence
            .kahadb
            .as_ref()
            .and_then(|k| sync_policy(k.sync, k.sync_interval_ms, "").ok())
            .unwrap_or_default()
    }

    pub(crate) fn amq_sync(&self) -> SyncPolicy {
        self.persistence
            .amq
            .as_ref()
            .and_then(|k| sync_policy(k.sync, k.sync_interval_ms, "").ok())
            .unwrap_or_default()
    }

    pub(crate) fn journaled_sync(&self) -> SyncPolicy {
        self.persistence
            .journaled_jdbc
            .as_ref()
            .and_then(|k| sync_policy(k.sync, k.sync_interval_ms, "").ok())
            .unwrap_or_default()
    }
}

impl EngineConfig {
    fn validate_replicated(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("persistence.replicated.{k}");
        let Some(r) = &self.persistence.replicated else {
            return Err(ConfigError::new(
                "persistence.replicated",
                "is required with persistence.kind = \"replicated\" (zk_address at least)",
            ));
        };
        if self.locker.kind.is_some_and(|k| k != LockerKind::None) {
            return Err(ConfigError::new(
                "locker.kind",
                "must be none (or absent) with a replicated store: the ZooKeeper election is the lock",
            ));
        }
        match r.local.unwrap_or(EngineKind::Kahadb) {
            EngineKind::Kahadb | EngineKind::Amq | EngineKind::Leveldb | EngineKind::Memory => {}
            other => {
                return Err(ConfigError::new(
                    key("local"),
                    format!(
                        "\"{}\" cannot be replicated: use kahadb, amq, leveldb or memory (a database is shared storage already)",
                        other.name()
                    ),
                ));
            }
        }
        if r.replicas == Some(0) {
            return Err(ConfigError::new(key("replicas"), "must be at least 1"));
        }
        if r.zk_address.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::new(key("zk_address"), "is required"));
        }
        if let Some(p) = &r.zk_path
            && (!p.starts_with('/') || p.len() < 2 || p.ends_with('/'))
        {
            return Err(ConfigError::new(
                key("zk_path"),
                format!("{p:?} is not a ZooKeeper path like \"/activemq/leveldb-stores\""),
            ));
        }
        if let Some(s) = &r.sync
            && !matches!(s.as_str(), "quorum_mem" | "quorum_disk" | "local_disk")
        {
            return Err(ConfigError::new(
                key("sync"),
                format!("{s:?} is not one of quorum_mem, quorum_disk, local_disk"),
            ));
        }
        if r.zk_session_timeout_ms == Some(0) {
            return Err(ConfigError::new(
                key("zk_session_timeout_ms"),
                "must be above 0",
            ));
        }
        if let Err(why) = self.replication_bind() {
            return Err(ConfigError::new(key("bind"), why));
        }
        self.replicated_local().validate()
    }

    /// The replication listener's address, from `bind` (`tcp://host:port`).
    pub fn replication_bind(&self) -> Result<std::net::SocketAddr, String> {
        let bind = self
            .persistence
            .replicated
            .as_ref()
            .and_then(|r| r.bind.as_deref())
            .unwrap_or("tcp://0.0.0.0:61615");
        let addr = bind.strip_prefix("tcp://").unwrap_or(bind);
        addr.parse()
            .map_err(|_| format!("{bind:?} is not tcp://address:port (an IP address and a port)"))
    }
}
