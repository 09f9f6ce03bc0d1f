//! The whole conformance kit, with reopen variants and the model-based test, against the
//! journaled JDBC engine over sqlite. Checkpoints run every 200 ms and every 64 KiB of journal,
//! so scenarios cross checkpoints as well as run between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

store_api::conformance_tests!(common::Factory::sqlite(), durable = true);
