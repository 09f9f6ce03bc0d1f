//! Multicast discovery, as ActiveMQ's `MulticastDiscoveryAgent`: brokers find each other by
//! datagrams on a multicast group instead of a list of addresses.
//!
//! A broker whose `transports.openwire_discovery` names a group advertises its OpenWire
//! listener there every 500 ms (ActiveMQ's `keepAliveInterval`) with the text
//! `<group>.ActiveMQ-4.alive.%<broker name>%<service URL>`, and once `dead.` instead of
//! `alive.` when it stops. A `[[network_connectors]]` entry whose `uri` is
//! `multicast://default` listens on the group and opens a bridge to each broker it hears
//! (its own advertisement aside), exactly as to a static one; a broker that says `dead`, or
//! is not heard for 10 beats (ActiveMQ's `HEARTBEAT_MISS_BEFORE_DEATH`), has its bridge
//! stopped. Datagrams go out with a TTL of 1 and multicast loopback on, as ActiveMQ's
//! defaults, so brokers on one host (or one subnet) find each other and no further.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::bridge;
use super::config::{Filters, NetworkConnector};
use super::status::BridgeStatus;

/// ActiveMQ's default group address (`multicast://default`).
pub const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::new(239, 255, 2, 3);
/// ActiveMQ's default group port.
pub const DEFAULT_PORT: u16 = 6155;
/// ActiveMQ's default group name (the `group` option).
pub const DEFAULT_GROUP: &str = "default";
/// How often a broker advertises itself (ActiveMQ's `keepAliveInterval`).
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// Beats missed before a broker counts as gone (ActiveMQ's `HEARTBEAT_MISS_BEFORE_DEATH`).
pub const MISSED_BEATS: u32 = 10;
/// The part of every datagram after the group name (ActiveMQ's `TYPE_SUFFIX`).
const TYPE_SUFFIX: &str = ".ActiveMQ-4.";
/// ActiveMQ's receive buffer: a longer datagram is cut, so nothing longer is sent.
const MAX_DATAGRAM: usize = 8192;
/// Brokers one connector bridges to at most: anyone on the segment can send adverts, and each
/// is a bridge (a task and a connection), so a flood of made-up ones must not grow without
/// bound. ActiveMQ has no such limit.
const MAX_DISCOVERED: usize = 256;
/// Multicast TTL of the advertisements: the local subnet only (ActiveMQ's `timeToLive`).
const TTL: u32 = 1;

/// A `multicast://` URI: the group's address and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastUri {
    pub address: SocketAddrV4,
    pub group: String,
}

impl MulticastUri {
    /// `multicast://default`, `multicast://239.255.2.3:6155?group=NAME`: the host `default`
    /// is 239.255.2.3, a missing port 6155, a missing group `default`, as ActiveMQ's. Other
    /// options (ActiveMQ's socket tuning) are accepted and left to their defaults.
    pub fn parse(uri: &str) -> Result<MulticastUri, String> {
        let rest = uri
            .trim()
            .strip_prefix("multicast://")
            .ok_or_else(|| format!("{uri:?}: expected multicast://host:port"))?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{uri:?}: {p:?} is not a port"))?,
            ),
            None => (authority, DEFAULT_PORT),
        };
        let ip = if host == "default" {
            DEFAULT_ADDRESS
        } else {
            host.parse::<Ipv4Addr>().map_err(|_| {
                format!("{uri:?}: {host:?} is neither `default` nor an IPv4 address")
            })?
        };
        if !ip.is_multicast() {
            return Err(format!(
                "{uri:?}: {ip} is not a multicast address (224.0.0.0/4)"
            ));
        }
        let mut group = DEFAULT_GROUP.to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if let Some(("group", v)) = pair.split_once('=') {
                group = v.to_owned();
            }
        }
        if group.is_empty() {
            return Err(format!("{uri:?}: the group must not be empty"));
        }
        Ok(MulticastUri {
            address: SocketAddrV4::new(ip, port),
            group,
        })
    }
}

/// What a datagram says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Alive,
    Dead,
}

/// One advertisement: a broker's service is alive, or dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub beat: Beat,
    pub broker_name: String,
    /// The advertised connector, e.g. `tcp://host:61616`.
    pub service: String,
}

/// The datagram text of `advert` in `group`. The broker name sits between two `%`, so a
/// `%` in it is dropped.
pub fn encode(group: &str, advert: &Advert) -> String {
    let beat = match advert.beat {
        Beat::Alive => "alive.",
        Beat::Dead => "dead.",
    };
    let name: String = advert.broker_name.chars().filter(|c| *c != '%').collect();
    format!("{group}{TYPE_SUFFIX}{beat}%{name}%{}", advert.service)
}

/// The advertisement in `datagram`, if it is one of `group` (others share the address).
pub fn parse(group: &str, datagram: &[u8]) -> Option<Advert> {
    let text = std::str::from_utf8(datagram).ok()?;
    let rest = text.strip_prefix(group)?.strip_prefix(TYPE_SUFFIX)?;
    let (beat, rest) = if let Some(r) = rest.strip_prefix("alive.") {
        (Beat::Alive, r)
    } else {
        // ActiveMQ reads anything that is not `alive.` as dead.
        (Beat::Dead, rest.strip_prefix("dead.")?)
    };
    let (name, service) = rest.strip_prefix('%')?.split_once('%')?;
    if service.is_empty() {
        return None;
    }
    Some(Advert {
        beat,
        broker_name: name.to_owned(),
        service: service.to_owned(),
    })
}

/// The service URL a broker advertises for its OpenWire listener at `addr`: a listener on
/// every address is advertised under the host's name, as ActiveMQ's publishable connect
/// string.
pub fn service_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    } else {
        addr.ip().to_string()
    };
    match addr {
        SocketAddr::V6(_) if !addr.ip().is_unspecified() => {
            format!("tcp://[{host}]:{}", addr.port())
        }
        _ => format!("tcp://{host}:{}", addr.port()),
    }
}

/// A socket that receives the group's datagrams. Several brokers on one host share the port
/// (SO_REUSEADDR, as Java's `MulticastSocket`); the kernel's multicast route picks the
/// interface.
fn listening_socket(group: SocketAddrV4) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, group.port())).into())?;
    s.join_multicast_v4(group.ip(), &Ipv4Addr::UNSPECIFIED)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// A socket that sends to the group: TTL 1, and loopback on so that brokers on this host
/// hear it too.
fn sending_socket() -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_multicast_ttl_v4(TTL)?;
    s.set_multicast_loop_v4(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Advertises `service` on `uri`'s group every [`KEEP_ALIVE`] until `shutdown`, then says
/// `dead` once.
pub async fn advertise(
    uri: MulticastUri,
    service: String,
    broker_name: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = match sending_socket() {
        Ok(s) => s,
        Err(e) => {
            warn!(
                "cannot advertise {service} on multicast {}: {e}",
                uri.address
            );
            return;
        }
    };
    let text = |beat| {
        encode(
            &uri.group,
            &Advert {
                beat,
                broker_name: broker_name.clone(),
                service: service.clone(),
            },
        )
    };
    let (alive, dead) = (text(Beat::Alive), text(Beat::Dead));
    if alive.len() > MAX_DATAGRAM {
        warn!("not advertising {service}: the datagram would exceed {MAX_DATAGRAM} bytes");
        return;
    }
    info!(
        "advertising {service} on multicast {} (group {})",
        uri.address, uri.group
    );
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reported once: a failing send usually fails every time (no multicast route).
    let mut reported = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = socket.send_to(alive.as_bytes(), uri.address).await
                    && !reported
                {
                    reported = true;
                    warn!("cannot advertise {service} on multicast {}: {e}", uri.address);
                }
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    let _ = socket.send_to(dead.as_bytes(), uri.address).await;
}

/// A broker found on the group, and its bridge.
struct Found {
    last_heard: Instant,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: Arc<BridgeStatus>,
}

/// What a multicast connector's listener needs.
pub struct Discovery {
    pub uri: MulticastUri,
    pub connector: Arc<NetworkConnector>,
    pub filters: Arc<Filters>,
    /// What this broker advertises itself: never bridged to.
    pub own_services: HashSet<String>,
}

/// Listens on the group until `shutdown`, keeping one bridge per broker heard.
pub async fn discover(
    d: Discovery,
    broker: Arc<crate::Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = d.connector.name.clone();
    let socket = match listening_socket(d.uri.address) {
        Ok(s) => s,
        Err(e) => {
            warn!(bridge = %name, "cannot listen on multicast {}: {e}; no brokers will be discovered", d.uri.address);
            return;
        }
    };
    info!(
        bridge = %name,
        "discovering brokers on multicast {} (group {})",
        d.uri.address, d.uri.group
    );
    let gone_after = KEEP_ALIVE * MISSED_BEATS;
    let mut found: HashMap<String, Found> = HashMap::new();
    let mut stopping = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => {
                    let Some(advert) = parse(&d.uri.group, &buf[..n]) else {
                        continue;
                    };
                    if d.own_services.contains(&advert.service) {
                        continue;
                    }
                    match advert.beat {
                        Beat::Alive => {
                            if let Some(f) = found.get_mut(&advert.service) {
                                f.last_heard = Instant::now();
                            } else if found.len() >= MAX_DISCOVERED {
                                debug!(bridge = %name, "{} advertised, but {MAX_DISCOVERED} brokers are bridged already: ignored", advert.service);
                            } else if let Some(f) = start_bridge(&d, &broker, &advert) {
                                found.insert(advert.service, f);
                            }
                        }
                        Beat::Dead => {
                            if let Some(f) = found.remove(&advert.service) {
                                info!(bridge = %name, "broker {} at {} left the group: its bridge stops", advert.broker_name, advert.service);
                                stopping.spawn(stop_bridge(f, Arc::clone(&broker)));
                            }
                        }
                    }
                }
                Err(e) => {
                    // Not a datagram problem (those are dropped by the kernel): pause, so a
                    // socket that keeps failing does not spin.
                    debug!(bridge = %name, "multicast receive: {e}");
                    tokio::time::sleep(KEEP_ALIVE).await;
                }
            },
            _ = tick.tick() => {
                let silent: Vec<String> = found
                    .iter()
                    .filter(|(_, f)| f.last_heard.elapsed() > gone_after)
                    .map(|(s, _)| s.clone())
                    .collect();
                for service in silent {
                    if let Some(f) = found.remove(&service) {
                        info!(bridge = %name, "broker at {service} not heard for {} ms: its bridge stops", gone_after.as_millis());
                        stopping.spawn(stop_bridge(f, Arc::clone(&broker)));
                    }
                }
                // Reap the stopped ones as they finish.
                while stopping.try_join_next().is_some() {}
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    for (_, f) in found.drain() {
        stopping.spawn(stop_bridge(f, Arc::clone(&broker)));
    }
    while stopping.join_next().await.is_some() {}
}

/// A bridge to the broker `advert` names, as a static connector's.
fn start_bridge(d: &Discovery, broker: &Arc<crate::Broker>, advert: &Advert) -> Option<Found> {
    let name = &d.connector.name;
    // `nio://` is OpenWire over TCP too.
    let url = match advert.service.strip_prefix("nio://") {
        Some(rest) => format!("tcp://{rest}"),
        None => advert.service.clone(),
    };
    let remote = match d.connector.remote(&url) {
        Ok(r) => r,
        Err(e) => {
            debug!(bridge = %name, "broker {} advertises {e}: not bridged", advert.broker_name);
            return None;
        }
    };
    info!(bridge = %name, "discovered broker {} at {}: bridging", advert.broker_name, advert.service);
    let status = broker.network().register(name, &remote.address);
    let (stop, stop_rx) = watch::channel(false);
    let spec = bridge::Spec {
        connector: Arc::clone(&d.connector),
        filters: Arc::clone(&d.filters),
        remote,
        status: Arc::clone(&status),
    };
    let task = tokio::spawn(bridge::run(spec, Arc::clone(broker), stop_rx));
    Some(Found {
        last_heard: Instant::now(),
        stop,
        task,
        status,
    })
}

/// Stops a discovered broker's bridge and takes it off the console's list.
async fn stop_bridge(f: Found, broker: Arc<crate::Broker>) {
    f.stop.send_replace(true);
    let _ = f.task.await;
    broker.network().unregister(&f.status);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn datagrams_read_as_activemq_writes_them() {
        // As ActiveMQ 5's doAdvertizeSelf writes it (the name field is "localhost" there).
        let a = parse(
            "default",
            b"default.ActiveMQ-4.alive.%localhost%tcp://host1:61616?maximumConnections=1000",
        )
        .unwrap();
        assert_eq!(a.beat, Beat::Alive);
        assert_eq!(a.broker_name, "localhost");
        assert_eq!(a.service, "tcp://host1:61616?maximumConnections=1000");
        let d = parse("g", b"g.ActiveMQ-4.dead.%b1%tcp://h:1").unwrap();
        assert_eq!((d.beat, d.service.as_str()), (Beat::Dead, "tcp://h:1"));
        // Another group on the same address, other traffic, and cut datagrams are not ours.
        assert_eq!(parse("g", b"other.ActiveMQ-4.alive.%b%tcp://h:1"), None);
        assert_eq!(parse("g", b"g.ActiveMQ-4.alive.%b"), None);
        assert_eq!(parse("g", b"g.ActiveMQ-4.alive.%b%"), None);
        assert_eq!(parse("g", b"g.ActiveMQ-4.alive.b%tcp://h:1"), None);
        assert_eq!(parse("g", b"g.ActiveMQ-4.sleeping.%b%tcp://h:1"), None);
        assert_eq!(parse("g", &[0xff, 0xfe]), None);
        let text = encode(
            "default",
            &Advert {
                beat: Beat::Alive,
                broker_name: "b%1".into(),
                service: "tcp://127.0.0.1:61616".into(),
            },
        );
        assert_eq!(text, "default.ActiveMQ-4.alive.%b1%tcp://127.0.0.1:61616");
    }

    #[test]
    fn multicast_uris_have_activemq_defaults() {
        let d = MulticastUri::parse("multicast://default").unwrap();
        assert_eq!(d.address, SocketAddrV4::new(DEFAULT_ADDRESS, 6155));
        assert_eq!(d.group, "default");
        let g = MulticastUri::parse("multicast://239.1.2.3:7000?group=east&timeToLive=2").unwrap();
        assert_eq!(g.address, "239.1.2.3:7000".parse().unwrap());
        assert_eq!(g.group, "east");
        assert_eq!(
            MulticastUri::parse("multicast://default:6000")
                .unwrap()
                .address
                .port(),
            6000
        );
        assert!(MulticastUri::parse("multicast://10.0.0.1:6155").is_err());
        assert!(MulticastUri::parse("multicast://239.1.2.3:x").is_err());
        assert!(MulticastUri::parse("multicast://default?group=").is_err());
        assert!(MulticastUri::parse("tcp://default").is_err());
    }

    #[test]
    fn a_listener_on_every_address_is_advertised_by_host_name() {
        assert_eq!(
            service_url("127.0.0.1:61616".parse().unwrap()),
            "tcp://127.0.0.1:61616"
        );
        let any = service_url("0.0.0.0:61616".parse().unwrap());
        assert!(!any.contains("0.0.0.0") && any.ends_with(":61616"), "{any}");
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_the_advert(
            group in "[a-zA-Z0-9._-]{1,20}",
            alive in any::<bool>(),
            name in "[^%]{0,30}",
            service in ".{1,60}",
        ) {
            let a = Advert {
                beat: if alive { Beat::Alive } else { Beat::Dead },
                broker_name: name,
                service,
            };
            prop_assert_eq!(parse(&group, encode(&group, &a).as_bytes()), Some(a));
        }

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse("default", &bytes);
        }
    }
}
