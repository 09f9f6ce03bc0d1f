//! The MQTT packet decoder: any bytes give packets, "need more" or an error, never a panic and
//! never a packet over the limit; a decoded packet re-encodes to bytes that decode to it
//! again; and the same bytes fed in small pieces give the same packets.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::decode;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    while let Ok(Some(p)) = decode(&mut buf, LIMIT) {
        let again = p.to_bytes().expect("a decoded packet encodes");
        assert!(again.len() <= LIMIT);
        let back = decode(&mut BytesMut::from(&again[..]), LIMIT);
        assert_eq!(back.as_ref().ok().and_then(Option::as_ref), Some(&p));
        packets.push(p);
    }
    let mut pieces = Vec::new();
    let mut buf = BytesMut::new();
    'feed: for chunk in data.chunks(5) {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf, LIMIT) {
                Ok(Some(p)) => pieces.push(p),
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    assert_eq!(pieces, packets[..pieces.len().min(packets.len())].to_vec());
});
