//! Store throughput, engine against engine, same workloads, one run: `cargo bench -p benches`.
//!
//! Every file engine runs at sync policy `always` (an Ok means on disk); the JDBC engines commit
//! each batch durably (MariaDB's default `innodb_flush_log_at_trx_commit=1`, PostgreSQL's
//! `synchronous_commit=on`, SQLite `synchronous=FULL`). Besides criterion's timings, each group
//! prints messages per fsync (per database commit for JDBC), so a fast result that stopped
//! syncing shows. The 1-writer group also times the disk itself (`disk`: 1 KiB write +
//! fdatasync on a preallocated file), so an engine's rate can be read as a fraction of what the
//! disk allows in the same run.

use std::sync::Arc;
use std::time::Duration;

use benches::{DiskCeiling, Engine, add_concurrently, add_then_ack};
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

type MakeEngine = fn(&tokio::runtime::Runtime) -> Option<Engine>;

/// Every engine, file engines first; the server-backed JDBC engines only when their URL is set
/// (`MYSQL_URL`, `POSTGRES_URL`). `BENCH_ENGINES=kahadb,jdbc-sqlite` picks some.
fn engines() -> Vec<(&'static str, MakeEngine)> {
    let all: Vec<(&'static str, MakeEngine)> = vec![
        ("memory", |_| Some(Engine::memory())),
        ("kahadb", |_| Some(Engine::kahadb())),
        ("amq", |_| Some(Engine::amq())),
        ("leveldb", |_| Some(Engine::leveldb())),
        ("jdbc-sqlite", Engine::jdbc_sqlite),
        ("jdbc-mariadb", Engine::jdbc_mysql),
        ("jdbc-postgres", Engine::jdbc_postgres),
        ("journaled-sqlite", Engine::journaled_sqlite),
        ("journaled-mariadb", Engine::journaled_mysql),
    ];
    all.into_iter().filter(|(n, _)| picked(n)).collect()
}

/// Whether `BENCH_ENGINES` (a comma-separated list; unset means all) names `name`. `disk` is
/// the 1-writer group's ceiling: 1 KiB write + fdatasync on a preallocated file.
fn picked(name: &str) -> bool {
    match std::env::var("BENCH_ENGINES") {
        Ok(pick) => pick.split(',').any(|p| p.trim() == name),
        Err(_) => true,
    }
}

fn report_fsyncs(group: &str, engine: &Engine, messages: u64, before: Option<u64>) {
    if messages == 0 {
        return; // the group was filtered out on the command line
    }
    if let (Some(before), Some(after)) = (before, engine.fsyncs()) {
        let fsyncs = after - before;
        eprintln!(
            "{group}/{}: {messages} messages, {fsyncs} fsyncs, {:.1} messages per fsync or commit",
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
    if writers == 1 && picked("disk") {
        // The ceiling the engines are held to: what one synchronous writer gets from the disk
        // itself, in the same run.
        let mut disk = DiskCeiling::new().expect("a preallocated file for the disk ceiling");
        group.bench_function("disk", |b| {
            b.iter_custom(|iters| disk.write_sync(iters, SIZE).expect("write and fdatasync"))
        });
    }
    for (_, make) in engines() {
        let Some(engine) = make(&rt) else { continue };
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
        engine.cleanup(&rt);
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
    for (_, make) in engines() {
        let Some(engine) = make(&rt) else { continue };
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
        engine.cleanup(&rt);
    }
    group.finish();
}

/// The rest of the report's matrix, each workload on every engine: transactions of 100 adds, a
/// topic fanned out to 4 durable subscriptions with acks, 10 KiB and 100 KiB bodies, and
/// periodic sync (file engines only).
fn matrix(c: &mut Criterion) {
    use benches::workloads::{WORKLOADS, Workload, run};
    let rt = runtime();
    for (label, workload) in WORKLOADS.iter().skip(3) {
        let group_name = label.replace(", ", "_").replace(' ', "_");
        let mut group = c.benchmark_group(group_name.as_str());
        let per_iter = match workload {
            Workload::Tx100 { .. } => 100,
            _ => 1,
        };
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::Elements(per_iter));
        let makers: Vec<(&'static str, MakeEngine)> = match workload {
            Workload::Periodic { .. } => vec![
                ("kahadb", |_| {
                    Some(Engine::kahadb_sync(store_api::SyncPolicy::Periodic(
                        Duration::from_secs(1),
                    )))
                }),
                ("amq", |_| {
                    Some(Engine::amq_sync(store_api::SyncPolicy::Periodic(
                        Duration::from_secs(1),
                    )))
                }),
            ],
            _ => engines(),
        };
        for (_, make) in makers {
            let Some(engine) = make(&rt) else { continue };
            let mut round = 0u64;
            let (mut total, before) = (0u64, engine.fsyncs());
            group.bench_function(engine.name, |b| {
                b.iter_custom(|iters| {
                    round += 1;
                    total += iters * per_iter;
                    rt.block_on(run(&engine, workload.with_count(iters), round))
                        .expect("workload")
                        .elapsed
                })
            });
            report_fsyncs(&group_name, &engine, total, before);
            rt.block_on(engine.store.close()).expect("close");
            engine.cleanup(&rt);
        }
        group.finish();
    }
}

criterion_group!(benches, one_writer, sixteen_writers, add_ack, matrix);
criterion_main!(benches);
