//! The open-time scan: find the data files, check their headers, and walk the newest file's
//! batches to find where appending resumes — cutting a torn final batch, refusing to open when
//! valid data follows damage (unless configured to skip, loudly).

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use crate::error::{JournalError, Result};
use crate::format::{self, BATCH_HEADER_LEN, FILE_HEADER_LEN};
use crate::fs::{File, FileSystem};
use crate::journal::{JournalConfig, RecoveryMode};

pub(crate) struct Recovered {
    pub(crate) files: BTreeMap<u32, Arc<dyn File>>,
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
        if let Err(why) = checked {
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
        files.insert(id, file);
    }

    let Some((&newest, file)) = files.iter().next_back() else {
        return Ok(Recovered {
            files,
            tail_file: last.map_or(1, |l| l + 1),
            tail_offset: FILE_HEADER_LEN,
        });
    };
    let mut tail_file = newest;
    let mut tail_offset = scan_tail(config, newest, file.as_ref())?;
    if tail_offset == FILE_HEADER_LEN
        && let Some((&previous, file)) = files.range(..newest).next_back()
    {
        // The newest file was created ahead of need and never written: the data ends in the
        // one before, whose tail is the one to check (and cut if torn).
        tail_offset = scan_tail(config, previous, file.as_ref())?;
        tail_file = previous;
    }
    Ok(Recovered {
        files,
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
fn scan_tail(config: &JournalConfig, id: u32, file: &dyn File) -> Result<u64> {
    let path = config.path_of(id);
    let io_err = |e| JournalError::io(format!("scanning {}", path.display()), e);
    let len = file.len().map_err(io_err)?;
    let mut pos = FILE_HEADER_LEN;
    loop {
        if pos + BATCH_HEADER_LEN as u64 > len {
            return Ok(pos);
        }
        let mut header = [0u8; BATCH_HEADER_LEN];
        file.read_exact_at(&mut header, pos).map_err(io_err)?;
        let damage = if header == [0u8; BATCH_HEADER_LEN] {
            None
        } else {
            match format::parse_batch_header(&header) {
                None => Some("invalid batch header"),
                Some((plen, crc)) => {
                    let payload_at = pos + BATCH_HEADER_LEN as u64;
                    if payload_at + u64::from(plen) > len {
                        Some("batch runs past the end of the file")
                    } else {
                        let mut payload = vec![0u8; plen as usize];
                        file.read_exact_at(&mut payload, payload_at)
                            .map_err(io_err)?;
                        if crc32fast::hash(&payload) != crc {
                            Some("batch checksum mismatch")
                        } else {
                            pos = payload_at + u64::from(plen);
                            continue;
                        }
                    }
                }
            }
        };
        // Either zeros (the clean end) or damage. Anything valid after it means the damage is
        // not a torn final write.
        if let Some(next) = find_valid_batch(file, pos + 1, len).map_err(io_err)? {
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
            zero_tail(file, pos, len).map_err(io_err)?;
        }
        return Ok(pos);
    }
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

/// The offset of the first valid batch (header and payload checksums) at or after `from`.
pub(crate) fn find_valid_batch(file: &dyn File, from: u64, limit: u64) -> io::Result<Option<u64>> {
    const CHUNK: usize = 1 << 20;
    let mark = format::BATCH_MARK.to_le_bytes();
    let mut start = from;
    while start + BATCH_HEADER_LEN as u64 <= limit {
        let n = (CHUNK as u64).min(limit - start) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, start)?;
        for i in 0..n.saturating_sub(3) {
            if buf[i..i + 4] != mark {
                continue;
            }
            let at = start + i as u64;
            if at + BATCH_HEADER_LEN as u64 > limit {
                return Ok(None);
            }
            let mut header = [0u8; BATCH_HEADER_LEN];
            file.read_exact_at(&mut header, at)?;
            if let Some((plen, crc)) = format::parse_batch_header(&header) {
                let payload_at = at + BATCH_HEADER_LEN as u64;
                if plen > 0 && payload_at + u64::from(plen) <= limit {
                    let mut payload = vec![0u8; plen as usize];
                    file.read_exact_at(&mut payload, payload_at)?;
                    if crc32fast::hash(&payload) == crc {
                        return Ok(Some(at));
                    }
                }
            }
        }
        // Overlap so a mark split across chunks is still seen.
        start += (n as u64).saturating_sub(3).max(1);
    }
    Ok(None)
}
