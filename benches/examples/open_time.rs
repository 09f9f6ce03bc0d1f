//! How long a file engine takes to open a store holding a given amount of messages, after a
//! clean stop and after `kill -9`:
//! `cargo run --release -p benches --example open_time -- kahadb 1024` (engine: kahadb, amq or
//! leveldb; MiB). `BENCH_MMAP=off` turns off KahaDB's and AMQ's maps of sealed journal files
//! (`mmap_replay`, `mmap_reads`), to compare.
//!
//! A child process fills the store with 1 KiB messages from 16 writers; for the clean case it
//! closes the store; for the crash case it waits for a checkpoint, writes 64 MiB more, and the
//! parent kills it with SIGKILL. The parent then times the open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use benches::add_concurrently;
use store_amq::{AmqConfig, AmqStore};
use store_api::{Destination, PersistenceAdapter};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use store_leveldb::{LevelDbConfig, LevelDbStore};

/// Whether KahaDB and AMQ read sealed journal files through maps (their default);
/// `BENCH_MMAP=off` compares with plain reads.
fn maps() -> bool {
    std::env::var("BENCH_MMAP").map_or(true, |v| v != "off")
}

fn open(engine: &str, dir: &Path) -> (Arc<dyn PersistenceAdapter>, u64) {
    match engine {
        "leveldb" => {
            // Without sync, so the 1 GiB fill does not take minutes; open does not depend on it.
            let mut c = LevelDbConfig::new(dir);
            c.sync = false;
            let s = LevelDbStore::open(c).expect("open leveldb");
            // Journal records replayed; RocksDB does not report what its own log replayed.
            let replayed = s
                .metrics()
                .into_iter()
                .find_map(|(k, v)| (k == "leveldb_records_replayed_at_open").then_some(v))
                .unwrap_or(0);
            (Arc::new(s), replayed)
        }
        "amq" => {
            let mut c = AmqConfig::new(dir);
            c.mmap_replay = maps();
            c.mmap_reads = maps();
            let s = AmqStore::open(c).expect("open amq");
            let replayed = s.stats().records_replayed_at_open;
            (Arc::new(s), replayed)
        }
        _ => {
            let mut c = KahaDbConfig::new(dir);
            c.mmap_replay = maps();
            c.mmap_reads = maps();
            let s = KahaDbStore::open(c).expect("open kahadb");
            let replayed = s.stats().records_replayed_at_open;
            (Arc::new(s), replayed)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn fill(engine: &str, dir: &Path, mib: u64, clean: bool) {
    let rt = runtime();
    rt.block_on(async {
        let (store, _) = open(engine, dir);
        let queue = store
            .queue_store(&Destination::queue("fill"))
            .await
            .expect("queue");
        let mut run = 0;
        let mut add = |n: u64| {
            run += 1;
            add_concurrently(queue.clone(), 16, n, 1024, run)
        };
        let total = mib * 1024;
        let mut done = 0;
        while done < total {
            let n = (total - done).min(50_000);
            add(n).await;
            done += n;
        }
        if !clean {
            // A crash some time after a checkpoint: let one run (KahaDB every 5 s, AMQ every
            // 20 s), then write 64 MiB more that only the journal holds.
            let interval = match engine {
                "amq" => 21,
                "leveldb" => 1,
                _ => 6,
            };
            tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
            add(64 * 1024).await;
        }
        if clean {
            store.close().await.expect("close");
        }
        println!("filled");
        if !clean {
            // Wait to be killed.
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fill") {
        fill(
            &args[2],
            Path::new(&args[3]),
            args[4].parse().expect("MiB"),
            args[5] == "clean",
        );
        return;
    }
    // `RUST_LOG=info` shows the engine's own account of the open (LevelDB times its steps).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let engine = args.get(1).cloned().unwrap_or_else(|| "kahadb".into());
    let mib: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let me = std::env::current_exe().expect("own path");
    for clean in [true, false] {
        let dir = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let mut child = Command::new(&me)
            .args([
                "fill",
                &engine,
                &dir.path().to_string_lossy(),
                &mib.to_string(),
                if clean { "clean" } else { "crash" },
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let filled = lines.any(|l| l.map(|l| l == "filled").unwrap_or(false));
        assert!(filled, "the child did not fill the store");
        let fill_time = started.elapsed();
        if !clean {
            child.kill().expect("kill -9");
        }
        let _ = child.wait();
        let t = Instant::now();
        let (store, replayed) = open(&engine, dir.path());
        let open_time = t.elapsed();
        let rt = runtime();
        let count = rt.block_on(async {
            let q = store
                .queue_store(&Destination::queue("fill"))
                .await
                .expect("queue");
            let c = q.count().await.expect("count");
            store.close().await.expect("close");
            c
        });
        println!(
            "{engine}: {mib} MiB ({count} messages) filled in {:.1} s; open after {}: {:.3} s, {replayed} records replayed{}",
            fill_time.as_secs_f64(),
            if clean { "a clean stop" } else { "kill -9" },
            open_time.as_secs_f64(),
            if engine == "leveldb" {
                ""
            } else if maps() {
                " (maps)"
            } else {
                " (plain reads)"
            }
        );
    }
}
