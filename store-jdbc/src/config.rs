//! How to reach the database and shape the tables.

use std::time::Duration;

use crate::fence::Fence;

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
        }
    }
}
