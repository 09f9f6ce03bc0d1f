//! The one error type every engine returns across the store boundary.

use std::path::PathBuf;

/// Result alias for the store contract.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong in a store operation. Engines keep richer errors of their own and convert at the
/// boundary; the variants here are what a caller (the broker, the conformance kit) can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The message, subscription, transaction or destination named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing being created already exists (a message id already stored in the destination,
    /// a subscription already present, a transaction id already begun).
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// Bytes on disk or in the database do not decode. `file` and `offset` say where when known.
    #[error("corrupt data{}{}: {reason}", .file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default(), .offset.map(|o| format!(" at offset {o}")).unwrap_or_default())]
    Corrupt {
        file: Option<PathBuf>,
        offset: Option<u64>,
        reason: String,
    },
    /// An operating-system I/O error, with what was being done.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The store was closed; open it again to use it.
    #[error("the store is closed")]
    Closed,
    /// An earlier fsync or write failed, so what is on disk is unknown; the store refuses writes
    /// until it is reopened (retrying an fsync can report success for data that is gone).
    #[error("the store is poisoned by an earlier failure and must be reopened: {0}")]
    Poisoned(String),
    /// The file system holding `path` is full (ENOSPC or a quota): the engine refuses writes
    /// until space is freed, and then takes them again by itself (see
    /// [`PersistenceAdapter::resume_writes`](crate::PersistenceAdapter::resume_writes)).
    #[error("disk full: no space left on the device holding {}, writes are refused until space is freed: {reason}", .path.display())]
    DiskFull { path: PathBuf, reason: String },
    /// The caller passed something the contract does not allow (priority > 9, a message for
    /// another destination, preparing a local transaction, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A failure specific to one engine (a database error, a lost lock, ...).
    #[error("{backend} error: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A stable short name for the variant, used by the conformance kit to compare an engine's
    /// error with the reference model's without comparing messages.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Duplicate(_) => ErrorKind::Duplicate,
            StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::Io { .. } => ErrorKind::Io,
            StoreError::Closed => ErrorKind::Closed,
            StoreError::Poisoned(_) => ErrorKind::Poisoned,
            StoreError::DiskFull { .. } => ErrorKind::DiskFull,
            StoreError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            StoreError::Backend { .. } => ErrorKind::Backend,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn corrupt_at(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            file: Some(file.into()),
            offset: Some(offset),
            reason: reason.into(),
        }
    }
}

/// The variant of a [`StoreError`] without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    NotFound,
    Duplicate,
    Corrupt,
    Io,
    Closed,
    Poisoned,
    DiskFull,
    InvalidArgument,
    Backend,
}

/// Whether an I/O error says the file system is full: `ENOSPC`, or `EDQUOT` (a quota is full,
/// which passes the same way, when something is deleted).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Why a store refuses writes now; see
/// [`PersistenceAdapter::write_refusal`](crate::PersistenceAdapter::write_refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRefusal {
    /// Set when the cause is a full file system, naming the store's directory on it: a refusal
    /// that passes once space is freed.
    pub disk_full: Option<PathBuf>,
    /// The failure, as logged.
    pub reason: String,
}

impl WriteRefusal {
    /// The error a write gets while this refusal lasts.
    pub fn to_error(&self) -> StoreError {
        match &self.disk_full {
            Some(path) => StoreError::DiskFull {
                path: path.clone(),
                reason: self.reason.clone(),
            },
            None => StoreError::Poisoned(self.reason.clone()),
        }
    }
}

/// Why a byte string is not a valid encoding. Decoding never panics; it returns one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("input ends at byte {at} but {needed} more bytes were expected")]
    Truncated { at: usize, needed: usize },
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    #[error("invalid {what} tag {tag} at byte {at}")]
    InvalidTag {
        what: &'static str,
        tag: u8,
        at: usize,
    },
    #[error("{what} at byte {at} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, at: usize },
    #[error("varint at byte {at} is too long")]
    VarintOverflow { at: usize },
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
    #[error("invalid value: {0}")]
    Invalid(String),
}

impl From<DecodeError> for StoreError {
    fn from(e: DecodeError) -> Self {
        StoreError::Corrupt {
            file: None,
            offset: None,
            reason: e.to_string(),
        }
    }
}
