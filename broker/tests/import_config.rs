//! `broker import-config activemq.xml`, run as users run it: the activemq.xml files Debian's
//! `activemq` package ships (copied under `fixtures/activemq`) and the examples of ActiveMQ's
//! documentation (KahaDB, JDBC on MySQL, network connectors, replicated LevelDB, security,
//! policies and system usage). Each printed config is parsed back and checked value by value,
//! the stderr lines are checked item by item, every config is loaded by the broker's own
//! loader, and some are started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use broker::client::{ConnectOptions, StompClient};
use broker::config::BrokerConfig;
use common::process::{BIN, spawn};

/// What one run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The printed config, parsed.
    fn toml(&self) -> toml::Table {
        toml::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}\n{}", self.stdout))
    }

    /// The `unmapped:` lines.
    fn unmapped(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("unmapped: "))
            .collect()
    }

    fn notes(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("note: "))
            .collect()
    }

    /// The unmapped line for `path` (exactly that path before the reason).
    fn unmapped_at(&self, path: &str) -> &str {
        let prefix = format!("{path}: ");
        self.unmapped()
            .into_iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no unmapped line for {path} in\n{}", self.stderr))
    }

    /// Exit 0, a config that parses and that this build's loader accepts, and every stderr
    /// line an item naming its XML path.
    fn assert_good(&self) -> BrokerConfig {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        for line in self.stderr.lines() {
            assert!(
                line.starts_with("unmapped: /") || line.starts_with("note: /"),
                "every stderr line is an item with its path: {line}"
            );
        }
        BrokerConfig::from_toml(&self.stdout)
            .unwrap_or_else(|e| panic!("the loader refuses it: {e}\n{}", self.stdout))
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/activemq")
}

/// The placeholders Debian's and the examples' files use.
const SETS: [&str; 5] = [
    "activemq.base=/var/lib/activemq",
    "activemq.data=/var/lib/activemq/data",
    "activemq.conf=/etc/activemq",
    "activemq.password=manager",
    "guest.password=password",
];

fn run_file(file: &Path, sets: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("import-config").arg(file);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("run broker import-config");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 config"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run_xml(xml: &str, sets: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("activemq.xml");
    std::fs::write(&file, xml).unwrap();
    run_file(&file, sets)
}

fn get<'a>(t: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut v = t.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn s<'a>(t: &'a toml::Table, dotted: &str) -> &'a str {
    get(t, dotted)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("{dotted} is not a string in {t:#?}"))
}

fn i(t: &toml::Table, dotted: &str) -> i64 {
    get(t, dotted)
        .and_then(toml::Value::as_integer)
        .unwrap_or_else(|| panic!("{dotted} is not an integer in {t:#?}"))
}

fn b(t: &toml::Table, dotted: &str) -> bool {
    get(t, dotted)
        .and_then(toml::Value::as_bool)
        .unwrap_or_else(|| panic!("{dotted} is not a boolean in {t:#?}"))
}

fn strs(v: &toml::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

/// The imported config with its listeners on ephemeral ports (the console off) and its files
/// under `dir`, written to `dir/broker.toml`.
fn localised(config: &toml::Table, dir: &Path) -> PathBuf {
    let mut c = config.clone();
    let data = dir.join("data").display().to_string();
    let broker = c
        .entry("broker")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .unwrap();
    broker.insert("data_directory".into(), data.clone().into());
    if let Some(p) = c.get_mut("persistence").and_then(|p| p.as_table_mut()) {
        for (_, section) in p.iter_mut() {
            if let Some(t) = section.as_table_mut()
                && t.contains_key("directory")
            {
                t.insert("directory".into(), format!("{data}/store").into());
            }
        }
    }
    let t = c
        .entry("transports")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .unwrap();
    t.insert("stomp".into(), "127.0.0.1:0".into());
    t.insert("openwire".into(), "127.0.0.1:0".into());
    t.insert("websocket".into(), "".into());
    t.insert("web".into(), "".into());
    // Tests multicast only inside a network namespace of their own, never on the host's.
    t.remove("openwire_discovery");
    let path = dir.join("broker.toml");
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    path
}

/// Starts the broker on the (localised) imported config, sends a persistent message as
/// `login` and receives it back, and stops the broker.
async fn starts_and_serves(config: &toml::Table, login: &str, passcode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = localised(config, dir.path());
    let (mut child, url) = spawn(&path);
    let endpoint = broker::url::parse(&url).unwrap().remove(0);
    let opts = ConnectOptions {
        login: login.into(),
        passcode: passcode.into(),
        ..ConnectOptions::default()
    };
    let result = async {
        let mut c = StompClient::connect(&endpoint, &opts).await?;
        c.send("/queue/imported", "hello", &[("persistent", "true")])
            .await?;
        c.subscribe("s", "/queue/imported", "auto", &[]).await?;
        let m = c.recv_timeout(Duration::from_secs(10)).await?;
        c.disconnect().await?;
        Ok::<_, broker::client::ClientError>(m)
    }
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let m = result.unwrap().expect("the message comes back");
    assert_eq!(&m.body[..], b"hello");
}

#[test]
fn every_shipped_activemq_xml_imports_and_loads() {
    let mut files: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    for f in files {
        let run = run_file(&f, &SETS);
        run.assert_good();
        run.toml();
        // Nothing is printed for a broker that cannot tell: every file has a broker element.
        assert!(run.stdout.contains("[broker]"), "{}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debians_main_instance() {
    let file = fixtures().join("debian-main-activemq.xml");
    let run = run_file(&file, &["activemq.base=/var/lib/activemq"]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "broker.name"), "localhost");
    assert_eq!(s(&t, "broker.data_directory"), "/var/lib/activemq/data");
    assert!(!b(&t, "broker.scheduler_support"), "ActiveMQ's default");
    assert_eq!(s(&t, "persistence.kind"), "kahadb");
    assert_eq!(
        s(&t, "persistence.kahadb.directory"),
        "/var/lib/activemq/data/kahadb"
    );
    assert_eq!(s(&t, "transports.openwire"), "127.0.0.1:61616");
    for off in ["stomp", "websocket", "web"] {
        assert_eq!(s(&t, &format!("transports.{off}")), "", "{off}");
    }
    // A build that has MQTT would listen on 1883 by default: turned off, as in ActiveMQ.
    if BrokerConfig::from_toml("[transports]\nmqtt = \"\"\n").is_ok() {
        assert_eq!(s(&t, "transports.mqtt"), "");
    } else {
        assert!(get(&t, "transports.mqtt").is_none());
    }
    assert!(
        run.unmapped_at("/beans/bean")
            .contains("PropertyPlaceholderConfigurer")
            || run.unmapped_at("/beans/bean").contains("--set")
    );
    // useJmx="false": nothing lost, nothing said.
    assert!(!run.stderr.contains("useJmx"), "{}", run.stderr);
    starts_and_serves(&t, "admin", "admin").await;
}

#[test]
fn an_unresolved_placeholder_is_an_error_naming_it_and_its_path() {
    let run = run_file(&fixtures().join("debian-main-activemq.xml"), &[]);
    assert_ne!(run.code, Some(0));
    assert!(run.stdout.is_empty(), "no config: {}", run.stdout);
    assert!(
        run.stderr.contains("${activemq.base}")
            && run.stderr.contains("/beans/broker/@dataDirectory")
            && run.stderr.contains("--set activemq.base="),
        "{}",
        run.stderr
    );
}

#[test]
fn unreadable_or_invalid_xml_is_an_error() {
    let run = run_xml("<beans><broker></beans>", &[]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("not well-formed XML"), "{}", run.stderr);
    let run = run_xml("<beans><bean class=\"x\"/></beans>", &[]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("no <broker> element"), "{}", run.stderr);
    // Entity expansion is bounded by the parser: a "billion laughs" file is refused.
    let mut entities = String::from("<!ENTITY l0 \"lollollollollollollollollollol\">");
    for n in 1..10 {
        entities.push_str(&format!(
            "<!ENTITY l{n} \"{}\">",
            format!("&l{};", n - 1).repeat(10)
        ));
    }
    let run = run_xml(
        &format!("<!DOCTYPE beans [{entities}]><beans><broker brokerName=\"&l9;\"/></beans>"),
        &[],
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("entity"), "{}", run.stderr);
    // A DOCTYPE as such (Spring 1.x files have one) is fine.
    let run = run_xml(
        "<!DOCTYPE beans PUBLIC \"-//SPRING//DTD BEAN//EN\" \"http://www.springframework.org/dtd/spring-beans.dtd\">\n<beans><broker brokerName=\"b\" useJmx=\"false\"/></beans>",
        &[],
    );
    run.assert_good();
    assert_eq!(s(&run.toml(), "broker.name"), "b");
    let run = run_file(Path::new("/nonexistent/activemq.xml"), &[]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("cannot read /nonexistent/activemq.xml"));
    let run = run_file(&fixtures().join("activemq.xml"), &["novalue"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("expected NAME=VALUE"), "{}", run.stderr);
}

#[test]
fn the_stomp_example_has_two_stomp_connectors_and_no_flow_control() {
    let run = run_file(&fixtures().join("activemq-stomp.xml"), &SETS);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "transports.stomp"), "0.0.0.0:61612");
    assert_eq!(s(&t, "transports.openwire"), "");
    assert!(
        run.unmapped_at("/beans/broker/transportConnectors/transportConnector[@name='stomp+nio']")
            .contains("one transports.stomp listener")
    );
    assert!(
        run.unmapped_at("/beans/broker/transportConnectors/transportConnector[@name='stomp']/@uri")
            .contains("transport.closeAsync=false")
    );
    assert!(
        run.unmapped_at(
            "/beans/broker/destinationPolicy/policyMap/policyEntries/policyEntry[@queue='>']/@producerFlowControl"
        )
        .contains("always on")
    );
}

#[test]
fn the_jdbc_example_on_derby_is_reported_not_replaced() {
    let run = run_file(&fixtures().join("activemq-jdbc.xml"), &SETS);
    run.assert_good();
    let t = run.toml();
    assert!(t.get("persistence").is_none(), "no engine picked: {t:#?}");
    let line = run.unmapped_at("/beans/broker/persistenceAdapter/jdbcPersistenceAdapter");
    assert!(
        line.contains("Derby") && line.contains("derby-ds"),
        "{line}"
    );
}

#[test]
fn the_security_example_keeps_its_users_and_entries() {
    let run = run_file(&fixtures().join("activemq-security.xml"), &SETS);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "memory");
    let users = t["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["name"].as_str(), Some("system"));
    assert_eq!(users[0]["password"].as_str(), Some("manager"), "from --set");
    assert_eq!(strs(&users[0]["groups"]), ["users", "admins"]);
    let authz = t["authorization"].as_array().unwrap();
    assert_eq!(authz.len(), 8);
    assert_eq!(authz[2]["queue"].as_str(), Some("GUEST.>"));
    assert_eq!(strs(&authz[2]["write"]), ["guests", "users"]);
    assert_eq!(strs(&authz[3]["admin"]), Vec::<&str>::new());
    assert_eq!(authz[7]["topic"].as_str(), Some("ActiveMQ.Advisory.>"));
}

#[test]
fn the_mqtt_example_waits_for_the_mqtt_key_if_this_build_lacks_it() {
    let run = run_file(&fixtures().join("activemq-mqtt.xml"), &SETS);
    run.assert_good();
    let t = run.toml();
    let live = get(&t, "transports.mqtt").map(|v| v.as_str().unwrap().to_owned());
    match live {
        // On a broker that has the key, it is printed as is (and the loader accepted it).
        Some(addr) => assert_eq!(addr, "0.0.0.0:1883"),
        None => {
            assert!(
                run.stdout.contains("# mqtt = \"0.0.0.0:1883\""),
                "{}",
                run.stdout
            );
            assert!(
                run.notes()
                    .iter()
                    .any(|n| n.contains("transports.mqtt is not known to this build")),
                "{}",
                run.stderr
            );
        }
    }
    assert!(
        run.unmapped_at(
            "/beans/broker/transportConnectors/transportConnector[@name='mqtt+nio']/@uri"
        )
        .contains("subscriptionStrategy")
    );
    assert!(
        run.unmapped_at("/beans/broker/@advisorySupport")
            .contains("always")
    );
}

const KAHADB: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="kaha" dataDirectory="${activemq.data}" schedulerSupport="true">
    <persistenceAdapter>
      <kahaDB directory="${activemq.data}/kahadb" journalMaxFileLength="32mb"
              indexWriteBatchSize="1000" enableIndexWriteAsync="true"
              journalDiskSyncStrategy="periodic" journalDiskSyncInterval="500"
              checkpointInterval="5000" cleanupInterval="30000" indexCacheSize="10000">
        <locker>
          <shared-file-locker lockAcquireSleepInterval="10000"/>
        </locker>
      </kahaDB>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://0.0.0.0:61616?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
      <transportConnector name="stomp" uri="stomp://0.0.0.0:61613?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
    </transportConnectors>
  </broker>
</beans>"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kahadb_example() {
    let run = run_xml(KAHADB, &["activemq.data=/srv/amq"]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "broker.name"), "kaha");
    assert!(b(&t, "broker.scheduler_support"));
    assert_eq!(s(&t, "persistence.kahadb.directory"), "/srv/amq/kahadb");
    assert_eq!(
        i(&t, "persistence.kahadb.journal_max_file_length"),
        32 << 20
    );
    assert_eq!(i(&t, "persistence.kahadb.index_write_batch_size"), 1000);
    assert_eq!(s(&t, "persistence.kahadb.sync"), "periodic");
    assert_eq!(i(&t, "persistence.kahadb.sync_interval_ms"), 500);
    assert_eq!(i(&t, "persistence.kahadb.checkpoint_interval_ms"), 5000);
    assert_eq!(i(&t, "persistence.kahadb.cleanup_interval_ms"), 30000);
    assert_eq!(i(&t, "persistence.kahadb.index_cache_size"), 10000);
    assert_eq!(s(&t, "locker.kind"), "shared-file");
    assert_eq!(i(&t, "locker.acquire_retry_ms"), 10000);
    assert_eq!(s(&t, "transports.openwire"), "0.0.0.0:61616");
    assert_eq!(s(&t, "transports.stomp"), "0.0.0.0:61613");
    // Per connector there, a total here: the sum, said on stderr.
    assert_eq!(i(&t, "limits.max_connections"), 2000);
    assert!(
        run.notes()
            .iter()
            .any(|n| n.contains("sum of 2 connectors"))
    );
    assert_eq!(i(&t, "transports.max_frame_bytes"), 104_857_600);
    assert!(
        run.unmapped_at("/beans/broker/persistenceAdapter/kahaDB/@enableIndexWriteAsync")
            .contains("checkpoint")
    );
    starts_and_serves(&t, "admin", "admin").await;
}

const JDBC_MYSQL: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="jdbc" useJmx="false">
    <persistenceAdapter>
      <jdbcPersistenceAdapter dataDirectory="${activemq.base}/data" dataSource="#mysql-ds" lockKeepAlivePeriod="5000" createTablesOnStartup="true">
        <locker>
          <lease-database-locker lockAcquireSleepInterval="2000"/>
        </locker>
        <statements>
          <statements tablePrefix="AMQ_"/>
        </statements>
      </jdbcPersistenceAdapter>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://0.0.0.0:61616"/>
    </transportConnectors>
  </broker>
  <bean id="mysql-ds" class="org.apache.commons.dbcp2.BasicDataSource" destroy-method="close">
    <property name="driverClassName" value="com.mysql.jdbc.Driver"/>
    <property name="url" value="jdbc:mysql://dbhost:3306/activemq?relaxAutoCommit=true"/>
    <property name="username" value="activemq"/>
    <property name="password" value="${db.password}"/>
    <property name="maxTotal" value="20"/>
    <property name="poolPreparedStatements" value="true"/>
  </bean>
  <bean id="postgres-ds" class="org.postgresql.ds.PGPoolingDataSource">
    <property name="serverName" value="localhost"/>
  </bean>
</beans>"##;

#[test]
fn the_jdbc_example_on_mysql() {
    let run = run_xml(
        JDBC_MYSQL,
        &["activemq.base=/opt/amq", "db.password=s3cr:t"],
    );
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "jdbc");
    assert_eq!(
        s(&t, "persistence.jdbc.url"),
        "mysql://activemq:s3cr%3At@dbhost:3306/activemq"
    );
    assert_eq!(s(&t, "persistence.jdbc.table_prefix"), "AMQ_");
    assert_eq!(i(&t, "persistence.jdbc.pool_size"), 20);
    assert!(b(&t, "persistence.jdbc.create_tables_on_startup"));
    assert_eq!(s(&t, "locker.kind"), "lease");
    assert_eq!(i(&t, "locker.keep_alive_ms"), 5000);
    assert_eq!(i(&t, "locker.acquire_retry_ms"), 2000);
    assert_eq!(i(&t, "locker.lease_ms"), 15000, "three keep-alives");
    assert!(
        run.unmapped_at("/beans/bean[@id='mysql-ds']/property[@name='poolPreparedStatements']")
            .contains("pool")
    );
    assert!(
        run.unmapped_at("/beans/bean[@id='postgres-ds']")
            .contains("PGPoolingDataSource")
    );
    assert!(run.notes().iter().any(|n| n.contains("relaxAutoCommit")));
    assert!(
        run.unmapped_at("/beans/broker/persistenceAdapter/jdbcPersistenceAdapter/@dataDirectory")
            .contains("not used")
    );
    let c = BrokerConfig::from_toml(&run.stdout).unwrap();
    assert_eq!(c.engine().locker_kind(), engines::LockerKind::Lease);

    // Without a locker element ActiveMQ uses its DefaultDatabaseLocker.
    let plain = JDBC_MYSQL.replace(
        "<locker>\n          <lease-database-locker lockAcquireSleepInterval=\"2000\"/>\n        </locker>",
        "",
    );
    let run = run_xml(&plain, &["activemq.base=/opt/amq", "db.password=x"]);
    run.assert_good();
    assert_eq!(s(&run.toml(), "locker.kind"), "database");
}

const NETWORK: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="hub" persistent="false" useJmx="false">
    <networkConnectors>
      <networkConnector name="bridge" uri="static:(tcp://remote1:61616,tcp://remote2:61616)" duplex="true" networkTTL="2" messageTTL="3">
        <excludedDestinations>
          <queue physicalName="internal.>"/>
          <topic physicalName="ActiveMQ.Advisory.>"/>
        </excludedDestinations>
        <staticallyIncludedDestinations>
          <topic physicalName="prices"/>
        </staticallyIncludedDestinations>
      </networkConnector>
      <networkConnector uri="multicast://default" dynamicOnly="true"/>
    </networkConnectors>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://0.0.0.0:61616" discoveryUri="multicast://default"/>
      <transportConnector name="amqp" uri="amqp://0.0.0.0:5672"/>
    </transportConnectors>
  </broker>
</beans>"##;

const REPLAY: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="b" persistent="false" useJmx="false">
    <destinationPolicy>
      <policyMap>
        <policyEntries>
          <policyEntry queue="orders.>">
            <networkBridgeFilterFactory>
              <conditionalNetworkBridgeFilterFactory replayWhenNoConsumers="true" replayDelay="1000"/>
            </networkBridgeFilterFactory>
          </policyEntry>
          <policyEntry topic="news.>">
            <networkBridgeFilterFactory>
              <conditionalNetworkBridgeFilterFactory replayWhenNoConsumers="true"/>
            </networkBridgeFilterFactory>
          </policyEntry>
        </policyEntries>
      </policyMap>
    </destinationPolicy>
  </broker>
</beans>"##;

#[test]
fn a_conditional_network_bridge_filter_becomes_replay_when_no_consumers() {
    let run = run_xml(REPLAY, &[]);
    let t = run.toml();
    let entries = get(&t, "policy.entries").unwrap().as_array().unwrap();
    let e = entries[0].as_table().unwrap();
    assert_eq!(e["queue"].as_str(), Some("orders.>"));
    assert_eq!(e["replay_when_no_consumers"].as_bool(), Some(true));
    assert_eq!(e["replay_delay_ms"].as_integer(), Some(1000));
    assert_eq!(entries.len(), 1, "{t:?}");
    assert!(
        run.unmapped_at(
            "/beans/broker/destinationPolicy/policyMap/policyEntries/policyEntry[@topic='news.>']/networkBridgeFilterFactory/conditionalNetworkBridgeFilterFactory"
        )
        .contains("queues only"),
        "{}",
        run.stderr
    );
    run.assert_good();
}

#[test]
fn network_connectors_static_and_multicast_become_network_connectors() {
    let run = run_xml(NETWORK, &[]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "memory");
    let connectors = t["network_connectors"]
        .as_array()
        .expect("[[network_connectors]]");
    assert_eq!(connectors.len(), 2, "{t:?}");
    let bridge = &connectors[0];
    assert_eq!(
        bridge["uri"].as_str(),
        Some("static:(tcp://remote1:61616,tcp://remote2:61616)")
    );
    assert_eq!(bridge["name"].as_str(), Some("bridge"));
    assert_eq!(bridge["duplex"].as_bool(), Some(true));
    assert_eq!(bridge["network_ttl"].as_integer(), Some(2));
    assert_eq!(
        bridge["excluded_destinations"].as_array().map(|a| a.len()),
        Some(2)
    );
    assert_eq!(
        bridge["excluded_destinations"][0].as_str(),
        Some("queue://internal.>")
    );
    assert_eq!(
        bridge["statically_included_destinations"][0].as_str(),
        Some("topic://prices")
    );
    let discovered = &connectors[1];
    assert_eq!(discovered["uri"].as_str(), Some("multicast://default"));
    assert_eq!(discovered["dynamic_only"].as_bool(), Some(true));
    // ActiveMQ's default name is the first one's: the second gets one of its own.
    assert_eq!(discovered["name"].as_str(), Some("bridge-2"));
    // What has no counterpart is named attribute by attribute.
    assert!(
        run.unmapped_at(
            "/beans/broker/networkConnectors/networkConnector[@name='bridge']/@messageTTL"
        )
        .contains("messageTTL"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("@duplex") && !run.stderr.contains("@dynamicOnly"));
    assert!(
        run.unmapped_at("/beans/broker/transportConnectors/transportConnector[@name='amqp']")
            .contains("no AMQP")
    );
    // The OpenWire connector's advertisement carries over.
    assert_eq!(
        s(&t, "transports.openwire_discovery"),
        "multicast://default"
    );
    assert!(!run.stderr.contains("@discoveryUri"), "{}", run.stderr);
}

const REPLICATED: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="broker" useJmx="false">
    <persistenceAdapter>
      <replicatedLevelDB directory="${activemq.data}/leveldb" replicas="3" bind="tcp://0.0.0.0:0"
          zkAddress="zoo1.example.org:2181,zoo2.example.org:2181,zoo3.example.org:2181"
          zkPassword="password" zkPath="/activemq/leveldb-stores" hostname="broker1.example.org"
          sync="quorum_mem"/>
    </persistenceAdapter>
  </broker>
</beans>"##;

#[test]
fn replicated_leveldb_becomes_a_replicated_store_over_leveldb() {
    let run = run_xml(REPLICATED, &["activemq.data=/data"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "replicated");
    assert_eq!(s(&t, "persistence.replicated.local"), "leveldb");
    assert_eq!(s(&t, "persistence.leveldb.directory"), "/data/leveldb");
    assert_eq!(
        s(&t, "persistence.replicated.zk_address"),
        "zoo1.example.org:2181,zoo2.example.org:2181,zoo3.example.org:2181"
    );
    assert_eq!(
        s(&t, "persistence.replicated.zk_path"),
        "/activemq/leveldb-stores"
    );
    assert_eq!(
        s(&t, "persistence.replicated.hostname"),
        "broker1.example.org"
    );
    assert_eq!(s(&t, "persistence.replicated.bind"), "tcp://0.0.0.0:0");
    assert_eq!(s(&t, "persistence.replicated.sync"), "quorum_mem");
    let pw = run.unmapped_at("/beans/broker/persistenceAdapter/replicatedLevelDB/@zkPassword");
    assert!(pw.contains("no password"), "{pw}");
    assert!(
        !run.stderr.contains("zkPassword=password"),
        "the ZooKeeper password is not echoed"
    );
    // LevelDB is behind a cargo feature: a build without it says so, by name.
    let loaded = BrokerConfig::from_toml(&run.stdout);
    assert_eq!(loaded.is_ok(), engines::LEVELDB_BUILT, "{loaded:?}");
    if let Err(e) = loaded {
        assert_eq!(e.key, "persistence.kind");
        assert!(
            run.stderr
                .contains("warning: this build of the broker does not accept")
        );
    }
}

const SECURED: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="secure" dataDirectory="${activemq.data}" useJmx="true">
    <destinationPolicy>
      <policyMap>
        <policyEntries>
          <policyEntry queue="orders.>" gcInactiveDestinations="true" inactiveTimoutBeforeGC="30000" producerFlowControl="true" memoryLimit="1mb" prioritizedMessages="true">
            <deadLetterStrategy>
              <individualDeadLetterStrategy queuePrefix="DLQ." useQueueForQueueMessages="true" processExpired="false"/>
            </deadLetterStrategy>
          </policyEntry>
          <policyEntry topic="prices.>" optimizedDispatch="true" prioritizedMessages="false" gcInactiveDestinations="true">
            <deadLetterStrategy>
              <sharedDeadLetterStrategy processExpired="false"/>
            </deadLetterStrategy>
          </policyEntry>
        </policyEntries>
        <defaultEntry>
          <policyEntry queue=">" maxPageSize="100" expireMessagesPeriod="15000">
            <deadLetterStrategy>
              <sharedDeadLetterStrategy>
                <deadLetterQueue><queue physicalName="ALL.DLQ"/></deadLetterQueue>
              </sharedDeadLetterStrategy>
            </deadLetterStrategy>
          </policyEntry>
        </defaultEntry>
      </policyMap>
    </destinationPolicy>
    <plugins>
      <timeStampingBrokerPlugin ttlCeiling="360000" zeroExpirationOverride="360000"/>
      <simpleAuthenticationPlugin>
        <users>
          <authenticationUser username="admin" password="${admin.password}" groups="admins,users"/>
          <authenticationUser username="app" password="app-pw" groups="users"/>
        </users>
      </simpleAuthenticationPlugin>
      <authorizationPlugin>
        <map>
          <authorizationMap>
            <authorizationEntries>
              <authorizationEntry queue=">" read="admins" write="admins" admin="admins"/>
              <authorizationEntry queue="orders.>" read="users" write="users" admin="users,admins"/>
              <authorizationEntry queue="imported" read="users" write="users" admin="users"/>
              <authorizationEntry topic="ActiveMQ.Advisory.>" read="users" write="users" admin="users"/>
            </authorizationEntries>
            <tempDestinationAuthorizationEntry>
              <tempDestinationAuthorizationEntry read="users" write="users" admin="users"/>
            </tempDestinationAuthorizationEntry>
          </authorizationMap>
        </map>
      </authorizationPlugin>
      <redeliveryPlugin fallbackToDeadLetter="true" sendToDlqIfMaxRetriesExceeded="true">
        <redeliveryPolicyMap>
          <redeliveryPolicyMap>
            <redeliveryPolicyEntries>
              <redeliveryPolicy queue="orders.>" maximumRedeliveries="4" redeliveryDelay="2000" useExponentialBackOff="true" backOffMultiplier="2" maximumRedeliveryDelay="-1"/>
              <redeliveryPolicy topic="audit" maximumRedeliveries="1"/>
            </redeliveryPolicyEntries>
            <defaultEntry>
              <redeliveryPolicy maximumRedeliveries="3" initialRedeliveryDelay="5000" redeliveryDelay="10000"/>
            </defaultEntry>
          </redeliveryPolicyMap>
        </redeliveryPolicyMap>
      </redeliveryPlugin>
    </plugins>
    <systemUsage>
      <systemUsage sendFailIfNoSpaceAfterTimeout="3000">
        <memoryUsage><memoryUsage limit="64 mb"/></memoryUsage>
        <storeUsage><storeUsage limit="100 gb"/></storeUsage>
        <tempUsage><tempUsage limit="50 gb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp+nio://0.0.0.0:61613?transport.hbGracePeriodMultiplier=1.5"/>
      <transportConnector name="ws" uri="ws://0.0.0.0:61614"/>
      <transportConnector name="ssl" uri="ssl://0.0.0.0:61617"/>
      <transportConnector name="mqtt" uri="mqtt://0.0.0.0:1883"/>
    </transportConnectors>
  </broker>
  <import resource="jetty.xml"/>
</beans>"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_authorization_policies_and_system_usage() {
    let run = run_xml(SECURED, &["activemq.data=/srv/data", "admin.password=adm"]);
    run.assert_good();
    let t = run.toml();

    let users = t["users"].as_array().unwrap();
    assert_eq!(users[0]["name"].as_str(), Some("admin"));
    assert_eq!(users[0]["password"].as_str(), Some("adm"));
    assert_eq!(strs(&users[0]["groups"]), ["admins", "users"]);
    assert_eq!(strs(&users[1]["groups"]), ["users"]);
    let authz = t["authorization"].as_array().unwrap();
    assert_eq!(authz.len(), 5);
    assert_eq!(strs(&authz[1]["admin"]), ["users", "admins"]);
    assert_eq!(authz[4]["temporary"].as_bool(), Some(true));
    assert_eq!(strs(&authz[4]["read"]), ["users"]);

    // systemUsage, in ActiveMQ's units.
    assert_eq!(i(&t, "limits.memory_bytes"), 64 << 20);
    assert_eq!(i(&t, "limits.store_bytes"), 100 << 30);
    assert_eq!(i(&t, "policy.send_timeout_ms"), 3000);
    assert_eq!(i(&t, "limits.temp_bytes"), 50 << 30);

    // The default entries are [policy]; the rest are entries, the redelivery ones merged in.
    assert_eq!(s(&t, "policy.dead_letter_queue"), "ALL.DLQ");
    assert_eq!(s(&t, "policy.dead_letter_strategy"), "shared");
    assert_eq!(i(&t, "policy.expire_check_interval_ms"), 15000);
    assert_eq!(i(&t, "limits.max_page_size"), 100);
    assert_eq!(i(&t, "policy.maximum_redeliveries"), 3);
    assert_eq!(i(&t, "policy.redelivery_delay_ms"), 10000);
    assert!(
        run.unmapped_at(
            "/beans/broker/plugins/redeliveryPlugin/redeliveryPolicyMap/redeliveryPolicyMap/defaultEntry/redeliveryPolicy/@initialRedeliveryDelay"
        )
        .contains("one delay")
    );
    let entries = get(&t, "policy.entries").unwrap().as_array().unwrap();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let orders = &entries[0];
    assert_eq!(orders["queue"].as_str(), Some("orders.>"));
    assert_eq!(orders["gc_inactive_destinations"].as_bool(), Some(true));
    assert_eq!(
        orders["inactive_timeout_before_gc_ms"].as_integer(),
        Some(30000)
    );
    assert_eq!(orders["dead_letter_strategy"].as_str(), Some("individual"));
    assert_eq!(orders["dead_letter_queue_prefix"].as_str(), Some("DLQ."));
    assert_eq!(orders["expired"].as_str(), Some("discard"));
    assert_eq!(orders["maximum_redeliveries"].as_integer(), Some(4));
    assert_eq!(orders["redelivery_delay_ms"].as_integer(), Some(2000));
    assert_eq!(orders["use_exponential_backoff"].as_bool(), Some(true));
    assert_eq!(orders["backoff_multiplier"].as_float(), Some(2.0));
    assert_eq!(orders["maximum_redelivery_delay_ms"].as_integer(), Some(0));
    assert_eq!(orders["prioritized_messages"].as_bool(), Some(true));
    let prices = &entries[1];
    assert_eq!(prices["topic"].as_str(), Some("prices.>"));
    assert_eq!(prices["expired"].as_str(), Some("discard"));
    // Arrival order, and removal when inactive, apply to topics too.
    assert_eq!(prices["prioritized_messages"].as_bool(), Some(false));
    assert_eq!(prices["gc_inactive_destinations"].as_bool(), Some(true));
    let audit = &entries[2];
    assert_eq!(audit["topic"].as_str(), Some("audit"));
    assert_eq!(audit["maximum_redeliveries"].as_integer(), Some(1));
    assert_eq!(
        audit["redelivery_delay_ms"].as_integer(),
        Some(1000),
        "RedeliveryPolicy's default, written out"
    );
    assert_eq!(
        orders["memory_limit_bytes"].as_integer(),
        Some(1 << 20),
        "memoryLimit=\"1mb\""
    );
    let entry = "/beans/broker/destinationPolicy/policyMap/policyEntries/policyEntry";
    run.unmapped_at(&format!("{entry}[@topic='prices.>']/@optimizedDispatch"));

    // Plugins and broker attributes without an equivalent.
    assert!(
        run.unmapped_at("/beans/broker/plugins/timeStampingBrokerPlugin")
            .contains("timestamp")
    );
    assert!(run.unmapped_at("/beans/broker/@useJmx").contains("JMX"));
    assert!(run.unmapped_at("/beans/import").contains("not followed"));

    // Transports: STOMP with its option; TLS waits for PEM files; the console stays.
    assert_eq!(s(&t, "transports.stomp"), "0.0.0.0:61613");
    assert_eq!(
        get(&t, "transports.stomp_heartbeat_grace")
            .unwrap()
            .as_float(),
        Some(1.5)
    );
    assert_eq!(s(&t, "transports.websocket"), "0.0.0.0:61614");
    assert_eq!(s(&t, "transports.openwire"), "");
    assert!(get(&t, "transports.web").is_none(), "jetty.xml is imported");
    assert!(get(&t, "transports.openwire_tls").is_none());
    assert!(run.stdout.contains("# openwire_tls = \"0.0.0.0:61617\""));
    assert!(!b(&t, "broker.scheduler_support"));

    // It runs: the imported user logs in and may use the queue its group was granted.
    let mut local = t.clone();
    let tr = local["transports"].as_table_mut().unwrap();
    tr.remove("mqtt");
    starts_and_serves(&local, "app", "app-pw").await;
}

#[test]
fn jaas_is_reported_with_the_way_to_replace_it() {
    let xml = r#"<broker xmlns="http://activemq.apache.org/schema/core" useJmx="false">
      <plugins><jaasAuthenticationPlugin configuration="activemq"/></plugins>
      <destinationInterceptors>
        <virtualDestinationInterceptor><virtualDestinations>
          <virtualTopic name="VT.>" prefix="C.*." selectorAware="false"/>
          <compositeQueue name="fan"><forwardTo><queue physicalName="a"/></forwardTo></compositeQueue>
        </virtualDestinations></virtualDestinationInterceptor>
      </destinationInterceptors>
      <transportConnectors><transportConnector uri="stomp://127.0.0.1:61613"/></transportConnectors>
    </broker>"#;
    let run = run_xml(xml, &[]);
    run.assert_good();
    let t = run.toml();
    assert!(
        run.unmapped_at("/broker/plugins/jaasAuthenticationPlugin")
            .contains("[[users]]")
    );
    assert!(t.get("users").is_none());
    assert_eq!(s(&t, "broker.virtual_topic_name"), "VT.>");
    assert_eq!(s(&t, "broker.virtual_topic_prefix"), "C.*.");
    assert!(b(&t, "broker.use_virtual_topics"));
    run.unmapped_at(
        "/broker/destinationInterceptors/virtualDestinationInterceptor/virtualDestinations/compositeQueue[@name='fan']",
    );
    assert_eq!(s(&t, "transports.stomp"), "127.0.0.1:61613");
}

const JOURNALED: &str = r##"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="j" useJmx="false">
    <persistenceFactory>
      <journalPersistenceAdapterFactory dataDirectory="/var/amq" dataSource="#postgres-ds" journalLogFileSize="32mb" journalLogFiles="5"/>
    </persistenceFactory>
  </broker>
  <bean id="postgres-ds" class="org.postgresql.ds.PGPoolingDataSource" destroy-method="close">
    <property name="serverName" value="localhost"/>
    <property name="databaseName" value="activemq"/>
    <property name="portNumber" value="0"/>
    <property name="user" value="activemq"/>
    <property name="password" value="activemq"/>
    <property name="dataSourceName" value="postgres"/>
    <property name="initialConnections" value="1"/>
    <property name="maxConnections" value="10"/>
  </bean>
</beans>"##;

#[test]
fn journaled_jdbc_on_postgres_amq_and_memory_adapters() {
    let run = run_xml(JOURNALED, &[]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "journaled-jdbc");
    assert_eq!(
        s(&t, "persistence.jdbc.url"),
        "postgres://activemq:activemq@localhost/activemq",
        "portNumber 0 is the driver's default port"
    );
    assert_eq!(i(&t, "persistence.jdbc.pool_size"), 10);
    assert_eq!(
        s(&t, "persistence.journaled_jdbc.directory"),
        "/var/amq/journal"
    );
    assert_eq!(
        i(&t, "persistence.journaled_jdbc.max_file_length"),
        32 << 20
    );
    assert!(
        get(&t, "locker").is_none(),
        "the journal's shared-file lock"
    );
    let factory = "/beans/broker/persistenceFactory/journalPersistenceAdapterFactory";
    run.unmapped_at(&format!("{factory}/@journalLogFiles"));
    for p in ["dataSourceName", "initialConnections"] {
        run.unmapped_at(&format!(
            "/beans/bean[@id='postgres-ds']/property[@name='{p}']"
        ));
    }

    let amq = r#"<broker xmlns="http://activemq.apache.org/schema/core" useJmx="false">
      <persistenceAdapter><amqPersistenceAdapter directory="/x/amq" maxFileLength="32 mb" checkpointInterval="2000"/></persistenceAdapter>
    </broker>"#;
    let run = run_xml(amq, &[]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "amq");
    assert_eq!(s(&t, "persistence.amq.directory"), "/x/amq");
    assert_eq!(i(&t, "persistence.amq.max_file_length"), 32 << 20);
    assert_eq!(i(&t, "persistence.amq.checkpoint_interval_ms"), 2000);

    let memory = r#"<broker xmlns="http://activemq.apache.org/schema/core" useJmx="false">
      <persistenceAdapter><memoryPersistenceAdapter/></persistenceAdapter>
      <systemUsage><systemUsage sendFailIfNoSpace="true">
        <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
      </systemUsage></systemUsage>
    </broker>"#;
    let run = run_xml(memory, &[]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "memory");
    assert!(b(&t, "policy.send_fail_if_no_space"));
    assert!(
        run.unmapped_at(
            "/broker/systemUsage/systemUsage/memoryUsage/memoryUsage/@percentOfJvmHeap"
        )
        .contains("no JVM heap")
    );
    assert!(get(&t, "limits.memory_bytes").is_none());
}

#[test]
fn a_kahadb_under_a_database_lock() {
    let xml = r##"<beans xmlns="http://www.springframework.org/schema/beans">
      <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false">
        <persistenceAdapter>
          <kahaDB directory="/x/kahadb" lockKeepAlivePeriod="2000">
            <locker>
              <lease-database-locker lockAcquireSleepInterval="3000" dataSource="#pg">
                <statements><statements tablePrefix="LOCK_"/></statements>
              </lease-database-locker>
            </locker>
          </kahaDB>
        </persistenceAdapter>
      </broker>
      <bean id="pg" class="org.postgresql.ds.PGSimpleDataSource">
        <property name="url" value="jdbc:postgresql://db:5432/locks"/>
        <property name="user" value="amq"/>
      </bean>
    </beans>"##;
    let run = run_xml(xml, &[]);
    run.assert_good();
    let t = run.toml();
    assert_eq!(s(&t, "persistence.kind"), "kahadb");
    assert_eq!(s(&t, "locker.kind"), "lease");
    assert_eq!(s(&t, "locker.url"), "postgres://amq@db:5432/locks");
    assert_eq!(s(&t, "locker.table_prefix"), "LOCK_");
    assert_eq!(i(&t, "locker.acquire_retry_ms"), 3000);
    assert_eq!(i(&t, "locker.keep_alive_ms"), 2000);
    assert!(
        get(&t, "locker.lease_ms").is_none(),
        "2000 fits the default lease"
    );

    // Without a data source there is no database to lock: reported, the file lock stays.
    let run = run_xml(&xml.replace(" dataSource=\"#pg\"", ""), &[]);
    run.assert_good();
    assert!(get(&run.toml(), "locker.kind").is_none());
    assert!(
        run.unmapped_at("/beans/broker/persistenceAdapter/kahaDB/locker/lease-database-locker")
            .contains("needs a database")
    );
}
