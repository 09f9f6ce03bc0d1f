//! Hostile input: truncation at every byte, lengths past the end, huge sizes, unknown types,
//! deep nesting and decompression bombs all give an error (or "need more"), never a panic, and
//! never an allocation beyond the frame already buffered.

use std::fs;
use std::io::Write;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::Compression;
use flate2::write::ZlibEncoder;
use openwire::*;

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v12");
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("vectors")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_owned();
            (name, fs::read(&path).expect("readable"))
        })
        .collect();
    out.sort();
    out
}

fn wf_for(name: &str) -> WireFormat {
    WireFormat {
        stack_trace_enabled: name.contains(".st."),
        ..WireFormat::default()
    }
}

fn frame(payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf
}

#[test]
fn a_partial_frame_is_need_more_and_leaves_the_buffer_alone() {
    for (name, bytes) in vectors() {
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(
                decode(&mut buf, &wf_for(&name)),
                Ok(None),
                "{name} cut at {cut}"
            );
            assert_eq!(buf[..], bytes[..cut], "{name} cut at {cut}: buffer changed");
        }
    }
}

#[test]
fn a_frame_cut_short_inside_is_an_error_at_every_byte() {
    for (name, bytes) in vectors() {
        let payload = &bytes[4..];
        // Keep at least the type byte; a frame whose size claims fewer bytes than the command
        // needs must fail to decode, wherever the cut falls.
        for cut in 1..payload.len() {
            let mut buf = frame(&payload[..cut]);
            let result = decode(&mut buf, &wf_for(&name));
            assert!(result.is_err(), "{name} cut at {cut}: {result:?}");
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for (name, bytes) in vectors() {
        for i in 4..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let mut buf = BytesMut::from(&damaged[..]);
                let _ = decode(&mut buf, &wf_for(&name));
            }
        }
    }
}

#[test]
fn an_oversized_frame_is_refused_from_its_prefix_alone() {
    let wf = WireFormat {
        max_frame_size: 1024,
        ..WireFormat::default()
    };
    let mut buf = BytesMut::from(&[0x7F, 0xFF, 0xFF, 0xFF][..]);
    let err = decode(&mut buf, &wf).expect_err("refused");
    assert_eq!(
        err,
        DecodeError::FrameTooLarge {
            size: 0x7FFF_FFFF,
            max: 1024
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("2147483647") && text.contains("1024"),
        "{text}"
    );
    assert!(
        buf.capacity() < 1024,
        "the decoder reserved {} bytes",
        buf.capacity()
    );

    // A frame under the limit but not yet here is "need more", and reserves nothing for it.
    let mut slow = BytesMut::with_capacity(16);
    slow.put_slice(&[0x00, 0x10, 0x00, 0x00, 23, 0, 0]);
    assert_eq!(decode(&mut slow, &WireFormat::default()), Ok(None));
    assert!(
        slow.capacity() < 1024,
        "the decoder reserved {} bytes",
        slow.capacity()
    );

    let mut negative = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFE][..]);
    assert_eq!(
        decode(&mut negative, &WireFormat::default()),
        Err(DecodeError::InvalidFrameSize(-2))
    );
    let mut empty = BytesMut::from(&[0, 0, 0, 0][..]);
    assert_eq!(
        decode(&mut empty, &WireFormat::default()),
        Err(DecodeError::InvalidFrameSize(0))
    );
}

#[test]
fn an_encoded_frame_over_the_limit_is_refused_and_not_written() {
    let wf = WireFormat {
        max_frame_size: 64,
        ..WireFormat::default()
    };
    let mut m = Message::new(MessageKind::Bytes);
    m.content = Some(Bytes::from(vec![0u8; 100]));
    let mut out = BytesMut::from(&b"kept"[..]);
    let err = encode(&Command::Message(Box::new(m)), &wf, &mut out).expect_err("too large");
    assert!(
        matches!(err, EncodeError::FrameTooLarge { max: 64, .. }),
        "{err:?}"
    );
    assert_eq!(&out[..], b"kept");
}

#[test]
fn an_unknown_type_is_named() {
    let mut buf = frame(&[99, 0, 0]);
    let err = decode(&mut buf, &WireFormat::default()).expect_err("unknown");
    assert_eq!(err, DecodeError::UnknownType(99));
    assert!(err.to_string().contains("99"));
    // A known type where a field wants another: a session id where a connection id belongs.
    let mut connection_info = vec![3, 0, 0, 0, 1, 0, 1, 121];
    connection_info.extend_from_slice(&[0; 16]);
    let err = decode(&mut frame(&connection_info), &WireFormat::default()).expect_err("mistyped");
    assert_eq!(
        err,
        DecodeError::UnexpectedType {
            expected: "ConnectionId",
            found: 121
        }
    );
}

#[test]
fn lengths_past_the_end_are_refused_without_allocating() {
    // A WireFormatInfo whose properties claim 2 GiB.
    let mut payload = vec![1];
    payload.extend_from_slice(b"ActiveMQ");
    payload.extend_from_slice(&12i32.to_be_bytes());
    payload.push(1);
    payload.extend_from_slice(&i32::MAX.to_be_bytes());
    let err = decode(&mut frame(&payload), &WireFormat::default()).expect_err("truncated");
    assert!(matches!(err, DecodeError::Truncated { needed, .. } if needed == i32::MAX as usize));

    // A negative byte-array length.
    let len = payload.len();
    payload[len - 4..].copy_from_slice(&(-5i32).to_be_bytes());
    let err = decode(&mut frame(&payload), &WireFormat::default()).expect_err("negative");
    assert!(
        matches!(err, DecodeError::NegativeLength { len: -5, .. }),
        "{err:?}"
    );

    // An object array claiming 32767 broker ids in a 20-byte frame.
    let mut producer = vec![6, 0, 0, 0, 1, 0, 1, 123, 1, 0, 1, b'c'];
    producer.extend_from_slice(&[0; 16]);
    producer.extend_from_slice(&[0, 1, 0x7F, 0xFF]);
    let err = decode(&mut frame(&producer), &WireFormat::default()).expect_err("truncated");
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
}

#[test]
fn trailing_bytes_in_a_frame_are_an_error() {
    let mut payload = vec![10, 0, 0, 0, 1, 0];
    payload.push(0xAB);
    let err = decode(&mut frame(&payload), &WireFormat::default()).expect_err("trailing");
    assert_eq!(
        err,
        DecodeError::TrailingBytes {
            data_type: 10,
            extra: 1
        }
    );
}

#[test]
fn nesting_is_bounded() {
    // Messages whose data structure is a message whose data structure is ... far too deep.
    let mut m = Message::new(MessageKind::Plain);
    for _ in 0..200 {
        let mut outer = Message::new(MessageKind::Plain);
        outer.data_structure = Some(Box::new(DataStructure::Command(Command::Message(
            Box::new(m),
        ))));
        m = outer;
    }
    let mut buf = BytesMut::new();
    encode(
        &Command::Message(Box::new(m)),
        &WireFormat::default(),
        &mut buf,
    )
    .expect("encodes");
    let err = decode(&mut buf, &WireFormat::default()).expect_err("too deep");
    assert_eq!(err, DecodeError::TooDeep(openwire::wire::MAX_NESTING));

    // Properties nesting maps past the bound.
    let mut props = Vec::new();
    for _ in 0..1000 {
        props.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'k', 11]);
    }
    props.extend_from_slice(&[0, 0, 0, 0]);
    let mut m = Message::new(MessageKind::Plain);
    m.marshalled_properties = Some(Bytes::from(props));
    assert_eq!(
        m.properties(),
        Err(DecodeError::TooDeep(openwire::wire::MAX_NESTING))
    );
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    z.write_all(data).expect("deflates");
    z.finish().expect("finishes")
}

#[test]
fn a_decompression_bomb_is_bounded() {
    // 64 MiB of zeros deflates to about 64 KiB; inflating stops at the limit.
    let zeros = vec![0u8; 64 << 20];
    let bomb = deflate(&zeros);
    assert!(bomb.len() < 128 << 10);
    let mut m = Message::new(MessageKind::Text);
    m.content = Some(Bytes::from(bomb.clone()));
    m.compressed = true;
    assert_eq!(
        m.text(1 << 20),
        Err(DecodeError::InflatedTooLarge { limit: 1 << 20 })
    );
    assert_eq!(
        m.map_body(1 << 20),
        Err(DecodeError::InflatedTooLarge { limit: 1 << 20 })
    );

    // A bytes body declaring more than the limit is refused before inflating anything.
    let mut bytes = Message::new(MessageKind::Bytes);
    let mut content = i32::MAX.to_be_bytes().to_vec();
    content.extend_from_slice(&bomb);
    bytes.content = Some(Bytes::from(content));
    bytes.compressed = true;
    assert_eq!(
        bytes.body(1 << 20),
        Err(DecodeError::InflatedTooLarge { limit: 1 << 20 })
    );

    // ... and one declaring less than it inflates to gives exactly the declared length.
    let mut content = 10i32.to_be_bytes().to_vec();
    content.extend_from_slice(&deflate(b"0123456789abcdef"));
    bytes.content = Some(Bytes::from(content));
    assert_eq!(
        bytes.body(1 << 20).expect("inflates")[..],
        b"0123456789"[..]
    );

    // Garbage is an error, not a panic.
    let mut garbage = Message::new(MessageKind::Text);
    garbage.content = Some(Bytes::from_static(b"not zlib at all"));
    garbage.compressed = true;
    assert!(matches!(
        garbage.text(1 << 20),
        Err(DecodeError::Inflate(_))
    ));
}

#[test]
fn the_cache_is_refused_clearly_but_negotiation_still_works() {
    let wf = WireFormat {
        cache_enabled: true,
        ..WireFormat::default()
    };
    let keep_alive = Command::KeepAliveInfo(KeepAliveInfo::default());
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&keep_alive, &wf, &mut out),
        Err(EncodeError::CacheNotSupported)
    );
    let mut buf = frame(&[10, 0, 0, 0, 0, 0]);
    assert_eq!(decode(&mut buf, &wf), Err(DecodeError::CacheNotSupported));
    // WireFormatInfo itself is always loose and never cached.
    let info = WireFormatInfo::new(12, &WireFormatOptions::broker_default()).expect("info");
    encode(&Command::WireFormatInfo(info.clone()), &wf, &mut out).expect("loose");
    assert_eq!(
        decode(&mut out, &wf),
        Ok(Some(Command::WireFormatInfo(info)))
    );
}

#[test]
fn a_tight_boolean_stream_past_the_frame_is_refused() {
    let tight = WireFormat {
        tight_encoding_enabled: true,
        ..WireFormat::default()
    };
    // A KeepAliveInfo claiming a 200-byte boolean stream in a 7-byte frame.
    let mut buf = frame(&[10, 0xC0, 200, 0, 0, 0, 1]);
    assert!(matches!(
        decode(&mut buf, &tight),
        Err(DecodeError::Truncated { .. })
    ));
    // ... and one whose stream is empty though the command needs a bit.
    let mut buf = frame(&[10, 0, 0, 0, 0, 1]);
    assert!(matches!(
        decode(&mut buf, &tight),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn null_frames_are_skipped_and_frames_split_anywhere_reassemble() {
    let mut stream = BytesMut::new();
    stream.put_slice(&[0, 0, 0, 1, 0]); // Java's marshal(null)
    let commands = [
        Command::KeepAliveInfo(KeepAliveInfo {
            command_id: 1,
            response_required: true,
        }),
        Command::Response(Response {
            correlation_id: 1,
            ..Response::default()
        }),
    ];
    for c in &commands {
        encode(c, &WireFormat::default(), &mut stream).expect("encodes");
    }
    // Feed one byte at a time, as a slow socket would.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in stream.iter() {
        buf.put_u8(*b);
        while let Some(c) = decode(&mut buf, &WireFormat::default()).expect("decodes") {
            got.push(c);
        }
    }
    assert_eq!(got, commands);
}

#[test]
fn strings_longer_than_write_utf_allows_are_refused_on_encode() {
    let info = ConnectionInfo {
        client_id: Some("x".repeat(70_000)),
        ..ConnectionInfo::default()
    };
    let mut out = BytesMut::new();
    let err = encode(
        &Command::ConnectionInfo(info),
        &WireFormat::default(),
        &mut out,
    )
    .expect_err("too long");
    assert!(
        matches!(err, EncodeError::StringTooLong { len: 70_000, .. }),
        "{err:?}"
    );
    assert!(out.is_empty());
}
