//! Real Apache ZooKeeper (Debian's `zookeeper` package) for a test: one standalone server
//! ([`ZooKeeper::start`]) or an ensemble of three ([`ZooKeeper::ensemble`]), on ephemeral
//! loopback ports with a short tick (200 ms, so sessions of 400 ms and up are allowed), data in
//! a temporary directory, killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{free_port, free_ports};

/// Where Debian's package puts ZooKeeper's jar (its manifest names the jars it needs).
const JAR: &str = "/usr/share/java/zookeeper.jar";

/// A running ZooKeeper server, or ensemble.
pub struct ZooKeeper {
    children: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn spawn(cfg: &std::path::Path, main: &str) -> Child {
    Command::new("java")
        .args(["-Xmx128m", "-XX:+UseSerialGC", "-cp"])
        .arg(format!("/etc/zookeeper/conf:{JAR}"))
        .arg(main)
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ZooKeeper (java)")
}

fn installed() -> bool {
    if std::path::Path::new(JAR).exists() {
        return true;
    }
    crate::skip("ZooKeeper is not installed (apt-get install zookeeper)");
    false
}

impl ZooKeeper {
    /// Starts a server; `None` (after [`crate::skip`], which fails under CI) when Java or
    /// ZooKeeper is not installed.
    pub fn start() -> Option<ZooKeeper> {
        if !installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxSessionTimeout=60000\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = spawn(&cfg, "org.apache.zookeeper.server.ZooKeeperServerMain");
        let zk = ZooKeeper {
            children: vec![child],
            ports: vec![port],
            _dir: dir,
        };
        zk.wait_listening();
        Some(zk)
    }

    /// Three servers forming one ensemble (`QuorumPeerMain`, each with its `myid`).
    pub fn ensemble() -> Option<ZooKeeper> {
        if !installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Nine ports chosen together, so no two servers are told the same one.
        let p = free_ports::<9>();
        let ports: Vec<u16> = p[..3].to_vec();
        let peers: Vec<(u16, u16)> = (0..3).map(|i| (p[3 + 2 * i], p[4 + 2 * i])).collect();
        let servers: String = peers
            .iter()
            .enumerate()
            .map(|(i, (q, e))| format!("server.{}=127.0.0.1:{q}:{e}\n", i + 1))
            .collect();
        let mut children = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let data = dir.path().join(format!("zk{}", i + 1));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
            let cfg = dir.path().join(format!("zoo{}.cfg", i + 1));
            std::fs::write(
                &cfg,
                format!(
                    "tickTime=200\ninitLimit=50\nsyncLimit=25\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxSessionTimeout=60000\n{servers}",
                    data.display()
                ),
            )
            .unwrap();
            children.push(spawn(
                &cfg,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ));
        }
        let zk = ZooKeeper {
            children,
            ports,
            _dir: dir,
        };
        zk.wait_listening();
        Some(zk)
    }

    fn wait_listening(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        for port in &self.ports {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < until,
                    "ZooKeeper did not listen on {port} within 60 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Each server's `127.0.0.1:<port>`.
    pub fn servers(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The connect string: every server, comma-separated.
    pub fn address(&self) -> String {
        self.servers().join(",")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
