//! The OpenWire frame decoder: any bytes give commands, "need more" or an error, never a panic
//! and never a frame over the limit; message bodies and properties decode or fail within the
//! inflate limit; a decoded command that re-encodes decodes to itself again.
//!
//! The first input byte picks the version (9-12), whether stack traces are on and whether the
//! encoding is tight; the rest is the byte stream. Seeds: the Java client's vectors (`openwire/tests/vectors`).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use openwire::{Command, WireFormat, decode, encode};

const MAX_FRAME: u64 = 64 * 1024;
const MAX_INFLATED: usize = 256 * 1024;

fn exercise_bodies(command: &Command) {
    let message = match command {
        Command::Message(m) => Some(&**m),
        Command::MessageDispatch(d) => d.message.as_deref(),
        _ => None,
    };
    if let Some(m) = message {
        let _ = m.properties();
        if let Ok(body) = m.body(MAX_INFLATED) {
            assert!(body.len() <= MAX_INFLATED);
        }
        let _ = m.text(MAX_INFLATED);
        let _ = m.map_body(MAX_INFLATED);
        let _ = m.stream_body(MAX_INFLATED);
    }
    if let Command::WireFormatInfo(info) = command {
        let _ = info.options();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let wf = WireFormat {
        version: 9 + i32::from(selector & 3),
        stack_trace_enabled: selector & 4 != 0,
        tight_encoding_enabled: selector & 8 != 0,
        max_frame_size: MAX_FRAME,
        ..WireFormat::default()
    };
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(command)) = decode(&mut buf, &wf) {
        exercise_bodies(&command);
        let mut again = BytesMut::new();
        if encode(&command, &wf, &mut again).is_ok() {
            let back = decode(&mut again, &wf).expect("a re-encoded command decodes");
            assert_eq!(back, Some(command));
            assert!(again.is_empty());
        }
    }
});
