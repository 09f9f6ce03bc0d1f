//! `[[network_connectors]]`: the bridges this broker opens to other brokers, with ActiveMQ's
//! `networkConnector` attributes in snake case and ActiveMQ's defaults.
//!
//! ```toml
//! [[network_connectors]]
//! uri = "static:(tcp://127.0.0.1:61626,tcp://127.0.0.1:61636)"
//! name = "bridge"
//! network_ttl = 1
//! excluded_destinations = ["queue://internal.>"]
//! ```

use std::time::Duration;

use broker_core::config::ConfigError;
use broker_core::destination_filter::DestinationFilter;
use serde::Deserialize;

/// One `[[network_connectors]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConnector {
    /// `static:(tcp://h:p,tcp://h:p)` or a bare `tcp://h:p`; each URI may carry
    /// `?user=..&password=..`. Or `multicast://default` (`multicast://239.255.2.3:6155?group=NAME`):
    /// a bridge to every broker advertising itself on that group. Required.
    pub uri: String,
    /// Names the bridge in the log, the console and its connections. `bridge`.
    pub name: String,
    /// One connection carrying both directions: this broker's own consumers also pull from
    /// the remote broker over it (the remote needs no connector of its own). false.
    pub duplex: bool,
    /// How many brokers a consumer's demand (and so a message) may cross. 1.
    pub network_ttl: u32,
    /// One local subscription per destination however many remote consumers it has. true.
    pub conduit_subscriptions: bool,
    /// Forward only on demand, even for `statically_included_destinations`. false.
    pub dynamic_only: bool,
    /// ActiveMQ lowers a network consumer's priority by its hops; broker-core has no consumer
    /// priorities, so only false is accepted.
    pub decrease_network_consumer_priority: bool,
    /// `queue://name` / `topic://name` (wildcards allowed) never forwarded.
    pub excluded_destinations: Vec<String>,
    /// When not empty, only these are forwarded on demand.
    pub dynamically_included_destinations: Vec<String>,
    /// Forwarded whether the remote broker has consumers or not (unless `dynamic_only`).
    pub statically_included_destinations: Vec<String>,
    /// Messages forwarded and not yet stored by the remote broker, per destination. 1000.
    pub prefetch: u32,
    /// First wait before reconnecting. 1000 ms.
    pub initial_reconnect_delay_ms: u64,
    /// Longest wait between reconnects. 30000 ms.
    pub max_reconnect_delay_ms: u64,
    /// Double the wait after each failed attempt, up to the maximum. true.
    pub use_exponential_backoff: bool,
    /// Login on the remote broker (ActiveMQ's `userName`), unless the URI carries `user`.
    pub user_name: Option<String>,
    pub password: Option<String>,
}

impl Default for NetworkConnector {
    fn default() -> Self {
        NetworkConnector {
            uri: String::new(),
            name: "bridge".into(),
            duplex: false,
            network_ttl: 1,
            conduit_subscriptions: true,
            dynamic_only: false,
            decrease_network_consumer_priority: false,
            excluded_destinations: Vec::new(),
            dynamically_included_destinations: Vec::new(),
            statically_included_destinations: Vec::new(),
            prefetch: 1000,
            initial_reconnect_delay_ms: 1000,
            max_reconnect_delay_ms: 30_000,
            use_exponential_backoff: true,
            user_name: None,
            password: None,
        }
    }
}

/// One remote broker of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `host:port` of its OpenWire listener.
    pub address: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// A destination pattern of the include/exclude lists.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub queue: bool,
    pub filter: DestinationFilter,
}

impl Pattern {
    pub fn matches(&self, d: &broker_core::Destination) -> bool {
        d.is_queue() == self.queue && self.filter.matches(&d.name)
    }
}

/// What a bridge decides with: the lists parsed.
#[derive(Debug, Clone)]
pub struct Filters {
    pub excluded: Vec<Pattern>,
    pub dynamically_included: Vec<Pattern>,
    pub statically_included: Vec<Pattern>,
}

impl Filters {
    /// Whether demand for `d` may be bridged (ActiveMQ's `isPermissableDestination`).
    pub fn permits(&self, d: &broker_core::Destination) -> bool {
        if self.excluded.iter().any(|p| p.matches(d)) {
            return false;
        }
        self.dynamically_included.is_empty()
            || self.dynamically_included.iter().any(|p| p.matches(d))
            || self.statically_included.iter().any(|p| p.matches(d))
    }
}

/// How a connector finds its remote brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// The brokers the URI lists.
    Static(Vec<Remote>),
    /// Those advertising on a multicast group.
    Multicast(super::discovery::MulticastUri),
}

impl NetworkConnector {
    /// How `uri` finds the remote brokers.
    pub fn discovery(&self) -> Result<Discovery, String> {
        if self.uri.trim().starts_with("multicast:") {
            super::discovery::MulticastUri::parse(&self.uri).map(Discovery::Multicast)
        } else {
            self.remotes().map(Discovery::Static)
        }
    }

    /// The remote brokers of a static `uri`.
    pub fn remotes(&self) -> Result<Vec<Remote>, String> {
        let uri = self.uri.trim();
        let list = if let Some(rest) = uri.strip_prefix("static:") {
            // `static:(a,b)?options` or `static:a`; the options are the connector's, given
            // here as keys instead.
            let rest = rest.split_once(")?").map_or(rest, |(l, _)| l);
            rest.trim_start_matches('(')
                .trim_end_matches(')')
                .to_owned()
        } else {
            uri.to_owned()
        };
        let mut out = Vec::new();
        for one in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.push(self.remote(one)?);
        }
        if out.is_empty() {
            return Err("names no broker (expected static:(tcp://host:port,...))".into());
        }
        Ok(out)
    }

    /// One `tcp://host:port?options` remote broker, with this connector's login.
    pub(crate) fn remote(&self, one: &str) -> Result<Remote, String> {
        let rest = one
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("{one:?}: only tcp:// remote brokers are supported"))?;
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        let address = address.trim_end_matches('/');
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{one:?}: expected tcp://host:port")),
        }
        let mut remote = Remote {
            address: address.to_owned(),
            user: self.user_name.clone(),
            password: self.password.clone(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "user" | "userName" => remote.user = Some(v.to_owned()),
                "password" => remote.password = Some(v.to_owned()),
                // Transport options (wireFormat.*, soTimeout, ...) are ActiveMQ's tuning.
                _ => {}
            }
        }
        Ok(remote)
    }

    /// The include/exclude lists parsed; errors name the list.
    pub fn filters(&self, key: &str) -> Result<Filters, ConfigError> {
        let parse = |list: &[String], field: &str| {
            list.iter()
                .map(|s| pattern(s).map_err(|e| ConfigError::new(format!("{key}.{field}"), e)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Filters {
            excluded: parse(&self.excluded_destinations, "excluded_destinations")?,
            dynamically_included: parse(
                &self.dynamically_included_destinations,
                "dynamically_included_destinations",
            )?,
            statically_included: parse(
                &self.statically_included_destinations,
                "statically_included_destinations",
            )?,
        })
    }

    /// The wait before reconnect attempt `attempt` (0 for the first retry).
    pub fn reconnect_delay(&self, attempt: u32) -> Duration {
        let first = self.initial_reconnect_delay_ms;
        let ms = if self.use_exponential_backoff {
            first.saturating_mul(1u64 << attempt.min(32))
        } else {
            first
        };
        Duration::from_millis(ms.min(self.max_reconnect_delay_ms))
    }

    /// Checks the entry; `key` is `network_connectors[i]`.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.uri.trim().is_empty() {
            return Err(ConfigError::new(format!("{key}.uri"), "is required"));
        }
        self.discovery()
            .map_err(|e| ConfigError::new(format!("{key}.uri"), e))?;
        if self.name.is_empty() {
            return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
        }
        if self.decrease_network_consumer_priority {
            return Err(ConfigError::new(
                format!("{key}.decrease_network_consumer_priority"),
                "is not supported (consumers have no priorities here)",
            ));
        }
        for (field, v) in [
            ("network_ttl", u64::from(self.network_ttl)),
            ("prefetch", u64::from(self.prefetch)),
            (
                "initial_reconnect_delay_ms",
                self.initial_reconnect_delay_ms,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::new(
                    format!("{key}.{field}"),
                    "must be above 0",
                ));
            }
        }
        if self.max_reconnect_delay_ms < self.initial_reconnect_delay_ms {
            return Err(ConfigError::new(
                format!("{key}.max_reconnect_delay_ms"),
                "must not be below initial_reconnect_delay_ms",
            ));
        }
        let filters = self.filters(key)?;
        if let Some(p) = filters
            .statically_included
            .iter()
            .find(|p| p.filter.is_wildcard())
        {
            return Err(ConfigError::new(
                format!("{key}.statically_included_destinations"),
                format!("{:?}: a static destination must be a plain name", p.filter),
            ));
        }
        Ok(())
    }
}

/// `queue://a.>` / `topic://b` as a pattern.
fn pattern(s: &str) -> Result<Pattern, String> {
    let (queue, name) = if let Some(n) = s.strip_prefix("queue://") {
        (true, n)
    } else if let Some(n) = s.strip_prefix("topic://") {
        (false, n)
    } else {
        return Err(format!("{s:?}: expected queue://name or topic://name"));
    };
    let filter = DestinationFilter::parse(name).map_err(|e| e.to_string())?;
    Ok(Pattern { queue, filter })
}

/// Checks every entry and that no two have the same name.
pub fn validate_all(connectors: &[NetworkConnector]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, c) in connectors.iter().enumerate() {
        let key = format!("network_connectors[{i}]");
        c.validate(&key)?;
        if !names.insert(&c.name) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!("connector {:?} is defined twice", c.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn connector(uri: &str) -> NetworkConnector {
        NetworkConnector {
            uri: uri.into(),
            ..NetworkConnector::default()
        }
    }

    #[test]
    fn static_lists_and_bare_uris_name_their_brokers() {
        let c = connector("static:(tcp://127.0.0.1:61626,tcp://b:1?user=u&password=p)?x=1");
        let r = c.remotes().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].address, "127.0.0.1:61626");
        assert_eq!(r[1].address, "b:1");
        assert_eq!(r[1].user.as_deref(), Some("u"));
        assert_eq!(r[1].password.as_deref(), Some("p"));
        assert_eq!(connector("tcp://h:2").remotes().unwrap()[0].address, "h:2");
        assert!(connector("static:(udp://h:2)").remotes().is_err());
        assert!(connector("static:()").remotes().is_err());
        assert!(connector("tcp://nohost").remotes().is_err());
        let Ok(Discovery::Multicast(m)) = connector("multicast://default?group=g").discovery()
        else {
            panic!("a multicast connector");
        };
        assert_eq!(m.group, "g");
        let e = connector("multicast://10.1.1.1")
            .validate("network_connectors[0]")
            .unwrap_err();
        assert!(e.to_string().contains("network_connectors[0].uri"), "{e}");
    }

    #[test]
    fn the_back_off_doubles_up_to_its_maximum() {
        let c = connector("tcp://h:1");
        assert_eq!(c.reconnect_delay(0), Duration::from_millis(1000));
        assert_eq!(c.reconnect_delay(2), Duration::from_millis(4000));
        assert_eq!(c.reconnect_delay(40), Duration::from_millis(30_000));
        let flat = NetworkConnector {
            use_exponential_backoff: false,
            ..c
        };
        assert_eq!(flat.reconnect_delay(5), Duration::from_millis(1000));
    }

    #[test]
    fn filters_exclude_first_then_include() {
        let c = NetworkConnector {
            excluded_destinations: vec!["queue://a.secret".into()],
            dynamically_included_destinations: vec!["queue://a.>".into()],
            ..connector("tcp://h:1")
        };
        let f = c.filters("k").unwrap();
        assert!(f.permits(&broker_core::Destination::queue("a.b")));
        assert!(!f.permits(&broker_core::Destination::queue("a.secret")));
        assert!(!f.permits(&broker_core::Destination::topic("a.b")));
        assert!(!f.permits(&broker_core::Destination::queue("b")));
        let bad = NetworkConnector {
            excluded_destinations: vec!["a.b".into()],
            ..connector("tcp://h:1")
        };
        let e = bad.validate("network_connectors[0]").unwrap_err();
        assert!(
            e.to_string()
                .contains("network_connectors[0].excluded_destinations"),
            "{e}"
        );
    }

    #[test]
    fn the_file_section_has_activemq_defaults_and_refuses_unknown_keys() {
        let c = crate::BrokerConfig::from_toml(
            "[[network_connectors]]\nuri = \"static:(tcp://127.0.0.1:61626)\"\n",
        )
        .unwrap();
        let n = &c.network_connectors[0];
        assert_eq!(
            (n.network_ttl, n.prefetch, n.conduit_subscriptions),
            (1, 1000, true)
        );
        assert_eq!(n.name, "bridge");
        let e = crate::BrokerConfig::from_toml(
            "[[network_connectors]]\nuri = \"tcp://h:1\"\nnetworkTTL = 2\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("networkTTL"), "{e}");
        let e =
            crate::BrokerConfig::from_toml("[[network_connectors]]\nname = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("network_connectors[0].uri"), "{e}");
    }
}
