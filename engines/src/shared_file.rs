//! The shared-file lock of the file engines: an exclusive `flock` on `lock` in the store's
//! directory, released by the kernel when the process dies.
//!
//! Its content is `owner` and an `epoch` one above the last holder's, fsynced; the master checks
//! every keep-alive period that the file at that path is still the one it locked and still
//! carries its epoch, so an operator deleting or another node re-stamping the file (what an NFS
//! lock expiry allows) deposes it (ActiveMQ's pain point 11). A clean stop appends `released`;
//! a lock taken from a file without it is a take-over.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use broker_core::{BrokerError, HeldLock, Leaving, Locker, Result};
use rustix::fs::{FlockOperation, flock};
use tracing::{info, warn};

/// Takes the shared-file lock in `dir`, retrying every `retry` while another broker holds it.
pub(crate) struct SharedFileLocker {
    pub(crate) dir: PathBuf,
    pub(crate) owner: String,
    pub(crate) retry: Duration,
    pub(crate) keep_alive: Duration,
}

#[async_trait]
impl Locker for SharedFileLocker {
    async fn acquire(&self) -> Result<Box<dyn HeldLock>> {
        let lock = FileLock::acquire(&self.dir, &self.owner, self.retry, self.keep_alive).await?;
        Ok(Box::new(lock))
    }
}

#[async_trait]
impl HeldLock for FileLock {
    fn describe(&self) -> String {
        format!("{} (epoch {})", self.path.display(), self.epoch)
    }

    /// The file was not marked released by the previous holder.
    fn took_over(&self) -> bool {
        self.took_over
    }

    async fn lost(&mut self) -> String {
        loop {
            tokio::time::sleep(self.keep_alive).await;
            if let Err(why) = self.check() {
                return why;
            }
        }
    }

    async fn release(self: Box<Self>, leaving: Leaving) {
        FileLock::release(*self, leaving);
    }

    fn as_any(&self) -> &dyn Any {
        self
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
        let mut wait = store_jdbc::locker::SlaveWait::default();
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
                    wait.held(|| {
                        info!(
                            lock = %path.display(),
                            "the store is locked by another broker; this broker is a slave waiting for the lock"
                        );
                    });
                    drop(file);
                    tokio::time::sleep(retry).await;
                }
                Err(e) => return Err(io_error("lock", &path, e)),
            }
        }
    }

    /// Marks the file released (a clean stop with nothing unacknowledged) and unlocks it. An
    /// unsettled stop leaves the file as a crash would, so the next holder takes over.
    fn release(mut self, leaving: Leaving) {
        if leaving == Leaving::Settled && self.check().is_ok() {
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
