//! The listeners of a serving broker: STOMP (TCP, TLS, WebSocket, secure WebSocket),
//! OpenWire (TCP, TLS) and MQTT.

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
use crate::config::{DEFAULT_MQTT, DEFAULT_WEBSOCKET};
use crate::stomp::frame::Limits;
use crate::stomp::server::{HeartbeatPolicy, ServerContext, serve};
use crate::stomp::websocket::serve_websocket;

/// Running listeners; `stop` closes them and every connection.
pub struct Server {
    pub stomp: Option<SocketAddr>,
    pub stomp_tls: Option<SocketAddr>,
    pub openwire: Option<SocketAddr>,
    /// OpenWire over TLS (`ssl://`).
    pub openwire_tls: Option<SocketAddr>,
    /// STOMP over WebSocket (`ws://`) and over secure WebSocket (`wss://`).
    pub websocket: Option<SocketAddr>,
    pub websocket_tls: Option<SocketAddr>,
    pub mqtt: Option<SocketAddr>,
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
            heartbeats: HeartbeatPolicy {
                min_interval: Duration::from_millis(t.stomp_heartbeat_min_ms),
                grace: t.stomp_heartbeat_grace,
            },
            shutdown: rx,
            openwire_connections: Arc::default(),
        });
        let mut server = Server {
            stomp: None,
            stomp_tls: None,
            openwire: None,
            openwire_tls: None,
            websocket: None,
            websocket_tls: None,
            mqtt: None,
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
            let acceptor = tls_acceptor(&t, "stomp_tls")?;
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
            server.tasks.push(tokio::spawn(openwire_accept_loop(
                l,
                None,
                Arc::clone(&ctx),
            )));
        }
        if let Some(bind) = &t.openwire_tls {
            let acceptor = tls_acceptor(&t, "openwire_tls")?;
            let l = self::bind(bind)
                .await
                .with_context(|| format!("cannot listen for OpenWire over TLS on {bind}"))?;
            let addr = l.local_addr()?;
            info!("listening for OpenWire over TLS on ssl://{addr}");
            server.openwire_tls = Some(addr);
            server.tasks.push(tokio::spawn(openwire_accept_loop(
                l,
                Some(acceptor),
                Arc::clone(&ctx),
            )));
        }
        server.start_websockets(&t, &ctx).await?;
        server.start_mqtt(&t, &ctx).await?;
        // Advertised once it listens (ActiveMQ's `discoveryUri` of a transport connector).
        let mut own_services = Vec::new();
        if let (Some(uri), Some(addr)) = (&t.openwire_discovery, server.openwire) {
            let uri = crate::network::discovery::MulticastUri::parse(uri)
                .map_err(|e| anyhow::anyhow!("transports.openwire_discovery: {e}"))?;
            let service = crate::network::discovery::service_url(addr);
            own_services.push(service.clone());
            server
                .tasks
                .push(tokio::spawn(crate::network::discovery::advertise(
                    uri,
                    service,
                    ctx.broker.config().broker.name.clone(),
                    ctx.shutdown.clone(),
                )));
        }
        // Bridges to other brokers last: this broker serves its own clients by then.
        server.tasks.extend(crate::network::start(
            &ctx.broker,
            &ctx.shutdown,
            &own_services,
        ));
        Ok(server)
    }

    /// MQTT. Unlike the WebSocket default, a taken default port is skipped for good, not bound
    /// later: port 1883 is usually held by a long-running Mosquitto, not by an old master.
    async fn start_mqtt(
        &mut self,
        t: &crate::config::TransportsSection,
        ctx: &Arc<ServerContext>,
    ) -> Result<()> {
        let listener = match &t.mqtt {
            Some(b) if b.is_empty() => return Ok(()),
            Some(b) => bind(b)
                .await
                .with_context(|| format!("cannot listen for MQTT on {b}"))?,
            None => match TcpListener::bind(DEFAULT_MQTT).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(
                        "not listening for MQTT on {DEFAULT_MQTT}: {e} (another MQTT broker?); set transports.mqtt to another address, or to \"\" to turn it off"
                    );
                    return Ok(());
                }
            },
        };
        let retained = crate::mqtt::retained::Retained::open(Arc::clone(&ctx.broker))
            .await
            .context("cannot read the retained MQTT messages")?;
        let mqtt = Arc::new(crate::mqtt::MqttContext {
            server: Arc::clone(ctx),
            retained,
            max_inflight: t.mqtt_max_inflight,
            clients: parking_lot::Mutex::new(std::collections::HashMap::new()),
        });
        let addr = listener.local_addr()?;
        info!("listening for MQTT on mqtt://{addr}");
        self.mqtt = Some(addr);
        self.tasks.push(tokio::spawn(accept_until_stopped(
            listener,
            Arc::clone(ctx),
            move |stream, peer, _| crate::mqtt::connection::serve(stream, peer, Arc::clone(&mqtt)),
        )));
        Ok(())
    }

    /// STOMP over WebSocket, and over secure WebSocket with the TLS settings of `stomp_tls`.
    async fn start_websockets(
        &mut self,
        t: &crate::config::TransportsSection,
        ctx: &Arc<ServerContext>,
    ) -> Result<()> {
        let listener = match &t.websocket {
            Some(b) if b.is_empty() => None,
            Some(b) => Some(
                bind(b)
                    .await
                    .with_context(|| format!("cannot listen for STOMP over WebSocket on {b}"))?,
            ),
            // ActiveMQ's port, unasked for: another program holding it (an ActiveMQ on the
            // same host) should not stop this broker from starting. It is tried again in the
            // background, since the holder may be an old master still stopping.
            None => match TcpListener::bind(DEFAULT_WEBSOCKET).await {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    warn!(
                        "{DEFAULT_WEBSOCKET} is in use: STOMP over WebSocket starts when it is free (set transports.websocket to another address, or to \"\" to turn it off)"
                    );
                    self.tasks
                        .push(tokio::spawn(websocket_when_free(Arc::clone(ctx))));
                    None
                }
                Err(e) => {
                    warn!(
                        "not listening for STOMP over WebSocket on {DEFAULT_WEBSOCKET}: {e}; set transports.websocket to another address, or to \"\" to turn it off"
                    );
                    None
                }
            },
        };
        if let Some(l) = listener {
            let addr = l.local_addr()?;
            info!("listening for STOMP over WebSocket on ws://{addr}");
            self.websocket = Some(addr);
            self.tasks.push(tokio::spawn(websocket_accept_loop(
                l,
                None,
                Arc::clone(ctx),
            )));
        }
        if let Some(b) = &t.websocket_tls {
            let acceptor = tls_acceptor(t, "websocket_tls")?;
            let l = bind(b)
                .await
                .with_context(|| format!("cannot listen for STOMP over secure WebSocket on {b}"))?;
            let addr = l.local_addr()?;
            info!("listening for STOMP over secure WebSocket on wss://{addr}");
            self.websocket_tls = Some(addr);
            self.tasks.push(tokio::spawn(websocket_accept_loop(
                l,
                Some(acceptor),
                Arc::clone(ctx),
            )));
        }
        Ok(())
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

/// The TLS acceptor of the listener `key` (e.g. `stomp_tls`), from the certificate and key
/// every TLS listener shares. The config's check already refuses a TLS listener without them;
/// this names the listener should a config reach here unchecked.
fn tls_acceptor(t: &crate::config::TransportsSection, key: &str) -> Result<TlsAcceptor> {
    let (Some(cert), Some(key_file)) = (&t.tls_certificate, &t.tls_key) else {
        anyhow::bail!("transports.{key} needs tls_certificate and tls_key");
    };
    let client = t.tls_client_ca.as_deref().map(|ca| crate::tls::ClientAuth {
        ca,
        required: t.tls_client_auth.as_deref() != Some("optional"),
    });
    crate::tls::acceptor_with(cert, key_file, client).with_context(|| format!("transports.{key}"))
}

/// The server side of TLS for every TLS listener: the handshake, then the protocol's `serve`
/// run with the subject of the client's verified certificate, if it presented one, where
/// `Users::authenticate` finds it (see `tls`).
async fn serve_tls<F, Fut>(acceptor: &TlsAcceptor, stream: TcpStream, peer: String, serve: F)
where
    F: FnOnce(tokio_rustls::server::TlsStream<TcpStream>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(s) = tls_handshake(acceptor, stream, &peer).await else {
        return;
    };
    let subject = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| crate::tls::subject_of(cert));
    crate::tls::CLIENT_SUBJECT
        .scope(subject, serve(s, peer))
        .await;
}

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
                    serve_tls(&acceptor, stream, peer, |s, peer| serve(s, peer, ctx)).await;
                }
            }
        }
    })
    .await;
}

/// Accepts STOMP-over-WebSocket connections (`wss://` when `tls` is given) until the broker
/// stops.
async fn websocket_accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<ServerContext>,
) {
    accept_until_stopped(listener, ctx, move |stream, peer, ctx| {
        let tls = tls.clone();
        async move {
            match tls {
                None => serve_websocket(stream, peer, ctx).await,
                Some(acceptor) => {
                    serve_tls(&acceptor, stream, peer, |s, peer| {
                        serve_websocket(s, peer, ctx)
                    })
                    .await;
                }
            }
        }
    })
    .await;
}

/// Binds the default WebSocket address once another program lets go of it (retrying every
/// second until the broker stops), then serves it.
async fn websocket_when_free(ctx: Arc<ServerContext>) {
    let mut shutdown = ctx.shutdown.clone();
    let listener = loop {
        if let Ok(l) = TcpListener::bind(DEFAULT_WEBSOCKET).await {
            break l;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    };
    info!("listening for STOMP over WebSocket on ws://{DEFAULT_WEBSOCKET}");
    websocket_accept_loop(listener, None, ctx).await;
}

/// The server side of a TLS handshake, within 10 s; `None` (logged) when it fails.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: &str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            debug!(peer = %peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            debug!(peer = %peer, "TLS handshake timed out");
            None
        }
    }
}

/// Accepts OpenWire connections (over TLS when `tls` is given) until the broker stops.
async fn openwire_accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<ServerContext>,
) {
    accept_until_stopped(listener, ctx, move |stream, peer, ctx| {
        let tls = tls.clone();
        async move {
            match tls {
                None => crate::openwire::serve(stream, peer, ctx).await,
                Some(acceptor) => {
                    serve_tls(&acceptor, stream, peer, |s, peer| {
                        crate::openwire::serve(s, peer, ctx)
                    })
                    .await;
                }
            }
        }
    })
    .await;
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
