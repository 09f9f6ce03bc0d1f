//! The codec against the standard's examples and rules: each malformed packet is refused with
//! the error naming its problem, and every packet round-trips (proptest).

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, Packet, PacketError, Publish, QoS, SubAck, SubAckCode,
    Subscribe, Unsubscribe, Will, decode, decode_remaining_length,
};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn one(bytes: &[u8]) -> Result<Option<Packet>, PacketError> {
    decode(&mut BytesMut::from(bytes), MAX)
}

fn round_trip(p: &Packet) {
    let bytes = p.to_bytes().expect("encodes");
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, MAX).expect("decodes").as_ref(), Some(p));
    assert!(buf.is_empty());
    // Byte by byte: "need more" until the last byte, never an error.
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = decode(&mut buf, MAX).expect("a prefix is not an error");
        assert_eq!(got.is_some(), i + 1 == bytes.len());
    }
}

#[test]
fn remaining_length_boundaries() {
    for (n, enc) in [
        (0usize, &[0x00u8][..]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xff, 0xff, 0x7f]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
    ] {
        assert_eq!(decode_remaining_length(enc), Ok(Some((n, enc.len()))));
    }
    assert_eq!(decode_remaining_length(&[0x80, 0x80]), Ok(None));
    assert_eq!(
        decode_remaining_length(&[0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(PacketError::RemainingLengthTooLong)
    );
}

#[test]
fn a_packet_over_the_limit_is_refused_from_its_header() {
    // PUBLISH announcing 1000 bytes, only the fixed header present.
    let mut buf = BytesMut::from(&[0x30u8, 0xe8, 0x07][..]);
    assert_eq!(
        decode(&mut buf, 100),
        Err(PacketError::TooLarge {
            size: 1003,
            limit: 100
        })
    );
}

#[test]
fn every_packet_round_trips() {
    let packets = [
        Packet::Connect(Connect {
            client_id: "c1".into(),
            clean_session: false,
            keep_alive: 60,
            will: Some(Will {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::ExactlyOnce,
                retain: true,
            }),
            username: Some("u".into()),
            password: Some(Bytes::from_static(b"\x00p")),
        }),
        Packet::Connect(Connect {
            client_id: String::new(),
            clean_session: true,
            keep_alive: 0,
            will: None,
            username: None,
            password: None,
        }),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::NotAuthorized,
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: None,
            payload: Bytes::new(),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "a".into(),
            packet_id: Some(65535),
            payload: Bytes::from(vec![7u8; 300]),
        }),
        Packet::PubAck(1),
        Packet::PubRec(2),
        Packet::PubRel(3),
        Packet::PubComp(4),
        Packet::Subscribe(Subscribe {
            packet_id: 5,
            filters: vec![
                ("a/+".into(), QoS::AtLeastOnce),
                ("#".into(), QoS::ExactlyOnce),
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: 5,
            codes: vec![SubAckCode::Granted(QoS::AtLeastOnce), SubAckCode::Failure],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 6,
            filters: vec!["a/+".into()],
        }),
        Packet::UnsubAck(6),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ];
    for p in &packets {
        round_trip(p);
    }
}

/// A CONNECT with the given protocol name, level and flags, then keep-alive and client id.
fn connect_bytes(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0, 60, 0, 1, b'c']);
    body.extend_from_slice(rest);
    let mut p = vec![0x10, body.len() as u8];
    p.extend_from_slice(&body);
    p
}

#[test]
fn each_rule_has_its_error() {
    use PacketError as E;
    let cases: Vec<(Vec<u8>, E)> = vec![
        (vec![0x00, 0x00], E::ReservedPacketType(0)),
        (vec![0xf0, 0x00], E::ReservedPacketType(15)),
        (
            vec![0xc1, 0x00],
            E::ReservedFlags {
                packet: "PINGREQ",
                flags: 1,
            },
        ),
        (
            vec![0x60, 0x02, 0x00, 0x01],
            E::ReservedFlags {
                packet: "PUBREL",
                flags: 0,
            },
        ),
        (
            vec![0x80, 0x06, 0, 1, 0, 1, b'a', 0],
            E::ReservedFlags {
                packet: "SUBSCRIBE",
                flags: 0,
            },
        ),
        (
            vec![0x36, 0x05, 0, 1, b'a', 0, 1],
            E::QoS3 { packet: "PUBLISH" },
        ),
        (
            vec![0x38, 0x03, 0, 1, b'a'],
            E::ReservedFlags {
                packet: "PUBLISH",
                flags: 8,
            },
        ),
        (
            vec![0x32, 0x05, 0, 1, b'a', 0, 0],
            E::ZeroPacketId { packet: "PUBLISH" },
        ),
        (vec![0x40, 0x02, 0, 0], E::ZeroPacketId { packet: "PUBACK" }),
        (
            vec![0x82, 0x06, 0, 0, 0, 1, b'a', 0],
            E::ZeroPacketId {
                packet: "SUBSCRIBE",
            },
        ),
        (
            vec![0x30, 0x05, 0, 3, b'a', b'/', b'+'],
            E::WildcardInTopicName("a/+".into()),
        ),
        (
            vec![0x30, 0x04, 0, 2, 0xc3, 0x28],
            E::BadUtf8 {
                field: "topic name",
            },
        ),
        (
            vec![0x30, 0x03, 0, 1, 0x00],
            E::BadUtf8 {
                field: "topic name",
            },
        ),
        (
            vec![0x30, 0x02, 0, 0],
            E::EmptyTopic {
                field: "topic name",
            },
        ),
        (
            vec![0x82, 0x08, 0, 1, 0, 3, b'a', b'#', b'b', 1],
            E::BadTopicFilter("a#b".into()),
        ),
        (
            vec![0x82, 0x06, 0, 1, 0, 1, b'a', 3],
            E::QoS3 {
                packet: "SUBSCRIBE",
            },
        ),
        (
            vec![0x82, 0x06, 0, 1, 0, 1, b'a', 0x41],
            E::SubscribeReservedBits(0x41),
        ),
        (
            vec![0x82, 0x02, 0, 1],
            E::NoTopicFilters {
                packet: "SUBSCRIBE",
            },
        ),
        (
            vec![0xa2, 0x02, 0, 1],
            E::NoTopicFilters {
                packet: "UNSUBSCRIBE",
            },
        ),
        (
            vec![0x40, 0x03, 0, 1, 9],
            E::TrailingBytes {
                packet: "PUBACK",
                extra: 1,
            },
        ),
        (
            vec![0x40, 0x01, 0],
            E::Truncated {
                packet: "PUBACK",
                field: "packet id",
            },
        ),
        (
            connect_bytes(b"MQIsdp", 4, 2, &[]),
            E::ProtocolName("MQIsdp".into()),
        ),
        (connect_bytes(b"MQTT", 3, 2, &[]), E::ProtocolLevel(3)),
        (connect_bytes(b"MQTT", 4, 3, &[]), E::ConnectReservedFlag),
        (
            connect_bytes(b"MQTT", 4, 0x22, &[]),
            E::WillFlagsWithoutWill,
        ),
        (
            connect_bytes(b"MQTT", 4, 0x42, &[0, 1, b'p']),
            E::PasswordWithoutUsername,
        ),
        (
            connect_bytes(b"MQTT", 4, 0x1e, &[0, 1, b'w', 0, 0]),
            E::QoS3 {
                packet: "CONNECT will",
            },
        ),
        (
            connect_bytes(b"MQTT", 4, 0x06, &[0, 1, b'#', 0, 0]),
            E::WildcardInTopicName("#".into()),
        ),
        (
            connect_bytes(b"MQTT", 4, 0x82, &[0, 5, b'u']),
            E::Truncated {
                packet: "CONNECT",
                field: "user name",
            },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(one(&bytes), Err(want.clone()), "{bytes:02x?}");
        // The message names the problem for the broker's WARN.
        assert!(!want.to_string().is_empty());
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9$/ é]{1,20}"
}

fn filter() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["[a-z]{1,4}", Just("+".to_owned())], 1..4).prop_flat_map(
        |levels| {
            let joined = levels.join("/");
            prop_oneof![Just(joined.clone()), Just(format!("{joined}/#"))]
        },
    )
}

fn packet() -> impl Strategy<Value = Packet> {
    let id = 1u16..;
    prop_oneof![
        (
            "[a-zA-Z0-9]{0,23}",
            any::<bool>(),
            any::<u16>(),
            proptest::option::of((topic_name(), any::<Vec<u8>>(), qos(), any::<bool>())),
            proptest::option::of(("[ -~]{0,10}", proptest::option::of(any::<Vec<u8>>()))),
        )
            .prop_map(|(client_id, clean_session, keep_alive, will, cred)| {
                Packet::Connect(Connect {
                    client_id,
                    clean_session,
                    keep_alive,
                    will: will.map(|(topic, payload, qos, retain)| Will {
                        topic,
                        payload: payload.into(),
                        qos,
                        retain,
                    }),
                    username: cred.as_ref().map(|(u, _)| u.clone()),
                    password: cred.and_then(|(_, p)| p).map(Bytes::from),
                })
            }),
        (any::<bool>(), 0u8..6).prop_map(|(session_present, c)| {
            let code = [
                ConnectReturnCode::Accepted,
                ConnectReturnCode::UnacceptableProtocolVersion,
                ConnectReturnCode::IdentifierRejected,
                ConnectReturnCode::ServerUnavailable,
                ConnectReturnCode::BadUsernameOrPassword,
                ConnectReturnCode::NotAuthorized,
            ][usize::from(c)];
            Packet::ConnAck(ConnAck {
                session_present,
                code,
            })
        }),
        (
            any::<bool>(),
            qos(),
            any::<bool>(),
            topic_name(),
            id.clone(),
            any::<Vec<u8>>()
        )
            .prop_map(|(dup, qos, retain, topic, id, payload)| {
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: (!at_most_once).then_some(id),
                    payload: payload.into(),
                })
            }),
        id.clone().prop_map(Packet::PubAck),
        id.clone().prop_map(Packet::PubRec),
        id.clone().prop_map(Packet::PubRel),
        id.clone().prop_map(Packet::PubComp),
        (
            id.clone(),
            proptest::collection::vec((filter(), qos()), 1..5)
        )
            .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters })),
        (
            id.clone(),
            proptest::collection::vec(
                prop_oneof![
                    qos().prop_map(SubAckCode::Granted),
                    Just(SubAckCode::Failure)
                ],
                0..5
            )
        )
            .prop_map(|(packet_id, codes)| Packet::SubAck(SubAck { packet_id, codes })),
        (id.clone(), proptest::collection::vec(filter(), 1..5)).prop_map(|(packet_id, filters)| {
            Packet::Unsubscribe(Unsubscribe { packet_id, filters })
        }),
        id.prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(p in packet()) {
        let bytes = p.to_bytes().expect("encodes");
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, MAX), Ok(Some(p)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_exceed_the_limit(bytes in any::<Vec<u8>>(), limit in 2usize..64) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(p)) = decode(&mut buf, limit) {
            // What decodes re-encodes to no more than the limit.
            prop_assert!(p.to_bytes().expect("encodes").len() <= limit);
        }
    }
}
