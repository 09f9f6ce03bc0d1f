//! `broker.toml`: which engine, which locker, limits and policies.
//!
//! Every section and key is optional; an empty file (or no file) is the embedded default:
//! KahaDB under `./data/kahadb`, guarded by a shared-file lock. Unknown keys, wrong types and
//! impossible combinations are errors that name the key (`persistence.kahadb.journal_max_file_length`),
//! so a typo is never silently ignored.
//!
//! ```toml
//! [broker]
//! name = "localhost"
//! data_directory = "data"
//!
//! [persistence]
//! kind = "jdbc"                  # memory | kahadb | amq | jdbc | journaled-jdbc
//! [persistence.jdbc]
//! url = "mysql://root@127.0.0.1:3306/test"
//!
//! [locker]
//! kind = "lease"                 # none | shared-file | database | lease (default per engine)
//!
//! [limits]
//! memory_bytes = 67108864
//!
//! [policy]
//! maximum_redeliveries = 6
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use store_api::SyncPolicy;

/// A config that cannot be used, naming the key at fault (empty for a syntax error, whose
/// reason carries the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{reason}", .source_name.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), if .key.is_empty() { String::new() } else { format!("{}: ", .key) })]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub source_name: Option<String>,
    /// The dotted key, e.g. `persistence.kahadb.sync`.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            source_name: None,
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub broker: BrokerSection,
    pub persistence: PersistenceSection,
    pub locker: LockerSection,
    pub limits: LimitsSection,
    pub policy: PolicySection,
    /// Read by the `broker` program; validated here so one file has one set of rules.
    pub transports: TransportsSection,
    /// STOMP users. None configured = ActiveMQ's `admin`/`admin`, with a warning at start.
    pub users: Vec<UserEntry>,
}

/// Where the `broker` program listens and the limits it puts on clients.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportsSection {
    /// STOMP over TCP; empty string to turn it off. Default `127.0.0.1:61613`.
    pub stomp: String,
    /// STOMP over TLS, e.g. `127.0.0.1:61614`; needs `tls_certificate` and `tls_key`.
    pub stomp_tls: Option<String>,
    /// PEM certificate chain.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Largest frame (headers and body) a client may send. 16 MiB.
    pub max_frame_bytes: usize,
    /// Most headers in one frame. 1000.
    pub max_headers: usize,
    /// Longest header line. 10 KiB.
    pub max_header_bytes: usize,
    /// Frames queued for one connection before the broker stops reading from it. 1000.
    pub max_pending_frames: usize,
    /// The web console and monitoring API (HTTP); empty string to turn it off. Default
    /// `127.0.0.1:8161`, as ActiveMQ's.
    pub web: String,
}

impl Default for TransportsSection {
    fn default() -> Self {
        TransportsSection {
            stomp: "127.0.0.1:61613".into(),
            stomp_tls: None,
            tls_certificate: None,
            tls_key: None,
            max_frame_bytes: 16 * 1024 * 1024,
            max_headers: 1000,
            max_header_bytes: 10 * 1024,
            max_pending_frames: 1000,
            web: "127.0.0.1:8161".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// `brokerName`: names the broker in logs, message ids and the lock.
    pub name: String,
    /// Where the file engines keep their directories by default.
    pub data_directory: PathBuf,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            name: "localhost".into(),
            data_directory: PathBuf::from("data"),
        }
    }
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
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
            EngineKind::Kahadb => "kahadb",
            EngineKind::Amq => "amq",
            EngineKind::Jdbc => "jdbc",
            EngineKind::JournaledJdbc => "journaled-jdbc",
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// `memoryUsage`: message bytes held in memory across all destinations. 64 MiB.
    pub memory_bytes: u64,
    /// `maxPageSize`: messages paged in from the store per destination at most. 200.
    pub max_page_size: usize,
    /// Messages dispatched to a queue consumer ahead of its acks. 1000.
    pub queue_prefetch: u32,
    /// The same for topic subscribers. 32766.
    pub topic_prefetch: u32,
    /// Messages a slow non-durable topic subscriber may have waiting before the oldest are
    /// discarded (ActiveMQ's pending message limit). 10 000.
    pub max_pending_non_durable: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            memory_bytes: 64 * 1024 * 1024,
            max_page_size: 200,
            queue_prefetch: 1000,
            topic_prefetch: 32766,
            max_pending_non_durable: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiredPolicy {
    /// Persistent expired messages go to the dead letter queue (ActiveMQ's default).
    #[default]
    DeadLetter,
    Discard,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Deliveries after the first before a message goes to the dead letter queue. 6.
    pub maximum_redeliveries: u32,
    pub dead_letter_queue: String,
    pub expired: ExpiredPolicy,
    /// How often stored messages are checked for expiry. 30 000.
    pub expire_check_interval_ms: u64,
    /// With memory full, fail non-persistent sends instead of waiting for room. false.
    pub send_fail_if_no_space: bool,
    /// How long a non-persistent send waits for memory before it fails. 30 000.
    pub send_timeout_ms: u64,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            maximum_redeliveries: 6,
            dead_letter_queue: "ActiveMQ.DLQ".into(),
            expired: ExpiredPolicy::DeadLetter,
            expire_check_interval_ms: 30_000,
            send_fail_if_no_space: false,
            send_timeout_ms: 30_000,
        }
    }
}

impl BrokerConfig {
    /// Parses and validates a config.
    pub fn from_toml(text: &str) -> Result<BrokerConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::new("", e.to_string().trim_end().to_owned()))?;
        let config: BrokerConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigError::new(
                    if key == "." { String::new() } else { key },
                    e.into_inner().message().to_owned(),
                )
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file; errors name the file.
    pub fn from_file(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: Some(name.clone()),
            key: String::new(),
            reason: format!("cannot read: {e}"),
        })?;
        BrokerConfig::from_toml(&text).map_err(|mut e| {
            e.source_name = Some(name);
            e
        })
    }

    /// The locker this config asks for, default filled in.
    pub fn locker_kind(&self) -> LockerKind {
        self.locker.kind.unwrap_or(match self.persistence.kind {
            EngineKind::Memory => LockerKind::None,
            EngineKind::Jdbc => LockerKind::Lease,
            EngineKind::Kahadb | EngineKind::Amq | EngineKind::JournaledJdbc => {
                LockerKind::SharedFile
            }
        })
    }

    /// The directory of a file engine (where the shared-file lock lives), if it has one.
    pub fn store_directory(&self) -> Option<PathBuf> {
        let data = &self.broker.data_directory;
        let p = &self.persistence;
        match p.kind {
            EngineKind::Memory | EngineKind::Jdbc => None,
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
        }
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

    pub fn memory_limit(&self) -> u64 {
        self.limits.memory_bytes
    }

    pub fn expire_check_interval(&self) -> Duration {
        Duration::from_millis(self.policy.expire_check_interval_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
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
        if let Some(j) = &p.jdbc
            && j.pool_size == Some(0)
        {
            return Err(ConfigError::new(
                "persistence.jdbc.pool_size",
                "must be at least 1",
            ));
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
        if self.limits.memory_bytes < 64 * 1024 {
            return Err(ConfigError::new(
                "limits.memory_bytes",
                "must be at least 65536",
            ));
        }
        for (key, v) in [
            ("limits.max_page_size", self.limits.max_page_size as u64),
            (
                "limits.queue_prefetch",
                u64::from(self.limits.queue_prefetch),
            ),
            (
                "limits.topic_prefetch",
                u64::from(self.limits.topic_prefetch),
            ),
            (
                "limits.max_pending_non_durable",
                self.limits.max_pending_non_durable as u64,
            ),
            (
                "policy.expire_check_interval_ms",
                self.policy.expire_check_interval_ms,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::new(key, "must be above 0"));
            }
        }
        if self.policy.dead_letter_queue.trim().is_empty() {
            return Err(ConfigError::new(
                "policy.dead_letter_queue",
                "must not be empty",
            ));
        }
        let t = &self.transports;
        if t.stomp_tls.is_some() {
            for (key, set) in [
                ("transports.tls_certificate", t.tls_certificate.is_some()),
                ("transports.tls_key", t.tls_key.is_some()),
            ] {
                if !set {
                    return Err(ConfigError::new(
                        key,
                        "is required with transports.stomp_tls",
                    ));
                }
            }
        }
        for (key, v) in [
            ("transports.max_frame_bytes", t.max_frame_bytes),
            ("transports.max_headers", t.max_headers),
            ("transports.max_header_bytes", t.max_header_bytes),
            ("transports.max_pending_frames", t.max_pending_frames),
        ] {
            if v == 0 {
                return Err(ConfigError::new(key, "must be above 0"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                return Err(ConfigError::new(
                    format!("users[{i}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(&u.name) {
                return Err(ConfigError::new(
                    format!("users[{i}].name"),
                    format!("user {:?} is defined twice", u.name),
                ));
            }
        }
        if self.broker.name.trim().is_empty() {
            return Err(ConfigError::new("broker.name", "must not be empty"));
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
