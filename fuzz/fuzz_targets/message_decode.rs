//! The store-api message decoder: any bytes decode or fail, never panic; what decodes
//! re-encodes to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = store_api::codec::decode(data) {
        assert_eq!(store_api::codec::encode(&m), data);
    }
});
