//! Store throughput, engine against engine, same workloads, one run: `cargo bench -p benches`.
//!
//! Every file engine runs at sync policy `always` (an Ok means on disk). Besides criterion's
//! timings, each group prints messages per fsync, so a fast result that stopped syncing shows.

use std::sync::Arc;
use std::time::Duration;

use benches::{Engine, add_concurrently, add_then_ack};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use store_api::Destination;

const SIZE: usize = 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn engines() -> Vec<fn() -> Engine> {
    vec![Engine::memory, Engine::kahadb, Engine::amq]
}

fn report_fsyncs(group: &str, engine: &Engine, messages: u64, before: Option<u64>) {
    if let (Some(before), Some(after)) = (before, engine.fsyncs()) {
        let fsyncs = after - before;
        eprintln!(
            "{group}/{}: {messages} messages, {fsyncs} fsyncs, {:.1} messages per fsync",
            engine.name,
            messages as f64 / fsyncs.max(1) as f64
        );
    }
}

fn writers(c: &mut Criterion, name: &str, writers: usize) {
    let rt = runtime();
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    for make in engines() {
        let engine = make();
        let queue = rt
            .block_on(engine.store.queue_store(&Destination::queue("bench")))
            .expect("queue");
        // Warm up: the first journal file is created and preallocated outside the timing.
        rt.block_on(add_concurrently(
            queue.clone(),
            writers,
            200,
            SIZE,
            u64::MAX,
        ));
        let mut run = 0u64;
        let (mut total, before) = (0u64, engine.fsyncs());
        group.bench_function(engine.name, |b| {
            b.iter_custom(|iters| {
                run += 1;
                total += iters;
                rt.block_on(add_concurrently(queue.clone(), writers, iters, SIZE, run))
            })
        });
        report_fsyncs(name, &engine, total, before);
        let store = engine.store.clone();
        rt.block_on(store.close()).expect("close");
    }
    group.finish();
}

fn one_writer(c: &mut Criterion) {
    writers(c, "add_1KiB_1_writer", 1);
}

fn sixteen_writers(c: &mut Criterion) {
    writers(c, "add_1KiB_16_writers", 16);
}

fn add_ack(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("add_then_ack_1KiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    for make in engines() {
        let engine = make();
        let queue = rt
            .block_on(engine.store.queue_store(&Destination::queue("bench")))
            .expect("queue");
        rt.block_on(add_then_ack(queue.clone(), 100, SIZE, u64::MAX));
        let mut run = 0u64;
        let (mut total, before) = (0u64, engine.fsyncs());
        group.bench_function(engine.name, |b| {
            b.iter_custom(|iters| {
                run += 1;
                total += iters;
                rt.block_on(add_then_ack(Arc::clone(&queue), iters, SIZE, run))
            })
        });
        report_fsyncs("add_then_ack_1KiB", &engine, total, before);
        rt.block_on(engine.store.close()).expect("close");
    }
    group.finish();
}

criterion_group!(benches, one_writer, sixteen_writers, add_ack);
criterion_main!(benches);
