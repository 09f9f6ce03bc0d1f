//! Reads of sealed journal files with a cold page cache: the journal scan alone, a KahaDB index
//! rebuild (or an AMQ full replay) and a drain of old message bodies, each timed after dropping
//! the page cache:
//! `cargo run --release -p benches --example cold_read -- kahadb 1024 3` (engine: kahadb, amq
//! or leveldb; MiB stored; rounds; a fourth argument `warm` keeps the page cache throughout).
//!
//! The store is filled once with 1 KiB messages from 16 writers (sync `always`, as the broker
//! runs) and closed. Each round then, for each read mode in turn (their order alternating
//! between rounds, so drift in the disk does not favour one):
//! - `scan`: opens the journal alone and replays every record (the read path by itself);
//! - `rebuild`: deletes the index (KahaDB's `db.data` and `db.redo`; AMQ's snapshots and
//!   control file) and opens the store, which replays the whole journal into a new index
//!   (LevelDB: its RocksDB is the index, nothing is deleted, and this is a plain open);
//! - `drain`: drops the cache again and reads every message back through the queue's cursor
//!   (`recover_next` of 1,000), as a consumer far behind the head reads old bodies;
//! - `scan warm`: the scan again with the journal in the page cache (the CPU side of reading).
//!
//! Modes: `read` (`pread` into buffers) and `map` (read-only maps of sealed files for replay
//! and for body reads: `mmap_replay` and `mmap_reads`). After each drain it prints the resident
//! memory, since mapped pages count in it while mapped.
//!
//! The cache is dropped by writing 3 to `/proc/sys/vm/drop_caches` after `sync` (root only);
//! where that is refused the example says so and the figures are for a warm cache.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::add_concurrently;
use store_amq::{AmqConfig, AmqStore};
use store_api::{Destination, PersistenceAdapter};
use store_journal::fs::RealFs;
use store_journal::{Journal, JournalConfig, Location};
use store_kahadb::{KahaDbConfig, KahaDbStore};
use store_leveldb::{LevelDbConfig, LevelDbStore};

/// How journal files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Positioned reads (`pread`) into buffers.
    Read,
    /// Read-only maps of sealed files, for replay and for reads of bodies.
    Map,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Map => "map",
        }
    }
}

const MODES: [Mode; 2] = [Mode::Read, Mode::Map];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(engine: &str, dir: &Path, mode: Mode) -> Arc<dyn PersistenceAdapter> {
    let map = mode == Mode::Map;
    match engine {
        "amq" => {
            let mut c = AmqConfig::new(dir);
            c.mmap_replay = map;
            c.mmap_reads = map;
            Arc::new(AmqStore::open(c).expect("open amq"))
        }
        // Its journal's replay at open always maps (a crash's replay); bodies are the reads.
        "leveldb" => {
            let mut c = LevelDbConfig::new(dir);
            c.mmap_reads = map;
            Arc::new(LevelDbStore::open(c).expect("open leveldb"))
        }
        _ => {
            let mut c = KahaDbConfig::new(dir);
            c.mmap_replay = map;
            c.mmap_reads = map;
            Arc::new(KahaDbStore::open(c).expect("open kahadb"))
        }
    }
}

fn journal_config(engine: &str, dir: &Path, mode: Mode) -> JournalConfig {
    let mut c = match engine {
        "amq" => JournalConfig::new(dir.join("journal"), "data-", ""),
        "leveldb" => JournalConfig::new(dir.join("journal"), "log-", ".dat"),
        _ => JournalConfig::new(dir, "db-", ".log"),
    };
    c.map_replay = mode == Mode::Map;
    c.map_reads = mode == Mode::Map;
    c
}

/// Removes what the engine keeps besides its journal, so that opening rebuilds it all.
fn delete_index(engine: &str, dir: &Path) {
    let victims: Vec<std::path::PathBuf> = match engine {
        "amq" => {
            let mut v = vec![dir.join("journal").join("data-control")];
            if let Ok(entries) = std::fs::read_dir(dir.join("kr-store")) {
                v.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
            v
        }
        "leveldb" => Vec::new(),
        _ => vec![dir.join("db.data"), dir.join("db.redo")],
    };
    for p in victims {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", p.display()),
        }
    }
}

/// Drops the page cache; false where the machine does not allow it.
fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn fill(engine: &str, dir: &Path, mib: u64) -> Duration {
    let rt = runtime();
    rt.block_on(async {
        let started = Instant::now();
        let store = open(engine, dir, Mode::Read);
        let queue = store
            .queue_store(&Destination::queue("cold"))
            .await
            .expect("queue");
        let total = mib * 1024;
        let (mut done, mut run) = (0, 0);
        while done < total {
            let n = (total - done).min(50_000);
            run += 1;
            add_concurrently(queue.clone(), 16, n, 1024, run).await;
            done += n;
        }
        store.close().await.expect("close");
        started.elapsed()
    })
}

/// Replays the whole journal on its own; returns (records, payload bytes, time).
fn scan(engine: &str, dir: &Path, mode: Mode) -> (u64, u64, Duration) {
    let t = Instant::now();
    let journal =
        Journal::open(journal_config(engine, dir, mode), Arc::new(RealFs)).expect("open journal");
    let (mut n, mut bytes) = (0u64, 0u64);
    for r in journal.replay(Location::default()) {
        let (_, data) = r.expect("replay");
        n += 1;
        bytes += data.len() as u64;
    }
    let elapsed = t.elapsed();
    journal.close().expect("close journal");
    (n, bytes, elapsed)
}

/// Deletes the index and opens the store (a full rebuild), then drains the queue with a cold
/// cache; returns (rebuild time, messages drained, drain time, resident memory after it).
fn rebuild_and_drain(
    engine: &str,
    dir: &Path,
    mode: Mode,
    cold: bool,
) -> (Duration, u64, Duration, String) {
    delete_index(engine, dir);
    if cold {
        drop_caches();
    }
    let t = Instant::now();
    let store = open(engine, dir, mode);
    let rebuild = t.elapsed();
    let rt = runtime();
    let (drained, drain, rss) = rt.block_on(async {
        let queue = store
            .queue_store(&Destination::queue("cold"))
            .await
            .expect("queue");
        if cold {
            drop_caches();
        }
        let t = Instant::now();
        let mut n = 0u64;
        // Bounded: the queue holds mib * 1024 messages, read 1,000 at a time.
        for _ in 0..100_000_000u64 {
            let batch = queue.recover_next(1000).await.expect("recover_next");
            if batch.is_empty() {
                break;
            }
            n += batch.len() as u64;
        }
        let drain = t.elapsed();
        // Mapped file pages count in the process's resident set while mapped: what the maps
        // kept for reads cost in the figure operators watch.
        let rss = resident();
        store.close().await.expect("close");
        (n, drain, rss)
    });
    (rebuild, drained, drain, rss)
}

/// The process's resident memory, all of it and the file-backed part, from /proc.
fn resident() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| "?".to_string(), |v| v.trim().to_string())
    };
    format!("{} (file-backed {})", field("VmRSS:"), field("RssFile:"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = args.get(1).cloned().unwrap_or_else(|| "kahadb".into());
    let mib: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    // `warm` as a fourth argument keeps the page cache: the CPU side of each phase alone.
    let keep_cache = args.get(4).is_some_and(|a| a == "warm");
    let dir = tempfile::tempdir().expect("temp dir");
    let fill_time = fill(&engine, dir.path(), mib);
    let cold = !keep_cache && drop_caches();
    println!(
        "{engine}: {mib} MiB of 1 KiB messages filled in {:.1} s; page cache {}",
        fill_time.as_secs_f64(),
        if cold {
            "dropped before each cold phase"
        } else if keep_cache {
            "kept (warm): every figure is warm"
        } else {
            "NOT dropped (not allowed here): every figure is warm"
        }
    );
    for round in 0..rounds {
        let mut order = MODES.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        let t = if cold { "cold" } else { "warm" };
        for mode in order {
            if cold {
                drop_caches();
            }
            let (records, bytes, scan_cold) = scan(&engine, dir.path(), mode);
            let (_, _, scan_warm) = scan(&engine, dir.path(), mode);
            let (rebuild, drained, drain, rss) = rebuild_and_drain(&engine, dir.path(), mode, cold);
            let mib_s = |d: Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
            println!(
                "round {round} {:<4}: scan {records} records ({:.0} MiB) {t} {:.3} s ({:.0} MiB/s), warm {:.3} s; \
                 rebuild {t} {:.3} s; drain {drained} messages {t} {:.3} s ({:.0} msg/s), then resident {rss}",
                mode.name(),
                bytes as f64 / (1 << 20) as f64,
                scan_cold.as_secs_f64(),
                mib_s(scan_cold),
                scan_warm.as_secs_f64(),
                rebuild.as_secs_f64(),
                drain.as_secs_f64(),
                drained as f64 / drain.as_secs_f64(),
            );
        }
    }
}
