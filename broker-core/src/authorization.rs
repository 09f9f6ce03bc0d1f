//! Who may do what: ActiveMQ's `authorizationEntries` as `[[authorization]]` entries.
//!
//! An entry names a queue or a topic (with ActiveMQ's wildcards `*` and `>`) and grants
//! `read` (consume, browse), `write` (send) and `admin` (create, delete, purge) to groups.
//! As ActiveMQ's `DefaultAuthorizationMap`, the groups of every entry that matches a
//! destination are united, and a destination no entry matches is refused, once any entry
//! exists. With no entry at all every user may do everything (today's behaviour; the broker
//! warns at start).
//!
//! Temporary destinations are checked against the one `temporary = true` entry (ActiveMQ's
//! `tempDestinationAuthorizationEntry`); without it they are open to every user, as in
//! ActiveMQ, whose `AuthorizationBroker` lets a temporary destination through when the map
//! has no temporary entry.
//!
//! Differs from ActiveMQ: advisory topics (`ActiveMQ.Advisory.>`) are always open (read,
//! write, admin), as ActiveMQ's sample configs grant them to everyone; ActiveMQ refuses them
//! without such an entry.
//! The check is made on the connection's user and groups, known at login (a connection made
//! in process, with no user, is the broker's own and may do everything, as ActiveMQ's broker
//! context).

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use store_api::{Destination, DestinationKind};

use crate::config::ConfigError;
use crate::destination_filter::{DestinationFilter, is_composite, split_composite};
use crate::error::BrokerError;

/// The three permissions of ActiveMQ's authorization entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Consume or browse.
    Read,
    /// Send.
    Write,
    /// Create, delete or purge the destination.
    Admin,
}

impl Operation {
    /// As ActiveMQ's messages say it: "is not authorized to write to: queue://x".
    fn phrase(self) -> &'static str {
        match self {
            Operation::Read => "read from",
            Operation::Write => "write to",
            Operation::Admin => "administer (create, delete, purge)",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Admin => "admin",
        })
    }
}

/// One `[[authorization]]` entry of the config, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationEntry {
    /// Queues this entry covers (ActiveMQ's wildcards).
    pub queue: Option<String>,
    /// Topics this entry covers (ActiveMQ's wildcards).
    pub topic: Option<String>,
    /// The entry for every temporary queue and topic (ActiveMQ's
    /// `tempDestinationAuthorizationEntry`).
    pub temporary: bool,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Acl {
    read: HashSet<String>,
    write: HashSet<String>,
    admin: HashSet<String>,
}

impl Acl {
    fn of(e: &AuthorizationEntry) -> Acl {
        let set = |v: &Vec<String>| v.iter().cloned().collect();
        Acl {
            read: set(&e.read),
            write: set(&e.write),
            admin: set(&e.admin),
        }
    }

    fn groups(&self, op: Operation) -> &HashSet<String> {
        match op {
            Operation::Read => &self.read,
            Operation::Write => &self.write,
            Operation::Admin => &self.admin,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    kind: DestinationKind,
    filter: DestinationFilter,
    acl: Acl,
}

/// The parsed `[[authorization]]` entries.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationMap {
    rules: Vec<Rule>,
    temporary: Option<Acl>,
}

impl AuthorizationMap {
    /// Checks and parses the entries; errors name the key (`authorization[2].queue`).
    pub fn from_entries(entries: &[AuthorizationEntry]) -> Result<AuthorizationMap, ConfigError> {
        let mut map = AuthorizationMap::default();
        for (i, e) in entries.iter().enumerate() {
            let named = [e.queue.is_some(), e.topic.is_some(), e.temporary];
            if named.iter().filter(|b| **b).count() != 1 {
                return Err(ConfigError::new(
                    format!("authorization[{i}]"),
                    "needs exactly one of queue, topic or temporary = true",
                ));
            }
            for (key, groups) in [("read", &e.read), ("write", &e.write), ("admin", &e.admin)] {
                if groups.iter().any(String::is_empty) {
                    return Err(ConfigError::new(
                        format!("authorization[{i}].{key}"),
                        "a group name must not be empty",
                    ));
                }
            }
            if e.temporary {
                if map.temporary.is_some() {
                    return Err(ConfigError::new(
                        format!("authorization[{i}].temporary"),
                        "only one entry may be the temporary destinations' entry",
                    ));
                }
                map.temporary = Some(Acl::of(e));
                continue;
            }
            let (key, kind, name) = match (&e.queue, &e.topic) {
                (Some(q), _) => ("queue", DestinationKind::Queue, q),
                (_, Some(t)) => ("topic", DestinationKind::Topic, t),
                _ => unreachable!("exactly one of queue, topic or temporary is set"),
            };
            if name.is_empty() {
                return Err(ConfigError::new(
                    format!("authorization[{i}].{key}"),
                    "must not be empty",
                ));
            }
            let filter = DestinationFilter::parse(name).map_err(|err| {
                ConfigError::new(format!("authorization[{i}].{key}"), err.to_string())
            })?;
            map.rules.push(Rule {
                kind,
                filter,
                acl: Acl::of(e),
            });
        }
        Ok(map)
    }

    /// True with no entry at all: everyone may do everything.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.temporary.is_none()
    }

    fn allows(
        &self,
        groups: &HashSet<String>,
        op: Operation,
        destination: &Destination,
        temporary: bool,
    ) -> bool {
        if self.is_open() {
            return true;
        }
        if temporary {
            return match &self.temporary {
                None => true,
                Some(acl) => !acl.groups(op).is_disjoint(groups),
            };
        }
        // What ActiveMQ's sample configs grant everyone (`<authorizationEntry
        // topic="ActiveMQ.Advisory.>" read=.. write=.. admin=..>`): the client creates and
        // reads advisory topics to learn of temporary destinations.
        if destination.kind == DestinationKind::Topic
            && destination.name.starts_with("ActiveMQ.Advisory.")
        {
            return true;
        }
        self.rules
            .iter()
            .filter(|r| r.kind == destination.kind && r.filter.matches(&destination.name))
            .any(|r| !r.acl.groups(op).is_disjoint(groups))
    }
}

/// A logged-in user, its groups, and the rules that apply to it: what a connection carries.
#[derive(Debug, Clone)]
pub struct Subject {
    user: String,
    groups: HashSet<String>,
    map: std::sync::Arc<AuthorizationMap>,
}

impl Subject {
    pub fn new(
        user: impl Into<String>,
        groups: impl IntoIterator<Item = String>,
        map: std::sync::Arc<AuthorizationMap>,
    ) -> Subject {
        Subject {
            user: user.into(),
            groups: groups.into_iter().collect(),
            map,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether this user has `admin` on at least one destination (the console shows its
    /// action buttons then).
    pub fn is_admin_anywhere(&self) -> bool {
        self.map.is_open()
            || self
                .map
                .rules
                .iter()
                .any(|r| !r.acl.admin.is_disjoint(&self.groups))
            || self
                .map
                .temporary
                .as_ref()
                .is_some_and(|t| !t.admin.is_disjoint(&self.groups))
    }

    /// Whether `op` on `destination` is allowed, without logging (for listing what a user
    /// may see).
    pub fn allows(&self, op: Operation, destination: &Destination, temporary: bool) -> bool {
        self.map.allows(&self.groups, op, destination, temporary)
    }

    /// `Ok` when allowed; otherwise a [`BrokerError::NotAuthorized`], logged at WARN.
    pub fn check(
        &self,
        op: Operation,
        destination: &Destination,
        temporary: bool,
    ) -> Result<(), BrokerError> {
        // A composite (`orders.a,secret`) is allowed only when each of its destinations is:
        // as one name it would match `orders.>`. Its elements are checked as ordinary
        // destinations (a temporary one in a composite list is not looked up).
        if is_composite(&destination.name) {
            for d in split_composite(&destination.name, destination.kind)? {
                self.check(op, &d, false)?;
            }
            return Ok(());
        }
        if self.map.allows(&self.groups, op, destination, temporary) {
            return Ok(());
        }
        tracing::warn!(user = %self.user, operation = %op, destination = %destination, "not authorized");
        Err(BrokerError::NotAuthorized(format!(
            "User {} is not authorized to {}: {}",
            self.user,
            op.phrase(),
            destination
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn entry(queue: &str, read: &[&str], write: &[&str], admin: &[&str]) -> AuthorizationEntry {
        let v = |s: &[&str]| s.iter().map(|g| (*g).to_owned()).collect();
        AuthorizationEntry {
            queue: Some(queue.into()),
            read: v(read),
            write: v(write),
            admin: v(admin),
            ..Default::default()
        }
    }

    fn subject(groups: &[&str], entries: &[AuthorizationEntry]) -> Subject {
        let map = AuthorizationMap::from_entries(entries).expect("valid entries");
        Subject::new("u", groups.iter().map(|g| (*g).to_owned()), Arc::new(map))
    }

    #[test]
    fn entries_are_united_and_unmatched_is_denied() {
        let entries = [
            entry("orders.>", &["apps"], &["apps"], &["admins"]),
            entry("orders.eu", &["auditors"], &[], &[]),
        ];
        let app = subject(&["apps"], &entries);
        let auditor = subject(&["auditors"], &entries);
        let q = Destination::queue("orders.eu");
        assert!(app.check(Operation::Write, &q, false).is_ok());
        assert!(app.check(Operation::Admin, &q, false).is_err());
        assert!(auditor.check(Operation::Read, &q, false).is_ok());
        assert!(auditor.check(Operation::Write, &q, false).is_err());
        assert!(
            app.check(Operation::Read, &Destination::queue("other"), false)
                .is_err()
        );
        assert!(
            app.check(Operation::Read, &Destination::topic("orders.eu"), false)
                .is_err()
        );
        // Advisories are readable; temporaries open without a temporary entry.
        assert!(
            app.check(
                Operation::Read,
                &Destination::topic("ActiveMQ.Advisory.Queue"),
                false
            )
            .is_ok()
        );
        assert!(
            app.check(Operation::Admin, &Destination::queue("ID:x:1"), true)
                .is_ok()
        );
        // A composite is checked element by element.
        let composite = Destination::queue("orders.a,orders.b");
        assert!(app.check(Operation::Write, &composite, false).is_ok());
        let sneaky = Destination::queue("orders.a,secret");
        assert!(app.check(Operation::Write, &sneaky, false).is_err());
        let mixed = Destination::queue("orders.a,topic://orders.b");
        assert!(app.check(Operation::Write, &mixed, false).is_err());
    }

    #[test]
    fn no_entry_is_open_and_temporary_entry_applies() {
        assert!(
            subject(&[], &[])
                .check(Operation::Admin, &Destination::queue("x"), false)
                .is_ok()
        );
        let temp = AuthorizationEntry {
            temporary: true,
            read: vec!["apps".into()],
            ..Default::default()
        };
        let s = subject(&["apps"], &[temp]);
        assert!(
            s.check(Operation::Read, &Destination::queue("t"), true)
                .is_ok()
        );
        assert!(
            s.check(Operation::Write, &Destination::queue("t"), true)
                .is_err()
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let both = AuthorizationEntry {
            queue: Some("a".into()),
            topic: Some("b".into()),
            ..Default::default()
        };
        let e = AuthorizationMap::from_entries(&[both]).unwrap_err();
        assert!(e.to_string().contains("authorization[0]"), "{e}");
        let bad = entry("a.>.b", &[], &[], &[]);
        let e = AuthorizationMap::from_entries(&[bad]).unwrap_err();
        assert!(e.to_string().contains("authorization[0].queue"), "{e}");
        let empty = entry("a", &[""], &[], &[]);
        let e = AuthorizationMap::from_entries(&[empty]).unwrap_err();
        assert!(e.to_string().contains("authorization[0].read"), "{e}");
    }
}
