//! The whole conformance kit, with reopen variants and the model-based test, against the JDBC
//! engine on postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

store_api::conformance_tests!(
    test_support::JdbcFactory::postgres(),
    durable = true,
    model = store_api::testkit::ModelTestConfig::database_server()
);
