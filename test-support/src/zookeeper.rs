//! A real Apache ZooKeeper server (Debian's `zookeeper` package) for a test: one standalone
//! server on an ephemeral loopback port with a short tick (200 ms, so sessions of 400 ms and
//! up are allowed), its data in a temporary directory, killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts ZooKeeper's jar (its manifest names the jars it needs).
const JAR: &str = "/usr/share/java/zookeeper.jar";

/// A running ZooKeeper server.
pub struct ZooKeeper {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    /// Starts a server; `None` (after [`crate::skip`], which fails under CI) when Java or
    /// ZooKeeper is not installed.
    pub fn start() -> Option<ZooKeeper> {
        if !std::path::Path::new(JAR).exists() {
            crate::skip("ZooKeeper is not installed (apt-get install zookeeper)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxSessionTimeout=60000\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-cp"])
            .arg(format!("/etc/zookeeper/conf:{JAR}"))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ZooKeeper (java)");
        let zk = ZooKeeper {
            child,
            port,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "ZooKeeper did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(zk)
    }

    /// `127.0.0.1:<port>`, as a client's connect string.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
