//! A store transaction's journal record, and the records RocksDB gets from it.
//!
//! The journal record is the transaction's RocksDB `WriteBatch` representation, in which each
//! `messages` put carries the message's body after its entry (`keys::message_value`). RocksDB
//! gets the same records, in the same order, except that each body is replaced by where it lies
//! in the journal (`keys::BodyRef`): a body is written once, to the journal, and RocksDB's
//! memtables, log and tables hold only the small index records, as ActiveMQ's LevelDB store
//! keeps messages in its log and only the index in LevelDB. The same conversion runs when the
//! apply thread queues a record and when open replays the journal, so both give the same
//! database.
//!
//! A record that also deletes something (a transaction's commit: sends and acks together, an
//! XA commit deleting its prepared record) keeps its bodies inline in RocksDB. RocksDB may
//! keep a batch whose journal record a crash took (it was never acknowledged); open then drops
//! the messages whose bodies lie past the journal's end, which for such a record would keep
//! its deletes and drop its sends: half a transaction. Inline, the batch stays whole.
//!
//! The `WriteBatch` representation (RocksDB's `db/write_batch.cc`, unchanged since LevelDB): a
//! 12-byte header (sequence `fixed64`, count `fixed32`), then per record a type byte, for the
//! column-family types a varint32 column family id, the key and, for puts, the value, each
//! varint32-length-prefixed. The engine writes column-family puts and deletes only.

use rocksdb::{DB, WriteBatch};
use store_journal::Location;

use crate::bodies::BodyFiles;
use crate::error::{LevelDbError, Result};
use crate::keys::{self, BodyAt, BodyRef, Cf};

/// The `WriteBatch` header: sequence number and record count.
pub(crate) const HEADER: usize = 12;

const TYPE_DELETION: u8 = 0x0;
const TYPE_VALUE: u8 = 0x1;
const TYPE_CF_DELETION: u8 = 0x4;
const TYPE_CF_VALUE: u8 = 0x5;

/// The id RocksDB gives the `messages` column family inside a batch (ids are assigned when a
/// column family is created; the `rocksdb` crate does not expose them, a batch shows it).
pub(crate) fn messages_cf_id(db: &DB) -> Result<u32> {
    let h = db
        .cf_handle(Cf::Messages.name())
        .ok_or(LevelDbError::MissingColumnFamily(Cf::Messages.name()))?;
    let mut b = WriteBatch::default();
    b.put_cf(h, b"", b"");
    let data = b.data();
    let mut r = Cursor { data, at: HEADER };
    match r.byte()? {
        TYPE_CF_VALUE => r.varint32(),
        TYPE_VALUE => Ok(0),
        t => Err(bad(format!("record type {t} for a column family put"))),
    }
}

fn bad(what: String) -> LevelDbError {
    LevelDbError::BadRecord {
        what: "write batch",
        cf: "(none)",
        reason: what,
    }
}

/// Appends the records of the journal record `record` (whose location is `at`) to `out` as
/// RocksDB is to get them, counting bodies into `bodies`. Returns how many records it appended.
/// On an error `out` may hold part of them: the caller truncates it.
pub(crate) fn to_database(
    record: &[u8],
    at: Location,
    messages_cf: u32,
    out: &mut Vec<u8>,
    bodies: &mut BodyFiles,
) -> Result<u32> {
    let mut inline = false;
    for r in records(record)? {
        inline |= r?.value.is_none();
    }
    let mut count = 0u32;
    for r in records(record)? {
        let r = r?;
        count += 1;
        let whole = &record[r.begin..r.end];
        if r.cf != Some(messages_cf) {
            out.extend_from_slice(whole);
            continue;
        }
        let seq = keys::read_order_suffix(r.key)?.sequence;
        let Some((value, value_at)) = r.value else {
            bodies.removed(seq, at);
            out.extend_from_slice(whole);
            continue;
        };
        match keys::body_at(value)? {
            (_, BodyAt::Inline(_)) if inline => {
                bodies.added_inline(seq);
                out.extend_from_slice(whole);
            }
            (entry, BodyAt::Inline(from)) => {
                let body = &value[from..];
                let reference = BodyRef {
                    at,
                    start: u32::try_from(value_at + from)
                        .map_err(|_| bad("a record past 4 GiB".into()))?,
                    len: u32::try_from(body.len()).map_err(|_| bad("a body past 4 GiB".into()))?,
                    crc: crc32fast::hash(body),
                };
                out.push(TYPE_CF_VALUE);
                put_varint32(out, messages_cf);
                put_slice(out, r.key);
                let reference = reference.encode();
                put_varint32(out, (entry + 1 + reference.len()) as u32);
                out.extend_from_slice(&value[..entry]);
                out.push(keys::BODY_IN_JOURNAL);
                out.extend_from_slice(&reference);
                bodies.added(seq, at.file);
            }
            // A record written before bodies stayed in the journal: its body is put in the
            // `bodies` column family by the same record.
            (_, BodyAt::BodiesCf) => out.extend_from_slice(whole),
            (_, BodyAt::Journal(_)) => {
                return Err(bad(format!(
                    "a body reference in the journal's message record at byte {}",
                    r.begin
                )));
            }
        }
    }
    Ok(count)
}

/// One record of a `WriteBatch` representation.
struct Record<'a> {
    /// Where it starts and ends in the representation.
    begin: usize,
    end: usize,
    /// Its column family; `None` for the default one.
    cf: Option<u32>,
    key: &'a [u8],
    /// A put's value and where it starts in the representation; `None` for a delete.
    value: Option<(&'a [u8], usize)>,
}

/// The records of a `WriteBatch` representation, in order; an error (and nothing more) where
/// one is cut or of a type the engine does not write.
fn records(rep: &[u8]) -> Result<impl Iterator<Item = Result<Record<'_>>>> {
    if rep.len() < HEADER {
        return Err(bad(format!("a WriteBatch of {} bytes", rep.len())));
    }
    let mut r = Cursor {
        data: rep,
        at: HEADER,
    };
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed || r.at >= rep.len() {
            return None;
        }
        let next = r.record();
        failed = next.is_err();
        Some(next)
    }))
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn record(&mut self) -> Result<Record<'a>> {
        let begin = self.at;
        let kind = self.byte()?;
        let cf = match kind {
            TYPE_CF_VALUE | TYPE_CF_DELETION => Some(self.varint32()?),
            TYPE_VALUE | TYPE_DELETION => None,
            t => return Err(bad(format!("record type {t} at byte {begin}"))),
        };
        let key = self.slice()?;
        let value = match kind {
            TYPE_CF_VALUE | TYPE_VALUE => Some(self.slice_at()?),
            _ => None,
        };
        Ok(Record {
            begin,
            end: self.at,
            cf,
            key,
            value,
        })
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.at)
            .ok_or_else(|| bad(format!("cut at byte {}", self.at)))?;
        self.at += 1;
        Ok(b)
    }

    fn varint32(&mut self) -> Result<u32> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            v |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad(format!(
            "a varint32 longer than 5 bytes before {}",
            self.at
        )))
    }

    /// A length-prefixed slice, and where it starts in the record.
    fn slice_at(&mut self) -> Result<(&'a [u8], usize)> {
        let len = self.varint32()? as usize;
        let start = self.at;
        let s = start
            .checked_add(len)
            .and_then(|end| self.data.get(start..end))
            .ok_or_else(|| bad(format!("{len} bytes from byte {start} past the end")))?;
        self.at = start + len;
        Ok((s, start))
    }

    fn slice(&mut self) -> Result<&'a [u8]> {
        Ok(self.slice_at()?.0)
    }
}

fn put_varint32(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_slice(out: &mut Vec<u8>, s: &[u8]) {
    put_varint32(out, s.len() as u32);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use store_api::{Body, Destination, Message, MessageId, OrderKey};

    use super::*;
    use crate::keys::{BodyAt, Entry};

    fn scratch_db() -> (tempfile::TempDir, DB) {
        let dir = tempfile::tempdir().expect("dir");
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let names = Cf::ALL.iter().map(|c| c.name());
        let db = DB::open_cf(&o, dir.path(), names).expect("open");
        (dir, db)
    }

    /// A message with sequence 7, its key and its entry.
    fn message() -> (Message, Vec<u8>, Entry) {
        let d = Destination::queue("q");
        let mut message = Message::new(
            MessageId::new("producer", 1),
            d.clone(),
            Body::Text("hello, journal".into()),
        );
        message.sequence = 7;
        let entry = Entry {
            id: message.id.clone(),
            size: message.size(),
            expiration: 0,
        };
        (
            message.clone(),
            keys::message(&d, OrderKey::of(&message)),
            entry,
        )
    }

    #[test]
    fn rocksdb_gets_where_the_body_lies_in_the_record_and_the_rest_unchanged() {
        let (_dir, db) = scratch_db();
        let messages = db.cf_handle(Cf::Messages.name()).expect("cf");
        let meta = db.cf_handle(Cf::Meta.name()).expect("cf");
        let (message, key, entry) = message();
        let old = keys::message(
            &message.destination,
            OrderKey {
                priority: 4,
                sequence: 3,
            },
        );
        let mut b = WriteBatch::default();
        b.put_cf(meta, b"last_sequence", 7u64.to_le_bytes());
        b.put_cf(messages, &key, keys::message_value(&entry, &message));
        let record = b.data().to_vec();
        let mut ack = WriteBatch::default();
        ack.delete_cf(messages, &old);
        let at = Location {
            file: 3,
            offset: 4096,
        };
        let id = messages_cf_id(&db).expect("id");
        let mut bodies = BodyFiles::default();
        bodies.added(3, 2);
        let mut out = vec![0u8; HEADER];
        let mut count = to_database(&record, at, id, &mut out, &mut bodies).expect("convert");
        assert_eq!(count, 2);
        let ack_at = Location {
            file: 3,
            offset: 8192,
        };
        count += to_database(ack.data(), ack_at, id, &mut out, &mut bodies).expect("convert");
        out[8..HEADER].copy_from_slice(&count.to_le_bytes());
        db.write(WriteBatch::from_data(&out)).expect("write");

        let stored = db.get_cf(messages, &key).expect("get").expect("stored");
        let (read, body) = keys::read_entry(&stored, &mut |p| p.into()).expect("entry");
        assert_eq!(read, entry);
        let BodyAt::Journal(r) = body else {
            panic!("a body reference, got {body:?}");
        };
        assert_eq!(r.at, at);
        let slice = &record[r.start as usize..(r.start + r.len) as usize];
        assert_eq!(crc32fast::hash(slice), r.crc);
        assert_eq!(keys::read_body(slice).expect("body"), message);
        assert!(
            stored.len() < 64,
            "no body in RocksDB: {} bytes",
            stored.len()
        );
        assert_eq!(
            db.get_cf(meta, b"last_sequence").expect("get").as_deref(),
            Some(&7u64.to_le_bytes()[..])
        );
        // The add counted in file 3; the delete of sequence 3 emptied file 2.
        assert_eq!(bodies.holding().collect::<Vec<_>>(), vec![3]);
        assert!(bodies.is_free(2, ack_at));
    }

    #[test]
    fn a_record_that_also_deletes_keeps_its_bodies_inline() {
        let (_dir, db) = scratch_db();
        let messages = db.cf_handle(Cf::Messages.name()).expect("cf");
        let (message, key, entry) = message();
        let acked = keys::message(
            &message.destination,
            OrderKey {
                priority: 4,
                sequence: 3,
            },
        );
        // A transaction's commit: a send and an ack in one record.
        let mut b = WriteBatch::default();
        b.put_cf(messages, &key, keys::message_value(&entry, &message));
        b.delete_cf(messages, &acked);
        let id = messages_cf_id(&db).expect("id");
        let mut bodies = BodyFiles::default();
        let mut out = Vec::new();
        let at = Location { file: 1, offset: 0 };
        let count = to_database(b.data(), at, id, &mut out, &mut bodies).expect("convert");
        assert_eq!(count, 2);
        assert_eq!(
            out,
            b.data()[HEADER..],
            "the records are copied as they are"
        );
        assert_eq!(bodies.holding().count(), 0, "an inline body holds no file");
        let value = keys::message_value(&entry, &message);
        let (_, at) = keys::read_entry(&value, &mut |p| p.into()).expect("entry");
        let BodyAt::Inline(from) = at else {
            panic!("inline, got {at:?}");
        };
        assert_eq!(keys::read_body(&value[from..]).expect("body"), message);
    }

    #[test]
    fn a_cut_or_unknown_record_is_an_error_not_a_panic() {
        let (_dir, db) = scratch_db();
        let id = messages_cf_id(&db).expect("id");
        let messages = db.cf_handle(Cf::Messages.name()).expect("cf");
        let (message, key, entry) = message();
        let mut b = WriteBatch::default();
        b.put_cf(messages, &key, keys::message_value(&entry, &message));
        let record = b.data().to_vec();
        let convert = |r: &[u8]| {
            to_database(
                r,
                Location::default(),
                id,
                &mut Vec::new(),
                &mut BodyFiles::default(),
            )
        };
        assert_eq!(convert(&record).expect("whole"), 1);
        for cut in (0..record.len()).filter(|&c| c != HEADER) {
            assert!(convert(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut unknown = record.clone();
        unknown[HEADER] = 0x42;
        assert!(convert(&unknown).is_err());
    }
}
