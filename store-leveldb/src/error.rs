//! The engine's errors, and how they cross the store boundary.

use std::path::PathBuf;

use store_api::StoreError;

/// Result alias for the engine's own calls.
pub type Result<T, E = LevelDbError> = std::result::Result<T, E>;

/// What went wrong inside the LevelDB engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LevelDbError {
    /// RocksDB found damage (a checksum mismatch, a bad block, a corrupt log record). `file`
    /// is the file RocksDB named in its message, when it named one.
    #[error("corrupt RocksDB data{}: {reason}", .file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default())]
    Corrupt {
        file: Option<PathBuf>,
        reason: String,
    },
    /// A record the engine wrote does not decode.
    #[error("corrupt {what} record in column family {cf}: {reason}")]
    BadRecord {
        what: &'static str,
        cf: &'static str,
        reason: String,
    },
    /// Any other RocksDB failure, with what was being done.
    #[error("RocksDB failed while {context}: {source}")]
    RocksDb {
        context: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    /// A column family the engine creates at open is missing.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// The engine's journal failed (I/O, damage it found, a write refused after an earlier
    /// failure).
    #[error(transparent)]
    Journal(#[from] store_journal::JournalError),
    /// The store refuses writes since RocksDB refused one (reopen to go on).
    #[error("the store refuses writes since RocksDB refused one: {0}")]
    Refused(String),
    /// File-system access outside RocksDB (creating the directory, measuring it).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LevelDbError {
    /// Classifies a RocksDB error: damage becomes [`LevelDbError::Corrupt`] with the file
    /// RocksDB named (it puts the path in the message, e.g. `... in file /d/000012.sst`).
    pub(crate) fn rocks(context: &'static str, e: rocksdb::Error) -> Self {
        if e.kind() == rocksdb::ErrorKind::Corruption {
            let reason = e.into_string();
            LevelDbError::Corrupt {
                file: named_file(&reason),
                reason: format!("{reason} (while {context})"),
            }
        } else {
            LevelDbError::RocksDb { context, source: e }
        }
    }
}

/// The first word of a RocksDB message that looks like one of its files.
fn named_file(message: &str) -> Option<PathBuf> {
    message
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"' || c == '(' || c == ')'))
        .find(|w| {
            [".sst", ".log", "MANIFEST-", "CURRENT", "OPTIONS-"]
                .iter()
                .any(|s| w.contains(s))
        })
        .map(PathBuf::from)
}

impl From<LevelDbError> for StoreError {
    fn from(e: LevelDbError) -> Self {
        match e {
            LevelDbError::Corrupt { file, reason } => StoreError::Corrupt {
                file,
                offset: None,
                reason,
            },
            LevelDbError::BadRecord { .. } => StoreError::Corrupt {
                file: None,
                offset: None,
                reason: e.to_string(),
            },
            LevelDbError::Journal(e) => e.into(),
            LevelDbError::Refused(why) => StoreError::Poisoned(why),
            LevelDbError::Io { path, source } => {
                StoreError::io(format!("accessing {}", path.display()), source)
            }
            other => StoreError::Backend {
                backend: "leveldb",
                source: Box::new(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_rocksdb_names() {
        let m = "Corruption: block checksum mismatch: stored = 1, computed = 2  in /tmp/x/000012.sst offset 0 size 33";
        assert_eq!(named_file(m), Some(PathBuf::from("/tmp/x/000012.sst")));
        assert_eq!(named_file("Corruption: bad"), None);
    }
}
