//! The replicated store's decoders of network and disk bytes: a replication frame body, a
//! replicated op, a ZooKeeper member's data and the position file. Any bytes decode or fail,
//! never panic; a frame or an op that decodes re-encodes to the same bytes (canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replication::frame::Frame;
use replication::member::MemberData;
use replication::op::Op;
use replication::position::Position;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode_body(data) {
        assert_eq!(f.encode_body(), data);
    }
    if let Ok(op) = Op::decode(data) {
        assert_eq!(op.encode(), data);
    }
    let _ = MemberData::decode(data);
    let _ = Position::decode(data);
});
