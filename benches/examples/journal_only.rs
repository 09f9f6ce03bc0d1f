//! The journal alone, one synchronous appender, sync always: how close one writer gets to the
//! disk's fdatasync rate without the store or the async runtime on top.
//! `cargo run --release -p benches --example journal_only -- 5`

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_journal::fs::RealFs;
use store_journal::{Journal, JournalConfig};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(
        JournalConfig::new(dir.path(), "db-", ".log"),
        Arc::new(RealFs),
    )
    .expect("open");
    let record = vec![0x5au8; 1100];
    for _ in 0..100 {
        journal
            .append(&[&record], false)
            .expect("append")
            .completion
            .wait()
            .expect("sync");
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (start, mut n) = (Instant::now(), 0u64);
    while Instant::now() < deadline {
        journal
            .append(&[&record], false)
            .expect("append")
            .completion
            .wait()
            .expect("sync");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "journal, 1 synchronous appender: {rate:.0} appends/s, {:.0} us each",
        1e6 / rate
    );
}
