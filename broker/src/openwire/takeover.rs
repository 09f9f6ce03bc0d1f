//! A client that reconnects with the ConnectionId of a connection the broker still holds
//! replaces it, as ActiveMQ's `TransportConnection.processAddConnection` does ("Killing
//! previous stale connection").
//!
//! The Java client's failover transport reconnects with the same ConnectionId and replays its
//! state (sessions, producers, consumers, temporary destinations). When the old socket died
//! without a FIN (a cable pulled, a NAT that forgot the flow), this broker would only learn
//! it at the next inactivity check, and until then the replay was refused: its client id as
//! "in use", its temporary destinations as "another connection's". The connection ids are
//! the client's own (`ID:<host>-<port>-<time>-<n>:<n>`), so a second connection with one
//! is that client again: the stale one is closed (its consumers' unacked messages go back,
//! its temporary destinations go, as when it closes), and the new one proceeds once it has.
//!
//! Unlike ActiveMQ, only the user the old connection logged in as may replace it: a
//! connection id is no secret (it is in every message id), and another user must not be
//! able to cut a client off by sending it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::watch;

/// Why a connection could not take over the id.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TakeoverError {
    #[error("connection id {id} is in use by another user's connection from {peer}")]
    OtherUser { id: String, peer: String },
    #[error("the previous connection with id {id} (from {peer}) did not close within {waited:?}")]
    StillClosing {
        id: String,
        peer: String,
        waited: Duration,
    },
}

/// The live OpenWire connections by ConnectionId.
#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

struct Slot {
    user: String,
    peer: String,
    /// Turned true to ask the connection to close.
    evict: watch::Sender<bool>,
    /// Turned true once it has closed (its [`Registration`] dropped).
    gone: watch::Sender<bool>,
}

/// A connection's hold on its id; dropping it (after the connection has closed) frees it.
pub struct Registration {
    registry: Arc<Registry>,
    id: String,
    slot: Arc<Slot>,
}

/// Where a replaced connection hears it must close.
pub type Evicted = watch::Receiver<bool>;

impl Registry {
    /// Registers connection `id` of `user` from `peer`; a live connection with the same id
    /// and user is asked to close, and this waits (at most `wait`) until it has.
    pub async fn take_over(
        self: &Arc<Self>,
        id: &str,
        user: &str,
        peer: &str,
        wait: Duration,
    ) -> Result<(Registration, Evicted), TakeoverError> {
        let (evict, evicted) = watch::channel(false);
        let slot = Arc::new(Slot {
            user: user.to_owned(),
            peer: peer.to_owned(),
            evict,
            gone: watch::channel(false).0,
        });
        let previous = {
            let mut slots = self.slots.lock();
            match slots.get(id) {
                Some(old) if old.user != user => {
                    return Err(TakeoverError::OtherUser {
                        id: id.to_owned(),
                        peer: old.peer.clone(),
                    });
                }
                _ => slots.insert(id.to_owned(), Arc::clone(&slot)),
            }
        };
        let registration = Registration {
            registry: Arc::clone(self),
            id: id.to_owned(),
            slot,
        };
        if let Some(old) = previous {
            tracing::info!(
                connection = %id, peer = %peer, stale = %old.peer,
                "OpenWire connection id reconnected: closing the stale connection"
            );
            let mut gone = old.gone.subscribe();
            old.evict.send_replace(true);
            // The sender lives in `old`, held here: `wait_for` ends only by the value.
            if tokio::time::timeout(wait, gone.wait_for(|g| *g))
                .await
                .is_err()
            {
                return Err(TakeoverError::StillClosing {
                    id: id.to_owned(),
                    peer: old.peer.clone(),
                    waited: wait,
                });
            }
        }
        Ok((registration, evicted))
    }

    /// How many connections hold an id.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().len()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        {
            let mut slots = self.registry.slots.lock();
            // A connection that replaced this one holds the id now: it stays.
            if slots
                .get(&self.id)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                slots.remove(&self.id);
            }
        }
        self.slot.gone.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_second_connection_with_the_id_closes_the_first_and_waits_for_it() {
        let r = Arc::new(Registry::default());
        let (first, mut first_evicted) = r.take_over("ID:c-1", "app", "a", WAIT).await.unwrap();
        assert!(!*first_evicted.borrow());
        // The first connection closes once told to, as the connection loop does.
        let closer = tokio::spawn(async move {
            first_evicted.wait_for(|e| *e).await.unwrap();
            drop(first);
        });
        let (second, second_evicted) = r.take_over("ID:c-1", "app", "b", WAIT).await.unwrap();
        closer.await.unwrap();
        assert!(!*second_evicted.borrow());
        assert_eq!(r.len(), 1, "the id is the second connection's");
        drop(second);
        assert_eq!(r.len(), 0);
    }

    #[tokio::test]
    async fn another_users_connection_is_not_replaced() {
        let r = Arc::new(Registry::default());
        let (_first, evicted) = r.take_over("ID:c-1", "app", "a", WAIT).await.unwrap();
        let e = r
            .take_over("ID:c-1", "intruder", "b", WAIT)
            .await
            .map(drop)
            .unwrap_err();
        assert_eq!(
            e,
            TakeoverError::OtherUser {
                id: "ID:c-1".into(),
                peer: "a".into()
            }
        );
        assert!(!*evicted.borrow(), "the first connection was left alone");
    }

    #[tokio::test]
    async fn a_connection_that_does_not_close_is_reported() {
        let r = Arc::new(Registry::default());
        let (_stuck, _evicted) = r.take_over("ID:c-1", "app", "a", WAIT).await.unwrap();
        let e = r
            .take_over("ID:c-1", "app", "b", Duration::from_millis(50))
            .await
            .map(drop)
            .unwrap_err();
        assert!(
            matches!(e, TakeoverError::StillClosing { ref peer, .. } if peer == "a"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn different_ids_are_independent() {
        let r = Arc::new(Registry::default());
        let (_a, ea) = r.take_over("ID:c-1", "app", "a", WAIT).await.unwrap();
        let (_b, eb) = r.take_over("ID:c-2", "app", "b", WAIT).await.unwrap();
        assert!(!*ea.borrow() && !*eb.borrow());
        assert_eq!(r.len(), 2);
    }
}
