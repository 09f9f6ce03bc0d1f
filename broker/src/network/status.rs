//! What the console and `/metrics` show of the network: each bridge (its remote broker, whether
//! it is connected, the messages it forwarded, the destinations it forwards now), and the
//! messages that arrived here from other brokers' bridges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// One bridge's live state, updated by its task.
#[derive(Debug, Default)]
pub struct BridgeStatus {
    pub name: String,
    /// `host:port` of the remote broker's OpenWire listener.
    pub remote: String,
    remote_broker: Mutex<Option<String>>,
    connected: AtomicBool,
    /// Messages the remote broker stored and this one then acked.
    pub forwarded: AtomicU64,
    /// Destinations forwarded now (one per demand with conduit subscriptions).
    pub destinations: AtomicUsize,
    /// Messages a duplex bridge took from the remote broker and stored here.
    pub pulled: AtomicU64,
}

impl BridgeStatus {
    pub fn connected(&self, remote_broker: &str) {
        *self.remote_broker.lock() = Some(remote_broker.to_owned());
        self.connected.store(true, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.destinations.store(0, Ordering::Relaxed);
    }
}

/// A bridge as shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BridgeView {
    pub name: String,
    pub remote: String,
    /// The remote broker's name, once it was connected.
    pub remote_broker: Option<String>,
    pub connected: bool,
    pub forwarded: u64,
    /// The other way, over a duplex bridge.
    pub pulled: u64,
    pub destinations: usize,
}

/// Every bridge of this broker, and what came in from others.
#[derive(Debug, Default)]
pub struct Network {
    bridges: Mutex<Vec<Arc<BridgeStatus>>>,
    /// Messages received from other brokers' bridges (sent with a broker path).
    pub received: AtomicU64,
    /// Of those, the ones dropped as already stored (a bridge sending again after a lost
    /// answer).
    pub duplicates: AtomicU64,
    audit: Mutex<Audit>,
}

/// The ids of the messages bridges sent here lately (ActiveMQ's message audit): a message a
/// bridge sends again, because the answer to its first send was lost, is answered without
/// being stored twice. In memory only: after a restart of this broker such a second copy is
/// stored, and comes flagged redelivered.
#[derive(Debug, Default)]
struct Audit {
    seen: std::collections::HashSet<(String, i64)>,
    order: std::collections::VecDeque<(String, i64)>,
}

/// Message ids the audit remembers.
const AUDIT_DEPTH: usize = 65_536;

impl Audit {
    fn insert(&mut self, id: (String, i64)) {
        if self.seen.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > AUDIT_DEPTH
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }
}

impl Network {
    /// A new bridge's status, listed from now on.
    pub fn register(&self, name: &str, remote: &str) -> Arc<BridgeStatus> {
        let s = Arc::new(BridgeStatus {
            name: name.to_owned(),
            remote: remote.to_owned(),
            ..BridgeStatus::default()
        });
        self.bridges.lock().push(Arc::clone(&s));
        s
    }

    /// Takes a bridge off the list (a discovered broker that left).
    pub fn unregister(&self, status: &Arc<BridgeStatus>) {
        self.bridges.lock().retain(|b| !Arc::ptr_eq(b, status));
    }

    pub fn bridges(&self) -> Vec<BridgeView> {
        self.bridges
            .lock()
            .iter()
            .map(|b| BridgeView {
                name: b.name.clone(),
                remote: b.remote.clone(),
                remote_broker: b.remote_broker.lock().clone(),
                connected: b.connected.load(Ordering::Relaxed),
                forwarded: b.forwarded.load(Ordering::Relaxed),
                pulled: b.pulled.load(Ordering::Relaxed),
                destinations: b.destinations.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Whether the message `id` (its producer and sequence, as the sending broker named it)
    /// was stored here already.
    pub fn seen(&self, id: &(String, i64)) -> bool {
        self.audit.lock().seen.contains(id)
    }

    /// Remembers that `id` is stored here.
    pub fn stored(&self, id: (String, i64)) {
        self.audit.lock().insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_remembers_the_latest_ids() {
        let n = Network::default();
        let id = |i: i64| ("ID:a".to_owned(), i);
        assert!(!n.seen(&id(1)));
        n.stored(id(1));
        n.stored(id(1));
        assert!(n.seen(&id(1)));
        for i in 2..=(AUDIT_DEPTH as i64 + 1) {
            n.stored(id(i));
        }
        assert!(!n.seen(&id(1)), "the oldest is forgotten");
        assert!(n.seen(&id(2)) && n.seen(&id(AUDIT_DEPTH as i64 + 1)));
    }
}
