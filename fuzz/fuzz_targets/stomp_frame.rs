//! The STOMP frame decoder: any bytes give frames, "need more" or an error, never a panic and
//! never a frame over the limits; a decoded frame re-encodes to bytes that decode to it again;
//! and the same bytes fed in small pieces give the same frames (the decoder's saved progress);
//! after an error, the failed frame's receipt (for the ERROR) is within the header limit.
#![no_main]

use stomp_codec::{Decoder, Limits, Version};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 4096,
        max_headers: 16,
        max_header_bytes: 256,
    };
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut decoder = Decoder::new(limits);
        decoder.version = version;
        let mut buf = BytesMut::from(data);
        let mut frames = Vec::new();
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    let receipt = decoder.failed_receipt().map_or(0, str::len);
                    assert!(receipt <= limits.max_header_bytes);
                    break;
                }
            };
            frames.push(frame.clone());
            assert!(frame.body.len() <= limits.max_frame_bytes);
            assert!(frame.headers.len() <= limits.max_headers);
            let again = frame.to_bytes(version);
            let mut big = Decoder::new(Limits::default());
            big.version = version;
            let back = big.decode(&mut BytesMut::from(&again[..])).ok().flatten();
            let back = back.expect("a re-encoded frame decodes");
            assert_eq!(back.command, frame.command);
            assert_eq!(back.body, frame.body);
        }
        let mut pieces = Decoder::new(limits);
        pieces.version = version;
        let mut buf = BytesMut::new();
        let mut again = Vec::new();
        'feed: for chunk in data.chunks(7) {
            buf.extend_from_slice(chunk);
            loop {
                match pieces.decode(&mut buf) {
                    Ok(Some(f)) => again.push(f),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
        assert_eq!(again, frames[..again.len().min(frames.len())].to_vec());
    }
});
