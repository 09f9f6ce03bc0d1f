//! `broker import-kahadb`'s reader of ActiveMQ's KahaDB journal: any bytes, framed as a journal
//! file, decoded as commands (their OpenWire messages and subscription infos too) and
//! replayed, fail or decode, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = broker::import::kahadb::fuzz_journal(data);
});
