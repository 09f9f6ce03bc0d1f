//! Power loss through the file-system seam, as KahaDB's `tests/crash.rs` runs it (the harness is
//! `store_kahadb::testkit`): a scripted workload is cut at every fsync in turn (the fsync fails,
//! then the power goes: unsynced bytes lost, torn, or kept), and after reopen the store must
//! equal the reference model with or without the one operation in flight — never anything
//! else: every add, ack and commit that returned Ok is there, nothing uncommitted or rolled back
//! is visible, nothing acked comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use store_amq::AmqConfig;
use store_journal::fs::Crash;
use store_kahadb::testkit::{crash_at, every_fsync};

fn config() -> AmqConfig {
    let mut c = AmqConfig::new("/kahadb");
    c.max_file_length = 8 * 1024;
    c.checkpoint_interval = Duration::ZERO;
    c.preallocate = false;
    c.compaction_threshold = 2;
    c
}

#[test]
fn without_a_crash_the_whole_workload_is_there() {
    assert!(!crash_at(&config(), 100_000, Crash::LoseUnsynced));
}

/// The AMQ engine (in-memory index, snapshot and control file) under the same attack.
#[test]
fn amq_crash_at_every_fsync_loses_nothing_acknowledged() {
    let k = every_fsync(&config(), Crash::LoseUnsynced);
    assert!(k > 20, "the workload made only {k} fsyncs");
    for tear in [1usize, 9, 100, 3000] {
        every_fsync(&config(), Crash::TearLastWrite(tear));
    }
    every_fsync(&config(), Crash::KeepUnsynced);
}
