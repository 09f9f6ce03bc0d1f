//! `broker.toml`, the one file a user writes: every section and key is optional; an empty file
//! (or no file) is the embedded default: KahaDB under `./data/kahadb`, guarded by a shared-file
//! lock, STOMP on `127.0.0.1:61613`.
//!
//! Each section is read by the crate it belongs to: `[broker]`, `[limits]` and `[policy]` by
//! broker-core, `[persistence]` and `[locker]` by `engines`, `[transports]` and `[[users]]` here.
//! Unknown keys, wrong types and impossible combinations are errors that name the key
//! (`persistence.kahadb.journal_max_file_length`), so a typo is never silently ignored.
//!
//! ```toml
//! [broker]
//! name = "localhost"
//! data_directory = "data"
//!
//! [persistence]
//! kind = "jdbc"                  # memory | kahadb | amq | jdbc | journaled-jdbc
//! [persistence.jdbc]
//! url = "mysql://root@127.0.0.1:3306/test"
//!
//! [locker]
//! kind = "lease"                 # none | shared-file | database | lease (default per engine)
//!
//! [limits]
//! memory_bytes = 67108864
//!
//! [policy]
//! maximum_redeliveries = 6
//!
//! [[network_connectors]]
//! uri = "static:(tcp://127.0.0.1:61626)"
//! ```

use std::path::{Path, PathBuf};

use broker_core::authorization::{AuthorizationEntry, AuthorizationMap};
use broker_core::config::{BrokerSection, ConfigError, CoreConfig, LimitsSection, PolicySection};
use engines::{EngineConfig, LockerSection, PersistenceSection};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub broker: BrokerSection,
    pub persistence: PersistenceSection,
    pub locker: LockerSection,
    pub limits: LimitsSection,
    pub policy: PolicySection,
    pub transports: TransportsSection,
    /// STOMP users. None configured = ActiveMQ's `admin`/`admin`, with a warning at start.
    pub users: Vec<UserEntry>,
    /// Who may read, write and administer which destinations (ActiveMQ's
    /// `authorizationEntries`); none = everyone may do everything, with a warning at start.
    pub authorization: Vec<AuthorizationEntry>,
    /// Bridges to other brokers (ActiveMQ's `networkConnectors`), see [`crate::network`].
    pub network_connectors: Vec<crate::network::NetworkConnector>,
}

/// Where the `broker` program listens and the limits it puts on clients.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportsSection {
    /// STOMP over TCP; empty string to turn it off. Default `127.0.0.1:61613`.
    pub stomp: String,
    /// STOMP over TLS, e.g. `127.0.0.1:61612`; needs `tls_certificate` and `tls_key`.
    pub stomp_tls: Option<String>,
    /// STOMP over WebSocket (`ws://`, subprotocols `v10.stomp`, `v11.stomp`, `v12.stomp`);
    /// empty string to turn it off. Unset means ActiveMQ's `127.0.0.1:61614`, skipped with a
    /// warning when another program holds that port; a port given here that is taken fails
    /// the start, like the other listeners.
    pub websocket: Option<String>,
    /// STOMP over secure WebSocket (`wss://`), e.g. `127.0.0.1:61615`; needs `tls_certificate`
    /// and `tls_key`.
    pub websocket_tls: Option<String>,
    /// The shortest STOMP heart-beat interval (ms) honoured either way: a client asking for
    /// beats every 1 ms gets them every this, and one promising them that often is expected
    /// this often. 100.
    pub stomp_heartbeat_min_ms: u64,
    /// A STOMP client that promised a heart-beat every N ms is closed after N × this of
    /// silence (ActiveMQ's `transport.hbGracePeriodMultiplier`). At least 1.0; 2.0.
    pub stomp_heartbeat_grace: f64,
    /// OpenWire (the ActiveMQ Java client's protocol) over TCP; empty string to turn it off.
    /// Default `127.0.0.1:61616`, as ActiveMQ's.
    pub openwire: String,
    /// OpenWire over TLS (the Java client's `ssl://`), e.g. `127.0.0.1:61617` as ActiveMQ's;
    /// needs `tls_certificate` and `tls_key`.
    pub openwire_tls: Option<String>,
    /// Advertise the `openwire` listener on a multicast group, e.g. `"multicast://default"`
    /// (ActiveMQ's `discoveryUri` of a `transportConnector`), for the brokers whose
    /// `[[network_connectors]]` discover theirs there. Unset: not advertised.
    pub openwire_discovery: Option<String>,
    /// MQTT 3.1.1 over TCP (ActiveMQ's MQTT transport); empty string to turn it off. Unset
    /// means ActiveMQ's `127.0.0.1:1883`, skipped with a warning when another program (a
    /// Mosquitto, say) holds that port; a port given here that is taken fails the start.
    pub mqtt: Option<String>,
    /// QoS 1/2 messages one MQTT subscription may have delivered and not yet acknowledged
    /// (PUBACK/PUBCOMP); more wait in the store. 100. A filter ending in `#` (`a/#`) is two
    /// JMS subscriptions (`a` and `a.>`), each with this many.
    pub mqtt_max_inflight: usize,
    /// PEM certificate chain.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// PEM certificates of the authorities whose client certificates the TLS listeners accept
    /// (ActiveMQ's `needClientAuth`/`wantClientAuth` with a truststore). A client presenting
    /// one is the user whose `certificate_subject` is the certificate's subject, whatever
    /// login it gives (ActiveMQ's certificate authentication plugin).
    pub tls_client_ca: Option<PathBuf>,
    /// With `tls_client_ca`: `"required"` (the default; a TLS client without a certificate is
    /// refused in the handshake) or `"optional"` (one without logs in with its password).
    pub tls_client_auth: Option<String>,
    /// Largest frame (headers and body) a client may send, STOMP or OpenWire. 16 MiB.
    pub max_frame_bytes: usize,
    /// Most headers in one frame. 1000.
    pub max_headers: usize,
    /// Longest header line. 10 KiB.
    pub max_header_bytes: usize,
    /// Frames queued for one connection before the broker stops reading from it. 1000.
    pub max_pending_frames: usize,
    /// The bytes of the frames queued for one connection at most: a client that does not
    /// read holds this much (counted against `limits.memory_bytes`) and is then no longer
    /// fed. A single larger frame still passes, alone. 4 MiB.
    pub max_pending_bytes: usize,
    /// The largest frame a client may send before it has logged in (its CONNECT), or before
    /// OpenWire's wire format is agreed. 8 KiB.
    pub max_connect_frame_bytes: usize,
    /// Milliseconds after the accept by which a client must have sent CONNECT. 30000.
    pub connect_timeout_ms: u64,
    /// SENDs and ACKs without a receipt one connection may have on their way to disk at once
    /// (they share fsyncs); a connection with a full window is not read from. 1000.
    pub pipeline_window: usize,
    /// The message bytes of those SENDs at most. 16 MiB.
    pub pipeline_window_bytes: usize,
    /// Milliseconds a client may go without reading anything while frames wait for it before
    /// the broker closes its connection (its unacked messages go back to the queue). 60000;
    /// 0 waits forever, which is ActiveMQ's default for its `soWriteTimeout`.
    pub write_timeout_ms: u64,
    /// The web console and monitoring API (HTTP); empty string to turn it off. Default
    /// `127.0.0.1:8161`, as ActiveMQ's.
    pub web: String,
    /// Serve the web console over HTTPS (with `tls_certificate` and `tls_key`) instead of HTTP;
    /// its cookies are then `Secure`. Default false.
    pub web_tls: bool,
    /// Seconds a console login may go unused before the broker forgets it. 1800 (30 minutes, the
    /// session timeout of ActiveMQ's Jetty console).
    pub web_session_idle_secs: u64,
    /// Console logins held at once; a new one beyond that replaces the least recently used.
    /// 1000.
    pub web_max_sessions: usize,
}

/// Where STOMP over WebSocket listens when `transports.websocket` is not set: ActiveMQ's port.
pub const DEFAULT_WEBSOCKET: &str = "127.0.0.1:61614";

/// Where MQTT listens when `transports.mqtt` is not set: ActiveMQ's (and MQTT's) port.
pub const DEFAULT_MQTT: &str = "127.0.0.1:1883";

impl Default for TransportsSection {
    fn default() -> Self {
        TransportsSection {
            stomp: "127.0.0.1:61613".into(),
            stomp_tls: None,
            websocket: None,
            websocket_tls: None,
            stomp_heartbeat_min_ms: 100,
            stomp_heartbeat_grace: 2.0,
            openwire: "127.0.0.1:61616".into(),
            openwire_tls: None,
            openwire_discovery: None,
            mqtt: None,
            mqtt_max_inflight: 100,
            tls_certificate: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: None,
            max_frame_bytes: 16 * 1024 * 1024,
            max_headers: 1000,
            max_header_bytes: 10 * 1024,
            max_pending_frames: 1000,
            max_pending_bytes: 4 * 1024 * 1024,
            max_connect_frame_bytes: 8 * 1024,
            connect_timeout_ms: 30_000,
            pipeline_window: 1000,
            pipeline_window_bytes: 16 * 1024 * 1024,
            write_timeout_ms: 60_000,
            web: "127.0.0.1:8161".into(),
            web_tls: false,
            web_session_idle_secs: 30 * 60,
            web_max_sessions: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// Clear text (warned about at start), or an argon2 PHC string from `broker passwd`.
    /// Left out for a user who logs in only with a TLS client certificate
    /// (`certificate_subject`): an empty password matches nothing.
    #[serde(default)]
    pub password: String,
    /// The groups `[[authorization]]` entries grant to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The subject of the TLS client certificate that logs in as this user (with
    /// `transports.tls_client_ca`), e.g. `"CN=app,O=Example"`: the same attributes and values
    /// as the certificate's, in any order.
    #[serde(default)]
    pub certificate_subject: Option<String>,
}

impl BrokerConfig {
    /// Parses and validates a config.
    pub fn from_toml(text: &str) -> Result<BrokerConfig, ConfigError> {
        let config: BrokerConfig = broker_core::config::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file; errors name the file.
    pub fn from_file(path: &Path) -> Result<BrokerConfig, ConfigError> {
        broker_core::config::from_file(path, BrokerConfig::from_toml)
    }

    /// What broker-core reads.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            broker: self.broker.clone(),
            limits: self.limits.clone(),
            policy: self.policy.clone(),
        }
    }

    /// The parsed `[[authorization]]` entries.
    pub fn authorization_map(&self) -> Result<AuthorizationMap, ConfigError> {
        AuthorizationMap::from_entries(&self.authorization)
    }

    /// The users with their groups and the authorization rules.
    pub fn users(&self) -> crate::users::Users {
        // Validated when the config was read; an invalid map here would be a config built
        // in code, and then no rule is safer than a panic only if there were none: refuse all.
        let map = self.authorization_map().unwrap_or_else(|_| {
            AuthorizationMap::from_entries(&[AuthorizationEntry {
                queue: Some(">".into()),
                ..Default::default()
            }])
            .unwrap_or_default()
        });
        crate::users::Users::with_authorization(&self.users, std::sync::Arc::new(map))
    }

    /// What `engines` reads.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            broker: self.broker.clone(),
            persistence: self.persistence.clone(),
            locker: self.locker.clone(),
        }
    }

    /// Each section's owner checks it, in the order of the file's documentation: the engine and
    /// its locker, limits and policies, transports, users, and the broker's name last.
    fn validate(&self) -> Result<(), ConfigError> {
        self.engine().validate()?;
        self.core().validate_limits_and_policy()?;
        let t = &self.transports;
        for (tls_key, on) in [
            ("transports.stomp_tls", t.stomp_tls.is_some()),
            ("transports.websocket_tls", t.websocket_tls.is_some()),
            ("transports.openwire_tls", t.openwire_tls.is_some()),
            ("transports.web_tls", t.web_tls),
        ] {
            for (key, set) in [
                ("transports.tls_certificate", t.tls_certificate.is_some()),
                ("transports.tls_key", t.tls_key.is_some()),
            ] {
                if on && !set {
                    return Err(ConfigError::new(key, format!("is required with {tls_key}")));
                }
            }
        }
        match (&t.tls_client_auth, &t.tls_client_ca) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "transports.tls_client_auth",
                    "needs transports.tls_client_ca",
                ));
            }
            (Some(mode), Some(_)) if mode != "required" && mode != "optional" => {
                return Err(ConfigError::new(
                    "transports.tls_client_auth",
                    format!("is {mode:?}; it must be \"required\" or \"optional\""),
                ));
            }
            _ => {}
        }
        if let Some(uri) = &t.openwire_discovery {
            if t.openwire.is_empty() {
                return Err(ConfigError::new(
                    "transports.openwire_discovery",
                    "needs transports.openwire (the listener it advertises)",
                ));
            }
            crate::network::discovery::MulticastUri::parse(uri)
                .map_err(|e| ConfigError::new("transports.openwire_discovery", e))?;
        }
        if !(t.stomp_heartbeat_grace >= 1.0 && t.stomp_heartbeat_grace <= 1000.0) {
            return Err(ConfigError::new(
                "transports.stomp_heartbeat_grace",
                "must be between 1.0 and 1000",
            ));
        }
        if t.web_tls && t.web.is_empty() {
            return Err(ConfigError::new(
                "transports.web_tls",
                "is set but transports.web is empty (the console is off)",
            ));
        }
        for (key, v) in [
            ("transports.max_frame_bytes", t.max_frame_bytes),
            ("transports.max_headers", t.max_headers),
            ("transports.max_header_bytes", t.max_header_bytes),
            ("transports.max_pending_frames", t.max_pending_frames),
            ("transports.mqtt_max_inflight", t.mqtt_max_inflight),
            ("transports.max_pending_bytes", t.max_pending_bytes),
            (
                "transports.max_connect_frame_bytes",
                t.max_connect_frame_bytes,
            ),
            (
                "transports.connect_timeout_ms",
                usize::try_from(t.connect_timeout_ms).unwrap_or(usize::MAX),
            ),
            ("transports.pipeline_window", t.pipeline_window),
            ("transports.pipeline_window_bytes", t.pipeline_window_bytes),
            (
                "transports.web_session_idle_secs",
                usize::try_from(t.web_session_idle_secs).unwrap_or(usize::MAX),
            ),
            ("transports.web_max_sessions", t.web_max_sessions),
        ] {
            if v == 0 {
                return Err(ConfigError::new(key, "must be above 0"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                return Err(ConfigError::new(
                    format!("users[{i}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(&u.name) {
                return Err(ConfigError::new(
                    format!("users[{i}].name"),
                    format!("user {:?} is defined twice", u.name),
                ));
            }
            if u.password.is_empty() && u.certificate_subject.is_none() {
                return Err(ConfigError::new(
                    format!("users[{i}].password"),
                    "is required (or certificate_subject, for a user who logs in only with a TLS client certificate)",
                ));
            }
            // A hash without its salt and output (a truncated paste) would refuse every login.
            if crate::users::is_hash(&u.password)
                && !argon2::password_hash::PasswordHash::new(&u.password)
                    .is_ok_and(|h| h.hash.is_some() && h.salt.is_some())
            {
                return Err(ConfigError::new(
                    format!("users[{i}].password"),
                    "starts as an argon2 hash but is not a valid PHC string (see `broker passwd`)",
                ));
            }
            if u.groups.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    format!("users[{i}].groups"),
                    "a group name must not be empty",
                ));
            }
        }
        self.authorization_map()?;
        crate::network::config::validate_all(&self.network_connectors)?;
        self.broker.validate()
    }
}
