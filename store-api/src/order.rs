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

/// The order a batch cursor returns messages in.
///
/// Both orders share one [`CursorPosition`] (the highest sequence returned per priority), so a
/// cursor may be read in either order, or in both in turn, and still returns nothing twice and
/// skips nothing: a message added later has a higher sequence than anything stored, whatever
/// its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum DeliveryOrder {
    /// Priority high to low, then sequence: JMS priority (ActiveMQ's `prioritizedMessages`).
    #[default]
    Priority,
    /// Sequence only, whatever the priorities: arrival order (ActiveMQ's default).
    Arrival,
}

impl DeliveryOrder {
    /// How many messages to read from the next of [`CursorPosition::pending_ranges`], with
    /// `have` in the batch already; `None` when the batch is complete.
    ///
    /// In priority order the ranges are read one after the other until `max`. In arrival
    /// order every range may hold one of the first `max` sequences, so up to `max` are read
    /// from each, and [`DeliveryOrder::finish`] keeps the first `max` by sequence.
    pub fn range_limit(self, have: usize, max: usize) -> Option<usize> {
        match self {
            DeliveryOrder::Priority => (have < max).then(|| max - have),
            DeliveryOrder::Arrival => (max > 0).then_some(max),
        }
    }

    /// Puts a batch read range by range (see [`DeliveryOrder::range_limit`]) into this order
    /// and keeps its first `max`. The cursor is then advanced over what is kept only.
    pub fn finish<T>(self, batch: &mut Vec<T>, key: impl Fn(&T) -> OrderKey, max: usize) {
        if self == DeliveryOrder::Arrival {
            batch.sort_by_key(|m| key(m).sequence);
        }
        batch.truncate(max);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(priority: u8, sequence: u64) -> OrderKey {
        OrderKey { priority, sequence }
    }

    /// Reads `stored` (each range in sequence order) as an engine does.
    fn batch(
        stored: &[OrderKey],
        cursor: &CursorPosition,
        order: DeliveryOrder,
        max: usize,
    ) -> Vec<OrderKey> {
        let mut out = Vec::new();
        for (from, to) in cursor.pending_ranges() {
            let Some(limit) = order.range_limit(out.len(), max) else {
                break;
            };
            let mut range: Vec<OrderKey> = stored
                .iter()
                .copied()
                .filter(|k| *k >= from && *k <= to)
                .collect();
            range.sort();
            out.extend(range.into_iter().take(limit));
        }
        order.finish(&mut out, |k| *k, max);
        out
    }

    #[test]
    fn arrival_order_takes_the_lowest_sequences_whatever_the_priority() {
        let stored = [key(4, 1), key(9, 2), key(0, 3), key(9, 4), key(4, 5)];
        let mut cursor = CursorPosition::default();
        let first = batch(&stored, &cursor, DeliveryOrder::Arrival, 3);
        assert_eq!(first, [key(4, 1), key(9, 2), key(0, 3)]);
        for k in &first {
            cursor.advance(*k);
        }
        // A message added now sorts after all of them, whatever its priority.
        let stored = [stored.as_slice(), &[key(9, 6)]].concat();
        assert_eq!(
            batch(&stored, &cursor, DeliveryOrder::Arrival, 10),
            [key(9, 4), key(4, 5), key(9, 6)]
        );
        let all = batch(
            &stored,
            &CursorPosition::default(),
            DeliveryOrder::Priority,
            10,
        );
        assert_eq!(all[0], key(9, 2), "priority order is unchanged");
        assert!(batch(&stored, &cursor, DeliveryOrder::Arrival, 0).is_empty());
    }
}
