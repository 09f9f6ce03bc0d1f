//! `broker import-config` on a `jdbcPersistenceAdapter`: under ActiveMQ's database locker (its
//! default) the tables are taken as ActiveMQ's, `message_format = "openwire"`, so that this
//! broker reads what ActiveMQ left in them and can be its master or slave; under a lease
//! locker, which that format cannot fence, the format stays native and a note says why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use broker::config::BrokerConfig;
use engines::LockerKind;
use store_jdbc::MessageFormat;

const BIN: &str = env!("CARGO_BIN_EXE_broker");

fn xml(locker: &str) -> String {
    format!(
        r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="jdbc" useJmx="false">
    <persistenceAdapter>
      <jdbcPersistenceAdapter dataSource="#mysql-ds">
        {locker}
        <statements><statements tablePrefix="AMQ_"/></statements>
      </jdbcPersistenceAdapter>
    </persistenceAdapter>
  </broker>
  <bean id="mysql-ds" class="org.mariadb.jdbc.MariaDbDataSource">
    <property name="url" value="jdbc:mariadb://dbhost:3306/activemq?user=amq"/>
  </bean>
</beans>"##
    )
}

/// The config printed for `xml`, and stderr.
fn import(xml: &str) -> (BrokerConfig, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("activemq.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new(BIN)
        .arg("import-config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let config = BrokerConfig::from_toml(&stdout)
        .unwrap_or_else(|e| panic!("the loader refuses it: {e}\n{stdout}"));
    (config, stderr)
}

#[test]
fn activemqs_default_locker_shares_the_tables_in_the_openwire_format() {
    for locker in ["", "<locker><database-locker/></locker>"] {
        let (c, _) = import(&xml(locker));
        assert_eq!(
            c.engine().message_format(),
            MessageFormat::OpenWire,
            "{locker}"
        );
        assert_eq!(c.engine().locker_kind(), LockerKind::Database, "{locker}");
    }
}

#[test]
fn a_lease_locker_keeps_the_native_format_and_says_why() {
    let (c, stderr) = import(&xml("<locker><lease-database-locker/></locker>"));
    assert_eq!(c.engine().message_format(), MessageFormat::Native);
    assert_eq!(c.engine().locker_kind(), LockerKind::Lease);
    assert!(
        stderr.contains("message_format stays \"native\""),
        "{stderr}"
    );
}
