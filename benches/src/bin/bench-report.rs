//! `cargo run --release -p benches --bin bench-report`: every available engine on a fixed, short
//! matrix of workloads (under 10 minutes on a 2-core machine), written as a Markdown table and
//! an SVG chart under `target/bench-report/` (or `--out`).
//!
//! Each cell is one timed run of a fixed number of operations; each operation is timed on its
//! own for the latency percentiles. Engines whose database URL (`MYSQL_URL`, `POSTGRES_URL`)
//! is not set are listed as skipped. Compare ratios within one report only: the figures move
//! with whatever else the machine is doing.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use benches::workloads::{Cell, WORKLOADS, Workload, run};
use benches::{DiskCeiling, Engine};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use store_api::{Destination, PersistenceAdapter, SyncPolicy};

#[derive(Parser)]
#[command(about = "Runs the engine comparison matrix and writes report.md and report.svg")]
struct Args {
    /// Where report.md and report.svg go.
    #[arg(long, default_value = "target/bench-report")]
    out: PathBuf,
    /// Size of the store whose open time is measured (file engines), in MiB.
    #[arg(long, default_value_t = 1024)]
    open_mib: u64,
    /// Engines to run (comma-separated names); all available by default.
    #[arg(long)]
    engines: Option<String>,
    /// Measure even when the engines' directory is on tmpfs (memory: every fsync is free, so
    /// the figures say nothing of a disk); the report's header then says so.
    #[arg(long)]
    allow_tmpfs: bool,
}

/// The environment variables that change how an engine is set up for a measurement; the
/// report names each one that is set, so no figure is read as the default configuration's.
const OVERRIDES: &[(&str, &str)] = &[
    ("BENCH_SYNC_NEVER", "engines do not fsync"),
    ("BENCH_NO_PREALLOCATE", "journal files are not preallocated"),
];

/// The file system type (`ext4`, `tmpfs`, ...) of the mount holding `path`, from
/// `/proc/self/mountinfo`: the longest mount point that is a prefix of the path.
fn filesystem_of(path: &std::path::Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            let rest = line.split(" - ").nth(1)?;
            let fstype = rest.split(' ').next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fstype.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fstype)| fstype)
}

type Make = fn(&tokio::runtime::Runtime) -> Option<Engine>;

fn engines() -> Vec<(&'static str, Make)> {
    vec![
        ("memory", |_| Some(Engine::memory())),
        ("kahadb", |_| Some(Engine::kahadb())),
        ("amq", |_| Some(Engine::amq())),
        ("leveldb", |_| Some(Engine::leveldb())),
        ("jdbc-sqlite", Engine::jdbc_sqlite),
        ("jdbc-mariadb", Engine::jdbc_mysql),
        ("jdbc-postgres", Engine::jdbc_postgres),
        ("journaled-sqlite", Engine::journaled_sqlite),
        ("journaled-mariadb", Engine::journaled_mysql),
    ]
}

/// Time to open a file engine holding `mib` MiB of 1 KiB messages, after a clean close.
fn open_time(name: &str, mib: u64, rt: &tokio::runtime::Runtime) -> Result<(Duration, u64)> {
    let engine = match name {
        "kahadb" => Engine::kahadb_sync(SyncPolicy::Never),
        "leveldb" => Engine::leveldb_with(|c| c.sync = false),
        _ => Engine::amq_sync(SyncPolicy::Never),
    };
    let dir = engine
        .dir()
        .context("a file engine has a directory")?
        .to_path_buf();
    let q = rt.block_on(engine.store.queue_store(&Destination::queue("fill")))?;
    let total = mib * 1024;
    let mut done = 0;
    let mut round = 0;
    while done < total {
        let n = (total - done).min(50_000);
        round += 1;
        rt.block_on(benches::add_concurrently(q.clone(), 16, n, 1024, round));
        done += n;
    }
    rt.block_on(engine.store.close())?;
    let start = Instant::now();
    let store: Arc<dyn PersistenceAdapter> = match name {
        "kahadb" => Arc::new(store_kahadb::KahaDbStore::open(
            store_kahadb::KahaDbConfig::new(&dir),
        )?),
        "leveldb" => Arc::new(store_leveldb::LevelDbStore::open(
            store_leveldb::LevelDbConfig::new(&dir),
        )?),
        _ => Arc::new(store_amq::AmqStore::open(store_amq::AmqConfig::new(&dir))?),
    };
    let count = rt.block_on(async {
        let q = store.queue_store(&Destination::queue("fill")).await?;
        q.count().await
    })?;
    let took = start.elapsed();
    rt.block_on(store.close())?;
    drop(engine);
    Ok((took, count))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("MemTotal")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} RAM, Linux {}", kernel.trim())
}

fn chart(path: &PathBuf, names: &[&str], rows: &[(&str, Vec<Option<f64>>)]) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(1.0f64, |a, b| a.max(*b));
    let groups = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "messages/s by workload (log scale; higher is better)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // Headroom above the tallest bar keeps the legend clear of the bars.
        .build_cartesian_2d(-0.5f64..groups as f64 - 0.5, (1f64..max * 30.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 4)
        .x_label_formatter(&|x| {
            // Group g is centred on x = g; only whole positions get its name.
            if (x - x.round()).abs() > 1e-6 || *x < 0.0 {
                return String::new();
            }
            rows.get(x.round() as usize)
                .map(|r| r.0.to_string())
                .unwrap_or_default()
        })
        .x_label_style(("sans-serif", 12).into_font())
        .y_desc("messages/s")
        .draw()?;
    let n = names.len().max(1) as f64;
    for (e, name) in names.iter().enumerate() {
        let color = Palette99::pick(e).to_rgba();
        let bars: Vec<Rectangle<(f64, f64)>> = rows
            .iter()
            .enumerate()
            .filter_map(|(g, (_, v))| {
                v.get(e).copied().flatten().map(|rate| {
                    let x0 = g as f64 - 0.4 + 0.8 * e as f64 / n;
                    let x1 = x0 + 0.8 / n;
                    Rectangle::new([(x0, 1.0), (x1, rate.max(1.0))], color.filled())
                })
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// How many write+fsyncs one disk ceiling measurement takes.
const DISK_SAMPLES: u64 = 2000;

/// One synchronous writer's write+`fdatasync` rate on a preallocated file, per second.
fn disk_rate(disk: &mut DiskCeiling) -> Result<f64> {
    let took = disk
        .write_sync(DISK_SAMPLES, 1024)
        .context("measuring the disk ceiling")?;
    Ok(DISK_SAMPLES as f64 / took.as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The engines' directories are temporary directories: on tmpfs an fsync costs nothing and
    // the report would compare engines on a disk that is not there.
    let tmp = std::env::temp_dir();
    let fstype = filesystem_of(&tmp).unwrap_or_else(|| "unknown".into());
    if fstype == "tmpfs" && !args.allow_tmpfs {
        anyhow::bail!(
            "{} is on tmpfs, where an fsync is free: point TMPDIR at a real disk, or pass --allow-tmpfs to measure anyway (the report will say so)",
            tmp.display()
        );
    }
    let overrides: Vec<String> = OVERRIDES
        .iter()
        .filter(|(var, _)| std::env::var_os(var).is_some())
        .map(|(var, what)| format!("`{var}` ({what})"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pick = |n: &str| {
        args.engines
            .as_deref()
            .is_none_or(|p| p.split(',').any(|x| x.trim() == n))
    };
    let all: Vec<(&str, Make)> = engines().into_iter().filter(|(n, _)| pick(n)).collect();
    // The disk's own rate, before and after the engines: a sync-`always` cell reads as a
    // fraction of it, and a difference between the two shows the disk drifted during the run.
    let mut disk = DiskCeiling::new().context("preparing the disk ceiling file")?;
    let ceiling_before = disk_rate(&mut disk)?;
    let mut skipped = Vec::new();
    let mut names = Vec::new();
    let mut table: Vec<Vec<Option<Cell>>> = vec![Vec::new(); WORKLOADS.len()];
    let bar = ProgressBar::new((all.len() * WORKLOADS.len()) as u64 + 3);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (round, (name, make)) in all.iter().enumerate() {
        let periodic_engine = match *name {
            "kahadb" => Some(Engine::kahadb_sync(SyncPolicy::Periodic(
                Duration::from_secs(1),
            ))),
            "amq" => Some(Engine::amq_sync(SyncPolicy::Periodic(Duration::from_secs(
                1,
            )))),
            _ => None,
        };
        let Some(engine) = make(&rt) else {
            skipped.push(*name);
            bar.inc(WORKLOADS.len() as u64);
            continue;
        };
        names.push(*name);
        for (w, (label, workload)) in WORKLOADS.iter().enumerate() {
            bar.set_message(format!("{name}: {label}"));
            let cell = match workload {
                Workload::Periodic { .. } => match &periodic_engine {
                    Some(e) => Some(rt.block_on(run(e, *workload, round as u64))?),
                    None => None,
                },
                _ => Some(rt.block_on(run(&engine, *workload, round as u64))?),
            };
            table[w].push(cell);
            bar.inc(1);
        }
        if let Some(e) = periodic_engine {
            rt.block_on(e.store.close())?;
        }
        rt.block_on(engine.store.close())?;
        engine.cleanup(&rt);
    }
    let ceiling_after = disk_rate(&mut disk)?;
    drop(disk);
    let mut opens = Vec::new();
    for name in ["kahadb", "amq", "leveldb"] {
        if pick(name) && args.open_mib > 0 {
            bar.set_message(format!("{name}: open a {} MiB store", args.open_mib));
            opens.push((name, open_time(name, args.open_mib, &rt)?));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut md = String::new();
    writeln!(md, "# Engine comparison")?;
    writeln!(md)?;
    writeln!(md, "Machine: {}.", machine())?;
    writeln!(
        md,
        "Command: `cargo run --release -p benches --bin bench-report`. Sync `always` unless the row says otherwise; 1 KiB bodies unless it names a size."
    )?;
    writeln!(
        md,
        "Disk ceiling for one synchronous writer (1 KiB write + `fdatasync` at growing offsets of a preallocated file, {DISK_SAMPLES} in a row): {ceiling_before:.0}/s before the engines ran, {ceiling_after:.0}/s after. A sync-`always` single-writer rate is best read as a fraction of these."
    )?;
    writeln!(
        md,
        "Engines' directories: {} ({fstype}){}.",
        tmp.display(),
        if fstype == "tmpfs" {
            ": tmpfs, memory, so every fsync is free and sync rates are not a disk's"
        } else {
            ""
        }
    )?;
    if overrides.is_empty() {
        writeln!(md, "Environment overrides: none.")?;
    } else {
        writeln!(
            md,
            "Environment overrides in effect: {}. These figures are not the default configuration's.",
            overrides.join(", ")
        )?;
    }
    if !skipped.is_empty() {
        writeln!(
            md,
            "Skipped (database URL not set): {}.",
            skipped.join(", ")
        )?;
    }
    writeln!(md)?;
    writeln!(md, "## Messages per second")?;
    writeln!(md)?;
    writeln!(md, "| workload | {} |", names.join(" | "))?;
    writeln!(md, "|---|{}", "---|".repeat(names.len()))?;
    let mut rows = Vec::new();
    for (w, (label, _)) in WORKLOADS.iter().enumerate() {
        let rates: Vec<Option<f64>> = table[w]
            .iter()
            .map(|c| c.as_ref().map(Cell::rate))
            .collect();
        let cells: Vec<String> = rates
            .iter()
            .map(|r| r.map_or("—".into(), |r| format!("{r:.0}")))
            .collect();
        writeln!(md, "| {label} | {} |", cells.join(" | "))?;
        rows.push((*label, rates));
    }
    writeln!(md)?;
    writeln!(md, "## Details")?;
    writeln!(md)?;
    writeln!(
        md,
        "Per cell: msgs/s, MB/s of payload, p50 and p99 latency of one operation (an add; an add and its ack; a whole transaction; an add and its 4 acks), fsyncs per message (for JDBC: database commits per message; the server's own log flushes are not visible), and bytes written to local disk per message (journal bytes; SQLite file growth; n/a for a database server)."
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "| workload | engine | msgs/s | MB/s | p50 | p99 | fsyncs/msg | disk B/msg |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    for (w, (label, _)) in WORKLOADS.iter().enumerate() {
        for (e, cell) in table[w].iter_mut().enumerate() {
            let Some(c) = cell else { continue };
            let p50 = c.percentile(0.5);
            let p99 = c.percentile(0.99);
            let f = c.fsyncs.map_or("n/a".into(), |f| {
                format!("{:.2}", f as f64 / c.messages.max(1) as f64)
            });
            let d = c.disk.map_or("n/a".into(), |d| {
                format!("{:.0}", d as f64 / c.messages.max(1) as f64)
            });
            writeln!(
                md,
                "| {label} | {} | {:.0} | {:.1} | {:.0} µs | {:.0} µs | {f} | {d} |",
                names[e],
                c.rate(),
                c.mbps(),
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            )?;
        }
    }
    if !opens.is_empty() {
        writeln!(md)?;
        writeln!(md, "## Open time")?;
        writeln!(md)?;
        writeln!(
            md,
            "A store holding {} MiB of 1 KiB messages (filled by 16 writers, sync `never`), closed cleanly, then opened and counted. The JDBC engines replay nothing at open (a connection and one `MAX(ID)` query); the journaled engine replays at most one checkpoint threshold (32 MiB) of journal.",
            args.open_mib
        )?;
        writeln!(md)?;
        writeln!(md, "| engine | messages | open |")?;
        writeln!(md, "|---|---|---|")?;
        for (name, (took, count)) in &opens {
            writeln!(md, "| {name} | {count} | {:.3} s |", took.as_secs_f64())?;
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let md_path = args.out.join("report.md");
    std::fs::write(&md_path, &md)?;
    let svg_path = args.out.join("report.svg");
    chart(&svg_path, &names, &rows)?;
    println!("{md}");
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}
