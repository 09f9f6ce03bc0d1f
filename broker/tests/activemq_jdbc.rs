//! Apache ActiveMQ 5.17 (Debian's `activemq`, `jdbcPersistenceAdapter` with the MySQL adapter
//! on MariaDB) and this broker (`message_format = "openwire"`, database locker) as master and
//! slave of one database, each way round: the stock Java client sends persistent messages of
//! several kinds to a queue and to a topic with a durable subscription through the master and
//! consumes the first few of each; the slave waits on ActiveMQ's lock row; the master is killed
//! with `kill -9`; the slave takes over and the Java client finds exactly the rest there, in
//! order, none lost and none twice, with their properties and bodies. That is the rolling
//! migration of issue 31: swap the slave first, then fail over.
//!
//! Each direction uses a table prefix of its own on the `MYSQL_URL` server and drops its tables
//! at the end. Needs `javac`, `activemq`, `libactivemq-java` and `libmariadb-java`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::activemq::{self, ActiveMq};
use common::process::BrokerProcess;
use store_jdbc::{JdbcConfig, MessageFormat};
use test_support::free_port;

const MARIADB_JAR: &str = "/usr/share/java/mariadb-java-client.jar";

/// The tables under one prefix, dropped when the test ends however it ends.
struct Tables(Option<JdbcConfig>);

impl Drop for Tables {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            test_support::database::drop_tables_blocking(c);
        }
    }
}

/// `mysql://user[:password]@host:port/db` as the MariaDB JDBC driver's URL.
fn jdbc_url(url: &str) -> String {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split('?')
        .next()
        .unwrap_or_default();
    let (creds, place) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    let mut out = format!("jdbc:mariadb://{place}?user={user}");
    if !password.is_empty() {
        out.push_str(&format!("&password={password}"));
    }
    out
}

/// ActiveMQ on the database's tables under `prefix`, with ActiveMQ's default database locker.
fn start_activemq(base: &Path, port: u16, url: &str, prefix: &str) -> ActiveMq {
    let beans = format!(
        r#"<bean id="mariadb" class="org.mariadb.jdbc.MariaDbDataSource">
    <property name="url" value="{}"/>
  </bean>"#,
        jdbc_url(url).replace('&', "&amp;")
    );
    let broker = format!(
        r##"<persistenceAdapter>
      <jdbcPersistenceAdapter dataSource="#mariadb" createTablesOnStartup="true" lockKeepAlivePeriod="2000">
        <adapter><mysql-jdbc-adapter/></adapter>
        <statements><statements tablePrefix="{prefix}"/></statements>
      </jdbcPersistenceAdapter>
    </persistenceAdapter>"##
    );
    ActiveMq::spawn(base, port, &beans, &broker, &[MARIADB_JAR])
}

/// This broker as a process on the tables under `prefix` (ActiveMQ's format, its database
/// locker), OpenWire on `port`.
fn start_broker(dir: &Path, url: &str, prefix: &str, port: u16) -> BrokerProcess {
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\nname = \"jdbc-share\"\ndata_directory = \"{}\"\n\
             [persistence]\nkind = \"jdbc\"\n\
             [persistence.jdbc]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\nmessage_format = \"openwire\"\n\
             [locker]\nkind = \"database\"\nacquire_retry_ms = 500\n\
             [transports]\nstomp = \"\"\nopenwire = \"127.0.0.1:{port}\"\nwebsocket = \"\"\nmqtt = \"\"\nweb = \"\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    BrokerProcess::start(&config, "info,sqlx=warn")
}

/// Compiles `JdbcShare.java` into `dir`.
fn compile(dir: &Path) -> PathBuf {
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java/JdbcShare.java");
    let out = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(common::java::classpath(""))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    classes
}

/// Runs `JdbcShare PORT mode` to its end (at most two minutes) and asserts it succeeded.
fn run_java(classes: &Path, port: u16, mode: &str, context: &dyn Fn() -> String) {
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(common::java::classpath(&classes.display().to_string()))
        .arg("JdbcShare")
        .arg(port.to_string())
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("JdbcShare {mode}:\n{stdout}");
    assert!(
        out.status.success(),
        "JdbcShare {mode} failed:\n{stdout}\n{}\n--- the broker it ran against:\n{}",
        String::from_utf8_lossy(&out.stderr),
        context()
    );
}

/// The database, Java and ActiveMQ, or a skip (a failure under CI / `BROKER_REQUIRE_JAVA`).
fn setup(tag: &str) -> Option<(String, String, Tables)> {
    let url = match test_support::database::server_url("MYSQL_URL") {
        Ok(url) => url,
        Err(why) => {
            test_support::skip(why);
            return None;
        }
    };
    if !activemq::available(&[MARIADB_JAR]) {
        return None;
    }
    let prefix = test_support::database::unique_prefix(tag);
    let mut config = test_support::database::prefixed(&url, &prefix);
    config.message_format = MessageFormat::OpenWire;
    Some((url, prefix, Tables(Some(config))))
}

/// ActiveMQ is master and takes the messages; this broker waits as slave on the same tables;
/// ActiveMQ is killed; this broker serves what was pending.
#[test]
fn activemq_master_killed_this_broker_takes_over() {
    let Some((url, prefix, _tables)) = setup("AW") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let classes = compile(work.path());
    let amq_port = free_port();
    let mut amq = start_activemq(&work.path().join("amq"), amq_port, &url, &prefix);
    amq.wait_listening(Duration::from_secs(90));
    run_java(&classes, amq_port, "produce", &|| amq.log());

    let ours = free_port();
    let broker = start_broker(work.path(), &url, &prefix, ours);
    broker.wait_for_blocking("slave: the lock row is held", Duration::from_secs(60));
    // ActiveMQ's acks reach the database from its store's batches shortly after the client's
    // calls return.
    std::thread::sleep(Duration::from_secs(2));
    amq.kill();
    broker.wait_for_blocking("listening for OpenWire", Duration::from_secs(60));
    run_java(&classes, ours, "consume", &|| broker.log());
}

/// This broker is master and takes the messages; ActiveMQ waits as slave on the same tables;
/// this broker is killed; ActiveMQ serves what was pending.
#[test]
fn this_broker_killed_activemq_takes_over() {
    let Some((url, prefix, _tables)) = setup("WA") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let classes = compile(work.path());
    let ours = free_port();
    let broker = start_broker(work.path(), &url, &prefix, ours);
    broker.wait_for_blocking("listening for OpenWire", Duration::from_secs(60));
    run_java(&classes, ours, "produce", &|| broker.log());

    let amq_port = free_port();
    let mut amq = start_activemq(&work.path().join("amq"), amq_port, &url, &prefix);
    // A slave: ActiveMQ waits on the lock row and does not listen while this broker lives.
    let waiting = Instant::now() + Duration::from_secs(8);
    while Instant::now() < waiting {
        assert!(amq.running(), "ActiveMQ exited:\n{}", amq.log());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", amq_port)).is_err(),
            "ActiveMQ listens while this broker holds the lock:\n{}",
            amq.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(broker);
    amq.wait_listening(Duration::from_secs(90));
    run_java(&classes, amq_port, "consume", &|| amq.log());
}
