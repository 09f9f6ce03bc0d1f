//! The temp store, ActiveMQ's `tmp_storage` (`systemUsage` `tempUsage`): where non-persistent
//! messages go when memory is full, instead of holding up their producer. A queue, a durable
//! subscription or a non-durable topic subscriber keeps a spooled message's place in its order
//! and pages it back in as memory frees (see `dispatch::spool`), as ActiveMQ's
//! `FilePendingMessageCursor` does.
//!
//! Nothing here survives a restart: the directory is wiped when the broker starts serving, and
//! nothing is ever fsynced (the messages are non-persistent; a crash loses them by contract).
//!
//! # Format
//!
//! `<data_directory>/tmp_storage/spool-<id>.log`, append-only segment files. All integers
//! little-endian.
//!
//! - File header, 20 bytes: magic `b"AMQSPOOL"` (8), format version `u32` = 1, segment id
//!   `u64`.
//! - Then records, each: payload length `u32`, CRC-32 (IEEE, `crc32fast`) of the payload
//!   `u32`, payload = the message in `store_api::codec`'s encoding.
//!
//! A record is found by its [`Location`] (segment, offset, payload length), which only a
//! completed write hands out; a record that fails its checksum or length check on the way back
//! is reported naming the file and offset, and that one message is lost (logged), not the
//! broker. A failed write hands out nothing and its bytes are overwritten by the next record,
//! so no poisoning is needed: no later read depends on them.
//!
//! # Space
//!
//! [`TempStore::used`] is the bytes of the records still referenced (header included), counted
//! against `limits.temp_bytes` for producer flow control. A record is referenced by one
//! [`SpooledRecord`] handle shared by every dispatcher that holds the message (one write for
//! all of a topic's subscribers); when the last handle drops (the message was paged back into
//! memory, purged, evicted, or its dispatcher closed) the record is dead. A segment whose
//! records are all dead is deleted, the one being written included (the next record starts a
//! new one), so the files on disk exceed the live bytes only by segments pinned by a few
//! records, at most `segment_bytes` each.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use store_api::Message;
use tracing::warn;

use crate::memory::MemoryUsage;

/// The name ActiveMQ gives its temp store directory under the data directory.
pub const DIRECTORY: &str = "tmp_storage";

const MAGIC: &[u8; 8] = b"AMQSPOOL";
const VERSION: u32 = 1;
const FILE_HEADER: u64 = 20;
const RECORD_HEADER: u64 = 8;

/// What can go wrong in the temp store; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TempStoreError {
    /// A file of the temp store could not be created, written, read or removed.
    #[error("temp store {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A record read back is not what was written (checksum, length or encoding).
    #[error("temp store {} at offset {offset}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The blocking task doing the I/O did not finish (the runtime is stopping).
    #[error("temp store: {0}")]
    Task(String),
}

type Result<T> = std::result::Result<T, TempStoreError>;

/// Where a record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Records written to it and still referenced.
    live: u64,
}

#[derive(Default)]
struct Files {
    /// The segment being appended to, and where its next record goes.
    current: Option<(u64, u64)>,
    segments: BTreeMap<u64, Segment>,
    next_id: u64,
}

/// The temp store: one per serving broker, shared by every dispatcher.
pub struct TempStore {
    dir: PathBuf,
    segment_bytes: u64,
    usage: MemoryUsage,
    files: Mutex<Files>,
}

/// A spooled message's record, with what its dispatcher needs to order and account for it
/// without reading it back. Dropping the last handle frees the record.
pub(crate) struct SpooledRecord {
    store: Arc<TempStore>,
    at: Location,
    pub priority: u8,
    /// The message's size ([`Message::size`]), what it costs in memory once paged in.
    pub size: u64,
}

impl Drop for SpooledRecord {
    fn drop(&mut self) {
        self.store.release(self.at);
    }
}

impl TempStore {
    /// The temp store in `dir`, emptied of whatever an earlier run left (its messages were
    /// non-persistent). The directory itself is made at the first spooled message, so a broker
    /// that never spools leaves none. Blocking: call it off the async workers.
    pub fn open(dir: &Path, limit: u64) -> Result<Arc<TempStore>> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TempStoreError::Io {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
        Ok(Arc::new(TempStore {
            dir: dir.to_owned(),
            // Several segments under the limit, so that consumed ones are given back while
            // others fill; never tiny (a file per few messages) nor huge.
            segment_bytes: (limit / 8).clamp(64 * 1024, 32 * 1024 * 1024),
            usage: MemoryUsage::new(limit),
            files: Mutex::new(Files::default()),
        }))
    }

    /// Bytes of the records still referenced, against `limits.temp_bytes`.
    pub fn usage(&self) -> &MemoryUsage {
        &self.usage
    }

    pub fn directory(&self) -> &Path {
        &self.dir
    }

    /// The segment files on disk now.
    pub fn segment_count(&self) -> usize {
        self.files.lock().segments.len()
    }

    /// Writes `message` to a new record (on a blocking thread; no fsync).
    pub(crate) async fn append(self: &Arc<Self>, message: &Message) -> Result<Arc<SpooledRecord>> {
        let payload = store_api::codec::encode(message);
        let me = Arc::clone(self);
        let at = tokio::task::spawn_blocking(move || me.write(&payload))
            .await
            .map_err(|e| TempStoreError::Task(e.to_string()))??;
        self.usage.add(RECORD_HEADER + u64::from(at.len));
        Ok(Arc::new(SpooledRecord {
            store: Arc::clone(self),
            at,
            priority: message.priority,
            size: message.size(),
        }))
    }

    /// Reads records back (on a blocking thread), each on its own: one damaged record costs
    /// only its message.
    pub(crate) async fn read(
        self: &Arc<Self>,
        records: Vec<Arc<SpooledRecord>>,
    ) -> Vec<Result<Message>> {
        let me = Arc::clone(self);
        let n = records.len();
        match tokio::task::spawn_blocking(move || {
            records.iter().map(|r| me.read_one(r.at)).collect()
        })
        .await
        {
            Ok(out) => out,
            Err(e) => (0..n)
                .map(|_| Err(TempStoreError::Task(e.to_string())))
                .collect(),
        }
    }

    fn write(&self, payload: &[u8]) -> Result<Location> {
        let len = u32::try_from(payload.len()).map_err(|_| TempStoreError::Corrupt {
            path: self.dir.clone(),
            offset: 0,
            reason: format!("a message of {} bytes is too big to spool", payload.len()),
        })?;
        let record_len = RECORD_HEADER + u64::from(len);
        let mut files = self.files.lock();
        let full = files
            .current
            .is_some_and(|(_, end)| end > FILE_HEADER && end + record_len > self.segment_bytes);
        if full || files.current.is_none() {
            self.start_segment(&mut files)?;
        }
        let Some((id, end)) = files.current else {
            return Err(TempStoreError::Task("no segment to write".into()));
        };
        let Some(segment) = files.segments.get_mut(&id) else {
            return Err(TempStoreError::Task("the current segment is gone".into()));
        };
        let mut record = Vec::with_capacity(record_len as usize);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        segment
            .file
            .write_all_at(&record, end)
            .map_err(|source| TempStoreError::Io {
                path: segment.path.clone(),
                source,
            })?;
        segment.live += 1;
        files.current = Some((id, end + record_len));
        Ok(Location {
            segment: id,
            offset: end,
            len,
        })
    }

    /// Makes a new segment the current one; called with the files locked.
    fn start_segment(&self, files: &mut Files) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TempStoreError::Io { path, source }
        };
        if files.segments.is_empty() {
            std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        }
        files.next_id += 1;
        let id = files.next_id;
        let path = self.dir.join(format!("spool-{id}.log"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut header = Vec::with_capacity(FILE_HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&id.to_le_bytes());
        file.write_all_at(&header, 0).map_err(io(&path))?;
        // A segment left empty by a rotation is deleted here, not by its last release.
        if let Some((old, _)) = files.current
            && files.segments.get(&old).is_some_and(|s| s.live == 0)
            && let Some(s) = files.segments.remove(&old)
        {
            remove_file(&s.path);
        }
        files.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                path,
                live: 0,
            },
        );
        files.current = Some((id, FILE_HEADER));
        Ok(())
    }

    fn read_one(&self, at: Location) -> Result<Message> {
        let (file, path) = {
            let files = self.files.lock();
            match files.segments.get(&at.segment) {
                Some(s) => (Arc::clone(&s.file), s.path.clone()),
                None => {
                    return Err(TempStoreError::Corrupt {
                        path: self.dir.join(format!("spool-{}.log", at.segment)),
                        offset: at.offset,
                        reason: "the segment is gone".into(),
                    });
                }
            }
        };
        let corrupt = |reason: String| TempStoreError::Corrupt {
            path: path.clone(),
            offset: at.offset,
            reason,
        };
        let mut buf = vec![0; (RECORD_HEADER + u64::from(at.len)) as usize];
        file.read_exact_at(&mut buf, at.offset)
            .map_err(|source| TempStoreError::Io {
                path: path.clone(),
                source,
            })?;
        let (header, payload) = buf.split_at(RECORD_HEADER as usize);
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if word(0) != at.len {
            return Err(corrupt(format!(
                "record length {} where {} was written",
                word(0),
                at.len
            )));
        }
        if word(4) != crc32fast::hash(payload) {
            return Err(corrupt("checksum mismatch".into()));
        }
        store_api::codec::decode(payload).map_err(|e| corrupt(e.to_string()))
    }

    /// A record is no longer referenced: its bytes leave the usage, and a segment with nothing
    /// live left is deleted (its file removed off the async workers when there are some).
    fn release(&self, at: Location) {
        self.usage.release(RECORD_HEADER + u64::from(at.len));
        let mut files = self.files.lock();
        let Some(segment) = files.segments.get_mut(&at.segment) else {
            return;
        };
        segment.live = segment.live.saturating_sub(1);
        if segment.live > 0 {
            return;
        }
        if files.current.is_some_and(|(id, _)| id == at.segment) {
            files.current = None;
        }
        if let Some(s) = files.segments.remove(&at.segment) {
            drop(files);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || remove_file(&s.path));
                }
                Err(_) => remove_file(&s.path),
            }
        }
    }
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), "cannot remove a spent temp store segment: {e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store_api::{Body, Destination, MessageId};

    fn message(i: u64, size: usize) -> Message {
        Message::new(
            MessageId::new("p", i),
            Destination::queue("q"),
            Body::Text("x".repeat(size)),
        )
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    #[tokio::test]
    async fn records_come_back_and_spent_segments_are_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIRECTORY);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("spool-7.log"), b"left by an earlier run").unwrap();
        let store = TempStore::open(&dir, 64 * 1024).unwrap();
        assert!(!dir.exists(), "an earlier run's files are wiped at open");
        let mut records = Vec::new();
        for i in 0..40 {
            records.push(store.append(&message(i, 4000)).await.unwrap());
        }
        assert!(
            store.segment_count() > 1,
            "40 records of 4 KB roll over 64 KiB segments"
        );
        assert_eq!(files_in(&dir), store.segment_count());
        assert!(store.usage().used() > 40 * 4000);
        let back = store.read(records.clone()).await;
        for (i, m) in back.into_iter().enumerate() {
            assert_eq!(m.unwrap().id, MessageId::new("p", i as u64));
        }
        // The oldest half consumed: their segments go, the rest stay readable.
        let rest = records.split_off(20);
        let before = store.segment_count();
        drop(records);
        assert!(store.segment_count() < before);
        let back = store.read(rest.clone()).await;
        assert!(back.iter().all(Result::is_ok));
        drop(back);
        drop(rest);
        assert_eq!(store.usage().used(), 0);
        assert_eq!(store.segment_count(), 0);
        // The deletions run on blocking threads.
        for _ in 0..100 {
            if files_in(&dir) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(files_in(&dir), 0, "every segment file removed");
        // And a new record starts a new segment.
        let again = store.append(&message(99, 10)).await.unwrap();
        assert_eq!(store.segment_count(), 1);
        drop(again);
    }

    #[tokio::test]
    async fn a_damaged_record_is_reported_with_its_file_and_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIRECTORY);
        let store = TempStore::open(&dir, 1 << 20).unwrap();
        let a = store.append(&message(1, 100)).await.unwrap();
        let b = store.append(&message(2, 100)).await.unwrap();
        // Flip a payload byte of the first record.
        let path = dir.join("spool-1.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let i = (FILE_HEADER + RECORD_HEADER + 5) as usize;
        bytes[i] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let back = store.read(vec![a, b]).await;
        let e = back[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("spool-1.log") && e.contains("offset 20"), "{e}");
        assert!(e.contains("checksum"), "{e}");
        assert_eq!(back[1].as_ref().unwrap().id, MessageId::new("p", 2));
    }
}
