//! The `broker` executable in a child process, as users run it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

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
