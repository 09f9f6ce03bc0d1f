//! Broker URLs as ActiveMQ's tools take them: `tcp://host:port`, `ssl://host:port` (also
//! `stomp://`, `stomp+ssl://`) and `failover:(url,url,...)` with an optional `?query`, which is
//! ignored.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "ssl" } else { "tcp" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The endpoints of a URL, in the order to try them.
pub fn parse(url: &str) -> Result<Vec<Endpoint>, String> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("failover:") {
        let rest = rest.split('?').next().unwrap_or_default();
        let inner = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or(rest);
        let list: Vec<Endpoint> = inner
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(one)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(format!("{url:?} names no broker"));
        }
        return Ok(list);
    }
    Ok(vec![one(url)?])
}

fn one(url: &str) -> Result<Endpoint, String> {
    let url = url.trim();
    let url = url.split('?').next().unwrap_or_default();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a broker URL (tcp://host:port)"))?;
    let tls = match scheme {
        "tcp" | "stomp" => false,
        "ssl" | "tls" | "stomp+ssl" | "stomp+tls" => true,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in {url:?}: tcp or ssl"
            ));
        }
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{url:?} has no port"))?;
    let port = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("bad port in {url:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(Endpoint {
        host: host.to_owned(),
        port,
        tls,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_failover_urls() {
        assert_eq!(
            parse("tcp://127.0.0.1:61613").unwrap(),
            [Endpoint {
                host: "127.0.0.1".into(),
                port: 61613,
                tls: false
            }]
        );
        let f = parse("failover:(tcp://a:1,ssl://b:2)?randomize=false").unwrap();
        assert_eq!(f.len(), 2);
        assert!(f[1].tls);
        assert_eq!(f[1].to_string(), "ssl://b:2");
        assert!(parse("http://x:1").is_err());
        assert!(parse("tcp://x").is_err());
        assert!(parse("failover:()").is_err());
    }
}
