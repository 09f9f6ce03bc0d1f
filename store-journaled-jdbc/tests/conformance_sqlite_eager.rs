//! The conformance kit against the journaled JDBC engine over SQLite, checkpointing after every
//! journal record, so that merged reads cross the database/overlay seam all the time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

store_api::conformance_tests!(
    test_support::JournaledFactory::sqlite_eager(),
    durable = true
);
