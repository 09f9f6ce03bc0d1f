//! ActiveMQ's producer audit, for messages whose ids their client gave (OpenWire): which
//! recent sequences of each producer were stored, so that a resend of a message already stored
//! *and already consumed* (its store entry gone, so the store cannot call it a `Duplicate`) is
//! recognised. That happens when a connection breaks after the store took a send and before
//! its answer reached the client: the failover transport then resends it on the next
//! connection.
//!
//! As ActiveMQ's `ActiveMQMessageAudit`, a window of bits per producer, not a high-water mark:
//! messages of one producer can arrive out of order (a network bridge forwards them as its
//! consumers get them), and a high-water mark would drop the late ones. A sequence older than
//! the window is not known, so it is stored again rather than dropped: the audit can miss a
//! duplicate, never lose a message. In memory only, as ActiveMQ's between checkpoints: after a
//! restart the store's own `Duplicate` covers what is still stored. Bounded: `WINDOW` bits for
//! each of at most `MAX_PRODUCERS` producers (one forgotten for each new one past that).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use store_api::MessageId;

/// Sequences remembered per producer (ActiveMQ's `maximumNumberOfProducersToTrack` is 64 per
/// destination with an audit depth of 2048 per producer).
const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;
/// Producers remembered (about 128 bytes each).
const MAX_PRODUCERS: usize = 16 * 1024;

/// The sequences `base .. base + WINDOW` of one producer, one bit each.
struct Window {
    base: u64,
    bits: [u64; WORDS],
}

impl Window {
    fn new(seq: u64) -> Window {
        let mut w = Window {
            base: seq.saturating_sub(WINDOW / 2),
            bits: [0; WORDS],
        };
        w.set(seq);
        w
    }

    fn get(&self, seq: u64) -> bool {
        match seq.checked_sub(self.base) {
            Some(i) if i < WINDOW => self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0,
            _ => false,
        }
    }

    fn set(&mut self, seq: u64) {
        let Some(i) = seq.checked_sub(self.base) else {
            return; // older than the window: not remembered
        };
        if i >= WINDOW {
            // Slides so that `seq` lands in the middle: half a window of slides at once.
            let new_base = seq - WINDOW / 2;
            let shift = new_base - self.base;
            let mut bits = [0u64; WORDS];
            if shift < WINDOW {
                for old in shift..WINDOW {
                    if self.bits[(old / 64) as usize] & (1 << (old % 64)) != 0 {
                        let n = old - shift;
                        bits[(n / 64) as usize] |= 1 << (n % 64);
                    }
                }
            }
            self.bits = bits;
            self.base = new_base;
        }
        let i = seq - self.base;
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
    }
}

#[derive(Default)]
pub(crate) struct ProducerAudit {
    producers: Mutex<HashMap<Arc<str>, Window>>,
}

impl ProducerAudit {
    /// Whether a message with this id is known to be stored already.
    pub(crate) fn seen(&self, id: &MessageId) -> bool {
        self.producers
            .lock()
            .get(&id.producer)
            .is_some_and(|w| w.get(id.producer_seq))
    }

    /// A message with this id is stored.
    pub(crate) fn record(&self, id: &MessageId) {
        let mut producers = self.producers.lock();
        if let Some(w) = producers.get_mut(&id.producer) {
            w.set(id.producer_seq);
            return;
        }
        if producers.len() >= MAX_PRODUCERS
            && let Some(old) = producers.keys().next().cloned()
        {
            producers.remove(&old);
        }
        producers.insert(Arc::clone(&id.producer), Window::new(id.producer_seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &str, s: u64) -> MessageId {
        MessageId::new(p, s)
    }

    #[test]
    fn stored_sequences_are_seen_in_any_order_and_others_are_not() {
        let audit = ProducerAudit::default();
        assert!(!audit.seen(&id("a", 1)));
        audit.record(&id("a", 3));
        audit.record(&id("a", 1));
        assert!(audit.seen(&id("a", 1)));
        assert!(audit.seen(&id("a", 3)));
        // Out of order is not a duplicate: 2 was never stored.
        assert!(!audit.seen(&id("a", 2)));
        assert!(!audit.seen(&id("b", 1)));
    }

    #[test]
    fn the_window_slides_and_forgets_only_what_fell_out() {
        let audit = ProducerAudit::default();
        for s in 1..=5000 {
            audit.record(&id("a", s));
        }
        assert!(audit.seen(&id("a", 5000)));
        assert!(audit.seen(&id("a", 5000 - WINDOW / 2 + 1)));
        // Far behind: unknown, so stored again rather than dropped.
        assert!(!audit.seen(&id("a", 1)));
        // A jump far ahead keeps nothing of the old window but is itself seen.
        audit.record(&id("a", 1_000_000));
        assert!(audit.seen(&id("a", 1_000_000)));
        assert!(!audit.seen(&id("a", 4999)));
        assert!(!audit.seen(&id("a", 999_999)));
    }
}
