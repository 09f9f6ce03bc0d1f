//! The journaled JDBC engine's journal records: any bytes decode or fail, never panic; what
//! decodes re-encodes to the same bytes (replay must read exactly what was written).
#![no_main]

use libfuzzer_sys::fuzz_target;
use store_journaled_jdbc::records::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::decode(data) {
        assert_eq!(r.encode(), data);
    }
});
