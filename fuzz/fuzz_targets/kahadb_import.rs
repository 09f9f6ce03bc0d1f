//! `broker import-kahadb`'s reader of ActiveMQ's KahaDB journal: any bytes, framed as a journal
//! file, decoded as commands and replayed, fail or decode, never panic.
//!
//! The reader's three modules are pure (no I/O beyond the bytes given) and are compiled here
//! from the broker's sources, so the fuzz build does not pull in the whole broker program. The
//! OpenWire messages inside the commands are the `openwire_frame` target's business.
#![no_main]

#[allow(dead_code)]
#[path = "../../broker/src/import/kahadb/journal.rs"]
mod journal;
#[allow(dead_code)]
#[path = "../../broker/src/import/kahadb/proto.rs"]
mod proto;
#[allow(dead_code)]
#[path = "../../broker/src/import/kahadb/replay.rs"]
mod replay;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut state = replay::Replay::default();
    state.apply_file_lossy(data, |_| {});
    let _ = state.finish();
});
