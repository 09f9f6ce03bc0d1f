//! The AMQ engine: ActiveMQ's pre-5.4 store, rebuilt without its faults. Every change is appended
//! to rolling data logs (`journal/data-N`, 32 MiB, the shared `store-journal`: group commit,
//! CRCs, torn-tail recovery); the reference index (per destination: message → log location and
//! expiration, durable subscriptions and their exact pending sets) lives wholly in memory; each
//! checkpoint (every 20 s by default) writes it as one snapshot (`kr-store/index-G.snapshot`,
//! written to a temporary file, fsynced, renamed, directory fsynced) and then records the
//! snapshot and the journal mark it reflects in `journal/data-control`, written twice.
//!
//! Opening loads the newest snapshot a valid control slot names and replays the logs from its
//! mark, so recovery time follows the data written since the last checkpoint, after a clean or
//! an unclean stop; with no usable snapshot it replays everything, saying so in the log.
//! Cleanup deletes a log only once a snapshot past it is durable and nothing it holds is
//! referenced (ActiveMQ's AMQ-1479 deleted logs the snapshot still needed).
//!
//! What differs from ActiveMQ's AMQ store: adds are fsynced by default (sync policy `always`;
//! ActiveMQ's did not sync adds), a torn log tail is cut by checksum instead of being read as
//! data, and recovery after an unclean stop replays from the last snapshot rather than the
//! whole journal.
//!
//! The trade-off against KahaDB, whose journal, records, index logic, GC and compaction it shares
//! (`store_kahadb::index_storage`; this crate supplies where the index lives): index reads never
//! touch the disk, but the index must fit in memory and each checkpoint writes all of it, where
//! KahaDB keeps a bounded page cache and writes only changed pages.
//!
//! The snapshot and control file formats, byte by byte, and the argument for why a crash at any
//! step leaves a usable snapshot or a full replay, are in `FORMAT.md` beside this crate (the
//! journal, records and index pages are in `store-kahadb`'s FORMAT.md).

mod config;
mod control;
mod error;
mod layout;
mod snapshot;
mod storage;

pub use config::AmqConfig;
pub use error::AmqError;

/// The AMQ store: the engine shared with KahaDB, with its index in memory and snapshotted.
/// Cloning shares it.
pub type AmqStore = store_kahadb::index_storage::JournaledStore<AmqConfig>;

/// Entry points for the fuzz targets and robustness tests: decoders of what the AMQ engine
/// alone reads from disk (the journal records and index pages are `store_kahadb::fuzzing`'s),
/// each returning whether the input decoded. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// A whole index snapshot.
    pub fn load_snapshot(bytes: &[u8]) -> bool {
        crate::snapshot::decode(bytes, std::path::Path::new("fuzz.snapshot")).is_ok()
    }
}

#[cfg(test)]
mod decoder_tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever is on disk, decoding returns; it never panics.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = super::fuzzing::load_snapshot(&bytes);
        }
    }
}
