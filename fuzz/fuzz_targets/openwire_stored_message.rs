//! A stored OpenWire message (`ACTIVEMQ_MSGS.MSG` in the JDBC engine's openwire format, a
//! KahaDB journal's message) read into the store's model: any bytes decode or fail, never
//! panic; a message that converts converts back to the same store message (compared by its
//! store encoding, so NaN properties compare too).
//!
//! Seeds: the Java client's version 11 message vectors (`openwire/tests/vectors/v11`), which
//! is how ActiveMQ's stores marshal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openwire::store::{StoredDecoder, encode_stored, to_store};
use store_api::{Destination, codec};

fuzz_target!(|data: &[u8]| {
    let Ok(o) = StoredDecoder::default().decode(data) else {
        return;
    };
    let Ok(m) = to_store(&o, Destination::queue("fuzz")) else {
        return;
    };
    let bytes = encode_stored(&m).expect("a store message encodes as OpenWire");
    let back = StoredDecoder::default()
        .decode(&bytes)
        .expect("what was encoded decodes");
    let again = to_store(&back, Destination::queue("fuzz")).expect("and converts");
    assert_eq!(codec::encode(&again), codec::encode(&m));
});
