//! The STOMP listeners (TCP and TLS) of a serving broker.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::Broker;
use crate::stomp::frame::Limits;
use crate::stomp::server::{ServerContext, serve};

/// Running listeners; `stop` closes them and every connection.
pub struct Server {
    pub stomp: Option<SocketAddr>,
    pub stomp_tls: Option<SocketAddr>,
    pub openwire: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners the broker's config names (`transports`).
    pub async fn start(broker: Arc<Broker>) -> Result<Server> {
        let t = broker.config().transports.clone();
        let users = Arc::new(broker.config().users());
        if users.is_default() {
            warn!(
                "no [[users]] configured: the default user admin/admin is in use; set users in the config before exposing this broker"
            );
        }
        if users.has_clear_text() {
            warn!(
                "[[users]] passwords in clear text: `broker passwd` prints a hash to put there instead"
            );
        }
        if !users.authorization_enabled() {
            warn!(
                "no [[authorization]] entries: every user may send, consume and administer every destination"
            );
        }
        let (shutdown, rx) = watch::channel(false);
        let ctx = Arc::new(ServerContext {
            broker,
            users,
            limits: Limits {
                max_frame_bytes: t.max_frame_bytes,
                max_headers: t.max_headers,
                max_header_bytes: t.max_header_bytes,
            },
            max_pending_frames: t.max_pending_frames,
            max_pending_bytes: t.max_pending_bytes,
            max_connect_frame_bytes: t.max_connect_frame_bytes,
            connect_timeout: std::time::Duration::from_millis(t.connect_timeout_ms),
            pipeline_window: t.pipeline_window,
            pipeline_window_bytes: t.pipeline_window_bytes,
            write_timeout: (t.write_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(t.write_timeout_ms)),
            shutdown: rx,
        });
        let mut server = Server {
            stomp: None,
            stomp_tls: None,
            openwire: None,
            shutdown,
            tasks: Vec::new(),
        };
        if !t.stomp.is_empty() {
            let l = bind(&t.stomp)
                .await
                .with_context(|| format!("cannot listen for STOMP on {}", t.stomp))?;
            let addr = l.local_addr()?;
            info!("listening for STOMP on tcp://{addr}");
            server.stomp = Some(addr);
            server
                .tasks
                .push(tokio::spawn(accept_loop(l, None, Arc::clone(&ctx))));
        }
        if let Some(bind) = &t.stomp_tls {
            let (Some(cert), Some(key)) = (&t.tls_certificate, &t.tls_key) else {
                anyhow::bail!("transports.stomp_tls needs tls_certificate and tls_key");
            };
            let acceptor = crate::tls::acceptor(cert, key)?;
            let l = self::bind(bind)
                .await
                .with_context(|| format!("cannot listen for STOMP over TLS on {bind}"))?;
            let addr = l.local_addr()?;
            info!("listening for STOMP over TLS on ssl://{addr}");
            server.stomp_tls = Some(addr);
            server.tasks.push(tokio::spawn(accept_loop(
                l,
                Some(acceptor),
                Arc::clone(&ctx),
            )));
        }
        if !t.openwire.is_empty() {
            let l = bind(&t.openwire)
                .await
                .with_context(|| format!("cannot listen for OpenWire on {}", t.openwire))?;
            let addr = l.local_addr()?;
            info!("listening for OpenWire on tcp://{addr}");
            server.openwire = Some(addr);
            server
                .tasks
                .push(tokio::spawn(openwire_accept_loop(l, Arc::clone(&ctx))));
        }
        Ok(server)
    }

    /// Stops accepting, closes every connection (their unacked messages go back) and waits.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// How long a new master waits for its address to be free: an old master on the same host may
/// still be shutting down (or be frozen until it finds itself deposed).
const BIND_WAIT: Duration = Duration::from_secs(60);

async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let until = tokio::time::Instant::now() + BIND_WAIT;
    let mut logged = false;
    loop {
        match TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < until =>
            {
                if !logged {
                    warn!(
                        "{addr} is in use (an old master still stopping?); retrying for up to {BIND_WAIT:?}"
                    );
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Accepts STOMP connections (over TLS when `tls` is given) until the broker stops.
async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: Arc<ServerContext>) {
    accept_until_stopped(listener, ctx, move |stream, peer, ctx| {
        let tls = tls.clone();
        async move {
            match tls {
                None => serve(stream, peer, ctx).await,
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => serve(s, peer, ctx).await,
                        Ok(Err(e)) => debug!(peer = %peer, "TLS handshake failed: {e}"),
                        Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
        }
    })
    .await;
}

/// Accepts OpenWire connections until the broker stops (plain TCP only so far).
async fn openwire_accept_loop(listener: TcpListener, ctx: Arc<ServerContext>) {
    accept_until_stopped(listener, ctx, crate::openwire::serve).await;
}

/// Runs `serve` on every accepted connection until the broker stops, then gives the
/// connections 10 s to close before aborting them. An accept error (out of file descriptors,
/// say) is logged and retried after a pause rather than ending the listener.
async fn accept_until_stopped<F, Fut>(listener: TcpListener, ctx: Arc<ServerContext>, serve: F)
where
    F: Fn(TcpStream, String, Arc<ServerContext>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = ctx.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream, peer.to_string(), Arc::clone(&ctx)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}
