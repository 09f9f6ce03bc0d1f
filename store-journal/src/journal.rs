//! The journal handle: appends, reads by location, replay and file deletion. The writers it
//! starts, and the state they share with it, are in [`crate::writer`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use store_api::SyncPolicy;
use tokio::sync::oneshot;

use crate::Location;
use crate::config::JournalConfig;
use crate::error::{JournalError, Result};
use crate::format::{self, BATCH_HEADER_LEN, Layout, RECORD_HEADER_LEN};
use crate::fs::{File, FileSystem};
use crate::mmap::SealedMap;
use crate::recovery::{BatchAt, Source, find_valid_batch, read_batch};
use crate::writer::{self, Counters, PendingBatch, Queue, Shared};

/// What a new batch's buffer holds before it must grow: 16 one-KiB appends.
const BATCH_INITIAL_CAPACITY: usize = 16 << 10;

/// Counters, for benchmarks and monitoring. `fsyncs` counts `fdatasync` calls on data files and
/// `fsync_micros` the time spent in them, so that `fsync_micros / fsyncs` is the disk's latency
/// as the writer sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub appends: u64,
    pub records: u64,
    pub batches: u64,
    pub fsyncs: u64,
    pub fsync_micros: u64,
    pub bytes: u64,
}

/// Resolves when an append is written (and synced, per the policy).
pub struct Completion {
    /// `None` once [`Completion::wait`] took it.
    rx: Option<oneshot::Receiver<Result<()>>>,
    /// Set when this append completed the group the writer thread waited for and took it, to
    /// be written by whoever first polls, waits for or drops this.
    lead: Option<Arc<Shared>>,
}

impl Completion {
    fn new(rx: oneshot::Receiver<Result<()>>) -> Completion {
        Completion {
            rx: Some(rx),
            lead: None,
        }
    }

    /// Writes the group this append took, if it has not been yet (see [`Journal::append`]).
    fn run_lead(&mut self) {
        if let Some(shared) = self.lead.take() {
            writer::run_lead(&shared);
        }
    }

    /// Waits on the calling thread. Not for use on an async runtime's worker.
    pub fn wait(mut self) -> Result<()> {
        self.run_lead();
        match self.rx.take() {
            Some(rx) => rx.blocking_recv().unwrap_or(Err(JournalError::Closed)),
            None => Err(JournalError::Closed),
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // A group this append took is written even if nobody waits for it: other appends are
        // in it.
        self.run_lead();
    }
}

impl std::future::Future for Completion {
    type Output = Result<()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.run_lead();
        match self.rx.as_mut() {
            Some(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(JournalError::Closed))),
            None => std::task::Poll::Ready(Err(JournalError::Closed)),
        }
    }
}

/// The result of enqueuing an append: where each record will be, and when it is done.
pub struct Appended {
    pub locations: Vec<Location>,
    /// The position just after the last record.
    pub end: Location,
    pub completion: Completion,
}

/// The journal. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Journal {
    pub(crate) shared: Arc<Shared>,
    writers: Mutex<Vec<JoinHandle<()>>>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `config.directory`, running the recovery scan
    /// over the newest data file, and starts the writer thread.
    pub fn open(config: JournalConfig, fs: Arc<dyn FileSystem>) -> Result<Journal> {
        fs.create_dir_durable(&config.directory)
            .map_err(|e| JournalError::io(format!("creating {}", config.directory.display()), e))?;
        let recovered = crate::recovery::recover(&config, fs.as_ref())?;
        let tail = Location {
            file: recovered.tail_file,
            offset: recovered.tail_offset as u32,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                closed_batches: VecDeque::new(),
                open: None,
                tail_file: recovered.tail_file,
                tail_offset: recovered.tail_offset,
                sync_requested: Vec::new(),
                shutdown: false,
                writers_waiting: 0,
                wake_at: 1,
                pipeline: writer::Pipeline::new(tail),
                lead: None,
                urgent: 0,
                deferred_since: None,
            }),
            work: Condvar::new(),
            turn: Condvar::new(),
            next_file: Mutex::new(None),
            files: Mutex::new(recovered.files),
            deleted: Mutex::new(std::collections::BTreeSet::new()),
            maps: Mutex::new(crate::map_cache::MapCache::default()),
            layouts: Mutex::new(recovered.layouts),
            written: Mutex::new(tail),
            written_cv: Condvar::new(),
            poisoned: Mutex::new(None),
            disk_full: AtomicBool::new(false),
            leader: Mutex::new(None),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            config,
            fs,
        });
        let journal = Journal {
            shared: shared.clone(),
            writers: Mutex::new(Vec::new()),
        };
        for _ in 0..shared.writer_threads() {
            let writer_shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || writer::run(writer_shared))
                .map_err(|e| JournalError::io("starting a journal writer thread", e))?;
            journal.writers.lock().push(handle);
        }
        Ok(journal)
    }

    pub fn config(&self) -> &JournalConfig {
        &self.shared.config
    }

    /// Whether every writer thread is asleep with nothing to take: the state in which the next
    /// append is the one that wakes it (or, under leader writes, writes its group itself).
    /// Tests wait for it instead of sleeping for long enough.
    pub fn writers_idle(&self) -> bool {
        let q = self.shared.queue.lock();
        q.writers_waiting == self.shared.writer_threads()
            && q.pending_appends() == 0
            && q.lead.is_none()
            && q.pipeline.quiet()
    }

    /// Enqueues records to be written together, atomically, after everything enqueued before.
    /// Returns their locations at once; `completion` resolves when they are durable per the
    /// sync policy (or, with `force_sync`, fsynced whatever the policy).
    pub fn append(&self, records: &[&[u8]], force_sync: bool) -> Result<Appended> {
        self.enqueue(records, force_sync, false)
    }

    /// Like [`Journal::append`], for a write no client waits for (an acknowledgement without a
    /// receipt): under `always` it does not start a group commit of its own, but waits up to
    /// [`JournalConfig::defer_delay`] for an append that does, and shares that one's fsync.
    /// Its completion still means durable; it just comes later when the journal is quiet. This
    /// is how acknowledgements stop costing an fsync each beside the writes of a busy broker
    /// (ActiveMQ's KahaDB does not fsync a durable subscriber's acknowledgements at all).
    pub fn append_deferred(&self, records: &[&[u8]]) -> Result<Appended> {
        self.enqueue(records, false, !self.shared.config.defer_delay.is_zero())
    }

    fn enqueue(&self, records: &[&[u8]], force_sync: bool, deferred: bool) -> Result<Appended> {
        self.shared.check_writable()?;
        if let Some(r) = records.iter().find(|r| r.len() > format::MAX_RECORD_LEN) {
            return Err(JournalError::BadLocation {
                file: 0,
                offset: 0,
                reason: format!(
                    "a record of {} bytes exceeds the {} byte limit",
                    r.len(),
                    format::MAX_RECORD_LEN
                ),
            });
        }
        let total: usize = records.iter().map(|r| r.len() + RECORD_HEADER_LEN).sum();
        let (tx, rx) = oneshot::channel();
        let cfg = &self.shared.config;
        let mut q = self.shared.queue.lock();
        if q.shutdown {
            return Err(JournalError::Closed);
        }
        let joins = q.open.as_ref().is_some_and(|b| {
            b.buf.len() + total <= cfg.max_write_batch_size
                && b.start + (b.buf.len() + total) as u64 <= cfg.max_file_length
        });
        let mut closed = false;
        if !joins {
            if let Some(b) = q.open.take() {
                q.closed_batches.push_back(b);
                closed = true;
            }
            let layout = Layout::CURRENT;
            q.tail_offset = layout.next_batch(q.tail_offset);
            let needed = (BATCH_HEADER_LEN + total) as u64;
            if q.tail_offset + needed > cfg.max_file_length && q.tail_offset > layout.data_start() {
                q.tail_file += 1;
                q.tail_offset = layout.data_start();
            }
            // Room for the appends that usually join a batch, so that it does not grow by
            // doubling (copying every record so far) on its way to a group's size.
            let mut buf = Vec::with_capacity(
                (BATCH_HEADER_LEN + total)
                    .max(BATCH_INITIAL_CAPACITY.min(cfg.max_write_batch_size)),
            );
            buf.resize(BATCH_HEADER_LEN, 0);
            q.open = Some(PendingBatch {
                file: q.tail_file,
                start: q.tail_offset,
                buf,
                waiters: Vec::new(),
                force_sync: false,
            });
        }
        let tail_file = q.tail_file;
        let Some(batch) = q.open.as_mut() else {
            return Err(JournalError::Closed);
        };
        let mut locations = Vec::with_capacity(records.len());
        for r in records {
            locations.push(Location {
                file: tail_file,
                offset: (batch.start + batch.buf.len() as u64) as u32,
            });
            format::push_record(&mut batch.buf, r);
        }
        batch.waiters.push(tx);
        batch.force_sync |= force_sync;
        let end_offset = batch.start + batch.buf.len() as u64;
        q.tail_offset = end_offset;
        // A deferred append wakes a sleeping writer only to have it set its alarm (the first
        // one), or to write a full batch; an urgent one as before.
        let due = if deferred {
            let first = q.deferred_since.is_none();
            q.deferred_since.get_or_insert_with(std::time::Instant::now);
            first
        } else {
            q.urgent += 1;
            q.pending_appends() >= q.wake_at
        };
        let wake = q.writers_waiting > 0 && (closed || due);
        // The append that completes the group the writer thread is waiting for takes the group
        // and writes it on its own thread when its completion is awaited, instead of waking
        // the writer thread: a wake-up costs a context switch on the critical path, and the
        // appender would only sleep through the I/O anyway. Not a deferred append: its group
        // waits.
        let lead = wake && q.deferred_until(cfg).is_none() && self.may_lead(&q);
        if lead {
            q.lead = Some(writer::take_group(&self.shared, &mut q));
        }
        drop(q);
        if wake && !lead {
            self.shared.work.notify_one();
        }
        self.shared.counters.appends.fetch_add(1, Ordering::Relaxed);
        self.shared
            .counters
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(Appended {
            locations,
            end: Location {
                file: tail_file,
                offset: end_offset as u32,
            },
            completion: Completion {
                rx: Some(rx),
                lead: lead.then(|| self.shared.clone()),
            },
        })
    }

    /// Whether an append that completes a group may write it itself (see [`Journal::append`]):
    /// only under `always` with one write in flight and none in flight now; only on a thread
    /// that may block (not a single-threaded runtime, whose every task would wait through the
    /// I/O; a multi-threaded runtime's other workers go on); not within
    /// [`writer::LEAD_COOL_DOWN`] of a write+fsync slower than [`writer::LEAD_STALL`]; and not for
    /// a group that starts a data file.
    fn may_lead(&self, q: &Queue) -> bool {
        let cfg = &self.shared.config;
        // A group that moves the journal to another data file may have to wait for the file
        // to be created: the writer thread's job.
        let same_file = || {
            let last = q.pipeline.last_file();
            q.closed_batches
                .iter()
                .chain(q.open.iter())
                .all(|b| Some(b.file) == last)
        };
        cfg.leader_writes
            && cfg.sync == SyncPolicy::Always
            && self.shared.writer_threads() == 1
            && q.lead.is_none()
            && q.pipeline.idle_and_fast()
            && same_file()
            && match tokio::runtime::Handle::try_current() {
                Ok(h) => h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread,
                Err(_) => true,
            }
    }

    /// Forces everything written so far to stable storage (used by the periodic policy's
    /// timer and at checkpoints).
    pub fn sync(&self) -> Completion {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.shared.check_writable() {
            let _ = tx.send(Err(e));
            return Completion::new(rx);
        }
        self.shared.queue.lock().sync_requested.push(tx);
        self.shared.work.notify_one();
        Completion::new(rx)
    }

    /// Reads the record at `loc`, waiting for it to be written if it was only enqueued. A
    /// location past everything enqueued is an error at once: nothing will ever be written there.
    pub fn read(&self, loc: Location) -> Result<Vec<u8>> {
        self.with_record(loc, |src, len, crc, path| {
            let data = src
                .bytes(u64::from(loc.offset) + RECORD_HEADER_LEN as u64, len)
                .map_err(|e| JournalError::Corrupt {
                    file: path(),
                    offset: u64::from(loc.offset),
                    reason: format!("cannot read {len} record bytes: {e}"),
                })?;
            if format::record_crc(len as u32, &data) != crc {
                return Err(JournalError::Corrupt {
                    file: path(),
                    offset: u64::from(loc.offset),
                    reason: "record checksum mismatch".into(),
                });
            }
            Ok(data.into_owned())
        })
    }

    /// Reads `len` bytes from `start` within the data of the record at `loc`, waiting as
    /// [`Journal::read`] does. The record's checksum covers all of it, so it is not checked
    /// here: a caller that keeps part of a record (one message of a batch) keeps its own
    /// checksum of that part.
    pub fn read_part(&self, loc: Location, start: u32, len: u32) -> Result<Vec<u8>> {
        self.with_record(loc, |src, record_len, _, path| {
            let (start, len) = (start as usize, len as usize);
            if start.checked_add(len).is_none_or(|end| end > record_len) {
                return Err(JournalError::BadLocation {
                    file: loc.file,
                    offset: loc.offset,
                    reason: format!(
                        "{len} bytes from {start} are past the record's {record_len} bytes"
                    ),
                });
            }
            let at = u64::from(loc.offset) + (RECORD_HEADER_LEN + start) as u64;
            let data = src.bytes(at, len).map_err(|e| JournalError::Corrupt {
                file: path(),
                offset: u64::from(loc.offset),
                reason: format!("cannot read {len} bytes from {start} of the record: {e}"),
            })?;
            Ok(data.into_owned())
        })
    }

    /// Waits for the record at `loc` to be written, then calls `f` with where to read it, its
    /// length and checksum (read from its header) and a maker of its file's path.
    fn with_record<T>(
        &self,
        loc: Location,
        f: impl FnOnce(Source<'_>, usize, u32, &dyn Fn() -> std::path::PathBuf) -> Result<T>,
    ) -> Result<T> {
        if loc >= self.tail() {
            return Err(JournalError::BadLocation {
                file: loc.file,
                offset: loc.offset,
                reason: format!("past the end of the journal ({})", self.tail()),
            });
        }
        if *self.shared.written.lock() <= loc {
            // It may be in a group an appender took and has not started: write it here
            // rather than wait for that appender.
            writer::run_lead(&self.shared);
        }
        {
            let mut written = self.shared.written.lock();
            while *written <= loc {
                if self.shared.check_writable().is_err() {
                    break;
                }
                self.shared
                    .written_cv
                    .wait_for(&mut written, Duration::from_millis(100));
            }
        }
        let path = || self.shared.config.path_of(loc.file);
        let file = self.shared.file(loc.file)?;
        let map = if self.shared.config.map_reads {
            self.shared.sealed_map(loc.file, file.as_ref(), true)?
        } else {
            None
        };
        let src = match &map {
            Some(m) => Source::Map(m.bytes()),
            None => Source::File(file.as_ref()),
        };
        let header = src
            .bytes(u64::from(loc.offset), RECORD_HEADER_LEN)
            .map_err(|e| JournalError::Corrupt {
                file: path(),
                offset: u64::from(loc.offset),
                reason: format!("cannot read the record header: {e}"),
            })?;
        let len = format::u32_at(&header, 0);
        let crc = format::u32_at(&header, 4);
        if len as usize > format::MAX_RECORD_LEN {
            return Err(JournalError::Corrupt {
                file: path(),
                offset: u64::from(loc.offset),
                reason: format!("record length {len} is impossible"),
            });
        }
        f(src, len as usize, crc, &path)
    }

    /// Every record at or after `from`, in journal order, up to what was written when the
    /// replay reached the newest file.
    pub fn replay(&self, from: Location) -> Replay {
        let files: Vec<u32> = self
            .file_ids()
            .into_iter()
            .filter(|id| *id >= from.file)
            .collect();
        Replay {
            shared: self.shared.clone(),
            files: files.into(),
            from,
            current: VecDeque::new(),
            pos: None,
            done: false,
        }
    }

    /// The data file ids present, oldest first.
    pub fn file_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.shared.files.lock().keys().copied().collect();
        let tail = self.shared.queue.lock().tail_file;
        if !ids.contains(&tail) && self.shared.fs.exists(&self.shared.config.path_of(tail)) {
            ids.push(tail);
        }
        ids.sort_unstable();
        ids
    }

    /// The file appends currently go to; it is never deleted.
    pub fn tail_file(&self) -> u32 {
        self.shared.queue.lock().tail_file
    }

    /// The end of what was written to the files: the records before it are there for any
    /// reader (and synced per the policy); a failed write leaves the ones after it unwritten.
    pub fn written(&self) -> Location {
        *self.shared.written.lock()
    }

    /// The position after everything enqueued so far.
    pub fn tail(&self) -> Location {
        let q = self.shared.queue.lock();
        Location {
            file: q.tail_file,
            offset: q.tail_offset as u32,
        }
    }

    /// Deletes data files (GC). The file being appended to, or any later one, is refused.
    pub fn delete_files(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let tail = self.tail_file();
        for &id in ids {
            if id >= tail {
                return Err(JournalError::BadLocation {
                    file: id,
                    offset: 0,
                    reason: format!("file {id} is the file being appended to, or after it"),
                });
            }
            {
                // A reader that maps the file after this finds it gone from `files` and keeps
                // no map of it (see `Shared::sealed_map`); readers holding one keep the
                // unlinked file's bytes until they drop it.
                let mut files = self.shared.files.lock();
                files.remove(&id);
                self.shared.deleted.lock().insert(id);
                self.shared.maps.lock().remove(id);
            }
            let path = self.shared.config.path_of(id);
            match self.shared.fs.remove(&path) {
                Ok(()) => tracing::debug!(file = %path.display(), "deleted journal file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::io(format!("deleting {}", path.display()), e)),
            }
        }
        self.shared
            .fs
            .sync_dir(&self.shared.config.directory)
            .map_err(|e| JournalError::io("syncing the journal directory after deleting files", e))
    }

    /// Bytes of all data files.
    pub fn disk_size(&self) -> u64 {
        self.file_ids()
            .into_iter()
            .filter_map(|id| self.shared.file(id).ok())
            .filter_map(|f| f.len().ok())
            .sum()
    }

    pub fn stats(&self) -> JournalStats {
        let c = &self.shared.counters;
        JournalStats {
            appends: c.appends.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_micros: c.fsync_micros.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.lock().is_some()
    }

    /// Why the journal refuses writes, if it does; `disk_full` names its directory when the
    /// write that poisoned it failed for want of space.
    pub fn refusal(&self) -> Option<store_api::WriteRefusal> {
        let why = self.shared.poisoned.lock().clone()?;
        Some(store_api::WriteRefusal {
            disk_full: self
                .shared
                .disk_full
                .load(Ordering::Acquire)
                .then(|| self.shared.config.directory.clone()),
            reason: why,
        })
    }

    /// Writes and syncs everything enqueued, then stops the writer. Later calls fail `Closed`.
    pub fn close(&self) -> Result<()> {
        writer::run_lead(&self.shared);
        let sync = self.sync();
        let synced = if self.shared.check_writable().is_ok() {
            sync.wait()
        } else {
            Ok(())
        };
        self.shared.stop_writers(&self.writers);
        self.shared.closed.store(true, Ordering::Release);
        {
            let mut files = self.shared.files.lock();
            files.clear();
            self.shared.maps.lock().clear();
        }
        synced
    }

    pub fn directory(&self) -> &Path {
        &self.shared.config.directory
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.stop_writers(&self.writers);
    }
}

/// An iterator over records from a location on, reading one batch at a time.
pub struct Replay {
    shared: Arc<Shared>,
    files: VecDeque<u32>,
    from: Location,
    current: VecDeque<(Location, Vec<u8>)>,
    /// The file being read, the offset of its next batch, and its layout.
    pos: Option<Position>,
    done: bool,
}

/// Where a replay is: the file being read (and its map, when it is sealed and replay maps),
/// and the offset of its next batch.
struct Position {
    id: u32,
    offset: u64,
    file: Arc<dyn File>,
    /// Dropped when replay moves to the next file, so a replay holds at most one file mapped.
    map: Option<Arc<SealedMap>>,
    layout: Layout,
}

impl Replay {
    fn next_batch(&mut self) -> Result<bool> {
        loop {
            let Position {
                id: file_id,
                offset,
                file,
                map,
                layout,
            } = match self.pos.take() {
                Some(p) => p,
                None => match self.files.pop_front() {
                    Some(id) => {
                        let file = self.shared.file(id)?;
                        let layout = self.shared.layout(id, file.as_ref())?;
                        let map = if self.shared.config.map_replay {
                            self.shared.sealed_map(id, file.as_ref(), false)?
                        } else {
                            None
                        };
                        if let Some(m) = &map {
                            // A hint: replay reads the same bytes without it, only slower.
                            let _ = m.advise_sequential();
                        }
                        Position {
                            id,
                            offset: layout.data_start(),
                            file,
                            map,
                            layout,
                        }
                    }
                    None => return Ok(false),
                },
            };
            let at = |offset| Position {
                id: file_id,
                offset,
                file: file.clone(),
                map: map.clone(),
                layout,
            };
            let path = self.shared.config.path_of(file_id);
            // Only what was answered: a file past the last answered write holds nothing
            // acknowledged yet (with several groups in flight, a later group may be on the disk
            // ahead of an earlier one, which would read as a hole).
            let written = *self.shared.written.lock();
            let limit = match file_id.cmp(&written.file) {
                std::cmp::Ordering::Equal => u64::from(written.offset),
                std::cmp::Ordering::Less => match &map {
                    Some(m) => m.bytes().len() as u64,
                    None => file
                        .len()
                        .map_err(|e| JournalError::io(format!("reading {}", path.display()), e))?,
                },
                std::cmp::Ordering::Greater => continue,
            };
            let corrupt = |at: u64, reason: String| JournalError::Corrupt {
                file: path.clone(),
                offset: at,
                reason,
            };
            let src = match &map {
                Some(m) => Source::Map(m.bytes()),
                None => Source::File(file.as_ref()),
            };
            let read = read_batch(src, layout, offset, limit)
                .map_err(|e| JournalError::io(format!("reading {}", path.display()), e))?;
            let what = match read {
                BatchAt::Valid { payload, next } => {
                    let payload_at = offset + layout.batch_header_len() as u64;
                    let records = format::split_records(&payload, file_id, payload_at)
                        .map_err(|(at, why)| corrupt(at, why))?;
                    self.current
                        .extend(records.into_iter().filter(|(loc, _)| *loc >= self.from));
                    self.pos = Some(at(next));
                    if !self.current.is_empty() {
                        return Ok(true);
                    }
                    continue;
                }
                BatchAt::Zeros => {
                    // Zeros end a file's data only if nothing valid follows them: files before
                    // the newest were synced whole, and the newest was checked at open up to
                    // what is written, so a valid batch after zeros means data went missing.
                    let after = find_valid_batch(file.as_ref(), layout, offset + 1, limit)
                        .map_err(|e| JournalError::io(format!("scanning {}", path.display()), e))?;
                    match after {
                        None => continue,
                        Some(_) => "a zeroed range followed by valid batches",
                    }
                }
                BatchAt::Damaged(what) => what,
            };
            match self.skip_damage(file_id, &file, layout, offset, limit, what)? {
                Some(next) => self.pos = Some(at(next)),
                None => return Err(corrupt(offset, what.into())),
            }
        }
    }

    /// In skip mode, finds the next valid batch after damage at `offset`; in strict mode, None.
    fn skip_damage(
        &self,
        file_id: u32,
        file: &Arc<dyn File>,
        layout: Layout,
        offset: u64,
        limit: u64,
        what: &str,
    ) -> Result<Option<u64>> {
        if self.shared.config.recovery != crate::RecoveryMode::SkipCorrupt {
            return Ok(None);
        }
        let path = self.shared.config.path_of(file_id);
        let next = find_valid_batch(file.as_ref(), layout, offset + 1, limit)
            .map_err(|e| JournalError::io(format!("scanning {}", path.display()), e))?;
        let resume = next.map_or(limit, |(at, _)| at);
        tracing::warn!(
            file = %path.display(),
            from = offset,
            to = resume,
            "skipping a damaged journal range ({what}); records in it are lost"
        );
        Ok(Some(resume))
    }
}

impl Iterator for Replay {
    type Item = Result<(Location, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.current.is_empty() {
            match self.next_batch() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.current.pop_front().map(Ok)
    }
}
