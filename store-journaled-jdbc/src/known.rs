//! A Bloom filter of the message ids the database holds, so that a journaled add only asks the
//! database whether its id is a duplicate when the filter says it might be.
//!
//! It is filled from the database at open (one bounded page of ids at a time) and with every
//! add a checkpoint or an XA commit puts there. Deletes never clear bits, so it only errs
//! towards asking. Past its capacity the false-positive rate would climb; it then stops
//! answering (every add asks the database again) until the next open rebuilds it.

use std::hash::{DefaultHasher, Hash, Hasher};

use store_api::{Destination, MessageId};

const BITS_PER_ENTRY: u64 = 10;
const PROBES: u64 = 7;

#[derive(Debug)]
pub struct KnownIds {
    bits: Vec<u64>,
    capacity: u64,
    inserted: u64,
    usable: bool,
}

impl KnownIds {
    /// A filter for up to `capacity` ids (at ~1 % false positives), 10 bits each.
    pub fn with_capacity(capacity: u64) -> KnownIds {
        let words = (capacity.max(1024) * BITS_PER_ENTRY).div_ceil(64);
        KnownIds {
            bits: vec![0; words as usize],
            capacity: capacity.max(1024),
            inserted: 0,
            usable: true,
        }
    }

    fn hashes(d: &Destination, id: &MessageId) -> (u64, u64) {
        let mut a = DefaultHasher::new();
        (0u8, d, id).hash(&mut a);
        let mut b = DefaultHasher::new();
        (1u8, d, id).hash(&mut b);
        (a.finish(), b.finish() | 1)
    }

    pub fn insert(&mut self, d: &Destination, id: &MessageId) {
        let n = self.bits.len() as u64 * 64;
        let (h1, h2) = Self::hashes(d, id);
        for i in 0..PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % n;
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.inserted += 1;
        if self.inserted > self.capacity {
            self.usable = false;
        }
    }

    /// False only when the id is certainly not in the database.
    pub fn may_contain(&self, d: &Destination, id: &MessageId) -> bool {
        if !self.usable {
            return true;
        }
        let n = self.bits.len() as u64 * 64;
        let (h1, h2) = Self::hashes(d, id);
        (0..PROBES).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % n;
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let d = Destination::queue("q");
        let mut k = KnownIds::with_capacity(10_000);
        for n in 0..10_000 {
            k.insert(&d, &MessageId::new("p", n));
        }
        for n in 0..10_000 {
            assert!(k.may_contain(&d, &MessageId::new("p", n)));
        }
        let false_positives = (10_000..20_000)
            .filter(|n| k.may_contain(&d, &MessageId::new("p", *n)))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10,000");
    }

    #[test]
    fn past_capacity_it_stops_answering() {
        let d = Destination::queue("q");
        let mut k = KnownIds::with_capacity(1024);
        for n in 0..1025 {
            k.insert(&d, &MessageId::new("p", n));
        }
        assert!(k.may_contain(&d, &MessageId::new("never", 1)));
    }
}
