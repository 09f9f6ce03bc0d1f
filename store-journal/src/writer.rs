//! The writer threads, and the state they share with the journal handle ([`Shared`]: the queue
//! of appends waiting to be written, the open data files, the poison, the counters).
//!
//! Group commit, pipelined. A writer takes every append enqueued since the last group (of one
//! data file), writes them with one `write` and, when the policy asks, one `fdatasync`. Under
//! `always` up to `writes_in_flight` writers do this at once, each with its own group: while one
//! group is on the disk, the appenders the previous one released form the next, and a disk with a
//! queue runs two flushes in little more time than one. Groups are answered strictly in journal
//! order, so an append is acknowledged only when it and everything before it is durable; each
//! batch header says how far its file was durable when it was written (`synced_to`), which is
//! what lets recovery cut a group that reached the disk before an earlier one did (see
//! [`mod@crate::format`]).
//!
//! **Leader writes.** With one group in flight, the writer thread sleeps until the group it
//! waits for is complete; the append that completes it would wake it, and the thread would later
//! wake the appender: two context switches on every group's critical path. Instead that appender
//! takes the group ([`take_group`], under the queue lock, exactly as the thread would have) and
//! writes it on its own thread when its completion is polled ([`run_lead`]), with a writer state
//! of its own. Whoever finds such a group not started — the writer thread, a read of a record in
//! it, `close` — writes it instead, so nothing waits on an appender that never polls. The gain,
//! at one writer and at 16, is measured in the README's Benchmarks section.
//!
//! This is a deliberate exception to "no runtime worker waits on an fsync": the worker blocks
//! for one write+flush, while the tasks queued on it can be taken by the other workers; it never
//! happens on a single-threaded runtime, and not within [`LEAD_COOL_DOWN`] of a write+fsync
//! slower than [`LEAD_STALL`], so a disk that stalls holds up a worker at most once per stall.
//! Handing the I/O over with `tokio::task::block_in_place` instead kept the gain at one writer
//! but lost most of it at 16: it moves the worker's other tasks to a new thread every time.
//!
//! **Deferred appends** ([`crate::Journal::append_deferred`]: acks no client waits for) do not
//! wake a writer to start a group of their own under `always`: the writer sleeps until the first
//! of them is [`JournalConfig::defer_delay`] old, and any other append, a sync, a full batch or
//! shutdown ends the wait, so they ride in the fsync of a write someone does wait for. Their
//! completions still come only after that fsync.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use store_api::SyncPolicy;
use tokio::sync::oneshot;

use crate::Location;
use crate::config::JournalConfig;
use crate::error::{JournalError, Result};
use crate::format::{self, FILE_HEADER_LEN, Layout};
use crate::fs::{File, FileSystem};
use crate::map_cache::MapCache;
use crate::mmap::{SealedMap, SealedProof};

type Waiter = oneshot::Sender<Result<()>>;

/// What [`crate::JournalStats`] reports, counted as it happens.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) appends: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) fsync_micros: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

/// An append waiting for its batch to be written.
pub(crate) struct PendingBatch {
    pub(crate) file: u32,
    pub(crate) start: u64,
    /// `BATCH_HEADER_LEN` placeholder bytes for the batch header, then the records.
    pub(crate) buf: Vec<u8>,
    pub(crate) waiters: Vec<oneshot::Sender<Result<()>>>,
    /// Some append in it must be fsynced whatever the policy (an XA prepare).
    pub(crate) force_sync: bool,
}

pub(crate) struct Queue {
    pub(crate) closed_batches: VecDeque<PendingBatch>,
    pub(crate) open: Option<PendingBatch>,
    /// Where the next batch starts.
    pub(crate) tail_file: u32,
    pub(crate) tail_offset: u64,
    /// Set to make the writer fsync what it has written (periodic policy, explicit `sync`).
    pub(crate) sync_requested: Vec<oneshot::Sender<Result<()>>>,
    pub(crate) shutdown: bool,
    /// Writer threads asleep on `work`: only then does an append pay for a wake-up.
    pub(crate) writers_waiting: usize,
    /// How many appends waiting to be taken the writers asleep on `work` want before being
    /// woken: 1 when idle, the size of the group it aims for while one gathers. A writer woken
    /// by every append of a group it is gathering, only to go back to sleep, costs a context
    /// switch each time on the cores the appenders need.
    pub(crate) wake_at: usize,
    pub(crate) pipeline: Pipeline,
    /// A group an appender took to write itself, until it (or anyone else) starts it.
    pub(crate) lead: Option<Group>,
    /// Appends waiting to be taken that are not deferred.
    pub(crate) urgent: usize,
    /// When the first deferred append waiting to be taken was made.
    pub(crate) deferred_since: Option<Instant>,
}

impl Queue {
    /// Until when only deferred appends wait, under `always` (see
    /// [`crate::Journal::append_deferred`]): nothing else is there to write, nobody asked for a
    /// sync, and no batch is full. `None` if there is something to write now.
    pub(crate) fn deferred_until(&self, config: &JournalConfig) -> Option<Instant> {
        let since = self.deferred_since?;
        (config.sync == SyncPolicy::Always
            && self.urgent == 0
            && self.closed_batches.is_empty()
            && self.sync_requested.is_empty()
            && !self.shutdown)
            .then(|| since + config.defer_delay)
    }

    /// Appends waiting to be written.
    pub(crate) fn pending_appends(&self) -> usize {
        self.closed_batches
            .iter()
            .chain(self.open.iter())
            .map(|b| b.waiters.len())
            .sum()
    }
}

pub(crate) struct Shared {
    pub(crate) config: JournalConfig,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) work: Condvar,
    /// Where writer threads wait for their turn to gather a group.
    pub(crate) turn: Condvar,
    /// The data file being created ahead of need.
    pub(crate) next_file: Mutex<NextFile>,
    pub(crate) files: Mutex<BTreeMap<u32, Arc<dyn File>>>,
    /// Data files [`crate::Journal::delete_files`] deleted: a reader that opened one just
    /// before it went must not put it back in `files` (its descriptor, and then a map of it,
    /// would keep the deleted file's blocks until the journal closes). Taken after `files`.
    pub(crate) deleted: Mutex<std::collections::BTreeSet<u32>>,
    /// Maps of sealed data files that reads by location use (`JournalConfig::map_reads`). A
    /// map is added only while its file is in `files` and removed with it, both under the
    /// `files` lock (taken first), so a file GC deletes keeps no map in here.
    pub(crate) maps: Mutex<MapCache>,
    /// The layout of each data file, from its header.
    pub(crate) layouts: Mutex<BTreeMap<u32, Layout>>,
    /// Everything before this location is written (maybe not yet synced).
    pub(crate) written: Mutex<Location>,
    pub(crate) written_cv: Condvar,
    pub(crate) poisoned: Mutex<Option<String>>,
    /// Set with the poison when its cause was a full file system: a refusal that can pass.
    pub(crate) disk_full: AtomicBool,
    /// The state of the writer that appenders leading a group use.
    pub(crate) leader: Mutex<Option<WriterState>>,
    pub(crate) closed: AtomicBool,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn poison(&self, why: String) {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            tracing::error!(journal = %self.config.directory.display(), "journal poisoned: {why}");
            *p = Some(why);
        }
    }

    pub(crate) fn writer_threads(&self) -> usize {
        match self.config.sync {
            SyncPolicy::Always => self.config.writes_in_flight.max(1),
            _ => 1,
        }
    }

    pub(crate) fn stop_writers(&self, writers: &Mutex<Vec<JoinHandle<()>>>) {
        self.queue.lock().shutdown = true;
        self.work.notify_all();
        self.turn.notify_all();
        for h in writers.lock().drain(..) {
            let _ = h.join();
        }
        if let Some((_, h)) = self.next_file.lock().take() {
            let _ = h.join();
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(JournalError::Closed);
        }
        if let Some(why) = &*self.poisoned.lock() {
            return Err(JournalError::Poisoned(why.clone()));
        }
        Ok(())
    }

    pub(crate) fn file(&self, id: u32) -> Result<Arc<dyn File>> {
        if let Some(f) = self.files.lock().get(&id) {
            return Ok(f.clone());
        }
        let path = self.config.path_of(id);
        let gone = || {
            JournalError::io(
                format!("opening {}", path.display()),
                std::io::ErrorKind::NotFound.into(),
            )
        };
        let f = self
            .fs
            .open(&path, false)
            .map_err(|e| JournalError::io(format!("opening {}", path.display()), e))?;
        let mut files = self.files.lock();
        // Deleted between the lookup and the open: as if the open had come after.
        if self.deleted.lock().contains(&id) {
            return Err(gone());
        }
        files.insert(id, f.clone());
        Ok(f)
    }

    /// A read-only map of data file `id` if it is sealed: before the file of the last answered
    /// write, so every write it will ever get is done (see [`crate::mmap`]). `None` when it is
    /// not sealed or the file system cannot map. With `keep`, the map is kept for later reads
    /// (until the file is deleted, the journal closes, or [`MapCache`] makes room for others);
    /// otherwise it goes with the caller's last reference.
    pub(crate) fn sealed_map(
        &self,
        id: u32,
        file: &dyn File,
        keep: bool,
    ) -> Result<Option<Arc<SealedMap>>> {
        if keep && let Some(m) = self.maps.lock().get(id) {
            return Ok(Some(m));
        }
        if id >= self.written.lock().file {
            return Ok(None);
        }
        let path = self.config.path_of(id);
        let Some(map) = file
            .map_sealed(SealedProof::file_is_sealed())
            .map_err(|e| JournalError::io(format!("mapping {}", path.display()), e))?
        else {
            return Ok(None);
        };
        let map = Arc::new(map);
        if keep {
            let files = self.files.lock();
            if files.contains_key(&id) {
                self.maps.lock().insert(id, map.clone());
            }
        }
        Ok(Some(map))
    }

    /// The layout of data file `id`: from the map, or from the file's header.
    pub(crate) fn layout(&self, id: u32, file: &dyn File) -> Result<Layout> {
        if let Some(l) = self.layouts.lock().get(&id) {
            return Ok(*l);
        }
        let path = self.config.path_of(id);
        let mut header = [0u8; FILE_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(|e| {
            JournalError::io(format!("reading the header of {}", path.display()), e)
        })?;
        let layout =
            format::check_file_header(&header, id).map_err(|reason| JournalError::Corrupt {
                file: path,
                offset: 0,
                reason,
            })?;
        self.layouts.lock().insert(id, layout);
        Ok(layout)
    }
}

/// How long a writer may hold a group open for appenders of its previous group that have not
/// come back yet, at most. It also waits no longer than half the last write+fsync took: on a
/// fast disk a second flush costs less than waiting for stragglers. A writer that stopped costs
/// the others at most this much latency, once.
const GROUP_WAIT: Duration = Duration::from_micros(100);

/// A write+fsync slower than this is a disk in trouble: for [`LEAD_COOL_DOWN`] after one, the
/// writer thread does all the I/O, so that a disk that stalls holds up a runtime worker at most
/// once per stall. Not lower: a disk that something else also writes to (the zero-filling of the
/// next journal file, for one) has groups of a few milliseconds several times a second, and a
/// limit that counted those as stalls kept leader writes off most of the time, losing most of
/// their gain (measured: see the README's Benchmarks section).
pub(crate) const LEAD_STALL: Duration = Duration::from_millis(20);
pub(crate) const LEAD_COOL_DOWN: Duration = Duration::from_secs(1);

/// The writers' shared progress, kept under the queue lock.
pub(crate) struct Pipeline {
    /// Groups taken and not yet finished.
    in_flight: usize,
    /// A writer is gathering a group: the others wait for their turn.
    gathering: bool,
    /// A writer is switching data files: it waits for every group in flight, then the others
    /// wait for it.
    rotating: bool,
    /// The file the last group went to.
    file: Option<u32>,
    next_seq: u64,
    /// Every group numbered below this is answered.
    answered: u64,
    /// Groups finished ahead of an earlier one, waiting for it.
    finished: BTreeMap<u64, Finished>,
    /// The end of the answered groups' writes (what `Shared::written` says), and how far the
    /// journal is known durable.
    written: Location,
    synced: Location,
    /// Set once a group failed: every later one is answered with this.
    failed: Option<String>,
    /// How many appends the next group waits for (the recent largest group, decaying), how
    /// long the last write+fsync took, and when the last group of more than one append was
    /// answered under `always`: shared, because an appender may write a group itself (see
    /// [`run_lead`]) and the writer thread's next wait depends on it.
    last_group: usize,
    last_io: Duration,
    released: Option<Instant>,
    /// Until when appenders do not write groups themselves: set by a write+fsync slower than
    /// [`LEAD_STALL`].
    slow_until: Option<Instant>,
}

impl Pipeline {
    /// The data file the last group went to.
    pub(crate) fn last_file(&self) -> Option<u32> {
        self.file
    }

    /// No group in flight and no move to a new file.
    pub(crate) fn quiet(&self) -> bool {
        self.in_flight == 0 && !self.rotating
    }

    /// No group in flight or moving to a new file, and no slow write+fsync lately.
    pub(crate) fn idle_and_fast(&self) -> bool {
        self.in_flight == 0 && !self.rotating && self.slow_until.is_none_or(|t| Instant::now() >= t)
    }

    pub(crate) fn new(tail: Location) -> Pipeline {
        Pipeline {
            in_flight: 0,
            gathering: false,
            rotating: false,
            file: None,
            next_seq: 0,
            answered: 0,
            finished: BTreeMap::new(),
            written: tail,
            synced: tail,
            failed: None,
            last_group: 0,
            last_io: GROUP_WAIT,
            released: None,
            slow_until: None,
        }
    }
}

struct Finished {
    waiters: Vec<Waiter>,
    result: Result<()>,
    /// Where the group's writes ended, if it wrote.
    end: Option<Location>,
    /// How long its write and fsync took, if it wrote.
    io: Option<Duration>,
    /// How far its fsync made the journal durable, if it synced.
    synced: Option<Location>,
}

/// One group, as a writer took it.
pub(crate) struct Group {
    seq: u64,
    file: u32,
    batches: Vec<PendingBatch>,
    /// `Journal::sync` callers: answered after an fsync covering everything written before.
    sync_waiters: Vec<Waiter>,
    /// Some batch must be fsynced whatever the policy.
    force_sync: bool,
    /// The file's durable offset when the group was taken: the batches' `synced_to`.
    synced_to: u64,
    /// What was written (in journal order) when the group was taken: what a group without
    /// batches makes durable.
    written_before: Location,
    /// This group moves the journal to a new data file (or is the first since open): the other
    /// writers wait until it is written.
    rotate: bool,
    /// Nothing was written since the journal was opened: a sync has nothing to do (recovery
    /// synced the tail).
    nothing_written: bool,
}

struct Current {
    id: u32,
    /// This writer's own handle: an fsync error is reported to each open file description, so
    /// one writer cannot consume the error of another's write.
    file: Arc<dyn File>,
    /// The same file opened for direct I/O, where the file system takes it: a batch then goes
    /// to the device without a page-cache copy and `fdatasync` has only the device cache to
    /// flush, which makes a group's write+fsync markedly shorter (see the README's Benchmarks
    /// section).
    direct: Option<Arc<dyn File>>,
    /// Written since the last fsync.
    dirty: bool,
}

/// A page-aligned buffer for direct writes, grown as batches need.
#[derive(Default)]
struct AlignedBuf(Option<memmap2::MmapMut>);

impl AlignedBuf {
    fn holding(&mut self, bytes: &[u8]) -> std::io::Result<&[u8]> {
        if self.0.as_ref().is_none_or(|m| m.len() < bytes.len()) {
            let capacity = bytes.len().next_power_of_two().max(64 << 10);
            self.0 = Some(memmap2::MmapMut::map_anon(capacity)?);
        }
        match self.0.as_mut() {
            Some(m) => {
                m[..bytes.len()].copy_from_slice(bytes);
                Ok(&m[..bytes.len()])
            }
            None => Err(std::io::Error::other("no aligned buffer")),
        }
    }
}

/// A writer's own state: the writer thread's, or the one an appender leading a group uses.
struct Writer {
    shared: Arc<Shared>,
    current: Option<Current>,
    aligned: AlignedBuf,
    /// The group's bytes as one run, kept between groups so that each does not allocate (and
    /// fault in) a fresh buffer.
    run: Vec<u8>,
    last_sync: Instant,
    /// How long the last group's move to another data file (opening, maybe creating it) took:
    /// not the disk's write+fsync time.
    switching: Duration,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Writer {
        Writer {
            shared,
            current: None,
            aligned: AlignedBuf::default(),
            run: Vec::new(),
            last_sync: Instant::now(),
            switching: Duration::ZERO,
        }
    }
}

pub(crate) fn run(shared: Arc<Shared>) {
    // The group wait is tens of microseconds; with the default 50 µs timer slack the kernel may
    // end it up to 50 µs late, with the disk idle all that time.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
    let mut w = Writer::new(shared);
    while let Some(group) = w.take() {
        let seq = group.seq;
        let finished = w.execute(group);
        w.finish(seq, finished);
    }
}

fn has_work(q: &Queue) -> bool {
    !q.closed_batches.is_empty() || q.open.is_some() || !q.sync_requested.is_empty()
}

/// Takes what is waiting as the next group (of one data file), marking it in flight. A group
/// that moves the journal to a new file first waits for the groups in flight.
pub(crate) fn take_group(shared: &Shared, q: &mut MutexGuard<'_, Queue>) -> Group {
    q.pipeline.released = None;
    let file = q
        .closed_batches
        .front()
        .or(q.open.as_ref())
        .map_or(q.pipeline.file.unwrap_or(q.tail_file), |b| b.file);
    let mut batches = Vec::new();
    while q.closed_batches.front().is_some_and(|b| b.file == file) {
        batches.extend(q.closed_batches.pop_front());
    }
    if q.closed_batches.is_empty() && q.open.as_ref().is_some_and(|b| b.file == file) {
        batches.extend(q.open.take());
    }
    let rotate = !batches.is_empty() && q.pipeline.file != Some(file);
    if rotate {
        q.pipeline.rotating = true;
        while q.pipeline.in_flight > 0 {
            shared.turn.wait_for(q, Duration::from_millis(100));
        }
    }
    let sync_waiters = std::mem::take(&mut q.sync_requested);
    if q.open.is_none() && q.closed_batches.is_empty() {
        q.urgent = 0;
        q.deferred_since = None;
    }
    let p = &mut q.pipeline;
    let group = Group {
        seq: p.next_seq,
        file,
        synced_to: if p.synced.file == file {
            u64::from(p.synced.offset)
        } else {
            Layout::CURRENT.data_start()
        },
        written_before: p.written,
        rotate,
        nothing_written: p.file.is_none(),
        force_sync: batches.iter().any(|b| b.force_sync),
        batches,
        sync_waiters,
    };
    p.next_seq += 1;
    p.in_flight += 1;
    if !group.batches.is_empty() {
        p.file = Some(file);
    }
    let size: usize = group.batches.iter().map(|b| b.waiters.len()).sum();
    // Remember the largest recent group, forgetting one appender per group: waiting only for
    // as many as the last group had let one short group (stragglers missed) shorten every
    // wait after it (groups grew and so did the load example's rate at 16 writers; see the
    // README's Benchmarks section).
    p.last_group = size.max(p.last_group.saturating_sub(1));
    group
}

/// Until when a group may wait for appenders, under `always` once groups have more than one:
/// one write+fsync time after the last group was answered (waiting longer for stragglers costs
/// the others more than a second flush would cost them), but at most twice `GROUP_WAIT`, so
/// that one slow fsync does not make the next group wait as long; or `GROUP_WAIT` (at most half
/// an I/O) from now if none was answered since the journal went idle.
fn gather_deadline(shared: &Shared, p: &Pipeline) -> Option<Instant> {
    if shared.config.sync != SyncPolicy::Always || p.last_group <= 1 {
        return None;
    }
    Some(return_deadline(p).unwrap_or_else(|| Instant::now() + GROUP_WAIT.min(p.last_io / 2)))
}

/// Until when the appenders of the last group answered may be waited for, if it had more than
/// one under `always` and no group was taken since.
fn return_deadline(p: &Pipeline) -> Option<Instant> {
    p.released.map(|at| at + p.last_io.min(2 * GROUP_WAIT))
}

impl Writer {
    /// Waits for a group and takes it; `None` at shutdown, once nothing is left.
    fn take(&mut self) -> Option<Group> {
        let shared = self.shared.clone();
        let limit = shared.writer_threads();
        let mut q = shared.queue.lock();
        'wait: loop {
            if let Some(group) = q.lead.take() {
                // An appender's group, not yet started: writing it here is as good.
                return Some(group);
            }
            let p = &q.pipeline;
            if p.gathering || p.rotating || p.in_flight >= limit {
                if q.shutdown && !has_work(&q) {
                    return None;
                }
                shared.turn.wait_for(&mut q, Duration::from_millis(100));
                continue;
            }
            if !has_work(&q) {
                if q.shutdown {
                    return None;
                }
                let dirty = self.current.as_ref().is_some_and(|c| c.dirty);
                match shared.config.sync {
                    SyncPolicy::Periodic(interval) if dirty => {
                        let due = self.last_sync + interval;
                        let now = Instant::now();
                        if now < due {
                            self.sleep(&mut q, due - now, 1);
                            continue;
                        }
                    }
                    _ => {
                        match return_deadline(&q.pipeline) {
                            // The appenders of the last group are on their way back: sleep
                            // until as many are here as recent groups had, not until the
                            // first.
                            Some(deadline) => {
                                let now = Instant::now();
                                if now >= deadline {
                                    q.pipeline.released = None;
                                } else {
                                    let want = q.pipeline.last_group;
                                    self.sleep(&mut q, deadline - now, want);
                                }
                            }
                            None => self.sleep(&mut q, Duration::from_secs(1), 1),
                        }
                        continue;
                    }
                }
            }
            // Only acknowledgements nobody waits for: give a write that must be durable now
            // the chance to carry them in its fsync, for up to the delay.
            if let Some(due) = q.deferred_until(&shared.config) {
                let now = Instant::now();
                if now < due {
                    self.sleep(&mut q, due - now, 1);
                    continue;
                }
            }
            q.pipeline.gathering = true;
            // Group commit under `always`: the appenders of the last group are usually on their
            // way back with their next append; waiting a moment for them turns two half-full
            // fsyncs into one full one.
            if let Some(deadline) = gather_deadline(&shared, &q.pipeline) {
                let taken = q.pipeline.next_seq;
                while q.pending_appends() < q.pipeline.last_group
                    && q.sync_requested.is_empty()
                    && !q.shutdown
                    && q.closed_batches.is_empty()
                {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let want = q.pipeline.last_group;
                    self.sleep(&mut q, deadline - now, want);
                    if q.pipeline.next_seq != taken {
                        // The appender that completed the group wrote it itself.
                        q.pipeline.gathering = false;
                        continue 'wait;
                    }
                }
            }
            q.pipeline.gathering = false;
            break;
        }
        let group = take_group(&shared, &mut q);
        drop(q);
        if !group.rotate && limit > 1 {
            // Another writer may gather the next group while this one is on the disk.
            shared.turn.notify_one();
        }
        Some(group)
    }

    /// Sleeps until `timeout`, or until `wake_at` appends are waiting to be taken (or a batch
    /// closes, a sync is asked for, or the journal shuts down).
    fn sleep(&self, q: &mut MutexGuard<'_, Queue>, timeout: Duration, wake_at: usize) {
        q.writers_waiting += 1;
        q.wake_at = wake_at.max(1);
        self.shared.work.wait_for(q, timeout);
        q.writers_waiting -= 1;
        q.wake_at = 1;
    }

    /// Writes a group and fsyncs it as the policy says; ends a rotation it started.
    fn execute(&mut self, mut g: Group) -> Finished {
        let started = Instant::now();
        let mut waiters: Vec<Waiter> = Vec::new();
        for b in &mut g.batches {
            waiters.append(&mut b.waiters);
        }
        let had_batches = !g.batches.is_empty();
        self.switching = Duration::ZERO;
        let mut end = None;
        let mut synced = None;
        let result = (|| {
            if let Some(why) = &*self.shared.poisoned.lock() {
                return Err(JournalError::Poisoned(why.clone()));
            }
            if had_batches {
                end = Some(self.write(&g)?);
            }
            let periodic_due = matches!(self.shared.config.sync,
                SyncPolicy::Periodic(i) if self.last_sync.elapsed() >= i);
            let want = (had_batches || !g.nothing_written)
                && (g.force_sync
                    || !g.sync_waiters.is_empty()
                    || periodic_due
                    || self.shared.config.sync == SyncPolicy::Always);
            if want {
                self.sync_file(g.file, had_batches)?;
                synced = Some(end.unwrap_or(g.written_before));
                self.last_sync = Instant::now();
            }
            Ok(())
        })();
        let io = had_batches.then(|| started.elapsed().saturating_sub(self.switching));
        if g.rotate {
            self.shared.queue.lock().pipeline.rotating = false;
            self.shared.turn.notify_all();
        }
        waiters.append(&mut g.sync_waiters);
        if let Err(e) = &result {
            if matches!(e, JournalError::Io { source, .. } if store_api::is_disk_full(source)) {
                self.shared.disk_full.store(true, Ordering::Release);
            }
            self.shared.poison(e.to_string());
        }
        Finished {
            waiters,
            result,
            end,
            io,
            synced,
        }
    }

    /// Writes the group's batches (sealed, each at its aligned start, the gaps zeros) with one
    /// write; returns where they end.
    fn write(&mut self, g: &Group) -> Result<Location> {
        let layout = Layout::CURRENT;
        let mut run = std::mem::take(&mut self.run);
        run.clear();
        let start = g.batches.first().map_or(0, |b| b.start);
        for b in &g.batches {
            let at = (b.start - start) as usize;
            if run.len() < at {
                run.resize(at, 0);
            }
            let from = run.len();
            run.extend_from_slice(&b.buf);
            format::seal_batch(&mut run[from..], g.synced_to as u32);
            self.shared.counters.batches.fetch_add(1, Ordering::Relaxed);
        }
        let padded = layout.next_batch(start + run.len() as u64) - start;
        run.resize(padded as usize, 0);

        let switch_started = Instant::now();
        self.switch_to(g.file)?;
        self.switching = switch_started.elapsed();
        let shared = &self.shared;
        let Some(c) = self.current.as_mut() else {
            return Err(JournalError::Closed);
        };
        let path = shared.config.path_of(g.file);
        let write_err =
            |e| JournalError::io(format!("writing {} at offset {start}", path.display()), e);
        let align = crate::fs::DIRECT_IO_ALIGN;
        match &c.direct {
            Some(direct)
                if start.is_multiple_of(align) && (run.len() as u64).is_multiple_of(align) =>
            {
                let buf = self.aligned.holding(&run).map_err(write_err)?;
                direct.write_all_at(buf, start).map_err(write_err)?;
            }
            _ => c.file.write_all_at(&run, start).map_err(write_err)?,
        }
        c.dirty = true;
        shared
            .counters
            .bytes
            .fetch_add(run.len() as u64, Ordering::Relaxed);
        let end = Location {
            file: g.file,
            offset: (start + run.len() as u64) as u32,
        };
        self.run = run;
        Ok(end)
    }

    /// Makes this writer's handle point at data file `id`, creating the file if this writer is
    /// the one moving the journal to it. The previous file is synced first: the journal must
    /// stay a durable prefix.
    fn switch_to(&mut self, id: u32) -> Result<()> {
        if self.current.as_ref().is_some_and(|c| c.id == id) {
            return Ok(());
        }
        if let Some(c) = self.current.as_mut().filter(|c| c.dirty) {
            sync(&self.shared, c)?;
        }
        self.current = Some(open_for_append(&self.shared, id)?);
        Ok(())
    }

    fn sync_file(&mut self, id: u32, wrote: bool) -> Result<()> {
        if !wrote && self.current.as_ref().is_none_or(|c| c.id != id) {
            // A sync request alone: fsync the file appends go to, through the shared handle.
            let file = self.shared.file(id)?;
            return fdatasync(&self.shared, id, file.as_ref());
        }
        match self.current.as_mut() {
            Some(c) => sync(&self.shared, c),
            None => Ok(()),
        }
    }

    /// Records a finished group and answers every group that is now next in journal order.
    fn finish(&self, seq: u64, done: Finished) {
        let shared = &self.shared;
        let mut answers: Vec<(Vec<Waiter>, Result<()>)> = Vec::new();
        let rearm;
        {
            let mut q = shared.queue.lock();
            let p = &mut q.pipeline;
            p.in_flight -= 1;
            if let Some(io) = done.io {
                p.last_io = io;
                if io > shared.config.lead_stall {
                    p.slow_until = Some(Instant::now() + shared.config.lead_cool_down);
                }
            }
            if p.last_group > 1 && shared.config.sync == SyncPolicy::Always {
                p.released = Some(Instant::now());
            }
            p.finished.insert(seq, done);
            while let Some(f) = p.finished.remove(&p.answered) {
                p.answered += 1;
                let result = match (&p.failed, f.result) {
                    (Some(why), _) => Err(JournalError::Poisoned(why.clone())),
                    (None, Err(e)) => {
                        p.failed = Some(e.to_string());
                        Err(e)
                    }
                    (None, Ok(())) => {
                        if let Some(end) = f.end {
                            p.written = p.written.max(end);
                        }
                        if let Some(s) = f.synced {
                            p.synced = p.synced.max(s);
                        }
                        Ok(())
                    }
                };
                answers.push((f.waiters, result));
            }
            let written = p.written;
            // A writer thread asleep waits for a group by the last one's statistics, which an
            // appender that wrote a group itself has just changed.
            rearm = q.writers_waiting > 0 && q.pipeline.last_group > 1;
            drop(q);
            let mut w = shared.written.lock();
            if *w < written {
                *w = written;
                shared.written_cv.notify_all();
            }
        }
        // Writers waiting for their turn (another writer thread's group, or an appender's).
        shared.turn.notify_all();
        for (waiters, result) in answers {
            for w in waiters {
                let _ = w.send(match &result {
                    Ok(()) => Ok(()),
                    Err(JournalError::Poisoned(why)) => Err(JournalError::Poisoned(why.clone())),
                    Err(e) => Err(JournalError::Poisoned(e.to_string())),
                });
            }
        }
        if rearm {
            shared.work.notify_one();
        }
    }
}

/// `fdatasync`s data file `id` through `file`, counting the call and its time.
fn fdatasync(shared: &Shared, id: u32, file: &dyn File) -> Result<()> {
    let started = Instant::now();
    file.sync_data().map_err(|e| {
        JournalError::io(
            format!("syncing {}", shared.config.path_of(id).display()),
            e,
        )
    })?;
    shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .fsync_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    Ok(())
}
/// `fdatasync`s this writer's file.
fn sync(shared: &Shared, c: &mut Current) -> Result<()> {
    fdatasync(shared, c.id, c.file.as_ref())?;
    c.dirty = false;
    Ok(())
}

/// A data file being created ahead of need by a helper thread.
pub(crate) type NextFile = Option<(u32, std::thread::JoinHandle<Result<Arc<dyn File>>>)>;

/// Opens data file `id` for this writer — creating it if new, or taking it from the helper
/// thread that created it while the previous file filled, so rotation does not stall appends
/// for the time it takes to write 32 MiB of zeros — and starts creating the one after.
fn open_for_append(shared: &Arc<Shared>, id: u32) -> Result<Current> {
    let path = shared.config.path_of(id);
    let known = shared.files.lock().contains_key(&id);
    if !known {
        let made = match shared.next_file.lock().take() {
            Some((nid, handle)) if nid == id => handle.join().unwrap_or_else(|_| {
                Err(JournalError::io(
                    "creating a journal file",
                    std::io::Error::other("the helper thread panicked"),
                ))
            }),
            Some((_, handle)) => {
                let _ = handle.join();
                create_file(shared, id)
            }
            None => create_file(shared, id),
        };
        let f = made?;
        shared.files.lock().insert(id, f);
        shared.layouts.lock().insert(id, Layout::CURRENT);
    }
    {
        let mut next = shared.next_file.lock();
        if shared.config.preallocate
            && next.is_none()
            && !shared.files.lock().contains_key(&(id + 1))
        {
            let helper = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("journal-prealloc".into())
                .spawn(move || create_file(&helper, id + 1));
            if let Ok(handle) = spawned {
                *next = Some((id + 1, handle));
            }
        }
    }
    let file = shared
        .fs
        .open(&path, false)
        .map_err(|e| JournalError::io(format!("opening {}", path.display()), e))?;
    // Direct writes only where every group is fsynced anyway: a direct write returns when the
    // device has the data, so under `periodic` or `never`, where an append should cost a copy
    // into the page cache, it would make every group wait for the disk (more than halving the
    // rate under `never`; see the README's Benchmarks section).
    let direct = if shared.config.sync == SyncPolicy::Always {
        shared.fs.open_direct(&path).map_err(|e| {
            JournalError::io(format!("opening {} for direct writes", path.display()), e)
        })?
    } else {
        None
    };
    Ok(Current {
        id,
        file,
        direct,
        dirty: false,
    })
}

/// Creates data file `id`: blocks reserved for its full length (when preallocating), then the header,
/// then fsync of the file and of the directory. The header goes last and must be durable before
/// any record, so that a file whose creation was cut short has an all-zero header (and is
/// removed at open) and a crash right after the first append still finds a valid file.
fn create_file(shared: &Shared, id: u32) -> Result<Arc<dyn File>> {
    let cfg = &shared.config;
    let path = cfg.path_of(id);
    let ctx = |what: &str| format!("{what} {}", path.display());
    let file = shared
        .fs
        .open(&path, true)
        .map_err(|e| JournalError::io(ctx("creating"), e))?;
    if cfg.preallocate {
        file.allocate(cfg.max_file_length)
            .map_err(|e| JournalError::io(ctx("preallocating"), e))?;
    }
    file.write_all_at(&format::file_header(id, Layout::CURRENT), 0)
        .map_err(|e| JournalError::io(ctx("writing the header of"), e))?;
    file.sync_data()
        .map_err(|e| JournalError::io(ctx("syncing"), e))?;
    shared.fs.sync_dir(&cfg.directory).map_err(|e| {
        JournalError::io(format!("syncing directory {}", cfg.directory.display()), e)
    })?;
    shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    Ok(file)
}

/// What a writer keeps between groups, apart from the journal it writes.
pub(crate) struct WriterState {
    current: Option<Current>,
    aligned: AlignedBuf,
    run: Vec<u8>,
    last_sync: Instant,
}

/// Writes, fsyncs and answers the group an appender took for itself (see
/// [`crate::Journal::append`]), if it is still waiting: on the appender's thread when its
/// completion is polled, waited for or dropped, or on any thread that would otherwise wait for
/// it (a read of what it holds, closing the journal). The writer thread also takes it if it
/// finds it waiting.
pub(crate) fn run_lead(shared: &Arc<Shared>) {
    let Some(group) = shared.queue.lock().lead.take() else {
        return;
    };
    let state = shared.leader.lock().take();
    let mut w = match state {
        Some(s) => Writer {
            shared: shared.clone(),
            current: s.current,
            aligned: s.aligned,
            run: s.run,
            last_sync: s.last_sync,
            switching: Duration::ZERO,
        },
        None => Writer::new(shared.clone()),
    };
    let seq = group.seq;
    let finished = w.execute(group);
    w.finish(seq, finished);
    *shared.leader.lock() = Some(WriterState {
        current: w.current,
        aligned: w.aligned,
        run: w.run,
        last_sync: w.last_sync,
    });
}
