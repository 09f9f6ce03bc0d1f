//! Byte-exact vectors from the real Java client: every file under `tests/vectors/v<N>/` was
//! marshalled by activemq-client 5.17's own `OpenWireFormat` (loose, cache off) from the
//! commands `tests/java/Capture.java` builds (it says how to regenerate them). Each vector must
//! decode to exactly the fields Capture.java set, and re-encode to the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use openwire::*;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn wire_format(version: i32, name: &str) -> WireFormat {
    WireFormat {
        version,
        stack_trace_enabled: name.ends_with(".st"),
        ..WireFormat::default()
    }
}

/// Every vector of every version: `(version, name, bytes)`.
fn all_vectors() -> Vec<(i32, String, Vec<u8>)> {
    let mut out = Vec::new();
    for version in 9..=12 {
        let dir = vectors_dir().join(format!("v{version}"));
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".bin"))
                .expect("a .bin file")
                .to_owned();
            out.push((version, name, fs::read(&path).expect("readable vector")));
        }
    }
    out
}

fn decode_vector(version: i32, name: &str, bytes: &[u8]) -> Command {
    let wf = wire_format(version, name);
    let mut buf = BytesMut::from(bytes);
    let command = decode(&mut buf, &wf)
        .unwrap_or_else(|e| panic!("v{version} {name}: {e}"))
        .unwrap_or_else(|| panic!("v{version} {name}: incomplete"));
    assert!(buf.is_empty(), "v{version} {name}: bytes left over");
    command
}

#[test]
fn every_vector_decodes_and_re_encodes_byte_for_byte() {
    let vectors = all_vectors();
    assert!(vectors.len() >= 4 * 60, "only {} vectors", vectors.len());
    for (version, name, bytes) in vectors {
        let command = decode_vector(version, &name, &bytes);
        let mut out = BytesMut::new();
        encode(&command, &wire_format(version, &name), &mut out)
            .unwrap_or_else(|e| panic!("v{version} {name}: {e}"));
        assert_eq!(out[..], bytes[..], "v{version} {name}: re-encoded bytes differ");
    }
}
