//! `replication.pos`: where this node's local store stands in the replicated log.
//!
//! 32 bytes, rewritten in place: magic `RPOS0001`, `u64` LE position, `u64` LE epoch of the
//! record at that position, `u8` flags (bit 0: this node was master of that epoch, so its store
//! may hold writes no slave has; bit 1: a full copy is under way, so the store holds part of
//! one), 3 zero bytes, `u32` LE CRC-32 of the first 28 bytes.
//!
//! Written after the store has applied what it names, so it never runs ahead of the store; it
//! may lag after a power loss (it is synced only when a flag changes), and then the records
//! after it are applied again, which the store's idempotent answers (`Duplicate`, `NotFound`)
//! absorb. A former master, or a node whose copy was cut short, asks for a full copy.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{ReplicationError, Result};

const MAGIC: &[u8; 8] = b"RPOS0001";
const LEN: usize = 32;
const WAS_MASTER: u8 = 1;
const COPYING: u8 = 2;

/// What the file records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Records up to and including this one are in the local store (0: none).
    pub position: u64,
    /// The epoch of the master that wrote that record.
    pub epoch: u64,
    /// This node was master of `epoch`: writes it applied may never have reached a slave.
    pub was_master: bool,
    /// A full copy began and did not end: the store holds part of one.
    pub copying: bool,
}

impl Position {
    /// Whether this node must take a full copy rather than the records after its position.
    pub fn needs_full_copy(&self) -> bool {
        self.was_master || self.copying
    }

    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.position.to_le_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24] = (if self.was_master { WAS_MASTER } else { 0 })
            | (if self.copying { COPYING } else { 0 });
        let crc = crc32fast::hash(&b[..28]);
        b[28..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the file's bytes; an error says what is wrong with them.
    pub fn decode(b: &[u8]) -> std::result::Result<Position, String> {
        if b.len() != LEN {
            return Err(format!("{} bytes, expected {LEN}", b.len()));
        }
        if &b[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let crc = u32::from_le_bytes([b[28], b[29], b[30], b[31]]);
        if crc32fast::hash(&b[..28]) != crc {
            return Err("CRC mismatch".into());
        }
        let flags = b[24];
        if flags & !(WAS_MASTER | COPYING) != 0 || b[25..28] != [0, 0, 0] {
            return Err("reserved bits set".into());
        }
        let u = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            u64::from_le_bytes(a)
        };
        Ok(Position {
            position: u(8..16),
            epoch: u(16..24),
            was_master: flags & WAS_MASTER != 0,
            copying: flags & COPYING != 0,
        })
    }
}

/// The open position file.
#[derive(Debug)]
pub struct PositionFile {
    file: File,
    path: PathBuf,
    current: Position,
}

impl PositionFile {
    /// Opens (or creates) `dir/replication.pos`. A damaged file is reported and read as "take
    /// a full copy": the master has everything, so nothing is lost by starting over.
    pub fn open(dir: &Path) -> Result<PositionFile> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ReplicationError::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join("replication.pos");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ReplicationError::io(format!("opening {}", path.display()), e))?;
        let bytes = std::fs::read(&path)
            .map_err(|e| ReplicationError::io(format!("reading {}", path.display()), e))?;
        let current = if bytes.is_empty() {
            Position::default()
        } else {
            match Position::decode(&bytes) {
                Ok(p) => p,
                Err(why) => {
                    tracing::warn!(
                        "replication position file {} is damaged ({why}): this node will take a full copy from the master",
                        path.display()
                    );
                    Position {
                        copying: true,
                        ..Position::default()
                    }
                }
            }
        };
        Ok(PositionFile {
            file,
            path,
            current,
        })
    }

    /// What the file says now.
    pub fn get(&self) -> Position {
        self.current
    }

    /// Records `p`; with `sync`, durably (used when a flag changes, whose loss would matter).
    pub fn set(&mut self, p: Position, sync: bool) -> Result<()> {
        let changed_flags =
            p.was_master != self.current.was_master || p.copying != self.current.copying;
        self.file
            .write_all_at(&p.encode(), 0)
            .map_err(|e| ReplicationError::io(format!("writing {}", self.path.display()), e))?;
        if sync || changed_flags {
            self.file
                .sync_data()
                .map_err(|e| ReplicationError::io(format!("syncing {}", self.path.display()), e))?;
        }
        self.current = p;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let p = Position {
            position: 77,
            epoch: 3,
            was_master: true,
            copying: false,
        };
        let b = p.encode();
        assert_eq!(Position::decode(&b), Ok(p));
        let mut bad = b;
        bad[9] ^= 1;
        assert!(Position::decode(&bad).unwrap_err().contains("CRC"));
    }

    #[test]
    fn a_damaged_file_asks_for_a_full_copy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("replication.pos"), b"garbage").unwrap();
        let f = PositionFile::open(dir.path()).unwrap();
        assert!(f.get().needs_full_copy());
        let mut f = f;
        f.set(
            Position {
                position: 5,
                epoch: 1,
                ..Position::default()
            },
            true,
        )
        .unwrap();
        drop(f);
        let f = PositionFile::open(dir.path()).unwrap();
        assert_eq!(f.get().position, 5);
        assert!(!f.get().needs_full_copy());
    }
}
