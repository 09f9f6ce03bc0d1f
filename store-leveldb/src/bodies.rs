//! Which journal files hold the bodies of stored messages, so the collector keeps them.
//!
//! Bodies are written once, to the journal; RocksDB holds where each lies (`record.rs`; bodies
//! a record that also deletes keeps inline hold no file, see below). A
//! journal file can go once RocksDB holds every record in it **and** no stored message's body
//! is in it, as ActiveMQ's LevelDB store counts references to its log files.
//!
//! The count per file is kept as records are queued for RocksDB (in journal order). A delete
//! names its message by key only, so its file is found from its sequence: sequences are
//! assigned under the store's lock in the order records are appended to the journal, so each
//! file's messages are one range of sequences, and the file of a stored message is the one
//! whose first stored sequence is the greatest not above it. Messages whose bodies RocksDB keeps
//! inline (sent by a record that also deletes, see `record.rs`) hold no file; their sequences
//! are kept apart so that their deletes change no count.

use std::collections::{BTreeMap, HashSet};

use store_journal::Location;

#[derive(Debug, Clone, Copy)]
struct FileBodies {
    /// Stored messages whose body is in the file.
    live: u64,
    /// A sequence of the file's range not above any of its stored messages' (its key in
    /// `BodyFiles::by_seq` while `live > 0`).
    first_seq: u64,
    /// The record whose delete took the count to 0: the file may go once RocksDB holds that
    /// record, or a crash could bring the message back without its body.
    emptied_at: Option<Location>,
}

/// Stored bodies per journal file.
#[derive(Debug, Default)]
pub(crate) struct BodyFiles {
    files: BTreeMap<u32, FileBodies>,
    /// First sequence → file, for every file with stored bodies.
    by_seq: BTreeMap<u64, u32>,
    /// Sequences of stored messages whose bodies RocksDB keeps inline.
    inline: HashSet<u64>,
}

impl BodyFiles {
    /// A message with sequence `seq` is stored with its body in `file`. At open, messages come
    /// in key order rather than sequence order; either works.
    pub(crate) fn added(&mut self, seq: u64, file: u32) {
        let f = self.files.entry(file).or_insert(FileBodies {
            live: 0,
            first_seq: seq,
            emptied_at: None,
        });
        if f.live == 0 {
            f.first_seq = seq;
            f.emptied_at = None;
            self.by_seq.insert(seq, file);
        } else if seq < f.first_seq {
            self.by_seq.remove(&f.first_seq);
            f.first_seq = seq;
            self.by_seq.insert(seq, file);
        }
        f.live += 1;
    }

    /// A message with sequence `seq` is stored with its body inline in RocksDB.
    pub(crate) fn added_inline(&mut self, seq: u64) {
        self.inline.insert(seq);
    }

    /// The message with sequence `seq` was deleted by the record at `at`. A message whose body
    /// is inline, or of a store written before bodies stayed in the journal, has no file:
    /// nothing changes.
    pub(crate) fn removed(&mut self, seq: u64, at: Location) {
        if self.inline.remove(&seq) {
            return;
        }
        let Some((_, &file)) = self.by_seq.range(..=seq).next_back() else {
            return;
        };
        let Some(f) = self.files.get_mut(&file) else {
            return;
        };
        f.live = f.live.saturating_sub(1);
        if f.live == 0 {
            f.emptied_at = Some(at);
            self.by_seq.remove(&f.first_seq);
        }
    }

    /// Whether no stored message's body is in `file`, as far as RocksDB knows once it holds
    /// every record up to `applied`.
    pub(crate) fn is_free(&self, file: u32, applied: Location) -> bool {
        match self.files.get(&file) {
            None => true,
            Some(f) => f.live == 0 && f.emptied_at.is_some_and(|at| at <= applied),
        }
    }

    /// The files were deleted.
    pub(crate) fn forget(&mut self, files: &[u32]) {
        for id in files {
            if self.files.get(id).is_some_and(|f| f.live == 0) {
                self.files.remove(id);
            }
        }
    }

    /// Every file holding a stored message's body.
    pub(crate) fn holding(&self) -> impl Iterator<Item = u32> + '_ {
        self.files
            .iter()
            .filter(|(_, f)| f.live > 0)
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: u32, offset: u32) -> Location {
        Location { file, offset }
    }

    #[test]
    fn a_file_is_free_once_its_last_body_is_deleted_and_rocksdb_holds_the_delete() {
        let mut b = BodyFiles::default();
        b.added(1, 1);
        b.added(2, 1);
        b.added(3, 2);
        assert!(!b.is_free(1, at(9, 0)));
        b.removed(1, at(2, 100));
        assert!(!b.is_free(1, at(9, 0)), "one body left in file 1");
        b.removed(2, at(2, 200));
        assert!(
            !b.is_free(1, at(2, 199)),
            "RocksDB does not hold the delete yet"
        );
        assert!(b.is_free(1, at(2, 200)));
        assert!(!b.is_free(2, at(9, 0)));
        assert!(b.is_free(3, at(0, 0)), "a file that never held a body");
        assert_eq!(b.holding().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_delete_finds_its_file_by_sequence_whatever_order_open_counted_them_in() {
        let mut b = BodyFiles::default();
        // Two destinations: key order is not sequence order.
        for (seq, file) in [(5, 2), (9, 3), (1, 1), (6, 2), (2, 1), (10, 3)] {
            b.added(seq, file);
        }
        b.removed(6, at(4, 0));
        b.removed(5, at(4, 8));
        assert!(b.is_free(2, at(4, 8)));
        assert!(!b.is_free(1, at(4, 8)) && !b.is_free(3, at(4, 8)));
        // The lowest sequence of file 3 gone: file 3's range still finds 10.
        b.removed(9, at(4, 16));
        b.removed(10, at(4, 24));
        assert!(b.is_free(3, at(4, 24)));
        assert!(!b.is_free(1, at(4, 24)));
    }

    #[test]
    fn the_file_being_written_can_empty_and_fill_again() {
        let mut b = BodyFiles::default();
        b.added(1, 1);
        b.removed(1, at(1, 50));
        b.added(2, 1);
        assert!(!b.is_free(1, at(1, 60)));
        b.removed(2, at(1, 70));
        assert!(b.is_free(1, at(1, 70)));
        b.forget(&[1]);
        assert!(b.is_free(1, at(0, 0)));
    }

    #[test]
    fn a_message_with_its_body_inline_holds_no_file() {
        let mut b = BodyFiles::default();
        b.added(1, 1);
        // Sent with an ack in one record: its sequence lies in file 1's range.
        b.added_inline(2);
        b.added(3, 1);
        b.removed(2, at(1, 30));
        b.removed(1, at(1, 40));
        assert!(!b.is_free(1, at(1, 40)), "sequence 3 is still in file 1");
        b.removed(3, at(1, 50));
        assert!(b.is_free(1, at(1, 50)));
    }

    #[test]
    fn a_message_from_before_bodies_stayed_in_the_journal_changes_nothing() {
        let mut b = BodyFiles::default();
        b.added(100, 7);
        b.removed(3, at(7, 10));
        assert!(!b.is_free(7, at(9, 0)));
    }
}
