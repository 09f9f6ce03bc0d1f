//! Whether the store takes writes, and getting it to take them again after its disk was full.
//!
//! A journal engine whose disk fills refuses every write from then on (see
//! `PersistenceAdapter::write_refusal`). The broker notices it here: the watch task polls the
//! refusal (cheap, no I/O), logs the change once (not per message), shows it to the console,
//! and while the cause is a full disk asks the engine to reopen itself
//! (`PersistenceAdapter::resume_writes`) with a bounded back-off, so that writes resume without
//! a restart once space is freed. Persistent sends meanwhile get the engine's `DiskFull` error.
//!
//! Consumers go on, as ActiveMQ's do while its store usage blocks producers: reads need no
//! space, and an ack that the full disk refuses is deferred rather than failed. The message is
//! settled in memory (not delivered again in this run, the batch cursor being past it, and kept
//! by the engine's reopen in place) and the ack is written once the store takes writes again.
//! Were the broker to stop before that, the message stays stored and is delivered again, flagged
//! redelivered, as for any ack lost in flight: at least once, never lost.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use store_api::{ErrorKind, Message, StoreError, WriteRefusal};
use tracing::{error, info, warn};

use super::{Core, now_ms};
use crate::dispatch::Dispatcher;

/// How often the watch task looks at the store's refusal.
const POLL: Duration = Duration::from_millis(250);
/// The first wait before asking a store refused for want of space to reopen; doubled after each
/// attempt that finds the disk still full, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Acks held at most while the disk is full; past this an ack fails as any store error does
/// (the message is delivered again), so that memory stays bounded.
const MAX_DEFERRED_ACKS: usize = 100_000;

/// The store's state as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// Whether the store takes writes.
    pub writable: bool,
    /// Why not, while it does not.
    pub refusal: Option<WriteRefusal>,
    /// Since when it refuses, in milliseconds since the epoch.
    pub refused_since_ms: Option<i64>,
    /// Acks waiting for the store to take writes again.
    pub deferred_acks: usize,
    /// Times this run the store took writes again after refusing them.
    pub resumed: u64,
}

#[derive(Default)]
struct State {
    refused: Option<(WriteRefusal, i64)>,
    resumed: u64,
}

/// What [`Core`] keeps about the store's writability.
#[derive(Default)]
pub(crate) struct StoreHealth {
    state: Mutex<State>,
    deferred: Mutex<Vec<(Arc<Dispatcher>, Arc<Message>)>>,
}

impl StoreHealth {
    /// Records a refusal; logs it if it is new.
    fn refused(&self, r: WriteRefusal) {
        let mut st = self.state.lock();
        if st.refused.as_ref().is_some_and(|(old, _)| *old == r) {
            return;
        }
        match &r.disk_full {
            Some(path) => error!(
                path = %path.display(),
                "the store's disk is full: persistent sends are refused until space is freed there, \
                 then the store reopens itself and takes them again ({})",
                r.reason
            ),
            None => error!(
                "the store refuses writes until the broker is restarted: {}",
                r.reason
            ),
        }
        st.refused = Some((r, now_ms()));
    }

    /// Records that the store takes writes; logs it if it did not.
    fn writable(&self) {
        let mut st = self.state.lock();
        if st.refused.take().is_some() {
            st.resumed += 1;
            info!("the store takes writes again");
        }
    }

    pub(crate) fn status(&self) -> StoreStatus {
        let st = self.state.lock();
        StoreStatus {
            writable: st.refused.is_none(),
            refusal: st.refused.as_ref().map(|(r, _)| r.clone()),
            refused_since_ms: st.refused.as_ref().map(|(_, t)| *t),
            deferred_acks: self.deferred.lock().len(),
            resumed: st.resumed,
        }
    }

    /// Holds an ack the full disk refused, to write once the store takes writes again.
    /// False (the caller fails the ack) for any other error, or when too many are held.
    pub(crate) fn defer_ack(&self, e: &StoreError, d: &Arc<Dispatcher>, m: &Message) -> bool {
        if e.kind() != ErrorKind::DiskFull {
            return false;
        }
        let mut deferred = self.deferred.lock();
        if deferred.len() >= MAX_DEFERRED_ACKS {
            return false;
        }
        deferred.push((Arc::clone(d), Arc::new(m.clone())));
        true
    }
}

impl Core {
    /// The store's state, for the console.
    pub(crate) fn store_status(&self) -> StoreStatus {
        self.health.status()
    }

    /// The watch task: runs until the core closes.
    pub(crate) async fn watch_store(self: Arc<Self>) {
        let mut retry = RETRY_FIRST;
        let mut waited = Duration::ZERO;
        loop {
            tokio::time::sleep(POLL).await;
            if self.is_closed() {
                return;
            }
            let Some(refusal) = self.store.write_refusal() else {
                self.health.writable();
                self.write_deferred_acks().await;
                retry = RETRY_FIRST;
                waited = Duration::ZERO;
                continue;
            };
            let disk_full = refusal.disk_full.is_some();
            self.health.refused(refusal);
            if !disk_full {
                continue;
            }
            waited += POLL;
            if waited < retry {
                continue;
            }
            waited = Duration::ZERO;
            match self.store.resume_writes().await {
                Ok(true) => {
                    self.health.writable();
                    self.write_deferred_acks().await;
                    retry = RETRY_FIRST;
                }
                Ok(false) => retry = (retry * 2).min(RETRY_MAX),
                Err(e) => {
                    warn!("reopening the store after its disk was full failed: {e}");
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Writes the acks held while the disk was full, oldest first; those it still cannot
    /// write wait for the next time.
    async fn write_deferred_acks(&self) {
        let held = std::mem::take(&mut *self.health.deferred.lock());
        if held.is_empty() {
            return;
        }
        let mut left = Vec::new();
        let mut written = 0usize;
        let mut items = held.into_iter();
        for (d, m) in items.by_ref() {
            match d.store_ack(&m, crate::session::AckWait::Receipt).await {
                Ok(()) => written += 1,
                Err(crate::error::BrokerError::Store(e)) if e.kind() == ErrorKind::DiskFull => {
                    left.push((d, m));
                    break;
                }
                Err(e) => {
                    warn!(message = %m.id, "a deferred ack failed; the message will be delivered again after a restart: {e}")
                }
            }
        }
        left.extend(items);
        if written > 0 {
            info!(
                acks = written,
                "wrote the acks held while the disk was full"
            );
        }
        if !left.is_empty() {
            let mut deferred = self.health.deferred.lock();
            left.append(&mut deferred);
            *deferred = left;
        }
    }
}
