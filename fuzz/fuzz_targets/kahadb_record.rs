//! KahaDB/AMQ journal record and snapshot decoders: any bytes decode or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = store_kahadb::fuzzing::decode_record(data);
    let _ = store_amq::fuzzing::load_snapshot(data);
});
