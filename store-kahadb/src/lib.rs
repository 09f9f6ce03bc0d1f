//! The KahaDB engine, the broker's default store: every change is appended to a shared journal
//! (`db-N.log`, group commit) and applied to an index of B+trees in a page file (`db.data`, made
//! crash-safe by the `db.redo` double-write buffer) that a background checkpoint writes every
//! few seconds without stopping appends. Opening loads the last checkpoint and replays the
//! journal after it; a missing or corrupt index is rebuilt from the whole journal. Journal files
//! are deleted once nothing in them is needed (per-file live counters and the ack rule), and a
//! file kept alive by a few records has them copied forward.
//!
//! The on-disk format, byte by byte, and the argument for why a crash at any instant loses no
//! acknowledged write and resurrects no acked message, are in `FORMAT.md` beside this crate.
//!
//! The AMQ engine (`store-amq`) runs on the same journal, records, index logic, GC and
//! compaction, keeping its index in memory instead of the page file: what the two share, and
//! the seam between them, is the public module [`index_storage`].

mod adapter;
mod btree;
mod config;
mod error;
mod index;
mod index_file;
pub mod index_storage;
mod page_file;
mod records;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::KahaDbConfig;
pub use error::KahaError;
pub use store::KahaDbStats;

/// The KahaDB store: the shared engine with its index in the page file. Cloning shares it.
pub type KahaDbStore = index_storage::JournaledStore<KahaDbConfig>;

/// Entry points for the fuzz targets and robustness tests: decoders of everything KahaDB reads
/// from disk, each returning whether the input decoded. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// A journal record (the first byte is the command type).
    pub fn decode_record(bytes: &[u8]) -> bool {
        crate::records::Command::decode(bytes).is_ok()
    }

    /// An index page of `db.data`.
    pub fn decode_page(bytes: &[u8]) -> bool {
        let mut page = [0u8; crate::page_file::PAGE_SIZE];
        let n = bytes.len().min(page.len());
        page[..n].copy_from_slice(&bytes[..n]);
        crate::page_file::decode_node(&page).is_ok()
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
            let _ = super::fuzzing::decode_record(&bytes);
            let _ = super::fuzzing::decode_page(&bytes);
        }

        /// Pages that pass their checksum but hold nonsense are refused, not trusted.
        #[test]
        fn checksummed_garbage_pages_never_panic(body in proptest::collection::vec(any::<u8>(), 4092)) {
            let mut page = vec![0u8; 4];
            page.extend(body);
            let crc = crc32fast::hash(&page[4..]);
            page[0..4].copy_from_slice(&crc.to_le_bytes());
            let _ = super::fuzzing::decode_page(&page);
        }
    }
}
