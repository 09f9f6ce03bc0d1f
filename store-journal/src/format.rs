//! The bytes of a journal data file.
//!
//! ```text
//! file    := header zeros batch* zeros*
//! header  := magic "RSJRNL\0\x01" (8) | version u16 = 2 | alignment log2 u16 | file id u32
//!            | crc32 of the previous 16 bytes u32 | 12 zero bytes           (32 bytes)
//! batch   := mark u32 = 0xFFFF_FFFF | payload length u32 | crc32 of payload u32
//!            | synced_to u32 | crc32 of the previous 16 bytes u32 | payload  (20 + n bytes)
//! payload := record*
//! record  := length u32 | crc32 of (length bytes ++ data) u32 | data
//! ```
//!
//! All integers little-endian; CRC-32 is the IEEE polynomial (crc32fast). A batch is what one
//! group commit writes with one `write`: it is valid as a whole or not at all, which is what makes
//! a multi-record append atomic. Each record also carries its own CRC so a read by location can be
//! checked without its batch. The part of a file after the last batch is zeros (files are
//! preallocated with zeros), so a zero word where a batch mark is expected is the clean end.
//!
//! **Alignment.** The first batch starts at the alignment (512 bytes in files written now; the
//! header records it) and every batch starts at a multiple of it, the gap
//! after a batch being zeros. So the writer can write straight to the device (`O_DIRECT`) and
//! never rewrites a sector that holds acknowledged data: a torn write can only damage the batch
//! being written.
//!
//! **`synced_to`.** The offset in this file below which everything was durable when the batch was
//! written. The writer may have several batches in flight (written, their fsync not returned); a
//! crash can then leave a later one on disk and an earlier one not. Recovery tells that apart
//! from damage to acknowledged data: damage at offset `p` followed only by valid batches whose
//! `synced_to` is at most `p` was in flight (never acknowledged: completions are in journal
//! order) and is cut; a valid batch with `synced_to > p` was written after `p` was durable, so
//! the damage is real and the journal refuses to open.
//!
//! Version 1 files (16-byte batch header without `synced_to`, no alignment, first batch right
//! after the header) are still read; new data always goes to version 2 files.

use crate::Location;

pub const MAGIC: [u8; 8] = *b"RSJRNL\0\x01";
/// The version new files are written with.
pub const VERSION: u16 = 2;
pub const FILE_HEADER_LEN: u64 = 32;
pub const BATCH_MARK: u32 = 0xFFFF_FFFF;
/// The batch header of the current version.
pub const BATCH_HEADER_LEN: usize = 20;
pub const RECORD_HEADER_LEN: usize = 8;
/// The largest record payload; keeps lengths clear of the batch mark.
pub const MAX_RECORD_LEN: usize = 1 << 30;
/// The batch alignment of new files: a disk sector.
pub const MIN_ALIGN: u64 = 512;

/// How a data file's batches are laid out, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: u16,
    /// Batches start at multiples of this (1 for version 1).
    pub align: u64,
}

/// A batch header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub payload_len: u32,
    pub payload_crc: u32,
    /// `None` in version 1 files, which did not record it.
    pub synced_to: Option<u32>,
}

impl Layout {
    /// The layout new files get. Sector alignment: the writer uses direct I/O only where the
    /// device accepts it, and larger alignments would waste space with every small batch.
    pub const CURRENT: Layout = Layout {
        version: VERSION,
        align: MIN_ALIGN,
    };

    pub fn batch_header_len(self) -> usize {
        if self.version == 1 {
            16
        } else {
            BATCH_HEADER_LEN
        }
    }

    /// Where the first batch goes.
    pub fn data_start(self) -> u64 {
        self.next_batch(FILE_HEADER_LEN)
    }

    /// Where the batch after one ending at `end` starts.
    pub fn next_batch(self, end: u64) -> u64 {
        end.div_ceil(self.align) * self.align
    }

    /// Parses a batch header (at least [`Layout::batch_header_len`] bytes), if valid.
    pub fn parse_batch_header(self, h: &[u8]) -> Option<BatchHeader> {
        let n = self.batch_header_len();
        if h.len() < n
            || u32_at(h, 0) != BATCH_MARK
            || u32_at(h, n - 4) != crc32fast::hash(&h[..n - 4])
        {
            return None;
        }
        Some(BatchHeader {
            payload_len: u32_at(h, 4),
            payload_crc: u32_at(h, 8),
            synced_to: (self.version != 1).then(|| u32_at(h, 12)),
        })
    }
}

pub fn file_header(file_id: u32, layout: Layout) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&layout.version.to_le_bytes());
    let log2 = if layout.version == 1 {
        0
    } else {
        layout.align.trailing_zeros() as u16
    };
    h[10..12].copy_from_slice(&log2.to_le_bytes());
    h[12..16].copy_from_slice(&file_id.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header and returns the file's layout; the error says what is wrong.
pub fn check_file_header(h: &[u8], expected_id: u32) -> Result<Layout, String> {
    if h.len() < FILE_HEADER_LEN as usize {
        return Err(format!(
            "header is {} bytes, expected {FILE_HEADER_LEN}",
            h.len()
        ));
    }
    if h[..8] != MAGIC {
        return Err("bad magic: not a journal data file".into());
    }
    if u32_at(h, 16) != crc32fast::hash(&h[..16]) {
        return Err("header checksum mismatch".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    let log2 = u16::from_le_bytes([h[10], h[11]]);
    let layout = match version {
        1 => Layout { version, align: 1 },
        2 if (9..=16).contains(&log2) => Layout {
            version,
            align: 1 << log2,
        },
        2 => return Err(format!("impossible batch alignment 2^{log2}")),
        _ => return Err(format!("unsupported journal version {version}")),
    };
    let id = u32_at(h, 12);
    if id != expected_id {
        return Err(format!(
            "header names file id {id}, file name says {expected_id}"
        ));
    }
    Ok(layout)
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Appends a record (header and data) to a batch buffer.
pub fn push_record(buf: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(data);
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.extend_from_slice(data);
}

/// Fills in the (current version's) batch header at the front of `buf`, which starts with
/// [`BATCH_HEADER_LEN`] placeholder bytes.
pub fn seal_batch(buf: &mut [u8], synced_to: u32) {
    let payload_len = (buf.len() - BATCH_HEADER_LEN) as u32;
    let crc = crc32fast::hash(&buf[BATCH_HEADER_LEN..]);
    buf[0..4].copy_from_slice(&BATCH_MARK.to_le_bytes());
    buf[4..8].copy_from_slice(&payload_len.to_le_bytes());
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    buf[12..16].copy_from_slice(&synced_to.to_le_bytes());
    let hcrc = crc32fast::hash(&buf[0..16]);
    buf[16..20].copy_from_slice(&hcrc.to_le_bytes());
}

/// A record read back: where it is and its data.
pub type Record = (Location, Vec<u8>);

/// Splits a checked batch payload into its records, with their locations. On damage, the
/// offset and what is wrong.
pub fn split_records(
    payload: &[u8],
    file: u32,
    payload_offset: u64,
) -> Result<Vec<Record>, (u64, String)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < payload.len() {
        let offset = payload_offset + at as u64;
        if payload.len() - at < RECORD_HEADER_LEN {
            return Err((offset, "record header runs past the batch".into()));
        }
        let len = u32_at(payload, at) as usize;
        let crc = u32_at(payload, at + 4);
        let data_at = at + RECORD_HEADER_LEN;
        if len > payload.len() - data_at {
            return Err((offset, format!("record length {len} runs past the batch")));
        }
        let data = &payload[data_at..data_at + len];
        if record_crc(len as u32, data) != crc {
            return Err((offset, "record checksum mismatch".into()));
        }
        out.push((
            Location {
                file,
                offset: offset as u32,
            },
            data.to_vec(),
        ));
        at = data_at + len;
    }
    Ok(out)
}

pub fn record_crc(len: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(data);
    h.finalize()
}
