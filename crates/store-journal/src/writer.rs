//! The writer thread: group commit. It takes every batch enqueued while it was busy, writes
//! them with as few `write` calls as possible, issues one `fdatasync` for all of them when the
//! policy asks, and only then completes their appends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use store_api::SyncPolicy;
use tokio::sync::oneshot;

use crate::Location;
use crate::error::{JournalError, Result};
use crate::format;
use crate::fs::File;
use crate::journal::{PendingBatch, Shared};

struct Current {
    id: u32,
    file: Arc<dyn File>,
    /// Written since the last fsync.
    dirty: bool,
}

/// How long the writer may hold a group open for writers that were in the previous group and
/// have not come back yet, at most. It also waits no longer than half the last fsync took: on a
/// fast disk a second fsync costs less than waiting for stragglers, and while it runs the CPU
/// work of the next group overlaps it (measured here with 50–80 µs fsyncs: 16 writers ~67k →
/// ~73k adds/s). A writer that stopped costs the others at most this much latency, once.
const GROUP_WAIT: Duration = Duration::from_micros(100);

pub(crate) fn run(shared: Arc<Shared>) {
    let mut current: Option<Current> = None;
    let mut next: NextFile = None;
    let mut last_sync = Instant::now();
    let mut last_group = 0usize;
    let mut last_fsync = GROUP_WAIT;
    loop {
        let (batches, sync_waiters, shutdown) = {
            let mut q = shared.queue.lock();
            loop {
                if !q.closed_batches.is_empty()
                    || q.open.is_some()
                    || !q.sync_requested.is_empty()
                    || q.shutdown
                {
                    break;
                }
                let dirty = current.as_ref().is_some_and(|c| c.dirty);
                match shared.config.sync {
                    SyncPolicy::Periodic(interval) if dirty => {
                        let due = last_sync + interval;
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        q.writer_waiting = true;
                        shared.work.wait_for(&mut q, due - now);
                        q.writer_waiting = false;
                    }
                    _ => {
                        q.writer_waiting = true;
                        shared.work.wait_for(&mut q, Duration::from_secs(1));
                        q.writer_waiting = false;
                    }
                }
            }
            // Group commit under `always`: the appenders of the last group are usually on their
            // way back with their next append; waiting a moment for them turns two half-full
            // fsyncs into one full one.
            if shared.config.sync == SyncPolicy::Always && last_group > 1 {
                let wait = GROUP_WAIT.min(last_fsync / 2);
                let deadline = Instant::now() + wait;
                while q.pending_appends() < last_group
                    && q.sync_requested.is_empty()
                    && !q.shutdown
                    && q.closed_batches.is_empty()
                {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    q.writer_waiting = true;
                    shared.work.wait_for(&mut q, deadline - now);
                    q.writer_waiting = false;
                }
            }
            last_group = q.pending_appends();
            let mut batches: Vec<PendingBatch> = q.closed_batches.drain(..).collect();
            batches.extend(q.open.take());
            (batches, std::mem::take(&mut q.sync_requested), q.shutdown)
        };

        let force = batches.iter().any(|b| b.force_sync) || !sync_waiters.is_empty();
        let mut waiters: Vec<oneshot::Sender<Result<()>>> = Vec::new();
        let result = write_batches(&shared, &mut current, &mut next, batches, &mut waiters).and_then(|()| {
            let periodic_due =
                matches!(shared.config.sync, SyncPolicy::Periodic(i) if last_sync.elapsed() >= i);
            let want = force || periodic_due || shared.config.sync == SyncPolicy::Always;
            match current.as_mut() {
                Some(c) if want && c.dirty => {
                    last_fsync = sync(&shared, c)?;
                    last_sync = Instant::now();
                    Ok(())
                }
                _ => Ok(()),
            }
        });
        waiters.extend(sync_waiters);
        match result {
            Ok(()) => {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                shared.poison(e.to_string());
                let why = e.to_string();
                for w in waiters {
                    let _ = w.send(Err(JournalError::Poisoned(why.clone())));
                }
            }
        }
        if shutdown {
            let q = shared.queue.lock();
            if q.closed_batches.is_empty() && q.open.is_none() && q.sync_requested.is_empty() {
                drop(q);
                if let Some((_, handle)) = next.take() {
                    let _ = handle.join();
                }
                return;
            }
        }
    }
}

/// `fdatasync`s the current file; returns how long it took.
fn sync(shared: &Shared, c: &mut Current) -> Result<Duration> {
    let started = Instant::now();
    c.file.sync_data().map_err(|e| {
        JournalError::io(
            format!("syncing {}", shared.config.path_of(c.id).display()),
            e,
        )
    })?;
    shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    let took = started.elapsed();
    shared
        .counters
        .fsync_micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    c.dirty = false;
    Ok(took)
}

/// Writes the batches in order, rotating files as their locations say. Their waiters are moved
/// to `waiters` whatever happens, so the caller can answer every one of them.
fn write_batches(
    shared: &Arc<Shared>,
    current: &mut Option<Current>,
    next: &mut NextFile,
    batches: Vec<PendingBatch>,
    waiters: &mut Vec<oneshot::Sender<Result<()>>>,
) -> Result<()> {
    if let Some(why) = &*shared.poisoned.lock() {
        for b in batches {
            waiters.extend(b.waiters);
        }
        return Err(JournalError::Poisoned(why.clone()));
    }
    let mut result = Ok(());
    // Consecutive batches of one file are contiguous: gather them into one write.
    let mut run: Vec<u8> = Vec::new();
    let mut run_start = (0u32, 0u64);
    for mut b in batches {
        waiters.append(&mut b.waiters);
        if result.is_err() {
            continue;
        }
        format::seal_batch(&mut b.buf);
        shared.counters.batches.fetch_add(1, Ordering::Relaxed);
        let contiguous =
            !run.is_empty() && run_start.0 == b.file && run_start.1 + run.len() as u64 == b.start;
        if !contiguous {
            result = flush_run(shared, current, next, run_start, &run);
            run.clear();
            run_start = (b.file, b.start);
        }
        run.extend_from_slice(&b.buf);
    }
    if result.is_ok() {
        result = flush_run(shared, current, next, run_start, &run);
    }
    result
}

fn flush_run(
    shared: &Arc<Shared>,
    current: &mut Option<Current>,
    next: &mut NextFile,
    (file_id, start): (u32, u64),
    bytes: &[u8],
) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    if current.as_ref().is_none_or(|c| c.id != file_id) {
        if let Some(c) = current.as_mut().filter(|c| c.dirty) {
            // The journal must stay a durable prefix: finish the old file before the new one.
            sync(shared, c)?;
        }
        *current = Some(open_for_append(shared, file_id, next)?);
    }
    let Some(c) = current.as_mut() else {
        return Err(JournalError::Closed);
    };
    let path = shared.config.path_of(file_id);
    c.file.write_all_at(bytes, start).map_err(|e| {
        JournalError::io(format!("writing {} at offset {start}", path.display()), e)
    })?;
    c.dirty = true;
    shared
        .counters
        .bytes
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    *shared.written.lock() = Location {
        file: file_id,
        offset: (start + bytes.len() as u64) as u32,
    };
    shared.written_cv.notify_all();
    Ok(())
}

/// A data file being created ahead of need by a helper thread.
type NextFile = Option<(u32, std::thread::JoinHandle<Result<Arc<dyn File>>>)>;

/// Opens the file appends now go to, creating it if new — or taking it from the helper thread
/// that created it while the previous file filled, so rotation does not stall appends for the
/// time it takes to write 32 MiB of zeros — and starts creating the one after.
fn open_for_append(shared: &Arc<Shared>, id: u32, next: &mut NextFile) -> Result<Current> {
    let existing = shared.files.lock().get(&id).cloned();
    let file = match existing {
        Some(f) => f,
        None => {
            let made = match next.take() {
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
            shared.files.lock().insert(id, f.clone());
            f
        }
    };
    if shared.config.preallocate && next.is_none() && !shared.files.lock().contains_key(&(id + 1)) {
        let helper = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("journal-prealloc".into())
            .spawn(move || create_file(&helper, id + 1));
        if let Ok(handle) = spawned {
            *next = Some((id + 1, handle));
        }
    }
    Ok(Current {
        id,
        file,
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
    file.write_all_at(&format::file_header(id), 0)
        .map_err(|e| JournalError::io(ctx("writing the header of"), e))?;
    file.sync_data()
        .map_err(|e| JournalError::io(ctx("syncing"), e))?;
    shared.fs.sync_dir(&cfg.directory).map_err(|e| {
        JournalError::io(format!("syncing directory {}", cfg.directory.display()), e)
    })?;
    shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    Ok(file)
}
