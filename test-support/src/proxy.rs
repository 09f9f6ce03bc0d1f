//! A TCP proxy a test can cut or freeze, between a client and its server (the store-jdbc
//! lockers' tests, the broker's fail-over through a lost database connection).

use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A TCP proxy between a store and its database that a test can cut and restore, to lose the
/// connection without killing anything, or freeze and thaw, to stop a client as SIGSTOP would
/// while the server keeps its session (and whatever transaction it has open).
pub struct Proxy {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
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
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c2, k2, f2) = (cut.clone(), conns.clone(), frozen.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if c2.load(Ordering::Acquire) {
                    continue; // dropped: the connection is refused
                }
                let up = upstream.clone();
                let f3 = f2.clone();
                k2.lock().push(tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(up).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        tokio::join!(forward(ri, wo, f3.clone()), forward(ro, wi, f3));
                    }
                }));
            }
        });
        Proxy {
            port,
            cut,
            frozen,
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

    /// Stops forwarding in both directions, keeping every connection open: bytes read after
    /// this are held until [`Proxy::thaw`].
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::Release);
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

/// Copies `from` to `to` until either ends, holding what it read while `frozen`.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `host:port` of a server URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let tail = rest.rsplit_once('@').map(|(_, t)| t).unwrap_or(rest);
    tail.split('/').next().unwrap().to_string()
}
