//! Damage to a file's bytes for the corruption tests of every file engine: a flipped byte, a
//! zeroed range or a cut, at an offset proptest chooses.

use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
pub enum Damage {
    /// XOR one byte with this (never 0).
    Flip(u8),
    /// Zero this many bytes (fewer at the end of the file).
    Zero(usize),
    /// Cut the file there.
    Truncate,
}

/// Any of the three, zeroed ranges up to 600 bytes.
pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (1u8..=255).prop_map(Damage::Flip),
        (1usize..600).prop_map(Damage::Zero),
        Just(Damage::Truncate),
    ]
}

impl Damage {
    /// Applies the damage at `at` (an index into `bytes`, which must not be empty).
    pub fn apply(&self, bytes: &mut Vec<u8>, at: Index) {
        let i = at.index(bytes.len());
        match *self {
            Damage::Flip(x) => bytes[i] ^= x,
            Damage::Zero(n) => {
                let end = (i + n).min(bytes.len());
                bytes[i..end].iter_mut().for_each(|b| *b = 0);
            }
            Damage::Truncate => bytes.truncate(i),
        }
    }
}
