//! `journal/data-control`: the control record naming the newest index snapshot and the journal
//! mark it reflects, written twice (slot A at offset 0, slot B at offset 512), each copy fsynced
//! before the next is written, so that a torn write leaves the other copy whole. See FORMAT.md.

use std::path::Path;

use store_journal::Location;
use store_journal::fs::FileSystem;

use crate::error::{AmqError, Result};

const CONTROL_MAGIC: &[u8; 8] = b"AMQCTRL1";
const SLOT_B: u64 = 512;
const SLOT_LEN: usize = 40;

/// What a valid slot says: which snapshot is the newest, and how to tell it is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) generation: u64,
    pub(crate) snapshot_len: u64,
    pub(crate) snapshot_crc: u32,
}

/// Slot: magic (8) | generation u64 | mark file u32 | mark offset u32 | snapshot length u64 |
/// snapshot CRC u32 | CRC of the previous 36 bytes u32.
fn encode(generation: u64, at: Location, len: u64, crc: u32) -> [u8; SLOT_LEN] {
    let mut s = [0u8; SLOT_LEN];
    s[0..8].copy_from_slice(CONTROL_MAGIC);
    s[8..16].copy_from_slice(&generation.to_le_bytes());
    s[16..20].copy_from_slice(&at.file.to_le_bytes());
    s[20..24].copy_from_slice(&at.offset.to_le_bytes());
    s[24..32].copy_from_slice(&len.to_le_bytes());
    s[32..36].copy_from_slice(&crc.to_le_bytes());
    let own = crc32fast::hash(&s[0..36]);
    s[36..40].copy_from_slice(&own.to_le_bytes());
    s
}

/// (generation, snapshot length, snapshot CRC) of a valid slot.
fn decode(s: &[u8]) -> Option<(u64, u64, u32)> {
    if s.len() < SLOT_LEN || &s[0..8] != CONTROL_MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(b)
    };
    (u32_at(36) == crc32fast::hash(&s[0..36])).then(|| (u64_at(8), u64_at(24), u32_at(32)))
}

/// The valid slots of the control file, newest generation first; none when it is missing or
/// neither slot is valid.
pub(crate) fn read(fs: &dyn FileSystem, path: &Path) -> Vec<Slot> {
    let Ok(control) = fs.open(path, false) else {
        return Vec::new();
    };
    let mut raw = vec![0u8; SLOT_B as usize + SLOT_LEN];
    let mut n = 0;
    while n < raw.len() {
        match control.read_at(&mut raw[n..], n as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let mut slots: Vec<(u64, u64, u32)> = [&raw[0..SLOT_LEN], &raw[SLOT_B as usize..]]
        .into_iter()
        .filter_map(decode)
        .collect();
    slots.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    slots.dedup();
    slots
        .into_iter()
        .map(|(generation, snapshot_len, snapshot_crc)| Slot {
            generation,
            snapshot_len,
            snapshot_crc,
        })
        .collect()
}

/// Points the control file at snapshot `slot`, which reflects the journal up to `at`: slot A,
/// fsync, slot B, fsync (and the directory, when the file is new).
pub(crate) fn write(fs: &dyn FileSystem, path: &Path, slot: Slot, at: Location) -> Result<()> {
    let io = |what: &str, p: &Path, e| AmqError::io(format!("{what} {}", p.display()), e);
    let bytes = encode(slot.generation, at, slot.snapshot_len, slot.snapshot_crc);
    let new_control = !fs.exists(path);
    let c = fs.open(path, true).map_err(|e| io("opening", path, e))?;
    for offset in [0, SLOT_B] {
        c.write_all_at(&bytes, offset)
            .map_err(|e| io("writing", path, e))?;
        c.sync_data().map_err(|e| io("syncing", path, e))?;
    }
    if new_control && let Some(dir) = path.parent() {
        fs.sync_dir(dir)
            .map_err(|e| io("syncing directory", dir, e))?;
    }
    Ok(())
}
