//! The conformance kit against the JDBC engine on PostgreSQL in the openwire message format
//! (ActiveMQ's PostgreSQL schema: `MSG` as `BYTEA`), with that format's profile
//! (`openwire_profile`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::JdbcFactory;

fn factory() -> JdbcFactory {
    JdbcFactory::postgres_openwire()
}

mod openwire_profile;
