//! Property tests of the message encoding: round trips, exact lengths, and that no input —
//! random, truncated or bit-flipped — makes the decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use store_api::codec::{self, Reader, Writer};
use store_api::{Body, Destination, Message, MessageId, TransactionId, TxOp, Value, Xid};

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i8>().prop_map(Value::I8),
        any::<i16>().prop_map(Value::I16),
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        // NaN != NaN would make equality checks meaningless; compare bits of normal floats.
        any::<f32>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::F32),
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,20}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|v| Value::Bytes(Bytes::from(v))),
    ]
}

fn destination() -> impl Strategy<Value = Destination> {
    (any::<bool>(), ".{0,12}").prop_map(|(q, n)| {
        if q {
            Destination::queue(n)
        } else {
            Destination::topic(n)
        }
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::Empty),
        ".{0,64}".prop_map(Body::Text),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Body::Bytes(Bytes::from(v))),
        proptest::collection::btree_map(".{0,8}", value(), 0..5).prop_map(Body::Map),
        proptest::collection::vec(value(), 0..5).prop_map(Body::Stream),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Body::Object(Bytes::from(v))),
    ]
}

prop_compose! {
    fn message()(
        producer in ".{0,16}",
        producer_seq in any::<u64>(),
        destination in destination(),
        sequence in any::<u64>(),
        priority in 0u8..=9,
        timestamp in any::<i64>(),
        expiration in any::<i64>(),
        persistent in any::<bool>(),
        redelivery_count in any::<u32>(),
        correlation_id in proptest::option::of(".{0,10}"),
        reply_to in proptest::option::of(destination()),
        message_type in proptest::option::of(".{0,10}"),
        group_id in proptest::option::of(".{0,10}"),
        group_seq in any::<i32>(),
        properties in proptest::collection::btree_map(".{0,10}", value(), 0..6),
        body in body(),
    ) -> Message {
        Message {
            id: MessageId::new(producer, producer_seq),
            destination, sequence, priority, timestamp, expiration, persistent, redelivery_count,
            correlation_id, reply_to, message_type, group_id, group_seq, properties, body,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn round_trips(m in message()) {
        let bytes = codec::encode(&m);
        prop_assert_eq!(bytes.len(), codec::encoded_len(&m));
        prop_assert_eq!(bytes.len() as u64, m.size());
        prop_assert_eq!(codec::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&bytes);
        let _ = codec::read_tx_op(&mut Reader::new(&bytes));
        let _ = codec::read_transaction_id(&mut Reader::new(&bytes));
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = vec![codec::MESSAGE_VERSION, 0];
        bytes.extend(tail);
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn every_truncation_is_an_error(m in message()) {
        let bytes = codec::encode(&m);
        for cut in 0..bytes.len() {
            prop_assert!(codec::decode(&bytes[..cut]).is_err(), "prefix of {} of {} bytes decoded", cut, bytes.len());
        }
    }

    #[test]
    fn trailing_bytes_are_an_error(m in message(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = codec::encode(&m);
        bytes.extend(extra);
        prop_assert!(codec::decode(&bytes).is_err());
    }

    #[test]
    fn flipped_bytes_decode_or_fail_without_panic(m in message(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = codec::encode(&m);
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(decoded) = codec::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes: the encoding is canonical.
            prop_assert_eq!(codec::encode(&decoded), bytes);
        }
    }

    #[test]
    fn tx_ops_round_trip(m in message(), d in destination(), client in ".{0,8}", name in ".{0,8}", seq in any::<u64>()) {
        let ops = vec![
            TxOp::Add(m),
            TxOp::QueueAck { destination: d.clone(), id: MessageId::new("p", seq) },
            TxOp::TopicAck { destination: d, subscription: store_api::SubscriptionKey::new(client, name), id: MessageId::new("q", seq) },
        ];
        for op in ops {
            let mut w = Writer::new();
            codec::write_tx_op(&mut w, &op);
            let bytes = w.into_inner();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(codec::read_tx_op(&mut r).unwrap(), op);
            prop_assert!(r.finish().is_ok());
        }
    }
}

#[test]
fn transaction_ids_round_trip() {
    for id in [
        TransactionId::Local(0),
        TransactionId::Local(u64::MAX),
        TransactionId::Xa(Xid {
            format_id: -1,
            global_id: vec![],
            branch_qualifier: vec![1, 2, 3],
        }),
    ] {
        let mut w = Writer::new();
        codec::write_transaction_id(&mut w, &id);
        let bytes = w.into_inner();
        assert_eq!(
            codec::read_transaction_id(&mut Reader::new(&bytes)).unwrap(),
            id
        );
    }
}

#[test]
fn huge_declared_lengths_fail_without_allocating() {
    // A text body claiming u64::MAX bytes, and a property count far beyond the input.
    let d = Destination::queue("q");
    let mut m = Message::new(MessageId::new("p", 1), d, Body::Empty);
    m.properties = BTreeMap::new();
    let mut bytes = codec::encode(&m);
    bytes.pop();
    bytes.push(1);
    bytes.extend([0xff; 9]);
    bytes.push(0x01);
    assert!(codec::decode(&bytes).is_err());
}

#[test]
fn unknown_version_is_named() {
    let err = codec::decode(&[9, 0]).unwrap_err();
    assert_eq!(err, store_api::DecodeError::UnknownVersion(9));
}

/// The encoding of a fixed message, byte for byte: a change to the format that would stop
/// reading messages already on disk fails here.
#[test]
fn version_one_fixture() {
    let mut m = Message::new(
        MessageId::new("p", 2),
        Destination::queue("q"),
        Body::Text("hi".into()),
    );
    m.sequence = 300;
    m.timestamp = 1;
    m.properties.insert("k".into(), Value::I16(-2));
    let expected: Vec<u8> = vec![
        1, 1, // version, flags (persistent)
        1, b'p', 2, // producer id, producer sequence
        0, 1, b'q', // queue "q"
        0xac, 0x02, // sequence 300
        4,    // priority
        1, 0, 0, 0, 0, 0, 0, 0, // timestamp
        0, 0, 0, 0, 0, 0, 0, 0, // expiration
        0, // redelivery count
        0, 0, 0, 0, // group sequence
        1, 1, b'k', 2, 0xfe, 0xff, // one property k = i16 -2
        1, 2, b'h', b'i', // text body
    ];
    assert_eq!(codec::encode(&m), expected);
    assert_eq!(codec::decode(&expected).unwrap(), m);
}

/// Regression (found by the `message_decode` fuzz target): a sequence written as the two-byte
/// varint `ac 00` (44 with a redundant zero byte) decoded, so the same message had two
/// encodings. Non-minimal varints are now refused.
#[test]
fn non_minimal_varints_are_refused() {
    let mut m = Message::new(
        MessageId::new("p", 2),
        Destination::queue("q"),
        Body::Text("hi".into()),
    );
    m.sequence = 44;
    let mut bytes = codec::encode(&m);
    let at = bytes.iter().position(|b| *b == 44).unwrap();
    bytes[at] = 0xac;
    bytes.insert(at + 1, 0x00);
    let err = codec::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("not minimally encoded"), "{err}");
    let mut r = Reader::new(&[0x80, 0x80, 0x00]);
    assert!(r.varint().is_err());
    assert_eq!(Reader::new(&[0x00]).varint().unwrap(), 0);
    assert_eq!(Reader::new(&[0x80, 0x01]).varint().unwrap(), 128);
}
