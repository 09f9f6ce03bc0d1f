//! A dispatcher's messages in the temp store (`crate::temp_store`): non-persistent messages
//! that came while memory was full, as ActiveMQ's `FilePendingMessageCursor` holds them.
//!
//! A spooled message gets its window key (priority, arrival) when it is spooled and keeps it:
//! it is paged back into the window under that key, so a queue still delivers in priority
//! order, first in first out within a priority. While a dispatcher has messages spooled, or
//! sends on their way to the temp store for it (a [`SpoolTicket`] each), its next messages are
//! spooled too even if memory has room again: otherwise a later message could reach the window
//! and be delivered ahead of an earlier spooled one.
//!
//! Paging in runs in the dispatcher's task like paging from the store: while memory (the
//! broker's and the queue's own) has room, someone consumes, and the window holds fewer than
//! `max_page_size` messages that are not from the store. The records stay listed until read,
//! so the dispatcher counts as spooling throughout; reading one drops its handle, which frees
//! the record in the temp store once no other subscriber holds it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{error, warn};

use super::{Dispatcher, Entry, Source, State, WindowKey, eviction_victim};
use crate::core::Core;
use crate::temp_store::SpooledRecord;

/// A send on its way to the temp store for one dispatcher: while it is out, the dispatcher's
/// next messages are spooled too, behind it. Dropped once the message is listed (or the send
/// failed).
pub(crate) struct SpoolTicket(Arc<Dispatcher>);

impl Drop for SpoolTicket {
    fn drop(&mut self) {
        self.0.spooling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Records to page in, each with its window key.
pub(super) type Batch = Vec<(WindowKey, Arc<SpooledRecord>)>;

/// The spooled records to page in now (left listed until read): as many as fit in `room`
/// bytes of memory (one at least), and whether paging in waits only for memory (the
/// dispatcher's task then looks again shortly).
pub(super) fn take_batch(st: &mut State, page: usize, room: u64) -> (Batch, bool) {
    if st.spool.is_empty() || st.spool_reading || st.consumers.is_empty() {
        return (Vec::new(), false);
    }
    let not_stored = st.window.len().saturating_sub(st.paged);
    if not_stored >= page {
        return (Vec::new(), false);
    }
    if room == 0 {
        return (Vec::new(), true);
    }
    st.spool_reading = true;
    let mut bytes = 0;
    let batch = st
        .spool
        .iter()
        .take(page - not_stored)
        .take_while(|(_, r)| {
            let first = bytes == 0;
            bytes += r.size.max(1);
            first || bytes <= room
        })
        .map(|(k, r)| (*k, Arc::clone(r)))
        .collect();
    (batch, false)
}

/// Which of two eviction candidates goes first: the lower priority, then the older.
fn evict_first(a: WindowKey, b: WindowKey) -> bool {
    (a.0.0, a.1) <= (b.0.0, b.1)
}

impl Dispatcher {
    /// A ticket for a send about to spool for this dispatcher.
    pub(crate) fn spool_ticket(self: &Arc<Self>) -> SpoolTicket {
        self.spooling.fetch_add(1, Ordering::AcqRel);
        SpoolTicket(Arc::clone(self))
    }

    /// Whether this dispatcher's next message must be spooled to keep its order: some are in
    /// the temp store or on their way there.
    pub(crate) fn is_spooling(&self) -> bool {
        self.spooling.load(Ordering::Acquire) > 0 || !self.state.lock().spool.is_empty()
    }

    /// A message spooled for this dispatcher takes its place in the order, as `push` does for
    /// one held in memory.
    pub(crate) fn push_spooled(&self, record: Arc<SpooledRecord>) {
        let mut st = self.state.lock();
        if st.closed || (matches!(self.source, Source::Durable { .. }) && st.consumers.is_empty()) {
            return;
        }
        let Some(core) = self.core.upgrade() else {
            return;
        };
        // The window's own key, so `prioritized_messages = false` keeps arrival order here too.
        let key = self.window_key_of(record.priority, core.next_arrival());
        st.spool.insert(key, record);
        self.pushed(&core, st);
    }

    /// A non-durable subscriber over `max_pending_non_durable` (window and temp store
    /// together) loses the oldest of its lowest-priority messages, wherever they are. Returns
    /// the memory freed, the records dropped (to drop outside the lock) and whether an
    /// episode of falling behind started.
    pub(super) fn evict_over_limit(&self, st: &mut State) -> (u64, Vec<Arc<SpooledRecord>>, bool) {
        let mut freed = 0;
        let mut records = Vec::new();
        let mut slow_started = false;
        let Source::Memory {
            max_pending,
            dropped,
        } = &self.source
        else {
            return (freed, records, slow_started);
        };
        while st.window.len() + st.spool.len() > *max_pending {
            let in_window = eviction_victim(&st.window);
            let in_spool = st
                .spool
                .keys()
                .next_back()
                .and_then(|(lowest, _)| st.spool.range((*lowest, 0)..).next().map(|(k, _)| *k));
            let victim = match (in_window, in_spool) {
                (Some(w), Some(s)) if evict_first(s, w) => Err(s),
                (None, Some(s)) => Err(s),
                (Some(w), _) => Ok(w),
                (None, None) => break,
            };
            match victim {
                Err(s) => records.extend(st.spool.remove(&s)),
                Ok(w) => {
                    let Some(old) = st.window.remove(&w) else {
                        break;
                    };
                    st.index.remove(&old.message.id);
                    freed += old.size;
                }
            }
            dropped.fetch_add(1, Ordering::Relaxed);
            if st.slow.dropped_one() {
                slow_started = true;
                warn!(subscriber = %self.label(), max_pending, "slow non-durable subscriber: over its pending limit, dropping the oldest of its lowest-priority messages until it catches up");
            }
        }
        (freed, records, slow_started)
    }

    /// Reads `batch` back from the temp store into the window, under the keys they were
    /// spooled with. Those purged or evicted meanwhile are skipped.
    pub(super) async fn page_in_spool(&self, core: &Core, batch: Batch) {
        let read = match &core.temp {
            Some(temp) => {
                temp.read(batch.iter().map(|(_, r)| Arc::clone(r)).collect())
                    .await
            }
            None => Vec::new(),
        };
        let mut st = self.state.lock();
        st.spool_reading = false;
        let mut added = 0;
        let mut done = Vec::with_capacity(batch.len());
        for ((key, _), message) in batch.iter().zip(read) {
            if st.closed {
                break;
            }
            let Some(record) = st.spool.remove(key) else {
                continue;
            };
            done.push(record);
            match message {
                Ok(message) => {
                    let size = message.size();
                    added += size;
                    st.index.insert(message.id.clone(), *key);
                    st.window.insert(
                        *key,
                        Entry {
                            message: Arc::new(message),
                            arrival: key.1,
                            size,
                            paged_ms: crate::core::now_ms(),
                        },
                    );
                }
                Err(e) => {
                    error!(destination = %self.label(), "a spooled non-persistent message is lost: {e}");
                }
            }
        }
        drop(st);
        self.charge(core, added);
        // Outside the lock: the last handle of a record frees it in the temp store.
        drop(done);
        drop(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::evict_first;
    use std::cmp::Reverse;

    #[test]
    fn the_lower_priority_then_the_older_is_evicted_first() {
        assert!(evict_first((Reverse(1), 9), (Reverse(4), 1)));
        assert!(!evict_first((Reverse(4), 1), (Reverse(1), 9)));
        assert!(evict_first((Reverse(4), 1), (Reverse(4), 2)));
        assert!(!evict_first((Reverse(4), 3), (Reverse(4), 2)));
    }
}
