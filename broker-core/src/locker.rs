//! Taking and keeping the master lock: a shared-file lock for the file engines, or store-jdbc's
//! database and lease lockers.
//!
//! The shared-file lock is an exclusive `flock` on `lock` in the store's directory, released by
//! the kernel when the process dies. Its content is `owner` and an `epoch` one above the last
//! holder's, fsynced; the master checks every keep-alive period that the file at that path is
//! still the one it locked and still carries its epoch, so an operator deleting or another node
//! re-stamping the file (what an NFS lock expiry allows) deposes it (ActiveMQ's pain point 11).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};
use store_jdbc::Fence;
use store_jdbc::locker::{LockerConfig, LockerKind as JdbcLockerKind, MasterLock};
use tracing::{info, warn};

use crate::config::{BrokerConfig, LockerKind};
use crate::error::{BrokerError, Result};

/// The lock a master holds.
pub(crate) enum HeldLock {
    None,
    File(FileLock),
    Database(MasterLock),
}

impl HeldLock {
    pub(crate) fn fence(&self) -> Option<Fence> {
        match self {
            HeldLock::Database(l) => Some(l.fence()),
            _ => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            HeldLock::None => "no lock".into(),
            HeldLock::File(l) => format!("{} (epoch {})", l.path.display(), l.epoch),
            HeldLock::Database(l) => {
                format!("database lock as {} (epoch {:?})", l.owner(), l.epoch())
            }
        }
    }

    /// True when this broker takes over from a master that did not stop cleanly, so that
    /// deliveries it made may never have been acknowledged in the store: the shared-file lock
    /// was not marked released; the lease was taken from a holder that did not release it; the
    /// database row lock was held by another broker when this one first tried.
    pub(crate) fn took_over(&self) -> bool {
        match self {
            HeldLock::None => false,
            HeldLock::File(l) => l.took_over,
            HeldLock::Database(l) => l.took_over(),
        }
    }

    /// Resolves when the lock is lost, with why; never for `None`.
    pub(crate) async fn lost(&mut self) -> String {
        match self {
            HeldLock::None => std::future::pending().await,
            HeldLock::File(l) => loop {
                tokio::time::sleep(l.keep_alive).await;
                if let Err(why) = l.check() {
                    return why;
                }
            },
            HeldLock::Database(l) => l.lost().await,
        }
    }

    pub(crate) async fn release(self) {
        match self {
            HeldLock::None => {}
            HeldLock::File(l) => l.release(),
            HeldLock::Database(l) => l.release().await,
        }
    }
}

/// Waits until this broker holds the lock its config names. Runs until it succeeds or fails
/// for a reason waiting cannot fix; the caller cancels it to stop a waiting slave.
pub(crate) async fn acquire(config: &BrokerConfig) -> Result<HeldLock> {
    let retry = Duration::from_millis(config.locker.acquire_retry_ms.unwrap_or(1000));
    match config.locker_kind() {
        LockerKind::None => Ok(HeldLock::None),
        LockerKind::SharedFile => {
            let dir = config.store_directory().unwrap_or_default();
            let keep_alive = Duration::from_millis(config.locker.keep_alive_ms.unwrap_or(1000));
            let lock = FileLock::acquire(&dir, &config.broker.name, retry, keep_alive).await?;
            Ok(HeldLock::File(lock))
        }
        kind @ (LockerKind::Database | LockerKind::Lease) => {
            let url = config.locker_url().unwrap_or_default().to_owned();
            let mut c = LockerConfig::new(
                url,
                if kind == LockerKind::Lease {
                    JdbcLockerKind::Lease
                } else {
                    JdbcLockerKind::Database
                },
            );
            c.broker_name = config.broker.name.clone();
            if let Some(p) = config.locker.table_prefix.clone().or_else(|| {
                config
                    .persistence
                    .jdbc
                    .as_ref()
                    .and_then(|j| j.table_prefix.clone())
            }) {
                c.table_prefix = p;
            }
            if let Some(ms) = config.locker.lease_ms {
                c.lease = Duration::from_millis(ms);
            }
            c.keep_alive = config.locker.keep_alive_ms.map(Duration::from_millis);
            c.acquire_retry = retry;
            let lock = store_jdbc::locker::acquire(&c)
                .await
                .map_err(|e| BrokerError::Startup {
                    what: "cannot take the database lock".into(),
                    reason: e.to_string(),
                })?;
            Ok(HeldLock::Database(lock))
        }
    }
}

/// An exclusive `flock` on `<dir>/lock`, held while this value lives.
pub(crate) struct FileLock {
    file: File,
    path: PathBuf,
    epoch: u64,
    keep_alive: Duration,
    /// The previous holder did not mark the file released.
    took_over: bool,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Startup {
        what: format!("cannot {what} {}", path.display()),
        reason: e.to_string(),
    }
}

fn read_text(file: &mut File) -> std::io::Result<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    Ok(text)
}

fn read_epoch(file: &mut File) -> std::io::Result<u64> {
    let text = read_text(file)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("epoch="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

impl FileLock {
    async fn acquire(
        dir: &Path,
        owner: &str,
        retry: Duration,
        keep_alive: Duration,
    ) -> Result<FileLock> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        let path = dir.join("lock");
        let mut logged = false;
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error("open", &path, e))?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    // A holder that stopped cleanly marked the file released. One that did not
                    // (killed, crashed, lost power) may have delivered messages whose acks
                    // never reached the store, whether this broker waited for it as a slave or
                    // is the same broker started again after the crash: a take-over either way.
                    let previous = read_text(&mut file).map_err(|e| io_error("read", &path, e))?;
                    let unreleased = previous.lines().any(|l| l.starts_with("owner="))
                        && !previous.lines().any(|l| l == "released");
                    let epoch = read_epoch(&mut file).map_err(|e| io_error("read", &path, e))? + 1;
                    let content =
                        format!("owner={owner} pid={}\nepoch={epoch}\n", std::process::id());
                    file.set_len(0)
                        .and_then(|()| file.seek(SeekFrom::Start(0)))
                        .and_then(|_| file.write_all(content.as_bytes()))
                        .and_then(|()| file.sync_all())
                        .map_err(|e| io_error("write", &path, e))?;
                    info!(lock = %path.display(), epoch, "took the shared-file lock");
                    return Ok(FileLock {
                        file,
                        path,
                        epoch,
                        keep_alive,
                        took_over: unreleased,
                    });
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    if !logged {
                        info!(
                            lock = %path.display(),
                            "the store is locked by another broker; this broker is a slave waiting for the lock"
                        );
                        logged = true;
                    }
                    drop(file);
                    tokio::time::sleep(retry).await;
                }
                Err(e) => return Err(io_error("lock", &path, e)),
            }
        }
    }

    /// Marks the file released (a clean stop) and unlocks it.
    fn release(mut self) {
        if self.check().is_ok() {
            let _ = self
                .file
                .seek(SeekFrom::End(0))
                .and_then(|_| self.file.write_all(b"released\n"))
                .and_then(|()| self.file.sync_all());
        }
    }

    /// Still ours: the file at the path is the one locked, and it carries our epoch.
    fn check(&mut self) -> std::result::Result<(), String> {
        let held = self
            .file
            .metadata()
            .map_err(|e| format!("cannot stat the lock file: {e}"))?;
        let now = std::fs::metadata(&self.path)
            .map_err(|e| format!("the lock file {} is gone: {e}", self.path.display()))?;
        if (held.dev(), held.ino()) != (now.dev(), now.ino()) {
            return Err(format!(
                "the lock file {} was replaced",
                self.path.display()
            ));
        }
        match read_epoch(&mut self.file) {
            Ok(e) if e == self.epoch => Ok(()),
            Ok(e) => Err(format!(
                "the lock file {} carries epoch {e}, not ours ({})",
                self.path.display(),
                self.epoch
            )),
            Err(e) => {
                warn!(lock = %self.path.display(), "cannot read the lock file: {e}");
                Err(format!("cannot read the lock file: {e}"))
            }
        }
    }
}
