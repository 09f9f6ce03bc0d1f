//! A fixed load for profiling one engine outside criterion:
//! `cargo run --release -p benches --example load -- kahadb 16 5` (kahadb, amq, leveldb, memory)
//! (engine, concurrent writers, seconds). Prints messages/s, messages per fsync and the
//! journal's average fdatasync time.
//! `BENCH_SYNC_NEVER=1` runs KahaDB without fsyncs (the CPU ceiling of the write path) and
//! `BENCH_NO_PREALLOCATE=1` without preallocated journal files.

use std::time::{Duration, Instant};

use benches::{Engine, add_concurrently};
use store_api::Destination;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = match args.get(1).map(String::as_str) {
        Some("memory") => Engine::memory(),
        Some("amq") => Engine::amq(),
        Some("leveldb") => Engine::leveldb(),
        _ => Engine::kahadb(),
    };
    let writers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    // `BENCH_CURRENT_THREAD=1`: a single-threaded runtime, to see what the work-stealing
    // scheduler's wake-ups cost a lone writer.
    let rt = if std::env::var_os("BENCH_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async {
        let queue = engine
            .store
            .queue_store(&Destination::queue("load"))
            .await
            .expect("queue");
        add_concurrently(queue.clone(), writers, 1000, 1024, 0).await;
        let before = engine.fsyncs();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (mut n, mut elapsed, mut run) = (0u64, Duration::ZERO, 1u64);
        while Instant::now() < deadline {
            elapsed += add_concurrently(queue.clone(), writers, 10_000, 1024, run).await;
            n += 10_000;
            run += 1;
        }
        let fsyncs = engine.fsyncs().zip(before).map(|(a, b)| a - b);
        let metric = |name: &str| {
            engine
                .store
                .metrics()
                .into_iter()
                .find_map(|(k, v)| (k == name).then_some(v))
        };
        println!(
            "{}: {writers} writers, {:.0} messages/s, {}",
            engine.name,
            n as f64 / elapsed.as_secs_f64(),
            fsyncs.map_or("no fsyncs".into(), |f| format!(
                "{:.1} messages per fsync",
                n as f64 / f.max(1) as f64
            ))
        );
        if let (Some(micros), Some(count)) = (
            metric("journal_fsync_micros").or(metric("leveldb_journal_fsync_micros")),
            metric("journal_fsyncs").or(metric("leveldb_journal_fsyncs")),
        ) {
            println!(
                "  average fdatasync {:.0} µs over {count}",
                micros as f64 / count.max(1) as f64
            );
        }
        engine.store.close().await.expect("close");
    });
}
