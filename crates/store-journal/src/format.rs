//! The bytes of a journal data file.
//!
//! ```text
//! file   := header batch* zeros*
//! header := magic "RSJRNL\0\x01" (8) | version u16 = 1 | reserved u16 = 0 | file id u32
//!           | crc32 of the previous 16 bytes u32 | 12 zero bytes            (32 bytes)
//! batch  := mark u32 = 0xFFFF_FFFF | payload length u32 | crc32 of payload u32
//!           | crc32 of the previous 12 bytes u32 | payload                  (16 + n bytes)
//! payload:= record*
//! record := length u32 | crc32 of (length bytes ++ data) u32 | data
//! ```
//!
//! All integers little-endian; CRC-32 is the IEEE polynomial (crc32fast). A batch is what one
//! group commit writes with one `write` and at most one `fdatasync`: it is valid as a whole or
//! not at all, which is what makes a multi-record append atomic. Each record also carries its
//! own CRC so a read by location can be checked without its batch. The part of a file after the
//! last batch is zeros (files are preallocated with zeros), so a zero word where a batch mark
//! is expected is the clean end of the data.

use crate::Location;

pub const MAGIC: [u8; 8] = *b"RSJRNL\0\x01";
pub const VERSION: u16 = 1;
pub const FILE_HEADER_LEN: u64 = 32;
pub const BATCH_MARK: u32 = 0xFFFF_FFFF;
pub const BATCH_HEADER_LEN: usize = 16;
pub const RECORD_HEADER_LEN: usize = 8;
/// The largest record payload; keeps lengths clear of the batch mark.
pub const MAX_RECORD_LEN: usize = 1 << 30;

pub fn file_header(file_id: u32) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&file_id.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header; the error says what is wrong.
pub fn check_file_header(h: &[u8], expected_id: u32) -> Result<(), String> {
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
    if version != VERSION {
        return Err(format!("unsupported journal version {version}"));
    }
    let id = u32_at(h, 12);
    if id != expected_id {
        return Err(format!(
            "header names file id {id}, file name says {expected_id}"
        ));
    }
    Ok(())
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

/// Fills in the batch header at the front of `buf` (which starts with 16 placeholder bytes).
pub fn seal_batch(buf: &mut [u8]) {
    let payload_len = (buf.len() - BATCH_HEADER_LEN) as u32;
    let crc = crc32fast::hash(&buf[BATCH_HEADER_LEN..]);
    buf[0..4].copy_from_slice(&BATCH_MARK.to_le_bytes());
    buf[4..8].copy_from_slice(&payload_len.to_le_bytes());
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&buf[0..12]);
    buf[12..16].copy_from_slice(&hcrc.to_le_bytes());
}

/// A batch header as read: the payload length, if the header itself is valid.
pub fn parse_batch_header(h: &[u8; BATCH_HEADER_LEN]) -> Option<(u32, u32)> {
    if u32_at(h, 0) != BATCH_MARK || u32_at(h, 12) != crc32fast::hash(&h[0..12]) {
        return None;
    }
    Some((u32_at(h, 4), u32_at(h, 8)))
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
