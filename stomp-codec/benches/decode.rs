//! The cost per byte of decoding a SEND whose body has no `content-length` (it ends at the
//! first NUL), fed in 8 KiB reads as a socket delivers it: 1 KiB and 16 MiB. A decoder that
//! rescans the buffer from the start on every read costs quadratic time in the body's size,
//! which shows here as a per-byte cost that grows with the size; the decoder keeps its place
//! between reads, so the two figures should be about the same.
//!
//! `cargo bench -p stomp-codec --bench decode` (criterion reports throughput in bytes/s).

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stomp_codec::{Decoder, Limits, Version};

const READ: usize = 8 * 1024;

fn frame(body: usize) -> Vec<u8> {
    let mut f = b"SEND\ndestination:/queue/bench\npersistent:true\n\n".to_vec();
    f.extend(std::iter::repeat_n(b'x', body));
    f.push(0);
    f
}

/// Decodes `wire` handed over `READ` bytes at a time; the one frame it holds.
fn decode_in_reads(wire: &[u8]) -> usize {
    let mut d = Decoder::new(Limits {
        max_frame_bytes: 32 << 20,
        max_headers: 1000,
        max_header_bytes: 10 * 1024,
    });
    d.version = Version::V1_2;
    let mut buf = BytesMut::with_capacity(wire.len());
    for chunk in wire.chunks(READ) {
        buf.extend_from_slice(chunk);
        if let Ok(Some(f)) = d.decode(&mut buf) {
            return f.body.len();
        }
    }
    0
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stomp_decode_without_content_length");
    for (name, size) in [("1KiB", 1024usize), ("16MiB", 16 << 20)] {
        let wire = frame(size);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        if size > 1 << 20 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::from_parameter(name), &wire, |b, wire| {
            b.iter(|| assert_eq!(decode_in_reads(wire), size));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
