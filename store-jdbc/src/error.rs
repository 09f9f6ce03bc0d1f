//! The JDBC engine's errors, and how they become the contract's [`StoreError`].

use store_api::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JdbcError {
    /// A setting that cannot work, named.
    #[error("jdbc config: {0}")]
    Config(String),
    /// The database refused or failed a statement, or the connection is gone.
    #[error("{dialect} database error while {doing}: {source}")]
    Database {
        dialect: &'static str,
        doing: String,
        #[source]
        source: sqlx::Error,
    },
    /// This broker's fencing epoch is no longer the lock row's: another broker is master, so
    /// this one must not write.
    #[error(
        "fenced: the lock row's epoch is {found:?} but this broker holds epoch {held}; another broker took over mastership"
    )]
    Fenced { held: i64, found: Option<i64> },
    /// The locker no longer holds the lock, so the store refuses writes.
    #[error("lock lost: {0}")]
    LockLost(String),
    /// A stored row that does not decode.
    #[error("corrupt row in {table} (ID {id}): {reason}")]
    CorruptRow {
        table: String,
        id: i64,
        reason: String,
    },
}

impl From<JdbcError> for StoreError {
    fn from(e: JdbcError) -> Self {
        match e {
            JdbcError::Config(m) => StoreError::InvalidArgument(m),
            JdbcError::CorruptRow { table, id, reason } => StoreError::Corrupt {
                file: None,
                offset: None,
                reason: format!("row ID {id} of {table}: {reason}"),
            },
            other => StoreError::Backend {
                backend: "jdbc",
                source: Box::new(other),
            },
        }
    }
}
