//! The fault-injection harness shared by every durable engine (KahaDB, AMQ, JDBC on SQLite,
//! MariaDB/MySQL and PostgreSQL, journaled JDBC on SQLite and MariaDB/MySQL, LevelDB on RocksDB). Everything lives
//! in the tests; this library is empty on purpose, so that no engine depends on it.
//!
//! - `tests/process_death.rs`: the test binary re-runs itself as a child that drives a synced
//!   workload (queue adds and acks, local transactions, topic adds and durable-subscription
//!   acks) and reports each operation before it starts and after it returned Ok; the parent
//!   kills it with SIGKILL at seeded random moments, reopens the store and checks every fate.
//!   `CRASH_ROUNDS=200 cargo test -p crash-tests --release --test process_death -- --nocapture`
//!   is the full run (CI runs a short one).
//! - `tests/full_disk.rs`: each engine's local files on a small tmpfs the test mounts (root
//!   only; otherwise it says it skipped), filled until writes fail; the error must say why,
//!   reads go on, and once space is back nothing stored is lost and writing resumes.
//!
//! Power loss at every fsync, corruption at random offsets and the fuzz targets are per engine
//! (`store-kahadb/tests/crash.rs`, `corruption.rs`, `fuzz/`), because they go through the
//! file-system seam or one engine's formats.
