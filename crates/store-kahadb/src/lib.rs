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
