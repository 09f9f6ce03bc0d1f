//! Replay and reads by location through maps of a sealed journal file with arbitrary contents:
//! on real files, data file 1 holds a valid header and the fuzzed bytes, and data file 2 one
//! valid batch, so file 1 is sealed and read through a map (`map_replay`, `map_reads`). Opening
//! and replaying must return records or an error, never panic, hang or read outside the map,
//! and every record replay returns must read back the same by its location.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use store_journal::fs::RealFs;
use store_journal::{format, Journal, JournalConfig, Location};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let layout = format::Layout::CURRENT;
    let start = layout.data_start() as usize;
    let mut sealed = format::file_header(1, layout).to_vec();
    sealed.resize(start, 0);
    sealed.extend_from_slice(data);
    let mut tail = format::file_header(2, layout).to_vec();
    tail.resize(start, 0);
    let mut batch = vec![0u8; format::BATCH_HEADER_LEN];
    format::push_record(&mut batch, b"the tail");
    format::seal_batch(&mut batch, start as u32);
    tail.extend_from_slice(&batch);
    if std::fs::write(dir.path().join("db-1.log"), &sealed).is_err()
        || std::fs::write(dir.path().join("db-2.log"), &tail).is_err()
    {
        return;
    }
    let mut config = JournalConfig::new(dir.path(), "db-", ".log");
    config.preallocate = false;
    config.map_replay = true;
    config.map_reads = true;
    let Ok(journal) = Journal::open(config, Arc::new(RealFs)) else {
        return;
    };
    for record in journal.replay(Location::default()) {
        let Ok((loc, bytes)) = record else {
            break;
        };
        assert_eq!(
            journal.read(loc).ok().as_deref(),
            Some(&bytes[..]),
            "record at {loc} reads back as replayed"
        );
    }
});
