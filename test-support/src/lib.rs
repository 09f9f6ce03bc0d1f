//! Helpers the workspace's tests share, for tests only: this crate is never published and other
//! crates take it as a dev-dependency. It holds what several crates' tests would otherwise copy:
//! the places a database test runs in (a SQLite file, or a table prefix of its own on the server
//! `MYSQL_URL` / `POSTGRES_URL` names, dropped afterwards), the store factories the conformance
//! kit opens the JDBC and journaled JDBC engines through, a TCP proxy a test can cut or freeze
//! between a client and its server, and the file damage the corruption tests apply. Helpers
//! panic on set-up failures (a test that cannot set up has failed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod corruption;
pub mod database;
pub mod jdbc;
pub mod journaled;
pub mod ports;
pub mod proxy;
pub mod zookeeper;

pub use jdbc::JdbcFactory;
pub use journaled::JournaledFactory;
pub use ports::{free_port, free_ports};
pub use proxy::{Proxy, host_port};
pub use store_api::testkit::{skip, under_ci};
