//! One store transaction's changes, gathered into a single RocksDB `WriteBatch` so that they
//! reach the log, and survive a crash, all together or not at all.

use rocksdb::{DB, WriteBatch};

use crate::error::{LevelDbError, Result};
use crate::keys::Cf;

pub(crate) struct Batch<'a> {
    db: &'a DB,
    batch: WriteBatch,
    /// A column family that could not be found. Open creates them all, so this never happens;
    /// it is reported when the batch is written rather than making every put fallible.
    missing: Option<Cf>,
    /// Deleting a message deletes its body from the `bodies` column family too (see
    /// `Index::legacy_bodies`).
    pub(crate) legacy_bodies: bool,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(db: &'a DB, legacy_bodies: bool) -> Self {
        Batch {
            db,
            batch: WriteBatch::default(),
            missing: None,
            legacy_bodies,
        }
    }

    pub(crate) fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        match self.db.cf_handle(cf.name()) {
            Some(h) => self.batch.put_cf(h, key, value),
            None => self.missing = Some(cf),
        }
    }

    pub(crate) fn delete(&mut self, cf: Cf, key: &[u8]) {
        match self.db.cf_handle(cf.name()) {
            Some(h) => self.batch.delete_cf(h, key),
            None => self.missing = Some(cf),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.missing.is_none()
    }

    /// The batch to write, or the column family that was missing.
    pub(crate) fn finish(self) -> Result<WriteBatch> {
        match self.missing {
            Some(cf) => Err(LevelDbError::MissingColumnFamily(cf.name())),
            None => Ok(self.batch),
        }
    }
}
