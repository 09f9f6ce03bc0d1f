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

mod adapter;
mod btree;
mod config;
mod error;
mod index;
mod page_file;
mod records;
mod snapshot;
mod store;

pub use adapter::KahaDbStore;
pub use config::{IndexLayout, KahaDbConfig};
pub use error::KahaError;
pub use store::KahaDbStats;

/// Entry points for the fuzz targets and robustness tests: decoders of everything KahaDB and
/// AMQ read from disk, each returning whether the input decoded. Not a stable API.
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

    /// A whole AMQ index snapshot.
    pub fn load_snapshot(bytes: &[u8]) -> bool {
        crate::index::Index::from_snapshot(bytes, std::path::Path::new("fuzz.snapshot")).is_ok()
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
            let _ = super::fuzzing::load_snapshot(&bytes);
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
