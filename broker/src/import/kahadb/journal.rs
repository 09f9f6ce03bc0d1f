//! ActiveMQ KahaDB journal files (`db-N.log`), read-only: batches of user records, each batch
//! behind a "WRITE BATCH" control record that carries its length and (since 5.9) an Adler32
//! checksum, the batch followed by an end-of-file marker (`-qMa4`, or zeros in old journals).
//! Big-endian throughout (Java `DataOutput`), as ActiveMQ's `Journal` and `DataFileAppender`
//! write it.

use std::path::{Path, PathBuf};

/// Record head: `int size` (including the head) + `byte type`.
const RECORD_HEAD: usize = 5;
const USER_RECORD: u8 = 1;
const BATCH_CONTROL: u8 = 2;
const BATCH_MAGIC: &[u8; 11] = b"WRITE BATCH";
/// Head + magic + `int length` + `long checksum`.
const BATCH_CONTROL_SIZE: usize = RECORD_HEAD + 11 + 4 + 8;
const EOF_INT: i32 = 0x2D71_4D61;
const EOF_BYTE: u8 = b'4';

/// Why a journal cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        /// Not `#[source]`: the message carries it already, and `{:#}` would print it twice.
        error: std::io::Error,
    },
    #[error("{path} holds no db-N.log journal files")]
    Empty { path: PathBuf },
    /// Damage at a place in a file; `--skip-damaged` goes on past it.
    #[error("{file} at offset {offset}: {reason}")]
    Damaged {
        file: String,
        offset: usize,
        reason: String,
    },
}

/// The journal files of a KahaDB directory, in journal order (by their number).
pub fn journal_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, JournalError> {
    let io = |source| JournalError::Io {
        path: dir.to_path_buf(),
        error: source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(n) = name
            .strip_prefix("db-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        files.push((n, entry.path()));
    }
    if files.is_empty() {
        return Err(JournalError::Empty {
            path: dir.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

/// What was passed over in one file because it was damaged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub batches: u64,
    pub bytes: u64,
    /// `file@offset: reason`, one per damaged place.
    pub places: Vec<String>,
}

/// Calls `record(offset, payload)` for every user record of `data` (one journal file, named
/// `file` in errors), in order. Damage (a bad head, a batch past the end of the file, a
/// checksum mismatch) is an error, or with `skip_damaged` is counted in `skipped`: a batch with
/// a bad checksum is passed over whole, a bad head ends the file (nothing after it can be
/// framed). Never panics, whatever `data` holds.
pub fn read_records(
    data: &[u8],
    file: &str,
    skip_damaged: bool,
    skipped: &mut Skipped,
    mut record: impl FnMut(usize, &[u8]),
) -> Result<(), JournalError> {
    let mut offset = 0usize;
    let mut damaged = |offset: usize, skip_to: usize, reason: String| {
        if skip_damaged {
            skipped.batches += 1;
            skipped.bytes += skip_to.saturating_sub(offset) as u64;
            skipped.places.push(format!("{file}@{offset}: {reason}"));
            Ok(skip_to)
        } else {
            Err(JournalError::Damaged {
                file: file.to_owned(),
                offset,
                reason,
            })
        }
    };
    while data.len() - offset >= RECORD_HEAD {
        let size = be_i32(&data[offset..]);
        let kind = data[offset + RECORD_HEAD - 1];
        if (size == 0 && kind == 0) || (size == EOF_INT && kind == EOF_BYTE) {
            return Ok(());
        }
        match kind {
            BATCH_CONTROL => {
                if size as usize != BATCH_CONTROL_SIZE
                    || data.len() - offset < BATCH_CONTROL_SIZE
                    || &data[offset + RECORD_HEAD..offset + RECORD_HEAD + 11] != BATCH_MAGIC
                {
                    offset = damaged(offset, data.len(), "bad batch control record".into())?;
                    continue;
                }
                let len = be_i32(&data[offset + 16..]);
                let checksum = u64::from_be_bytes(
                    data[offset + 20..offset + 28]
                        .try_into()
                        .unwrap_or_default(),
                );
                let start = offset + BATCH_CONTROL_SIZE;
                let Some(end) = usize::try_from(len)
                    .ok()
                    .and_then(|l| start.checked_add(l))
                    .filter(|&e| e <= data.len())
                else {
                    offset = damaged(
                        offset,
                        data.len(),
                        format!("batch of {len} bytes runs past the end of the file"),
                    )?;
                    continue;
                };
                let batch = &data[start..end];
                if checksum != 0 && u64::from(adler32(batch)) != checksum {
                    offset = damaged(offset, end, "batch checksum mismatch".into())?;
                    continue;
                }
                let mut at = 0;
                while batch.len() - at >= RECORD_HEAD {
                    let size = be_i32(&batch[at..]);
                    let kind = batch[at + RECORD_HEAD - 1];
                    let Some(rec_end) = usize::try_from(size)
                        .ok()
                        .filter(|&s| s >= RECORD_HEAD)
                        .and_then(|s| at.checked_add(s))
                        .filter(|&e| e <= batch.len())
                    else {
                        break;
                    };
                    if kind == USER_RECORD {
                        record(start + at, &batch[at + RECORD_HEAD..rec_end]);
                    }
                    at = rec_end;
                }
                if at != batch.len() {
                    offset = damaged(start + at, end, "bad record head inside a batch".into())?;
                    continue;
                }
                offset = end;
            }
            USER_RECORD => {
                // Journals from before batch control records: a bare user record.
                let Some(end) = usize::try_from(size)
                    .ok()
                    .filter(|&s| s >= RECORD_HEAD)
                    .and_then(|s| offset.checked_add(s))
                    .filter(|&e| e <= data.len())
                else {
                    offset = damaged(offset, data.len(), format!("bad record size {size}"))?;
                    continue;
                };
                record(offset, &data[offset + RECORD_HEAD..end]);
                offset = end;
            }
            other => {
                offset = damaged(offset, data.len(), format!("unknown record type {other}"))?;
            }
        }
    }
    Ok(())
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Adler-32 (RFC 1950), what `java.util.zip.Adler32` computes.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before b can overflow u32.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[&[u8]], checksum: bool) -> Vec<u8> {
        let mut payload = Vec::new();
        for r in records {
            payload.extend_from_slice(&((r.len() + RECORD_HEAD) as i32).to_be_bytes());
            payload.push(USER_RECORD);
            payload.extend_from_slice(r);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(BATCH_CONTROL_SIZE as i32).to_be_bytes());
        out.push(BATCH_CONTROL);
        out.extend_from_slice(BATCH_MAGIC);
        out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        let sum = if checksum {
            u64::from(adler32(&payload))
        } else {
            0
        };
        out.extend_from_slice(&sum.to_be_bytes());
        out.extend(payload);
        out
    }

    #[test]
    fn adler32_matches_the_rfc_example() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn reads_batches_until_the_eof_marker() {
        let mut data = batch(&[b"one", b"two"], true);
        data.extend(batch(&[b"three"], false));
        data.extend_from_slice(&EOF_INT.to_be_bytes());
        data.push(EOF_BYTE);
        data.extend(batch(&[b"after eof"], true));
        let mut seen = Vec::new();
        let mut skipped = Skipped::default();
        read_records(&data, "db-1.log", false, &mut skipped, |_, r| {
            seen.push(r.to_vec())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn a_bad_checksum_stops_or_is_skipped() {
        let mut data = batch(&[b"one"], true);
        let n = data.len();
        data[n - 1] ^= 1;
        data.extend(batch(&[b"two"], true));
        let mut skipped = Skipped::default();
        let err = read_records(&data, "db-1.log", false, &mut skipped, |_, _| {}).unwrap_err();
        assert!(err.to_string().starts_with("db-1.log at offset 0"), "{err}");
        let mut seen = Vec::new();
        read_records(&data, "db-1.log", true, &mut skipped, |_, r| {
            seen.push(r.to_vec())
        })
        .unwrap();
        assert_eq!(seen, vec![b"two".to_vec()]);
        assert_eq!(skipped.batches, 1);
    }
}
