//! A broker with its STOMP listener on an ephemeral port, in this process.
#![allow(dead_code)]

pub mod activemq;
pub mod browser;
pub mod http;
pub mod java;
pub mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker::client::{ConnectOptions, StompClient};
use broker::listener::Server;
use broker::stomp::frame::Frame;
use broker::url::Endpoint;
use broker::{Broker, BrokerConfig};
use tempfile::TempDir;

pub struct TestBroker {
    pub dir: TempDir,
    pub extra: String,
    pub broker: Arc<Broker>,
    pub server: Server,
}

pub fn config(dir: &std::path::Path, extra: &str) -> BrokerConfig {
    // Small KahaDB files, unless the test picks another engine.
    let kahadb = if extra.contains("[persistence]") {
        ""
    } else {
        "[persistence.kahadb]\njournal_max_file_length = 1048576\npreallocate = false\n"
    };
    let text = format!(
        "[broker]\nname = \"stomp-test\"\ndata_directory = \"{}\"\n{kahadb}{extra}",
        dir.display()
    );
    // Never the default 61616 (nor 61614): tests run in parallel.
    let text = if extra.contains("[transports]") {
        let mut defaults = String::new();
        if !extra.contains("openwire") {
            defaults.push_str("openwire = \"127.0.0.1:0\"\n");
        }
        if !extra.contains("websocket") {
            defaults.push_str("websocket = \"\"\n");
        }
        if !extra.contains("mqtt") {
            defaults.push_str("mqtt = \"\"\n");
        }
        text.replacen("[transports]\n", &format!("[transports]\n{defaults}"), 1)
    } else {
        format!(
            "{text}\n[transports]\nstomp = \"127.0.0.1:0\"\nopenwire = \"127.0.0.1:0\"\nwebsocket = \"\"\nmqtt = \"\"\n"
        )
    };
    BrokerConfig::from_toml(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A self-signed certificate for `localhost`, written as PEM files into a directory.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCert {
    pub fn write(dir: &Path) -> TestCert {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).expect("cert.pem");
        std::fs::write(&key, generated.key_pair.serialize_pem()).expect("key.pem");
        TestCert { cert, key }
    }

    /// A `[transports]` section with STOMP on an ephemeral port, `lines` (each ending in a
    /// newline), and this certificate.
    pub fn transports(&self, lines: &str) -> String {
        format!(
            "[transports]\nstomp = \"127.0.0.1:0\"\n{lines}tls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

impl TestBroker {
    pub async fn start(extra: &str) -> TestBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra).await
    }

    pub async fn start_in(dir: TempDir, extra: &str) -> TestBroker {
        let broker = Arc::new(Broker::new(config(dir.path(), extra)));
        broker.start().await.expect("broker starts");
        let server = Server::start(Arc::clone(&broker))
            .await
            .expect("listener starts");
        TestBroker {
            dir,
            extra: extra.to_owned(),
            broker,
            server,
        }
    }

    /// The console and monitoring API of this broker, on an ephemeral port.
    pub async fn console(&self) -> broker::web::WebServer {
        broker::web::WebServer::start(self.broker.clone(), "127.0.0.1:0")
            .await
            .expect("web console starts")
    }

    pub fn endpoint(&self) -> Endpoint {
        let addr = self.server.stomp.expect("STOMP listener");
        Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: false,
        }
    }

    pub async fn client(&self) -> StompClient {
        self.client_as("admin", "admin", None).await
    }

    pub async fn client_as(
        &self,
        login: &str,
        passcode: &str,
        client_id: Option<&str>,
    ) -> StompClient {
        StompClient::connect(
            &self.endpoint(),
            &ConnectOptions {
                login: login.into(),
                passcode: passcode.into(),
                client_id: client_id.map(str::to_owned),
                ca: None,
            },
        )
        .await
        .expect("connect")
    }

    /// Stops and starts again on the same directory (a new port).
    pub async fn restart(self) -> TestBroker {
        self.server.stop().await;
        self.broker.stop().await;
        Self::start_in(self.dir, &self.extra).await
    }

    pub async fn stop(self) {
        self.server.stop().await;
        self.broker.stop().await;
    }
}

pub async fn recv(c: &mut StompClient) -> Frame {
    c.recv_timeout(Duration::from_secs(10))
        .await
        .expect("recv")
        .expect("a frame within 10 s")
}

pub async fn none(c: &mut StompClient) {
    if let Some(f) = c
        .recv_timeout(Duration::from_millis(300))
        .await
        .expect("recv")
    {
        panic!("unexpected frame {f:?}");
    }
}

pub fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}
