//! How to reach the database and shape the tables.

use std::time::Duration;

use crate::error::JdbcError;
use crate::fence::Fence;

/// What `ACTIVEMQ_MSGS.MSG` holds, and with it how far the tables are ActiveMQ's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageFormat {
    /// The `store-api` encoding, with the engine's additions to ActiveMQ's schema (the
    /// pending-acknowledgement table, the lock row's `EPOCH`, bookkeeping rows): the contract
    /// in full, but ActiveMQ cannot read the tables.
    #[default]
    Native,
    /// The OpenWire-marshalled message exactly as ActiveMQ writes it, in ActiveMQ's schema with
    /// nothing added, so that this broker and an ActiveMQ 5.x broker can be master and slave of
    /// one database. See the crate docs for what this mode gives up.
    OpenWire,
}

impl MessageFormat {
    /// The format a config value names: `native` or `openwire`.
    pub fn parse(name: &str) -> Result<MessageFormat, JdbcError> {
        match name {
            "native" => Ok(MessageFormat::Native),
            "openwire" => Ok(MessageFormat::OpenWire),
            other => Err(JdbcError::Config(format!(
                "message_format `{other}`: use \"native\" or \"openwire\""
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageFormat::Native => "native",
            MessageFormat::OpenWire => "openwire",
        }
    }
}

/// How to reach the database and shape the tables.
#[derive(Debug, Clone)]
pub struct JdbcConfig {
    /// `mysql://user:pass@host:3306/db`, `postgres://user@host/db` or `sqlite:path/to/file.db`.
    pub url: String,
    /// Connections for reads (the writer has its own).
    pub pool_size: u32,
    /// Prepended to every table and index name; identifier characters only.
    pub table_prefix: String,
    /// Create the tables (and the lock row) at open when they do not exist. Default true.
    pub create_tables_on_startup: bool,
    /// Most changes one database transaction carries (group commit).
    pub max_batch: usize,
    /// How long a read waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// The fence of the locker that guards this store, if any: writes are refused unless it is
    /// held, and under the lease locker each write transaction checks its epoch.
    pub fence: Option<Fence>,
    /// What `MSG` holds and whether the schema may have this engine's additions.
    pub message_format: MessageFormat,
}

impl JdbcConfig {
    pub fn new(url: impl Into<String>) -> Self {
        JdbcConfig {
            url: url.into(),
            pool_size: 8,
            table_prefix: String::new(),
            create_tables_on_startup: true,
            max_batch: 256,
            acquire_timeout: Duration::from_secs(30),
            fence: None,
            message_format: MessageFormat::Native,
        }
    }
}
