//! The open-time scan: find the data files, check their headers, and walk the newest file's
//! batches to find where appending resumes — cutting a torn final batch, refusing to open when
//! valid data follows damage (unless configured to skip, loudly).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use crate::config::{JournalConfig, RecoveryMode};
use crate::error::{JournalError, Result};
use crate::format::{self, BatchHeader, FILE_HEADER_LEN, Layout};
use crate::fs::{File, FileSystem};

pub(crate) struct Recovered {
    pub(crate) files: BTreeMap<u32, Arc<dyn File>>,
    pub(crate) layouts: BTreeMap<u32, Layout>,
    pub(crate) tail_file: u32,
    pub(crate) tail_offset: u64,
}

pub(crate) fn recover(config: &JournalConfig, fs: &dyn FileSystem) -> Result<Recovered> {
    let dir = &config.directory;
    let names = fs
        .list(dir)
        .map_err(|e| JournalError::io(format!("listing {}", dir.display()), e))?;
    let mut ids: Vec<u32> = names
        .iter()
        .filter_map(|n| config.parse_file_name(n))
        .collect();
    ids.sort_unstable();

    let mut files = BTreeMap::new();
    let mut layouts = BTreeMap::new();
    let last = ids.last().copied();
    for &id in &ids {
        let path = config.path_of(id);
        let file = fs
            .open(&path, false)
            .map_err(|e| JournalError::io(format!("opening {}", path.display()), e))?;
        let mut header = [0u8; FILE_HEADER_LEN as usize];
        let n = read_up_to(file.as_ref(), &mut header, 0)
            .map_err(|e| JournalError::io(format!("reading {}", path.display()), e))?;
        let checked = if n < header.len() {
            Err(format!("file is {n} bytes, shorter than its header"))
        } else {
            format::check_file_header(&header, id)
        };
        let why = match checked {
            Ok(layout) => {
                layouts.insert(id, layout);
                files.insert(id, file);
                continue;
            }
            Err(why) => why,
        };
        // A newest file whose header never made it to disk was being created when the
        // process died: it holds nothing that was acknowledged.
        if Some(id) == last && header.iter().all(|b| *b == 0) {
            tracing::warn!(file = %path.display(), "removing a journal file whose creation did not complete");
            fs.remove(&path)
                .map_err(|e| JournalError::io(format!("removing {}", path.display()), e))?;
            continue;
        }
        if config.recovery == RecoveryMode::SkipCorrupt {
            tracing::warn!(file = %path.display(), "skipping a journal file with a bad header: {why}");
            continue;
        }
        return Err(JournalError::Corrupt {
            file: path,
            offset: 0,
            reason: why,
        });
    }

    let new_layout = Layout::CURRENT;
    let Some((&newest, file)) = files.iter().next_back() else {
        return Ok(Recovered {
            files,
            layouts,
            tail_file: last.map_or(1, |l| l + 1),
            tail_offset: new_layout.data_start(),
        });
    };
    let layout_of = |id: u32| layouts.get(&id).copied().unwrap_or(new_layout);
    let mut tail_file = newest;
    let mut tail_offset = scan_tail(config, newest, file.as_ref(), layout_of(newest))?;
    if tail_offset == layout_of(newest).data_start()
        && let Some((&previous, file)) = files.range(..newest).next_back()
    {
        // The newest file was created ahead of need and never written: the data ends in the
        // one before, whose tail is the one to check (and cut if torn).
        tail_offset = scan_tail(config, previous, file.as_ref(), layout_of(previous))?;
        tail_file = previous;
        if layout_of(previous) != new_layout {
            // Appends go on in the empty current-version file, not in the old one.
            tail_file = newest;
            tail_offset = layout_of(newest).data_start();
        }
    }
    if layout_of(tail_file) != new_layout {
        // A journal written by an earlier version (or with another alignment): it stays
        // readable, and appends continue in a new file of the current layout.
        tail_file += 1;
        tail_offset = new_layout.data_start();
    }
    if let Some(file) = files.get(&tail_file) {
        // What a killed process left in the page cache reads back as valid; make it durable
        // before anything is built on it (the index, and `synced_to` in the next batch).
        file.sync_data().map_err(|e| {
            JournalError::io(
                format!("syncing {}", config.path_of(tail_file).display()),
                e,
            )
        })?;
    }
    Ok(Recovered {
        files,
        layouts,
        tail_file,
        tail_offset,
    })
}

fn read_up_to(file: &dyn File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Walks the newest file's batches and returns where the next batch goes.
fn scan_tail(config: &JournalConfig, id: u32, file: &dyn File, layout: Layout) -> Result<u64> {
    let path = config.path_of(id);
    let io_err = |e| JournalError::io(format!("scanning {}", path.display()), e);
    let len = file.len().map_err(io_err)?;
    let hlen = layout.batch_header_len();
    let mut pos = layout.data_start();
    loop {
        if pos + hlen as u64 > len {
            return Ok(pos);
        }
        let damage = match read_batch(Source::File(file), layout, pos, len).map_err(io_err)? {
            BatchAt::Valid { next, .. } => {
                pos = next;
                continue;
            }
            BatchAt::Zeros => None,
            BatchAt::Damaged(what) => Some(what),
        };
        // Either zeros (the clean end, or a batch that was in flight) or damage. A valid batch
        // after it that was written once `pos` was durable means acknowledged data is damaged.
        let (proof, in_flight) = valid_after(file, layout, pos, len).map_err(io_err)?;
        if let Some(next) = proof {
            let what = damage.unwrap_or("a zeroed batch");
            if config.recovery == RecoveryMode::SkipCorrupt {
                tracing::warn!(
                    file = %path.display(),
                    from = pos,
                    to = next,
                    "skipping a damaged journal range ({what}) followed by valid data; records in it are lost"
                );
                pos = next;
                continue;
            }
            return Err(JournalError::Corrupt {
                file: path,
                offset: pos,
                reason: format!(
                    "{what}, followed by a valid batch at offset {next}: this is not a torn final write; \
                     set the journal's recovery mode to skip damaged ranges to open anyway"
                ),
            });
        }
        if let Some(what) = damage {
            tracing::warn!(
                file = %path.display(),
                offset = pos,
                "cutting a torn final batch ({what}); it was never acknowledged"
            );
        }
        if in_flight > 0 {
            tracing::warn!(
                file = %path.display(),
                offset = pos,
                batches = in_flight,
                "cutting batches that reached the disk while an earlier one had not; none was acknowledged"
            );
        }
        if damage.is_some() || in_flight > 0 {
            zero_tail(file, pos, len).map_err(io_err)?;
        }
        return Ok(pos);
    }
}

/// Where a data file's bytes are read from: the file itself (`pread` into a buffer), or a map
/// of it once it is sealed (see [`crate::mmap`]), which lends them without a copy.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    File(&'a dyn File),
    Map(&'a [u8]),
}

impl<'a> Source<'a> {
    /// `len` bytes at `at`; past the end, the error `read_exact_at` gives.
    pub(crate) fn bytes(self, at: u64, len: usize) -> io::Result<Cow<'a, [u8]>> {
        match self {
            Source::File(f) => {
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, at)?;
                Ok(Cow::Owned(buf))
            }
            Source::Map(m) => usize::try_from(at)
                .ok()
                .and_then(|a| m.get(a..a.checked_add(len)?))
                .map(Cow::Borrowed)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of the mapped file",
                    )
                }),
        }
    }
}

/// What a data file holds at a batch boundary.
pub(crate) enum BatchAt<'a> {
    /// A whole batch whose header and payload match their checksums; the next batch boundary.
    Valid { payload: Cow<'a, [u8]>, next: u64 },
    /// An all-zero header: the end of the data, unless a valid batch follows.
    Zeros,
    /// Anything else: a torn or damaged batch.
    Damaged(&'static str),
}

/// Reads the batch at `pos`, looking no further than `limit`. The one reading of a batch that
/// the open-time scan and replay share, so both call the same bytes the same thing.
pub(crate) fn read_batch<'a>(
    src: Source<'a>,
    layout: Layout,
    pos: u64,
    limit: u64,
) -> io::Result<BatchAt<'a>> {
    let hlen = layout.batch_header_len();
    if pos + hlen as u64 > limit {
        return Ok(BatchAt::Zeros);
    }
    let header = src.bytes(pos, hlen)?;
    if header.iter().all(|b| *b == 0) {
        return Ok(BatchAt::Zeros);
    }
    let Some(h) = layout.parse_batch_header(&header) else {
        return Ok(BatchAt::Damaged("invalid batch header"));
    };
    let payload_at = pos + hlen as u64;
    let end = payload_at + u64::from(h.payload_len);
    if end > limit {
        return Ok(BatchAt::Damaged("batch runs past the end of the data"));
    }
    let payload = src.bytes(payload_at, h.payload_len as usize)?;
    if crc32fast::hash(&payload) != h.payload_crc {
        return Ok(BatchAt::Damaged("batch checksum mismatch"));
    }
    Ok(BatchAt::Valid {
        payload,
        next: layout.next_batch(end),
    })
}

/// After damage or zeros at `pos`: the offset of a valid batch proving that acknowledged data is
/// damaged, if any, and how many valid batches follow that were in flight when `pos` was (their
/// `synced_to` is at most `pos`). Version 1 files did not record `synced_to`: any valid batch
/// after is proof.
fn valid_after(
    file: &dyn File,
    layout: Layout,
    pos: u64,
    len: u64,
) -> io::Result<(Option<u64>, usize)> {
    let mut in_flight = 0;
    let mut from = pos + 1;
    while let Some((at, h)) = find_valid_batch(file, layout, from, len)? {
        match h.synced_to {
            Some(s) if u64::from(s) <= pos => in_flight += 1,
            _ => return Ok((Some(at), in_flight)),
        }
        from =
            layout.next_batch(at + (layout.batch_header_len() as u64) + u64::from(h.payload_len));
    }
    Ok((None, in_flight))
}

/// Overwrites whatever a torn batch left from `from` on with zeros, so the bytes cannot be
/// mistaken for data later, and syncs.
fn zero_tail(file: &dyn File, from: u64, len: u64) -> io::Result<()> {
    let mut rest = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut rest, from)?;
    if let Some(last) = rest.iter().rposition(|b| *b != 0) {
        file.write_all_at(&vec![0u8; last + 1], from)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The first valid batch (header and payload checksums) starting at or after `from`, at an
/// offset the layout allows.
pub(crate) fn find_valid_batch(
    file: &dyn File,
    layout: Layout,
    from: u64,
    limit: u64,
) -> io::Result<Option<(u64, BatchHeader)>> {
    const CHUNK: usize = 1 << 20;
    let mark = format::BATCH_MARK.to_le_bytes();
    let hlen = layout.batch_header_len();
    // Batches start only at multiples of the alignment: look only there (a byte-by-byte
    // search of a mostly empty 100 MiB file took a third of a second).
    let align = layout.align.max(1);
    let mut at = from.next_multiple_of(align);
    while at + hlen as u64 <= limit {
        let chunk_at = at;
        let n = (CHUNK as u64).min(limit - chunk_at) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, chunk_at)?;
        // `n >= hlen >= 4`, so this advances at least once; the next chunk starts at the first
        // offset not looked at.
        while at + 4 <= chunk_at + n as u64 {
            let i = (at - chunk_at) as usize;
            if buf[i..i + 4] == mark {
                if at + hlen as u64 > limit {
                    return Ok(None);
                }
                let mut header = vec![0u8; hlen];
                file.read_exact_at(&mut header, at)?;
                if let Some(h) = layout.parse_batch_header(&header) {
                    let payload_at = at + hlen as u64;
                    if h.payload_len > 0 && payload_at + u64::from(h.payload_len) <= limit {
                        let mut payload = vec![0u8; h.payload_len as usize];
                        file.read_exact_at(&mut payload, payload_at)?;
                        if crc32fast::hash(&payload) == h.payload_crc {
                            return Ok(Some((at, h)));
                        }
                    }
                }
            }
            at += align;
        }
    }
    Ok(None)
}
