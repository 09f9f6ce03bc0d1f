//! The conformance kit against the JDBC engine on MariaDB/MySQL in the openwire message format,
//! with that format's profile (`openwire_profile`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::JdbcFactory;

fn factory() -> JdbcFactory {
    JdbcFactory::mysql_openwire()
}

mod openwire_profile;
