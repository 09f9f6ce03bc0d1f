//! Delivery order and the batch cursor position that every engine keeps the same way.

use std::cmp::Ordering;

use crate::message::{MAX_PRIORITY, Message};

/// A message's place in delivery order: higher priority first, then lower sequence first.
/// `OrderKey`s sort in delivery order, so `a < b` means `a` is delivered before `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderKey {
    pub priority: u8,
    pub sequence: u64,
}

impl OrderKey {
    pub fn of(message: &Message) -> Self {
        OrderKey {
            priority: message.priority,
            sequence: message.sequence,
        }
    }
}

impl Ord for OrderKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.sequence.cmp(&other.sequence))
    }
}

impl PartialOrd for OrderKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The position of a batch cursor: for each priority, the highest sequence already returned.
///
/// Keeping one position per priority (as KahaDB's `MessageOrderCursor` does) is what makes the
/// cursor never skip a message: a message added later has a higher sequence than anything
/// stored, so it lies after its priority's position however far the cursor has gone through
/// other priorities, and a later batch returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CursorPosition {
    after: [u64; MAX_PRIORITY as usize + 1],
}

impl CursorPosition {
    /// True when the cursor has not yet returned the message at `key`.
    pub fn is_pending(&self, key: OrderKey) -> bool {
        key.sequence > self.after[usize::from(key.priority.min(MAX_PRIORITY))]
    }

    /// Records that the message at `key` was returned.
    pub fn advance(&mut self, key: OrderKey) {
        let p = usize::from(key.priority.min(MAX_PRIORITY));
        self.after[p] = self.after[p].max(key.sequence);
    }

    pub fn reset(&mut self) {
        *self = CursorPosition::default();
    }

    /// Positions the cursor just after `key` in delivery order: everything stored now at a
    /// higher priority, and everything at `key`'s priority up to its sequence, counts as
    /// returned; lower priorities start from the beginning. `last_sequence` is the highest
    /// sequence the store has assigned.
    pub fn set_after(&mut self, key: OrderKey, last_sequence: u64) {
        for (p, after) in self.after.iter_mut().enumerate() {
            let p = p as u8;
            *after = match p.cmp(&key.priority) {
                Ordering::Greater => last_sequence,
                Ordering::Equal => key.sequence,
                Ordering::Less => 0,
            };
        }
    }

    /// What the cursor has not returned yet, as the stores read it: for each priority from
    /// high to low, the inclusive key range from its first pending key to the end of that
    /// priority.
    pub fn pending_ranges(&self) -> impl Iterator<Item = (OrderKey, OrderKey)> + '_ {
        (0..=MAX_PRIORITY).rev().map(|priority| {
            let end = OrderKey {
                priority,
                sequence: u64::MAX,
            };
            (self.first_pending_at(priority), end)
        })
    }

    /// The smallest key, in delivery order, the cursor could still return at `priority`.
    pub fn first_pending_at(&self, priority: u8) -> OrderKey {
        let p = priority.min(MAX_PRIORITY);
        OrderKey {
            priority: p,
            sequence: self.after[usize::from(p)].saturating_add(1),
        }
    }
}
