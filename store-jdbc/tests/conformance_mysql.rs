//! The whole conformance kit, with reopen variants and the model-based test, against the JDBC
//! engine on mysql.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

store_api::conformance_tests!(common::JdbcFactory::mysql(), durable = true);
