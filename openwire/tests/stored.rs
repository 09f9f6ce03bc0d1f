//! Messages as ActiveMQ's stores hold them (`openwire::store`): the Java client's version 11
//! loose vectors are exactly what ActiveMQ's `OpenWireFormat()` marshals into KahaDB and
//! `ACTIVEMQ_MSGS.MSG`; each reads into the store's model with the kind and headers the Java
//! side gave it, converts back to the same store message, and every truncation of it is an
//! error, not a panic.
#![cfg(feature = "store-api")]

use std::path::Path;

use openwire::store::{StoredDecoder, encode_stored, to_store};
use store_api::{Body, Destination, codec};

fn vector(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/v11")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const MESSAGES: &[&str] = &[
    "message_plain.bin",
    "message_text.bin",
    "message_text_compressed.bin",
    "message_bytes.bin",
    "message_bytes_compressed.bin",
    "message_map.bin",
    "message_stream.bin",
    "message_object.bin",
];

#[test]
fn activemqs_stored_messages_read_and_convert_back() {
    let mut converted = 0;
    for name in MESSAGES {
        let bytes = vector(name);
        let o = StoredDecoder::default()
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // A few vectors are messages as a client builds them, before the send gives an id;
        // a store never holds such a message, and converting one is an error.
        if o.message_id.is_none() {
            assert!(to_store(&o, Destination::queue("q")).is_err(), "{name}");
            continue;
        }
        converted += 1;
        let m = to_store(&o, Destination::queue("q")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind_ok = match &m.body {
            Body::Empty => name.contains("plain"),
            Body::Text(_) => name.contains("text"),
            Body::Bytes(_) => name.contains("bytes"),
            Body::Map(_) => name.contains("map"),
            Body::Stream(_) => name.contains("stream"),
            Body::Object(_) => name.contains("object"),
        };
        assert!(kind_ok, "{name}: body {:?}", m.body);
        let id = o.message_id.as_ref().expect("an id");
        assert_eq!(m.id.producer_seq, id.producer_sequence_id as u64, "{name}");
        assert_eq!(
            i64::from(m.priority),
            i64::from(o.priority.clamp(0, 9)),
            "{name}"
        );
        let again = StoredDecoder::default()
            .decode(&encode_stored(&m).expect("encodes"))
            .expect("decodes");
        let back = to_store(&again, Destination::queue("q")).expect("converts");
        assert_eq!(codec::encode(&back), codec::encode(&m), "{name}");
    }
    assert!(converted >= 4, "only {converted} vectors had ids");
}

#[test]
fn truncated_stored_messages_are_errors() {
    for name in MESSAGES {
        let bytes = vector(name);
        for cut in 0..bytes.len() {
            assert!(
                StoredDecoder::default().decode(&bytes[..cut]).is_err(),
                "{name} cut at {cut} decoded"
            );
        }
    }
}
