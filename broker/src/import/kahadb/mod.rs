//! `broker import-kahadb DIR`: the messages an Apache ActiveMQ KahaDB directory still holds
//! (queued, pending for a durable subscription, in a prepared XA transaction), loaded into
//! this broker's configured engine. The directory is only read: its journal (`db-N.log`) is
//! replayed from the start, which needs neither ActiveMQ's index (`db.data`) nor its lock.
//!
//! `journal` frames the files, `proto` decodes the commands, `replay` works out what is still
//! pending, `load` writes it through the store API. Importing twice adds nothing the second
//! time: messages keep their ids, and the store refuses an id it already holds.

mod journal;
mod load;
mod proto;
mod replay;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use broker_core::Leaving;
use store_api::StoreError;

use crate::config::BrokerConfig;
pub use journal::JournalError;

/// How long to wait for the engine's lock: a broker running on the same config holds it.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportKahaError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A record whose command does not decode (damage the batch checksum did not catch).
    #[error("{file} at offset {offset}: undecodable command: {reason}")]
    Command {
        file: String,
        offset: usize,
        reason: proto::ProtoError,
    },
    #[error("{what}: {error}")]
    Store { what: String, error: StoreError },
    #[error("{what}: {error}")]
    Engine {
        what: String,
        error: broker_core::BrokerError,
    },
    #[error("the engine's lock is held (is a broker running on this config?)")]
    Locked,
}

/// What the import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub records: u64,
    /// Destinations with something to import.
    pub destinations: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Durable subscriptions created.
    pub subscriptions: u64,
    /// Prepared XA transactions created.
    pub prepared: u64,
    /// Messages (and prepared transactions) the store already had: an earlier import.
    pub already_there: u64,
    /// What was passed over, by reason, with how many.
    pub skipped: BTreeMap<String, u64>,
    /// Damaged places passed over with `--skip-damaged`: `file@offset: reason`.
    pub damaged: Vec<String>,
}

impl Summary {
    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    fn added(&mut self, size: u64) {
        self.messages += 1;
        self.bytes += size;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "read {} journal files, {} records",
            self.files, self.records
        )?;
        writeln!(
            f,
            "imported {} messages ({} bytes) into {} destinations; {} durable subscriptions, {} prepared XA transactions",
            self.messages, self.bytes, self.destinations, self.subscriptions, self.prepared
        )?;
        writeln!(
            f,
            "already present (not imported again): {}",
            self.already_there
        )?;
        for (reason, n) in &self.skipped {
            writeln!(f, "skipped {n}: {reason}")?;
        }
        for place in &self.damaged {
            writeln!(f, "damaged, skipped: {place}")?;
        }
        Ok(())
    }
}

/// Reads the journal in `dir` and replays it: what is still pending.
fn replay_dir(
    dir: &Path,
    skip_damaged: bool,
    summary: &mut Summary,
) -> Result<replay::Replay, ImportKahaError> {
    let mut state = replay::Replay::default();
    for (_, path) in journal::journal_files(dir)? {
        let name = path.display().to_string();
        let data = std::fs::read(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            error: source,
        })?;
        eprintln!("reading {name} ({} bytes)", data.len());
        summary.files += 1;
        let mut skipped = journal::Skipped::default();
        let mut bad = None;
        journal::read_records(
            &data,
            &name,
            skip_damaged,
            &mut skipped,
            |offset, payload| {
                if bad.is_some() {
                    return;
                }
                summary.records += 1;
                match proto::decode_command(payload) {
                    Ok(c) => state.apply(c),
                    Err(reason) if skip_damaged => {
                        summary.damaged.push(format!("{name}@{offset}: {reason}"));
                    }
                    Err(reason) => bad = Some((offset, reason)),
                }
            },
        )?;
        if let Some((offset, reason)) = bad {
            return Err(ImportKahaError::Command {
                file: name,
                offset,
                reason,
            });
        }
        summary.damaged.extend(skipped.places);
    }
    let state = state.finish();
    for (reason, n) in &state.skipped {
        *summary.skipped.entry(reason.clone()).or_default() += n;
    }
    Ok(state)
}

/// Imports the KahaDB directory `dir` into the engine `config` names.
pub async fn import(
    dir: &Path,
    config: &BrokerConfig,
    skip_damaged: bool,
) -> Result<Summary, ImportKahaError> {
    let mut summary = Summary::default();
    let replayed = replay_dir(dir, skip_damaged, &mut summary)?;
    let engine = config.engine();
    let lock = tokio::time::timeout(LOCK_TIMEOUT, engines::locker(&engine).acquire())
        .await
        .map_err(|_| ImportKahaError::Locked)?
        .map_err(|source| ImportKahaError::Engine {
            what: "taking the engine's lock".into(),
            error: source,
        })?;
    let store = match engines::store(&engine).open(&*lock).await {
        Ok(s) => s,
        Err(source) => {
            lock.release(Leaving::Settled).await;
            return Err(ImportKahaError::Engine {
                what: "opening the engine".into(),
                error: source,
            });
        }
    };
    let mut decoder = load::MessageDecoder::default();
    let loaded = load::load(&replayed, &store, &mut decoder, &mut summary).await;
    let closed = store.close().await;
    lock.release(Leaving::Settled).await;
    loaded?;
    closed.map_err(|source| ImportKahaError::Store {
        what: "closing the engine".into(),
        error: source,
    })?;
    Ok(summary)
}

/// The directory given on the command line, or its `kahadb` subdirectory when it is an
/// ActiveMQ data directory.
pub fn kahadb_dir(dir: &Path) -> PathBuf {
    let sub = dir.join("kahadb");
    if journal::journal_files(dir).is_err() && sub.is_dir() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// For the fuzz target: one journal file's bytes framed, and every record decoded, skipping
/// damage. Must never panic. Not a stable API.
#[doc(hidden)]
pub fn fuzz_journal(data: &[u8]) -> usize {
    let mut state = replay::Replay::default();
    let mut decoder = load::MessageDecoder::default();
    state.apply_file_lossy(data, |c| {
        if let proto::Command::Add(a) = c
            && let Some(m) = decoder.decode(&a.message)
        {
            let _ = load::core_message(&m, broker_core::Destination::queue("q"));
        }
        if let proto::Command::Subscription(s) = c
            && let Some(info) = &s.info
        {
            let _ = load::subscription_info(info);
        }
    });
    state.finish().destinations.len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The fuzz target's seed: a batch with an ADD_MESSAGE and its REMOVE.
    const SEED: &[u8] = include_bytes!("../../../../fuzz/seeds/kahadb_import/add_remove");

    #[test]
    fn the_seed_replays_to_nothing_pending() {
        // One destination, its only message removed: kept as a destination, nothing pending.
        assert_eq!(super::fuzz_journal(SEED), 1);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::fuzz_journal(&data);
        }

        #[test]
        fn a_damaged_seed_never_panics(at in 0..SEED.len(), byte in any::<u8>(), cut in 0..SEED.len()) {
            let mut data = SEED.to_vec();
            data[at] = byte;
            super::fuzz_journal(&data);
            super::fuzz_journal(&data[..cut]);
        }
    }
}
