//! `persistence.jdbc.message_format`: "openwire" takes ActiveMQ's schema, which has no fencing
//! epoch, so its locker defaults to `database` and a lease locker is refused naming the key;
//! journaled-jdbc (a local journal) cannot share the database with ActiveMQ; other values are
//! refused naming the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker::config::BrokerConfig;
use engines::LockerKind;
use store_jdbc::MessageFormat;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

fn jdbc(format: &str, rest: &str) -> String {
    format!(
        "[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{URL}\"\nmessage_format = \"{format}\"\n{rest}"
    )
}

#[test]
fn openwire_runs_under_activemqs_database_locker_by_default() {
    let c = BrokerConfig::from_toml(&jdbc("openwire", "")).unwrap();
    assert_eq!(c.engine().message_format(), MessageFormat::OpenWire);
    assert_eq!(c.engine().locker_kind(), LockerKind::Database);
    let c = BrokerConfig::from_toml(&jdbc("openwire", "[locker]\nkind = \"database\"\n")).unwrap();
    assert_eq!(c.engine().locker_kind(), LockerKind::Database);
}

#[test]
fn native_is_the_default_and_keeps_the_lease() {
    let c = BrokerConfig::from_toml(&jdbc("native", "")).unwrap();
    assert_eq!(c.engine().message_format(), MessageFormat::Native);
    assert_eq!(c.engine().locker_kind(), LockerKind::Lease);
    let plain = format!("[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"{URL}\"\n");
    let c = BrokerConfig::from_toml(&plain).unwrap();
    assert_eq!(c.engine().message_format(), MessageFormat::Native);
}

#[test]
fn a_lease_locker_with_openwire_is_refused_naming_the_key() {
    let e = BrokerConfig::from_toml(&jdbc("openwire", "[locker]\nkind = \"lease\"\n")).unwrap_err();
    assert_eq!(e.key, "locker.kind", "{e}");
    assert!(e.reason.contains("EPOCH"), "{e}");
}

#[test]
fn journaled_jdbc_with_openwire_and_unknown_formats_are_refused_naming_the_key() {
    let journaled = format!(
        "[persistence]\nkind = \"journaled-jdbc\"\n[persistence.jdbc]\nurl = \"{URL}\"\nmessage_format = \"openwire\"\n"
    );
    let e = BrokerConfig::from_toml(&journaled).unwrap_err();
    assert_eq!(e.key, "persistence.jdbc.message_format", "{e}");
    let e = BrokerConfig::from_toml(&jdbc("xml", "")).unwrap_err();
    assert_eq!(e.key, "persistence.jdbc.message_format", "{e}");
    assert!(e.reason.contains("openwire"), "{e}");
}
