//! Test places for the JDBC engine: a SQLite file in a temp dir, or a fresh table prefix on
//! the MariaDB/MySQL or PostgreSQL server named by `MYSQL_URL` / `POSTGRES_URL`. Tables are
//! dropped when the factory is.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use store_api::testkit::StoreFactory;
use store_api::{PersistenceAdapter, Result};
use store_jdbc::{JdbcConfig, JdbcStore};
use tempfile::TempDir;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A table prefix no other test (in this process or another) uses.
pub fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "T{:x}_{:x}_{:x}_",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

pub struct JdbcFactory {
    pub config: Option<JdbcConfig>,
    skip: Option<String>,
    _dir: Option<TempDir>,
}

impl JdbcFactory {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        let mut config = JdbcConfig::new(url);
        config.pool_size = 4;
        JdbcFactory {
            config: Some(config),
            skip: None,
            _dir: Some(dir),
        }
    }

    /// A fresh prefix on the server `var` names, or a skip when it is not set.
    pub fn from_env(var: &str) -> Self {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => {
                let mut config = JdbcConfig::new(url);
                config.table_prefix = unique_prefix();
                config.pool_size = 4;
                JdbcFactory {
                    config: Some(config),
                    skip: None,
                    _dir: None,
                }
            }
            _ => JdbcFactory {
                config: None,
                skip: Some(format!("{var} is not set; `.ci/run` sets it")),
                _dir: None,
            },
        }
    }

    pub fn mysql() -> Self {
        JdbcFactory::from_env("MYSQL_URL")
    }

    pub fn postgres() -> Self {
        JdbcFactory::from_env("POSTGRES_URL")
    }

    pub fn config(&self) -> &JdbcConfig {
        self.config.as_ref().expect("factory not skipped")
    }
}

impl Drop for JdbcFactory {
    fn drop(&mut self) {
        let Some(config) = self.config.take() else {
            return;
        };
        if self._dir.is_some() {
            return; // the temp dir goes with its file
        }
        // Drop may run inside a runtime, where another cannot block: use a thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                && let Err(e) = rt.block_on(JdbcStore::drop_tables(&config))
            {
                eprintln!("could not drop test tables {}*: {e}", config.table_prefix);
            }
        })
        .join();
    }
}

#[async_trait]
impl StoreFactory for JdbcFactory {
    async fn open(&self) -> Result<Arc<dyn PersistenceAdapter>> {
        Ok(Arc::new(JdbcStore::open(self.config().clone()).await?))
    }

    fn durable(&self) -> bool {
        true
    }

    fn skip_reason(&self) -> Option<String> {
        self.skip.clone()
    }
}

/// A TCP proxy between a store and its database that a test can cut and restore, to lose the
/// connection without killing anything.
pub struct Proxy {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c2.load(Ordering::Acquire) {
                    continue; // dropped: the connection is refused
                }
                let up = upstream.clone();
                k2.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(up).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy {
            port,
            cut,
            conns,
            accept,
        }
    }

    /// Drops every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (auth, tail) = match rest.rsplit_once('@') {
            Some((a, t)) => (format!("{a}@"), t),
            None => (String::new(), rest),
        };
        let path = tail.find('/').map(|i| &tail[i..]).unwrap_or("");
        format!("{scheme}://{auth}127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `host:port` of a server URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let tail = rest.rsplit_once('@').map(|(_, t)| t).unwrap_or(rest);
    tail.split('/').next().unwrap().to_string()
}
