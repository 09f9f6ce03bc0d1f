//! Group commit for the write-ahead log: writers append their `WriteBatch` to RocksDB without
//! a sync (so it is ordered and readable at once), take a ticket, and wait; one sync thread
//! calls `SyncWAL` for every ticket issued before the call started, and answers them all.
//! Writers that arrive while a sync runs share the next one.
//!
//! `syncs` and `writes` count what happened, so the sharing is visible in the engine's metrics
//! (messages per fsync), as KahaDB reports for its journal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rocksdb::DB;
use tokio::sync::oneshot;

/// Why a sync failed; every later write is refused (the engine is poisoned).
pub(crate) type SyncResult = std::result::Result<(), String>;

#[derive(Default)]
struct Queue {
    /// The ticket of the last write appended to RocksDB.
    written: u64,
    waiters: Vec<(u64, oneshot::Sender<SyncResult>)>,
    poisoned: Option<String>,
    stop: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) writes: AtomicU64,
    pub(crate) syncs: AtomicU64,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
    counters: Counters,
}

/// The sync thread and the queue of writers waiting for it.
pub(crate) struct WriteBarrier {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WriteBarrier {
    pub(crate) fn start(db: Arc<DB>) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
        });
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("leveldb-sync".into())
            .spawn(move || sync_loop(&for_thread, &db))?;
        Ok(WriteBarrier {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Records a write just appended to RocksDB; the caller holds the store's write lock, so
    /// tickets follow RocksDB's write order.
    pub(crate) fn note_write(&self) -> u64 {
        self.inner.counters.writes.fetch_add(1, Ordering::Relaxed);
        let mut q = self.inner.queue.lock();
        q.written += 1;
        q.written
    }

    /// A receiver answered once every write up to `ticket` is synced (or the sync failed).
    pub(crate) fn wait_for(&self, ticket: u64) -> oneshot::Receiver<SyncResult> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.inner.queue.lock();
        if let Some(why) = &q.poisoned {
            let _ = tx.send(Err(why.clone()));
        } else {
            q.waiters.push((ticket, tx));
            self.inner.wake.notify_one();
        }
        rx
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        self.inner.queue.lock().poisoned.clone()
    }

    pub(crate) fn poison(&self, why: String) {
        self.inner.queue.lock().poisoned.get_or_insert(why);
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Answers the last waiters and stops the thread (which drops its handle on the database).
    pub(crate) fn stop(&self) {
        self.inner.queue.lock().stop = true;
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("the leveldb sync thread panicked");
        }
    }
}

impl Drop for WriteBarrier {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sync_loop(inner: &Inner, db: &DB) {
    loop {
        let target = {
            let mut q = inner.queue.lock();
            while q.waiters.is_empty() && !q.stop {
                inner.wake.wait(&mut q);
            }
            if q.waiters.is_empty() && q.stop {
                return;
            }
            (q.written, q.poisoned.is_some())
        };
        let (target, poisoned) = target;
        // After a failed write RocksDB's log writer holds the error and must not be synced
        // again (Debian's librocksdb asserts on it): the waiters are answered with the poison.
        let result = if poisoned {
            Ok(())
        } else {
            // Every write with a ticket up to `target` was appended before this call started,
            // so this one fsync covers them all.
            let r = db.flush_wal(true).map_err(|e| e.into_string());
            inner.counters.syncs.fetch_add(1, Ordering::Relaxed);
            r
        };
        let mut q = inner.queue.lock();
        if let Err(why) = &result {
            tracing::error!("leveldb: syncing the write-ahead log failed: {why}");
            q.poisoned.get_or_insert_with(|| why.clone());
        }
        let poisoned = q.poisoned.clone();
        let waiters = std::mem::take(&mut q.waiters);
        for (ticket, tx) in waiters {
            if let Some(why) = &poisoned {
                let _ = tx.send(Err(why.clone()));
            } else if ticket <= target {
                let _ = tx.send(Ok(()));
            } else {
                q.waiters.push((ticket, tx));
            }
        }
    }
}
