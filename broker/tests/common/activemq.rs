//! Apache ActiveMQ 5.17 as Debian installs it (`activemq`), started by a test in a directory of
//! its own with the `<broker>` element the test gives, and killed (SIGKILL) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const AMQ_JAR: &str = "/usr/share/activemq/bin/activemq.jar";

/// A running ActiveMQ. Dropping it kills it with SIGKILL, whatever the test did.
pub struct ActiveMq {
    child: Child,
    pub base: PathBuf,
    pub port: u16,
}

impl Drop for ActiveMq {
    fn drop(&mut self) {
        self.kill();
    }
}

impl ActiveMq {
    /// Starts ActiveMQ under `base` with `beans` (bean definitions beside the broker) and
    /// `broker` (the `<broker>` element's content) and an OpenWire connector on `port`; `libs`
    /// are jars put on its class path (a JDBC driver). Does not wait for it to listen: a slave
    /// waiting for a database lock does not.
    pub fn spawn(base: &Path, port: u16, beans: &str, broker: &str, libs: &[&str]) -> ActiveMq {
        let conf = base.join("conf");
        let data = base.join("data");
        let lib = base.join("lib");
        for d in [&conf, &data, &lib] {
            std::fs::create_dir_all(d).unwrap();
        }
        // ActiveMQ's launcher puts the jars of `<activemq.base>/lib` on the class path.
        for jar in libs {
            let from = Path::new(jar);
            let name = from.file_name().unwrap();
            std::os::unix::fs::symlink(from, lib.join(name)).unwrap();
        }
        std::fs::write(
            conf.join("activemq.xml"),
            format!(
                r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  {beans}
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="activemq"
          dataDirectory="{data}" schedulerSupport="false">
    {broker}
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"#,
                data = data.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(base.join("activemq.log")).unwrap();
        let child = Command::new("java")
            .arg("-Xmx256M")
            .arg(format!("-Dactivemq.base={}", base.display()))
            .arg("-Dactivemq.home=/usr/share/activemq")
            .arg(format!("-Dactivemq.conf={}", conf.display()))
            .arg(format!("-Dactivemq.data={}", data.display()))
            .arg("-jar")
            .arg(AMQ_JAR)
            .arg("start")
            .arg(format!(
                "xbean:file:{}",
                conf.join("activemq.xml").display()
            ))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("java starts");
        ActiveMq {
            child,
            base: base.to_owned(),
            port,
        }
    }

    /// What ActiveMQ wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("activemq.log")).unwrap_or_default()
    }

    /// Waits until ActiveMQ accepts connections (it is master), at most `timeout`.
    pub fn wait_listening(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ActiveMQ did not listen within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Java, javac and ActiveMQ here, or a skip (a failure under `BROKER_REQUIRE_JAVA`).
pub fn available(also: &[&str]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if Command::new("javac").arg("-version").output().is_err() {
        missing.push("javac".into());
    }
    for f in [AMQ_JAR, "/usr/share/java/activemq-client.jar"]
        .iter()
        .chain(also)
    {
        if !Path::new(f).exists() {
            missing.push((*f).to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("BROKER_REQUIRE_JAVA").is_none(),
        "missing {missing:?} (apt-get install default-jdk-headless libactivemq-java activemq libmariadb-java)"
    );
    test_support::skip(format!("missing {missing:?}"));
    false
}
