//! The whole conformance kit, with reopen variants and the model-based test, against the
//! journaled JDBC engine over mysql. Checkpoints run every 200 ms and every 64 KiB of journal,
//! so scenarios cross checkpoints as well as run between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

store_api::conformance_tests!(
    test_support::JournaledFactory::mysql(),
    durable = true,
    model = store_api::testkit::ModelTestConfig::database_server()
);
