//! The console's login sessions: the random id in the `console` cookie maps to the user and the
//! session's CSRF token. A session is forgotten after `web_session_idle_secs` without a request
//! (30 minutes by default, Jetty's session timeout in ActiveMQ's console) and at logout, so a
//! stolen or replayed cookie stops working; at most `web_max_sessions` are held, the least
//! recently used going first, so logins cannot grow the broker's memory without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The time sessions age by: the monotonic clock, plus a skew only tests move (expiry is then
/// tested without waiting half an hour, or racing a short timeout).
#[derive(Default)]
pub(crate) struct Clock {
    skew_ms: AtomicU64,
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(Duration::from_millis(self.skew_ms.load(Ordering::Relaxed)))
            .unwrap_or(now)
    }

    pub(crate) fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skew_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(ms))
            })
            .ok();
    }
}

/// What a live session stands for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SessionUser {
    pub user: String,
    pub csrf: String,
}

struct Session {
    who: SessionUser,
    last_used: Instant,
}

pub(crate) struct Sessions {
    idle: Duration,
    max: usize,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// `max` is at least 1 (the config refuses 0).
    pub(crate) fn new(idle: Duration, max: usize) -> Sessions {
        Sessions {
            idle,
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Holds a new session under `id`. When full, expired sessions go first, then the least
    /// recently used one: a user who logs in always gets a session, and the one lost is the
    /// one idle longest.
    pub(crate) fn insert(&self, id: String, who: SessionUser, now: Instant) {
        let mut map = self.map.lock();
        if map.len() >= self.max {
            let idle = self.idle;
            map.retain(|_, s| !expired(s, idle, now));
        }
        while map.len() >= self.max {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            id,
            Session {
                who,
                last_used: now,
            },
        );
    }

    /// The session's user, and the request counts as use. An expired session is forgotten
    /// here, so its cookie is refused from now on even if the clock were to go back.
    pub(crate) fn touch(&self, id: &str, now: Instant) -> Option<SessionUser> {
        let mut map = self.map.lock();
        let s = map.get_mut(id)?;
        if expired(s, self.idle, now) {
            map.remove(id);
            return None;
        }
        s.last_used = s.last_used.max(now);
        Some(s.who.clone())
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map.lock().remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().len()
    }
}

fn expired(s: &Session, idle: Duration, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) > idle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> SessionUser {
        SessionUser {
            user: user.into(),
            csrf: format!("token-of-{user}"),
        }
    }

    #[test]
    fn a_session_lives_while_used_and_dies_when_idle() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        s.insert("a".into(), who("admin"), t0);
        assert_eq!(
            s.touch("a", t0 + Duration::from_secs(60)),
            Some(who("admin"))
        );
        // The use at 60 s restarted the idle time.
        assert!(s.touch("a", t0 + Duration::from_secs(119)).is_some());
        assert!(s.touch("a", t0 + Duration::from_secs(180)).is_none());
        // Forgotten, not merely refused: an earlier clock does not bring it back.
        assert!(s.touch("a", t0).is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn removed_sessions_are_refused() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        s.insert("a".into(), who("admin"), t0);
        s.remove("a");
        assert!(s.touch("a", t0).is_none());
    }

    #[test]
    fn a_full_store_drops_expired_sessions_then_the_least_recently_used() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        s.insert("old".into(), who("a"), t0);
        s.insert("b".into(), who("b"), at(50));
        s.insert("c".into(), who("c"), at(55));
        // "old" has expired by 70 s: it goes, b and c stay.
        s.insert("d".into(), who("d"), at(70));
        assert_eq!(s.len(), 3);
        assert!(s.touch("b", at(71)).is_some());
        // Nothing expired now: the least recently used (c, last used at 55 s) goes.
        s.insert("e".into(), who("e"), at(72));
        assert_eq!(s.len(), 3);
        assert!(s.touch("c", at(72)).is_none());
        for id in ["b", "d", "e"] {
            assert!(s.touch(id, at(73)).is_some(), "{id}");
        }
    }

    #[test]
    fn the_clock_moves_forward_only_by_what_tests_add() {
        let c = Clock::default();
        let before = Instant::now();
        c.advance(Duration::from_secs(3600));
        assert!(c.now() >= before + Duration::from_secs(3600));
    }
}
