//! KahaDB's errors; converted to `StoreError` at the store boundary.

use std::path::PathBuf;

use store_api::StoreError;
use store_journal::JournalError;

pub type Result<T, E = KahaError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KahaError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// An I/O call on the index files failed.
    #[error("index I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Index or journal bytes do not decode.
    #[error("{} is corrupt at offset {offset}: {reason}", .file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A journal record that does not decode.
    #[error("journal record at {location} does not decode: {reason}")]
    BadRecord { location: String, reason: String },
    /// A write failed earlier; the store takes no writes until reopened.
    #[error("the store is poisoned by an earlier failure and must be reopened: {0}")]
    Poisoned(String),
    /// Two different producer ids hash to the same 128 bits (not expected to ever happen).
    #[error("message id hash collision between producers (report this): {0}")]
    IdCollision(String),
    /// The configuration is invalid.
    #[error("invalid KahaDB configuration: {0}")]
    Config(String),
}

impl KahaError {
    /// An I/O failure on index files, with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        KahaError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<KahaError> for StoreError {
    fn from(e: KahaError) -> Self {
        match e {
            KahaError::Journal(j) => j.into(),
            KahaError::Io { context, source } => StoreError::Io { context, source },
            KahaError::Corrupt {
                file,
                offset,
                reason,
            } => StoreError::Corrupt {
                file: Some(file),
                offset: Some(offset),
                reason,
            },
            KahaError::BadRecord { .. } => StoreError::Corrupt {
                file: None,
                offset: None,
                reason: e.to_string(),
            },
            KahaError::Poisoned(why) => StoreError::Poisoned(why),
            e @ (KahaError::IdCollision(_) | KahaError::Config(_)) => StoreError::Backend {
                backend: "kahadb",
                source: Box::new(e),
            },
        }
    }
}
