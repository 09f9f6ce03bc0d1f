//! Who may connect.

use std::collections::HashMap;

use crate::config::UserEntry;

/// User names and passwords. With none configured, ActiveMQ's default `admin`/`admin`.
#[derive(Debug, Clone)]
pub struct Users {
    passwords: HashMap<String, String>,
    default: bool,
}

impl Users {
    pub fn from_config(users: &[UserEntry]) -> Users {
        if users.is_empty() {
            return Users {
                passwords: HashMap::from([("admin".to_owned(), "admin".to_owned())]),
                default: true,
            };
        }
        Users {
            passwords: users
                .iter()
                .map(|u| (u.name.clone(), u.password.clone()))
                .collect(),
            default: false,
        }
    }

    /// True while the built-in `admin`/`admin` is the only user.
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// Compares in time independent of where the passwords differ.
    pub fn check(&self, login: &str, passcode: &str) -> bool {
        let Some(expected) = self.passwords.get(login) else {
            return false;
        };
        let (a, b) = (expected.as_bytes(), passcode.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}
