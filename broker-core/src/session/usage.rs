//! What one connection holds, counted against the per-connection caps of `[limits]`: its
//! consumers, its open transactions, the messages (and bytes) sent in them and not yet
//! committed, and the destinations it created in the last second.
//!
//! Every protocol door (STOMP, OpenWire, the in-process API) reaches these through
//! broker-core's sessions, so each cap is enforced once, here. A cap refuses only the call
//! that would pass it ([`BrokerError::ConnectionLimit`], naming the config key); what the
//! connection already holds is untouched. Counts are given back by [`Slot`] guards, so every
//! path that ends a consumer or a transaction (close, drop, a connection that vanished)
//! releases them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::LimitsSection;
use crate::error::{BrokerError, Result};

#[derive(Debug)]
pub(crate) struct ConnectionUsage {
    consumers: AtomicUsize,
    producers: AtomicUsize,
    transactions: AtomicUsize,
    tx_sends: AtomicUsize,
    tx_bytes: AtomicU64,
    /// The start of the current one-second window and the destinations created in it.
    created: Mutex<(Instant, u32)>,
}

/// Takes one unit of `counter` if it is under `max`, or refuses with the cap's config key.
fn take(counter: &AtomicUsize, max: usize, what: &str, key: &'static str) -> Result<()> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .map(drop)
        .map_err(|_| BrokerError::ConnectionLimit {
            what: what.into(),
            limit: max as u64,
            key,
        })
}

/// Which count a [`Slot`] holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Consumer,
    Producer,
    Transaction,
}

impl Kind {
    /// The refusal's words and the cap's config key.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Kind::Consumer => (
                "too many consumers on this connection",
                "limits.max_consumers_per_connection",
            ),
            Kind::Producer => (
                "too many producers on this connection",
                "limits.max_producers_per_connection",
            ),
            Kind::Transaction => (
                "too many open transactions on this connection",
                "limits.max_transactions_per_connection",
            ),
        }
    }
}

/// One consumer or one open transaction of a connection; gives its count back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    usage: Arc<ConnectionUsage>,
    kind: Kind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.usage.counter(self.kind).fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionUsage {
    pub(crate) fn new() -> Arc<ConnectionUsage> {
        Arc::new(ConnectionUsage {
            consumers: AtomicUsize::new(0),
            producers: AtomicUsize::new(0),
            transactions: AtomicUsize::new(0),
            tx_sends: AtomicUsize::new(0),
            tx_bytes: AtomicU64::new(0),
            created: Mutex::new((Instant::now(), 0)),
        })
    }

    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Consumer => &self.consumers,
            Kind::Producer => &self.producers,
            Kind::Transaction => &self.transactions,
        }
    }

    fn slot(self: &Arc<Self>, kind: Kind, max: usize) -> Result<Slot> {
        let (what, key) = kind.describe();
        take(self.counter(kind), max, what, key)?;
        Ok(Slot {
            usage: Arc::clone(self),
            kind,
        })
    }

    /// A producer more, or `ConnectionLimit` at `limits.max_producers_per_connection`.
    pub(crate) fn producer(self: &Arc<Self>, limits: &LimitsSection) -> Result<Slot> {
        self.slot(Kind::Producer, limits.max_producers_per_connection)
    }

    /// A consumer more, or `ConnectionLimit` at `limits.max_consumers_per_connection`.
    pub(crate) fn consumer(self: &Arc<Self>, limits: &LimitsSection) -> Result<Slot> {
        self.slot(Kind::Consumer, limits.max_consumers_per_connection)
    }

    /// An open transaction more, or `ConnectionLimit` at
    /// `limits.max_transactions_per_connection`.
    pub(crate) fn transaction(self: &Arc<Self>, limits: &LimitsSection) -> Result<Slot> {
        self.slot(Kind::Transaction, limits.max_transactions_per_connection)
    }

    /// One uncommitted transacted send of `bytes` more; the caller gives it back with
    /// [`ConnectionUsage::release_sends`] when its transaction ends.
    pub(crate) fn transacted_send(&self, bytes: u64, limits: &LimitsSection) -> Result<()> {
        take(
            &self.tx_sends,
            limits.max_transacted_sends_per_connection,
            "too many uncommitted transacted sends on this connection",
            "limits.max_transacted_sends_per_connection",
        )?;
        let max_bytes = limits.max_transacted_bytes_per_connection;
        if self
            .tx_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(bytes).filter(|t| *t <= max_bytes)
            })
            .is_err()
        {
            self.tx_sends.fetch_sub(1, Ordering::AcqRel);
            return Err(BrokerError::ConnectionLimit {
                what: format!(
                    "a transacted send of {bytes} bytes would pass the uncommitted bytes allowed on this connection"
                ),
                limit: max_bytes,
                key: "limits.max_transacted_bytes_per_connection",
            });
        }
        Ok(())
    }

    pub(crate) fn release_sends(&self, count: usize, bytes: u64) {
        if count > 0 {
            self.tx_sends.fetch_sub(count, Ordering::AcqRel);
        }
        if bytes > 0 {
            self.tx_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Counts the creation of a destination that does not exist yet, or refuses it when this
    /// connection already created `limits.max_destinations_created_per_second` in the
    /// current second.
    pub(crate) fn destination_created(&self, limits: &LimitsSection) -> Result<()> {
        let max = limits.max_destinations_created_per_second;
        let mut created = self.created.lock();
        let now = Instant::now();
        if now.duration_since(created.0) >= Duration::from_secs(1) {
            *created = (now, 0);
        }
        if created.1 >= max {
            return Err(BrokerError::ConnectionLimit {
                what: "too many new destinations created by this connection in one second".into(),
                limit: u64::from(max),
                key: "limits.max_destinations_created_per_second",
            });
        }
        created.1 += 1;
        Ok(())
    }

    #[cfg(test)]
    fn consumers(&self) -> usize {
        self.consumers.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsSection {
        LimitsSection {
            max_consumers_per_connection: 2,
            max_transactions_per_connection: 1,
            max_transacted_sends_per_connection: 3,
            max_transacted_bytes_per_connection: 100,
            max_destinations_created_per_second: 2,
            ..LimitsSection::default()
        }
    }

    fn key_of(e: BrokerError) -> &'static str {
        match e {
            BrokerError::ConnectionLimit { key, .. } => key,
            other => panic!("expected a connection limit, got {other}"),
        }
    }

    #[test]
    fn consumers_and_transactions_are_capped_and_given_back() {
        let u = ConnectionUsage::new();
        let l = limits();
        let a = u.consumer(&l).expect("first");
        let _b = u.consumer(&l).expect("second");
        assert_eq!(
            key_of(u.consumer(&l).expect_err("third")),
            "limits.max_consumers_per_connection"
        );
        drop(a);
        assert_eq!(u.consumers(), 1);
        let _c = u.consumer(&l).expect("a slot came back");
        let t = u.transaction(&l).expect("first");
        assert_eq!(
            key_of(u.transaction(&l).expect_err("second")),
            "limits.max_transactions_per_connection"
        );
        drop(t);
        u.transaction(&l).expect("given back");
    }

    #[test]
    fn transacted_sends_are_capped_in_count_and_bytes() {
        let u = ConnectionUsage::new();
        let l = limits();
        u.transacted_send(60, &l).expect("60 of 100 bytes");
        assert_eq!(
            key_of(u.transacted_send(41, &l).expect_err("101 bytes")),
            "limits.max_transacted_bytes_per_connection"
        );
        u.transacted_send(40, &l).expect("exactly 100 bytes");
        assert_eq!(
            key_of(u.transacted_send(1, &l).expect_err("one byte more")),
            "limits.max_transacted_bytes_per_connection"
        );
        u.release_sends(2, 100);
        u.transacted_send(0, &l).expect("1");
        u.transacted_send(0, &l).expect("2");
        u.transacted_send(0, &l).expect("3");
        assert_eq!(
            key_of(u.transacted_send(0, &l).expect_err("a fourth send")),
            "limits.max_transacted_sends_per_connection"
        );
    }

    #[test]
    fn destination_creations_are_capped_per_second() {
        let u = ConnectionUsage::new();
        let l = limits();
        u.destination_created(&l).expect("1");
        u.destination_created(&l).expect("2");
        assert_eq!(
            key_of(u.destination_created(&l).expect_err("3")),
            "limits.max_destinations_created_per_second"
        );
        // A window that started over a second ago starts again.
        let past = Instant::now().checked_sub(Duration::from_secs(2));
        let Some(past) = past else { return };
        u.created.lock().0 = past;
        u.destination_created(&l).expect("a new second");
    }
}
