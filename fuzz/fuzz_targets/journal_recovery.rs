//! Journal recovery over arbitrary file contents: a data file with a valid header and fuzzed
//! bytes after it is opened and replayed; it must open or fail with an error, never panic or
//! hang, and every record it returns must pass its checksum.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use store_journal::fs::{FileSystem, SimFs};
use store_journal::{format, Journal, JournalConfig, Location};

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new();
    let path = Path::new("/j/db-1.log");
    let file = fs.open(path, true).expect("sim file");
    // The fuzzed bytes start where the first batch goes.
    let layout = format::Layout::CURRENT;
    let mut bytes = format::file_header(1, layout).to_vec();
    bytes.resize(layout.data_start() as usize, 0);
    bytes.extend_from_slice(data);
    file.write_all_at(&bytes, 0).expect("sim write");
    let mut config = JournalConfig::new("/j", "db-", ".log");
    config.preallocate = false;
    if let Ok(journal) = Journal::open(config, Arc::new(fs)) {
        for record in journal.replay(Location::default()) {
            if record.is_err() {
                break;
            }
        }
    }
});
