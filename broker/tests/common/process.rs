//! The `broker` executable in a child process, as users run it: [`spawn`] for a test that only
//! needs its STOMP address, [`BrokerProcess`] for one that reads what it logs (fail-over, the
//! lockers, MQTT sessions) or kills it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// Starts `broker start --config <file>` and returns the child and the STOMP URL it printed.
pub fn spawn(config: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["start", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn broker");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening for STOMP on ") {
                let url = line[i + "listening for STOMP on ".len()..]
                    .trim()
                    .to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the broker announces its STOMP address");
    (child, url)
}

/// Writes `broker.toml` into `dir`: data under `dir/data`, STOMP on an ephemeral port, the web
/// console on `web` (empty: off). Returns the file's path.
pub fn write_config(dir: &std::path::Path, web: &str) -> std::path::PathBuf {
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\ndata_directory = \"{}\"\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:0\"\nwebsocket = \"\"\nmqtt = \"\"\nweb = \"{web}\"\n",
            dir.join("data").display()
        ),
    )
    .expect("write broker.toml");
    config
}

/// The admin/admin login of a default config.
pub fn admin() -> broker::client::ConnectOptions {
    broker::client::ConnectOptions {
        login: "admin".into(),
        passcode: "admin".into(),
        ..broker::client::ConnectOptions::default()
    }
}

/// A `broker start` process with every line it logs kept; killed (SIGKILL) when dropped,
/// whatever the test did.
pub struct BrokerProcess {
    // Behind a lock so that every method takes `&self` (tests keep brokers in a Vec and poll
    // them from loops).
    child: Mutex<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
        // A failing test shows what the broker said: most failures of process tests are
        // timeouts, and the broker's side of the story is the only way to tell why.
        if std::thread::panicking() {
            for line in lock(&self.log).iter() {
                eprintln!("broker: {line}");
            }
        }
    }
}

impl BrokerProcess {
    /// Starts `broker start --config <config>` with `RUST_LOG=<rust_log>`.
    pub fn start(config: &Path, rust_log: &str) -> BrokerProcess {
        let mut child = Command::new(BIN)
            .args(["start", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", rust_log)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn broker");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lock(&sink).push(line);
            }
        });
        BrokerProcess {
            child: Mutex::new(child),
            log,
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        lock(&self.log).join("\n")
    }

    /// How many lines were logged so far (a mark for [`BrokerProcess::find_after`]).
    pub fn line_count(&self) -> usize {
        lock(&self.log).len()
    }

    /// How many logged lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        lock(&self.log)
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// True once a line containing `needle` was logged.
    pub fn has(&self, needle: &str) -> bool {
        self.find_after(0, needle).is_some()
    }

    /// The first line containing `needle` logged after the first `mark` lines.
    pub fn find_after(&self, mark: usize, needle: &str) -> Option<String> {
        let log = lock(&self.log);
        log.get(mark..)?
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    /// Waits (on the async runtime) for a line containing `needle`; panics with the log after
    /// `timeout` or if the broker exits first.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self.poll_for(needle, until, timeout) {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`BrokerProcess::wait_for`] for a test without an async runtime.
    pub fn wait_for_blocking(&self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self.poll_for(needle, until, timeout) {
                return line;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn poll_for(&self, needle: &str, until: Instant, timeout: Duration) -> Option<String> {
        if let Some(line) = self.find_after(0, needle) {
            return Some(line);
        }
        if let Some(status) = self.exited() {
            panic!(
                "the broker exited ({status}) before logging {needle:?}:\n{}",
                self.log()
            );
        }
        assert!(
            Instant::now() < until,
            "no {needle:?} in the broker's log within {timeout:?}:\n{}",
            self.log()
        );
        None
    }

    /// What follows `marker` on the first line that has it (an address the broker announces:
    /// `listening for STOMP on `), waiting for it as [`BrokerProcess::wait_for_blocking`].
    pub fn announced(&self, marker: &str, timeout: Duration) -> String {
        let line = self.wait_for_blocking(marker, timeout);
        let at = line.find(marker).map_or(0, |i| i + marker.len());
        line[at..].trim().to_owned()
    }

    /// The exit status once the process has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        lock(&self.child)
            .try_wait()
            .expect("wait on the broker process")
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(&self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The process id (for `kill -STOP` and friends).
    pub fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(lock(&self.child).id() as i32).expect("a child has a pid")
    }
}

/// The guarded value, whatever a panicking thread left it as.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
