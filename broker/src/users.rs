//! Who may connect, and in which groups: `[[users]]` with clear-text or argon2-hashed
//! passwords.
//!
//! A password given as a PHC string (`$argon2id$...`, printed by `broker passwd`) is checked
//! with argon2's own verification; a clear-text one is compared in constant time (`subtle`)
//! and warned about at start. A login name that does not exist is checked against a dummy
//! hash, so that its answer takes as long as a wrong password's and does not reveal which
//! user names exist.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use broker_core::authorization::{AuthorizationMap, Subject};
use subtle::ConstantTimeEq;

use crate::config::UserEntry;

/// What a failed login waits before its answer: guessing a password costs this per try
/// (per connection; other connections are not held).
pub const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, Clone)]
enum Secret {
    Clear(String),
    /// A PHC string, checked as parsed at each login (parsing is cheap next to argon2).
    Hash(String),
}

#[derive(Debug, Clone)]
struct User {
    secret: Secret,
    groups: Vec<String>,
}

/// User names, passwords and groups. With none configured, ActiveMQ's default `admin`/`admin`.
#[derive(Debug, Clone)]
pub struct Users {
    users: HashMap<String, User>,
    /// Users by their `certificate_subject`, normalized (`tls::normalize_subject`).
    by_certificate: HashMap<String, String>,
    default: bool,
    map: Arc<AuthorizationMap>,
    /// What an unknown login name is checked against, so that it costs what a known one
    /// costs: a hash when some password is hashed (made once at start), else clear text.
    dummy: Secret,
}

/// Whether a configured password is a PHC hash rather than clear text.
pub fn is_hash(password: &str) -> bool {
    password.starts_with("$argon2")
}

/// A PHC string for `password` (argon2id, default parameters, a random salt): what
/// `broker passwd` prints.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "no system randomness for the salt".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

impl Users {
    pub fn from_config(users: &[UserEntry]) -> Users {
        Users::with_authorization(users, Arc::new(AuthorizationMap::default()))
    }

    pub fn with_authorization(users: &[UserEntry], map: Arc<AuthorizationMap>) -> Users {
        if users.is_empty() {
            return Users {
                users: HashMap::from([(
                    "admin".to_owned(),
                    User {
                        secret: Secret::Clear("admin".to_owned()),
                        groups: vec!["admins".to_owned()],
                    },
                )]),
                by_certificate: HashMap::new(),
                default: true,
                map,
                dummy: Secret::Clear("admin".to_owned()),
            };
        }
        let any_hash = users.iter().any(|u| is_hash(&u.password));
        // Should the system have no randomness, unknown names fall back to a clear-text
        // compare: only their timing differs, never the answer.
        let dummy = any_hash
            .then(|| hash_password("unknown user").ok())
            .flatten()
            .map_or_else(|| Secret::Clear("unknown user".to_owned()), Secret::Hash);
        Users {
            users: users
                .iter()
                .map(|u| {
                    let secret = if is_hash(&u.password) {
                        Secret::Hash(u.password.clone())
                    } else {
                        Secret::Clear(u.password.clone())
                    };
                    (
                        u.name.clone(),
                        User {
                            secret,
                            groups: u.groups.clone(),
                        },
                    )
                })
                .collect(),
            by_certificate: users
                .iter()
                .filter_map(|u| {
                    let subject = u.certificate_subject.as_deref()?;
                    Some((crate::tls::normalize_subject(subject), u.name.clone()))
                })
                .collect(),
            default: false,
            map,
            dummy,
        }
    }

    /// True while the built-in `admin`/`admin` is the only user.
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// True when some user's password is in clear text (warned about at start).
    pub fn has_clear_text(&self) -> bool {
        !self.default
            && self
                .users
                .values()
                .any(|u| matches!(&u.secret, Secret::Clear(p) if !p.is_empty()))
    }

    /// Checks in time independent of where the passwords differ. An argon2 check takes tens
    /// of milliseconds: call it off the async workers ([`Users::authenticate`]).
    pub fn check(&self, login: &str, passcode: &str) -> bool {
        let (secret, known) = match self.users.get(login) {
            Some(user) => (&user.secret, true),
            None => (&self.dummy, false),
        };
        let matches = match secret {
            // No password (a certificate-only user): nothing matches.
            Secret::Clear(expected) if expected.is_empty() => false,
            Secret::Clear(expected) => expected.as_bytes().ct_eq(passcode.as_bytes()).into(),
            Secret::Hash(phc) => PasswordHash::new(phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(passcode.as_bytes(), &h)
                    .is_ok()
            }),
        };
        matches && known
    }

    /// The logged-in user with its groups and the authorization rules, for
    /// [`broker_core::session::Connection::set_subject`]; `None` on wrong credentials,
    /// answered after [`FAILED_LOGIN_DELAY`] so that guessing is slow. The argon2 work runs
    /// on a blocking thread, so that other connections are not held.
    /// Who logs in: with a verified TLS client certificate on the connection, the user whose
    /// `certificate_subject` it carries (login and passcode are not looked at, as with
    /// ActiveMQ's certificate authentication plugin; no such user: refused); otherwise the
    /// user `login` if `passcode` is theirs.
    pub async fn authenticate(self: &Arc<Self>, login: &str, passcode: &str) -> Option<Subject> {
        if let Some(subject) = crate::tls::client_subject() {
            let user = self
                .by_certificate
                .get(&crate::tls::normalize_subject(&subject));
            if user.is_none() {
                tracing::warn!(
                    "TLS client certificate {subject:?} is no user's certificate_subject"
                );
            }
            return self.subject(user?);
        }
        let (users, l, p) = (Arc::clone(self), login.to_owned(), passcode.to_owned());
        let ok = tokio::task::spawn_blocking(move || users.check(&l, &p))
            .await
            .unwrap_or(false);
        if !ok {
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            return None;
        }
        self.subject(login)
    }

    /// The subject of an authenticated user.
    pub fn subject(&self, login: &str) -> Option<Subject> {
        let user = self.users.get(login)?;
        Some(Subject::new(
            login,
            user.groups.iter().cloned(),
            Arc::clone(&self.map),
        ))
    }

    /// True with `[[authorization]]` entries configured.
    pub fn authorization_enabled(&self) -> bool {
        !self.map.is_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_and_clear_passwords() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let entries = [
            UserEntry {
                name: "h".into(),
                password: hash,
                groups: vec![],
                certificate_subject: None,
            },
            UserEntry {
                name: "c".into(),
                password: "plain".into(),
                groups: vec![],
                certificate_subject: None,
            },
        ];
        let users = Users::from_config(&entries);
        assert!(users.check("h", "s3cret"));
        assert!(!users.check("h", "s3creT"));
        assert!(users.check("c", "plain"));
        assert!(!users.check("c", "plai"));
        assert!(!users.check("nobody", "plain"));
        // The dummy an unknown name is checked against is no password.
        assert!(!users.check("nobody", "unknown user"));
        assert!(users.has_clear_text());
    }
}
