//! The AMQ engine's errors: those of the engine it shares with KahaDB (journal, index, records),
//! under the AMQ name; converted to `StoreError` at the store boundary.

pub use store_kahadb::KahaError as AmqError;

pub(crate) type Result<T, E = AmqError> = std::result::Result<T, E>;
