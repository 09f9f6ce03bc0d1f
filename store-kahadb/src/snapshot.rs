//! The AMQ layout's index persistence: the whole in-memory index written as one snapshot file
//! per checkpoint, and a control file, written twice, naming the snapshot and the journal mark
//! it reflects.
//!
//! A checkpoint writes `kr-store/index-G.snapshot.tmp`, fsyncs it, renames it to
//! `index-G.snapshot` and fsyncs the directory; then writes the control record to slot A
//! (offset 0) and fsyncs, then to slot B (offset 512) and fsyncs; only then deletes older
//! snapshots. A crash at any point leaves at least one slot naming a complete snapshot: before
//! the rename neither slot names G; a torn slot A leaves slot B naming G − 1, whose snapshot is
//! still there.

use std::path::{Path, PathBuf};

use store_journal::Location;
use store_journal::fs::FileSystem;

use crate::error::{KahaError, Result};
use crate::index::{FullSnapshot, Index};

const CONTROL_MAGIC: &[u8; 8] = b"AMQCTRL1";
const SLOT_B: u64 = 512;
const SLOT_LEN: usize = 40;

/// Where the AMQ layout keeps things under the store directory.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotPaths {
    pub(crate) journal_dir: PathBuf,
    pub(crate) kr_dir: PathBuf,
    pub(crate) control: PathBuf,
}

impl SnapshotPaths {
    pub(crate) fn new(dir: &Path) -> Self {
        let journal_dir = dir.join("journal");
        SnapshotPaths {
            control: journal_dir.join("data-control"),
            kr_dir: dir.join("kr-store"),
            journal_dir,
        }
    }

    fn snapshot(&self, generation: u64) -> PathBuf {
        self.kr_dir.join(format!("index-{generation}.snapshot"))
    }
}

/// Slot: magic (8) | generation u64 | mark file u32 | mark offset u32 | snapshot length u64 |
/// snapshot CRC u32 | CRC of the previous 36 bytes u32.
fn encode_slot(generation: u64, at: Location, len: u64, crc: u32) -> [u8; SLOT_LEN] {
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
fn decode_slot(s: &[u8]) -> Option<(u64, u64, u32)> {
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

/// Loads the newest snapshot a valid control slot names. `None` (logged) when there is none:
/// the caller replays the whole journal.
pub(crate) fn load(fs: &dyn FileSystem, paths: &SnapshotPaths) -> Option<(Index, Location, u64)> {
    let control = fs.open(&paths.control, false).ok()?;
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
        .filter_map(decode_slot)
        .collect();
    slots.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    slots.dedup();
    for (generation, len, crc) in slots {
        let path = paths.snapshot(generation);
        let loaded = read_whole(fs, &path).and_then(|bytes| {
            if bytes.len() as u64 != len || crc32fast::hash(&bytes) != crc {
                return Err(KahaError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason: "snapshot does not match the control file".into(),
                });
            }
            Index::from_snapshot(&bytes, &path)
        });
        match loaded {
            Ok((index, at)) => return Some((index, at, generation)),
            Err(e) => {
                tracing::warn!(snapshot = %path.display(), "cannot use the index snapshot: {e}")
            }
        }
    }
    tracing::warn!(
        control = %paths.control.display(),
        "no usable index snapshot: replaying the whole journal"
    );
    None
}

fn read_whole(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>> {
    let f = fs
        .open(path, false)
        .map_err(|e| KahaError::io(format!("opening {}", path.display()), e))?;
    let len = f
        .len()
        .map_err(|e| KahaError::io(format!("reading {}", path.display()), e))?;
    let mut bytes = vec![0u8; len as usize];
    f.read_exact_at(&mut bytes, 0)
        .map_err(|e| KahaError::io(format!("reading {}", path.display()), e))?;
    Ok(bytes)
}

/// Writes snapshot `generation` and points the control file at it. See the module docs for the
/// order of writes.
pub(crate) fn write(
    fs: &dyn FileSystem,
    paths: &SnapshotPaths,
    snap: &FullSnapshot,
    generation: u64,
) -> Result<()> {
    let io = |what: &str, p: &Path, e| KahaError::io(format!("{what} {}", p.display()), e);
    fs.create_dir_all(&paths.kr_dir)
        .map_err(|e| io("creating", &paths.kr_dir, e))?;
    let bytes = snap.encode();
    let final_path = paths.snapshot(generation);
    let tmp = final_path.with_extension("snapshot.tmp");
    let f = fs.open(&tmp, true).map_err(|e| io("creating", &tmp, e))?;
    f.set_len(0).map_err(|e| io("truncating", &tmp, e))?;
    f.write_all_at(&bytes, 0)
        .map_err(|e| io("writing", &tmp, e))?;
    f.sync_data().map_err(|e| io("syncing", &tmp, e))?;
    fs.rename(&tmp, &final_path)
        .map_err(|e| io("renaming", &tmp, e))?;
    fs.sync_dir(&paths.kr_dir)
        .map_err(|e| io("syncing directory", &paths.kr_dir, e))?;

    let slot = encode_slot(
        generation,
        snap.at,
        bytes.len() as u64,
        crc32fast::hash(&bytes),
    );
    let new_control = !fs.exists(&paths.control);
    let c = fs
        .open(&paths.control, true)
        .map_err(|e| io("opening", &paths.control, e))?;
    for offset in [0, SLOT_B] {
        c.write_all_at(&slot, offset)
            .map_err(|e| io("writing", &paths.control, e))?;
        c.sync_data()
            .map_err(|e| io("syncing", &paths.control, e))?;
    }
    if new_control {
        fs.sync_dir(&paths.journal_dir)
            .map_err(|e| io("syncing directory", &paths.journal_dir, e))?;
    }
    // Older snapshots are no longer named by either slot.
    let names = fs
        .list(&paths.kr_dir)
        .map_err(|e| io("listing", &paths.kr_dir, e))?;
    let mut removed = false;
    for name in names {
        let old = name
            .strip_prefix("index-")
            .and_then(|n| n.strip_suffix(".snapshot"))
            .and_then(|g| g.parse::<u64>().ok())
            .is_some_and(|g| g < generation);
        if old {
            let p = paths.kr_dir.join(&name);
            fs.remove(&p).map_err(|e| io("removing", &p, e))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(&paths.kr_dir)
            .map_err(|e| io("syncing directory", &paths.kr_dir, e))?;
    }
    Ok(())
}
