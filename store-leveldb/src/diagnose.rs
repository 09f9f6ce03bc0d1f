//! Naming the damaged file when RocksDB's open reports a corrupt log record without saying
//! where (its error is just "Corruption: checksum mismatch"; the file name goes only to its
//! info log, which the engine keeps quiet, see `store.rs`).
//!
//! A second open with warnings logged to a scratch directory replays the same logs, fails the
//! same way, and writes `<path>.log: dropping N bytes; Corruption: ...` for the damaged record.
//! (A read-only open would be the natural choice, but it writes no info log.)

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{DB, LogLevel, Options};

use crate::keys::Cf;

/// The write-ahead log RocksDB found damaged, if a read-only replay names one.
pub(crate) fn damaged_log(mut opts: Options, directory: &Path) -> Option<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let scratch =
        std::env::temp_dir().join(format!("leveldb-diagnosis-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&scratch).ok()?;
    opts.set_log_level(LogLevel::Warn);
    opts.set_db_log_dir(&scratch);
    opts.create_if_missing(false);
    let names = Cf::ALL.iter().map(|c| c.name());
    // The open just failed with these options, so this one fails the same way before it
    // changes anything; only its info log, in the scratch directory, is new.
    drop(DB::open_cf(&opts, directory, names));
    let found = std::fs::read_dir(&scratch)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .find_map(|text| dropped_log(&text));
    if let Err(e) = std::fs::remove_dir_all(&scratch) {
        tracing::warn!("leveldb: removing {}: {e}", scratch.display());
    }
    found
}

/// The log named in a `... <path>.log: dropping N bytes; ...` line.
fn dropped_log(text: &str) -> Option<PathBuf> {
    text.lines()
        .filter(|l| l.contains(": dropping "))
        .flat_map(|l| l.split_whitespace())
        .map(|w| w.trim_end_matches(':'))
        .find(|w| w.ends_with(".log"))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dropped_log_line() {
        let line = "2026/12/05-12:00:00.000 7f [WARN] [db/db_impl/db_impl_open.cc:123] /d/000004.log: dropping 32768 bytes; Corruption: checksum mismatch\n";
        assert_eq!(dropped_log(line), Some(PathBuf::from("/d/000004.log")));
        assert_eq!(dropped_log("nothing here"), None);
    }
}
