//! Index snapshots, `kr-store/index-G.snapshot`: the whole in-memory index written as one file
//! per checkpoint, and the protocol that makes a checkpoint crash-safe together with the control
//! file.
//!
//! A checkpoint writes `kr-store/index-G.snapshot.tmp`, fsyncs it, renames it to
//! `index-G.snapshot` and fsyncs the directory; then points both control slots at it
//! ([`control::write`]); only then deletes older snapshots. A crash at any point leaves at least
//! one slot naming a complete snapshot: before the rename neither slot names G; a torn slot A
//! leaves slot B naming G − 1, whose snapshot is still there. See FORMAT.md.

use std::path::Path;

use store_api::DecodeError;
use store_api::codec::{Reader, Writer};
use store_journal::Location;
use store_journal::fs::FileSystem;
use store_kahadb::index_storage::{Index, IndexImage, Page};

use crate::control::{self, Slot};
use crate::error::{AmqError, Result};
use crate::layout::AmqPaths;

const SNAPSHOT_MAGIC: &[u8; 8] = b"AMQSNAP1";

/// `AMQSNAP1` | journal location (file u32, offset u32) | catalog length u64 | catalog |
/// page count u64 | pages in file u64 | (page id u64, page[4096])* | CRC of all before u32.
pub(crate) fn encode(image: &IndexImage, at: Location) -> Vec<u8> {
    let mut w =
        Writer::with_capacity(64 + image.catalog.len() + image.pages.len() * (Page::SIZE + 8));
    w.raw(SNAPSHOT_MAGIC);
    w.u32(at.file);
    w.u32(at.offset);
    w.u64(image.catalog.len() as u64);
    w.raw(&image.catalog);
    w.u64(image.pages.len() as u64);
    w.u64(image.pages_in_use);
    for (id, page) in &image.pages {
        w.u64(*id);
        w.raw(&page.encode()[..]);
    }
    let mut bytes = w.into_inner();
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn parse(r: &mut Reader<'_>) -> std::result::Result<(IndexImage, Location), DecodeError> {
    if r.take(8)? != SNAPSHOT_MAGIC {
        return Err(DecodeError::Invalid("not an AMQ index snapshot".into()));
    }
    let at = Location {
        file: r.u32()?,
        offset: r.u32()?,
    };
    let clen = r.u64()? as usize;
    let catalog = r.take(clen)?.to_vec();
    let n = r.u64()? as usize;
    let pages_in_use = r.u64()?;
    let mut pages = Vec::with_capacity(n.min(r.remaining() / Page::SIZE));
    for _ in 0..n {
        let id = r.u64()?;
        let mut raw = [0u8; Page::SIZE];
        raw.copy_from_slice(r.take(Page::SIZE)?);
        let page =
            Page::decode(&raw).map_err(|why| DecodeError::Invalid(format!("page {id}: {why}")))?;
        pages.push((id, page));
    }
    r.finish()?;
    let image = IndexImage {
        catalog,
        pages,
        pages_in_use,
    };
    Ok((image, at))
}

/// Loads an index written by [`encode`]; `name` is for errors.
pub(crate) fn decode(bytes: &[u8], name: &Path) -> Result<(Index, Location)> {
    let bad = |why: String| AmqError::Corrupt {
        file: name.to_path_buf(),
        offset: 0,
        reason: why,
    };
    if bytes.len() < 12 {
        return Err(bad("snapshot too short".into()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(bad("snapshot checksum mismatch".into()));
    }
    let mut r = Reader::new(body);
    let parsed = parse(&mut r);
    let (image, at) = parsed.map_err(|e| bad(e.to_string()))?;
    Ok((Index::from_image(image, name)?, at))
}

/// Loads the newest snapshot a valid control slot names, with its journal mark and generation.
/// `None` (logged) when there is none: the caller replays the whole journal.
pub(crate) fn load(fs: &dyn FileSystem, paths: &AmqPaths) -> Option<(Index, Location, u64)> {
    for slot in control::read(fs, &paths.control) {
        let path = paths.snapshot(slot.generation);
        let loaded = read_whole(fs, &path).and_then(|bytes| {
            if bytes.len() as u64 != slot.snapshot_len
                || crc32fast::hash(&bytes) != slot.snapshot_crc
            {
                return Err(AmqError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason: "snapshot does not match the control file".into(),
                });
            }
            decode(&bytes, &path)
        });
        match loaded {
            Ok((index, at)) => return Some((index, at, slot.generation)),
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
        .map_err(|e| AmqError::io(format!("opening {}", path.display()), e))?;
    let len = f
        .len()
        .map_err(|e| AmqError::io(format!("reading {}", path.display()), e))?;
    let mut bytes = vec![0u8; len as usize];
    f.read_exact_at(&mut bytes, 0)
        .map_err(|e| AmqError::io(format!("reading {}", path.display()), e))?;
    Ok(bytes)
}

/// Writes snapshot `generation` of `image`, which reflects the journal up to `at`, and points
/// the control file at it. See the module docs for the order of writes.
pub(crate) fn write(
    fs: &dyn FileSystem,
    paths: &AmqPaths,
    image: &IndexImage,
    at: Location,
    generation: u64,
) -> Result<()> {
    let io = |what: &str, p: &Path, e| AmqError::io(format!("{what} {}", p.display()), e);
    if !fs.is_dir(&paths.kr_dir) {
        // The first snapshot: its directory's entry must be durable before the control file
        // points into it.
        fs.create_dir_durable(&paths.kr_dir)
            .map_err(|e| io("creating", &paths.kr_dir, e))?;
    }
    let bytes = encode(image, at);
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

    let slot = Slot {
        generation,
        snapshot_len: bytes.len() as u64,
        snapshot_crc: crc32fast::hash(&bytes),
    };
    control::write(fs, &paths.control, slot, at)?;
    remove_older(fs, &paths.kr_dir, generation)
}

/// Deletes the snapshots before `generation`, which neither control slot names any more.
fn remove_older(fs: &dyn FileSystem, kr_dir: &Path, generation: u64) -> Result<()> {
    let io = |what: &str, p: &Path, e| AmqError::io(format!("{what} {}", p.display()), e);
    let names = fs.list(kr_dir).map_err(|e| io("listing", kr_dir, e))?;
    let mut removed = false;
    for name in names {
        let old = name
            .strip_prefix("index-")
            .and_then(|n| n.strip_suffix(".snapshot"))
            .and_then(|g| g.parse::<u64>().ok())
            .is_some_and(|g| g < generation);
        if old {
            let p = kr_dir.join(&name);
            fs.remove(&p).map_err(|e| io("removing", &p, e))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(kr_dir)
            .map_err(|e| io("syncing directory", kr_dir, e))?;
    }
    Ok(())
}
