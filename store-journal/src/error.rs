//! The journal's errors.

use std::path::PathBuf;

use store_api::StoreError;

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An I/O call failed.
    #[error("journal I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk are not a valid journal: the file and offset say where.
    #[error("journal file {} is corrupt at offset {offset}: {reason}", .file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An earlier write or fsync failed; what reached the disk is unknown, so the journal takes
    /// no more writes until it is reopened.
    #[error("the journal is poisoned by an earlier failure and must be reopened: {0}")]
    Poisoned(String),
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
    /// A location that does not name a record of this journal.
    #[error("no record at file {file} offset {offset}: {reason}")]
    BadLocation {
        file: u32,
        offset: u32,
        reason: String,
    },
}

impl JournalError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        JournalError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io { context, source } => StoreError::Io { context, source },
            JournalError::Corrupt {
                file,
                offset,
                reason,
            } => StoreError::Corrupt {
                file: Some(file),
                offset: Some(offset),
                reason,
            },
            JournalError::Poisoned(why) => StoreError::Poisoned(why),
            JournalError::Closed => StoreError::Closed,
            e @ JournalError::BadLocation { .. } => StoreError::Corrupt {
                file: None,
                offset: None,
                reason: e.to_string(),
            },
        }
    }
}
