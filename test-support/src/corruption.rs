//! What the file engines' corruption tests share: the messages they write, damage to one of a
//! store's files on the simulated file system, and the check that whatever a damaged store
//! still returns was written, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use store_api::testkit::damage::Damage;
use store_api::{Body, Destination, Message};
use store_journal::fs::{FileSystem, SimFs};

/// The queue the corruption tests write to.
pub fn queue() -> Destination {
    Destination::queue("q")
}

/// Message `n`'s body: its number, then up to 499 bytes of filler, the length varying with `n`.
pub fn body(n: u64) -> Body {
    Body::Text(format!("{n}-{}", "y".repeat((n * 37 % 500) as usize)))
}

/// Every file directly in `dirs`, sorted (a directory that does not exist has none).
pub fn files_in(fs: &SimFs, dirs: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        for name in fs.list(dir).unwrap_or_default() {
            out.push(dir.join(name));
        }
    }
    out.sort();
    out
}

/// Applies `damage` at `at` to the file `file` picks from `files`; false (nothing done) when
/// that file is empty.
pub fn damage_one(fs: &SimFs, files: &[PathBuf], file: Index, at: Index, damage: &Damage) -> bool {
    let path = &files[file.index(files.len())];
    let mut bytes = fs.contents(path).unwrap();
    if bytes.is_empty() {
        return false;
    }
    damage.apply(&mut bytes, at);
    fs.set_contents(path, bytes).unwrap();
    true
}

/// Every message a damaged store returned is one that was written (producer `p`, sequence
/// `n`, body [`body`]`(n)`), unchanged.
pub fn check_written(
    messages: &[Message],
    written: &BTreeMap<u64, Body>,
) -> Result<(), TestCaseError> {
    for m in messages {
        let n = m.id.producer_seq;
        prop_assert_eq!(m.id.producer.as_ref(), "p", "a message nobody wrote");
        prop_assert_eq!(
            Some(&m.body),
            written.get(&n),
            "message {} came back different",
            n
        );
    }
    Ok(())
}
