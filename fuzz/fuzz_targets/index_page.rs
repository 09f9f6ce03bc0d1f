//! KahaDB index pages: any 4 KiB decode or fail, never panic. The checksum is recomputed over
//! the fuzzed bytes so the decoder's structure checks are reached, not only the CRC check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut page = vec![0u8; 4096];
    let n = data.len().min(4092);
    page[4..4 + n].copy_from_slice(&data[..n]);
    let crc = crc32fast::hash(&page[4..]);
    page[0..4].copy_from_slice(&crc.to_le_bytes());
    let _ = store_kahadb::fuzzing::decode_page(&page);
});

