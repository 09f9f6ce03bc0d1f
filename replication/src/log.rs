//! The master's replicated log: every write gets the next position, is kept in memory for the
//! slaves' senders (a bounded backlog, so a slave that fell further behind takes a full copy),
//! and completes once a quorum has it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use store_api::StoreError;
use tokio::sync::{Notify, watch};

use crate::SyncMode;
use crate::frame::Record;
use crate::op::Op;
use crate::position::{Position, PositionFile};

/// One record kept for the senders.
struct Kept {
    epoch: u64,
    op: Bytes,
}

struct State {
    /// The position of the last record (0: none yet).
    last: u64,
    /// The record just before the backlog's first, as (position, epoch): the backlog
    /// continues it.
    base: (u64, u64),
    /// Records `base.0 + 1 ..= last`.
    backlog: VecDeque<Kept>,
    bytes: usize,
    /// Positions a full copy in progress still needs records after: not trimmed past.
    pins: BTreeMap<u64, usize>,
    /// Records appended before the local engine shows their effect (an ack shipped while the
    /// local remove runs, an add until its local write completes). A full copy reads the local
    /// store, so it may only stand for positions before the first of these.
    unapplied: BTreeSet<u64>,
    /// The position of the last subscription deletion (0: none).
    last_unsubscribe: u64,
    /// Each connected slave's acknowledged position, by connection.
    slaves: HashMap<u64, SlaveState>,
    next_slave: u64,
    position_file: PositionFile,
}

/// What the master knows of one connected slave.
#[derive(Debug, Clone)]
pub struct SlaveState {
    pub node: String,
    pub acked: u64,
    /// The master's head when the slave connected: once it acknowledges that, it has caught up.
    target: u64,
    connected: std::time::Instant,
    caught_up: bool,
}

/// The master's log, shared by the store wrappers (which append) and the slave senders (which
/// read and record acks).
pub struct Log {
    pub epoch: u64,
    pub sync: SyncMode,
    /// Replicas that must have a write, the master included.
    pub quorum: usize,
    pub quorum_timeout: Duration,
    backlog_limit: usize,
    state: Mutex<State>,
    /// Wakes the senders when records are appended.
    pub appended: Notify,
    /// The highest position a quorum has.
    quorum_position: watch::Sender<u64>,
    /// Set when a slave reports a newer epoch: this master is deposed.
    deposed: AtomicBool,
    pub deposed_notify: Notify,
}

impl Log {
    /// A log continuing from `start` (this node's position file, whose position and epoch the
    /// next record follows), as master of `epoch`.
    pub fn new(
        epoch: u64,
        sync: SyncMode,
        quorum: usize,
        quorum_timeout: Duration,
        backlog_limit: usize,
        mut position_file: PositionFile,
    ) -> crate::error::Result<Log> {
        let start = position_file.get();
        // From now on this store may hold writes no slave has: if it ever follows another
        // master, it takes a full copy (the flag change is synced).
        position_file.set(
            Position {
                was_master: true,
                copying: false,
                ..start
            },
            true,
        )?;
        Ok(Log {
            epoch,
            sync,
            quorum,
            quorum_timeout,
            backlog_limit,
            state: Mutex::new(State {
                last: start.position,
                base: (start.position, start.epoch),
                backlog: VecDeque::new(),
                bytes: 0,
                pins: BTreeMap::new(),
                unapplied: BTreeSet::new(),
                last_unsubscribe: 0,
                slaves: HashMap::new(),
                next_slave: 0,
                position_file,
            }),
            appended: Notify::new(),
            quorum_position: watch::channel(start.position).0,
            deposed: AtomicBool::new(false),
            deposed_notify: Notify::new(),
        })
    }

    /// Appends `op`, whose effect the local engine already shows; returns its position.
    pub fn append(&self, op: &Op) -> Result<u64, StoreError> {
        self.append_inner(op, false)
    }

    /// Appends `op` before the local engine shows its effect (so that the slaves' fsyncs overlap
    /// the master's): until the returned guard is dropped, once the local write is done, a full
    /// copy stands for the positions before this one only, and replays this record after it.
    /// Called once the write's place is fixed locally, so that log order follows the master's.
    pub fn append_unapplied(self: &Arc<Self>, op: &Op) -> Result<Unapplied, StoreError> {
        let position = self.append_inner(op, true)?;
        Ok(Unapplied {
            log: Arc::clone(self),
            position,
        })
    }

    fn append_inner(&self, op: &Op, unapplied: bool) -> Result<u64, StoreError> {
        self.check_deposed()?;
        let bytes = Bytes::from(op.encode());
        let mut s = self.state.lock();
        s.last += 1;
        let position = s.last;
        if unapplied {
            s.unapplied.insert(position);
        }
        if matches!(op, Op::DeleteSubscription { .. }) {
            s.last_unsubscribe = position;
        }
        s.bytes += bytes.len();
        s.backlog.push_back(Kept {
            epoch: self.epoch,
            op: bytes,
        });
        // Keep what a full copy in progress, or one starting now, replays after its position.
        let floor = s.pins.keys().next().copied().unwrap_or(u64::MAX).min(
            s.unapplied
                .first()
                .map_or(u64::MAX, |first| first.saturating_sub(1)),
        );
        while s.bytes > self.backlog_limit && s.base.0 < floor && s.backlog.len() > 1 {
            if let Some(k) = s.backlog.pop_front() {
                s.bytes -= k.op.len();
                s.base = (s.base.0 + 1, k.epoch);
            }
        }
        let p = Position {
            position,
            epoch: self.epoch,
            was_master: true,
            copying: false,
        };
        // A write into the page cache, no fsync: the file must not lag the store by much after a
        // kill -9 (see the position module).
        let written = s.position_file.set(p, false);
        drop(s);
        if let Err(e) = written {
            tracing::warn!("{e}");
        }
        if self.quorum <= 1 {
            self.quorum_position.send_replace(position);
        }
        self.appended.notify_waiters();
        Ok(position)
    }

    /// Waits until a quorum has the record at `position` (per the sync mode), or fails after
    /// the quorum timeout with an error saying how many replicas answered.
    pub async fn wait_quorum(&self, position: u64) -> Result<(), StoreError> {
        if self.sync == SyncMode::LocalDisk || self.quorum <= 1 {
            return Ok(());
        }
        let mut rx = self.quorum_position.subscribe();
        let reached = tokio::time::timeout(self.quorum_timeout, async {
            loop {
                if *rx.borrow_and_update() >= position {
                    return true;
                }
                if self.deposed.load(Ordering::Acquire) {
                    return false;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.deposed_error()),
            Err(_) => {
                let have = 1 + self.slaves().iter().filter(|s| s.acked >= position).count();
                Err(StoreError::Backend {
                    backend: "replicated",
                    source: format!(
                        "no quorum: {have} of the {} replicas needed have the write after {} ms (it is stored on this master and may still be delivered)",
                        self.quorum,
                        self.quorum_timeout.as_millis()
                    )
                    .into(),
                })
            }
        }
    }

    fn deposed_error(&self) -> StoreError {
        StoreError::Backend {
            backend: "replicated",
            source: "this broker is no longer the master (a newer epoch was elected)".into(),
        }
    }

    fn check_deposed(&self) -> Result<(), StoreError> {
        if self.deposed.load(Ordering::Acquire) {
            Err(self.deposed_error())
        } else {
            Ok(())
        }
    }

    /// Marks this master deposed: every write fails from now on.
    pub fn depose(&self, why: &str) {
        if !self.deposed.swap(true, Ordering::AcqRel) {
            tracing::error!("replication: this master is deposed: {why}");
        }
        self.deposed_notify.notify_waiters();
        self.quorum_position.send_modify(|_| {});
    }

    pub fn is_deposed(&self) -> bool {
        self.deposed.load(Ordering::Acquire)
    }

    /// The last position and the epoch of that record.
    pub fn head(&self) -> (u64, u64) {
        let s = self.state.lock();
        (
            s.last,
            self.epoch_of_locked(&s, s.last).unwrap_or(self.epoch),
        )
    }

    fn epoch_of_locked(&self, s: &State, position: u64) -> Option<u64> {
        if position == s.base.0 {
            return Some(s.base.1);
        }
        if position < s.base.0 || position > s.last {
            return None;
        }
        s.backlog
            .get((position - s.base.0 - 1) as usize)
            .map(|k| k.epoch)
    }

    /// Whether a slave at `(position, epoch)` can continue from the backlog.
    pub fn can_continue(&self, position: u64, epoch: u64) -> bool {
        let s = self.state.lock();
        self.epoch_of_locked(&s, position) == Some(epoch)
    }

    /// Up to `max_records` / about `max_bytes` records after `after`; `None` if they left the
    /// backlog (the slave needs a full copy).
    pub fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Option<Vec<Record>> {
        let s = self.state.lock();
        if after < s.base.0 {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let skip = (after - s.base.0) as usize;
        for k in s.backlog.iter().skip(skip) {
            if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            bytes += k.op.len();
            out.push(Record {
                epoch: k.epoch,
                op: k.op.clone(),
            });
        }
        Some(out)
    }

    /// The position a full copy read from the local store from now on stands for, with the
    /// records after it kept in the backlog until the returned pin is dropped. Every record up
    /// to it shows in the local store; the copy may show some after it too, which the slave
    /// applies again, idempotently. Both under one lock, so that no append trims the records
    /// after it in between.
    pub fn pin_for_copy(self: &Arc<Self>) -> CopyPin {
        let mut s = self.state.lock();
        let position = s
            .unapplied
            .first()
            .map_or(s.last, |first| first.saturating_sub(1));
        let epoch = self.epoch_of_locked(&s, position).unwrap_or(self.epoch);
        *s.pins.entry(position).or_default() += 1;
        CopyPin {
            log: Arc::clone(self),
            position,
            epoch,
        }
    }

    /// Whether a durable subscription was deleted after `position`. A full copy that stands
    /// for `position` cannot be trusted then: replaying the deletion over a copy that already
    /// shows the subscription made again (and messages for it) would lose those messages for it,
    /// since adding a message the copy holds is taken as done.
    pub fn unsubscribed_after(&self, position: u64) -> bool {
        self.state.lock().last_unsubscribe > position
    }

    fn unpin(&self, position: u64) {
        let mut s = self.state.lock();
        if let Some(n) = s.pins.get_mut(&position) {
            *n -= 1;
            if *n == 0 {
                s.pins.remove(&position);
            }
        }
    }

    /// Registers a slave that connected at `from`; returns its connection id.
    pub fn add_slave(&self, node: &str, from: u64) -> u64 {
        let mut s = self.state.lock();
        s.next_slave += 1;
        let id = s.next_slave;
        let target = s.last;
        s.slaves.insert(
            id,
            SlaveState {
                node: node.to_owned(),
                acked: 0,
                target,
                connected: std::time::Instant::now(),
                caught_up: target <= from,
            },
        );
        id
    }

    pub fn remove_slave(&self, id: u64) {
        self.state.lock().slaves.remove(&id);
        self.recompute();
    }

    /// Records a slave's acknowledged position.
    pub fn ack(&self, id: u64, position: u64) {
        if let Some(s) = self.state.lock().slaves.get_mut(&id) {
            s.acked = s.acked.max(position);
            if !s.caught_up && s.acked >= s.target {
                s.caught_up = true;
                tracing::info!(
                    "replication: slave {} caught up: it has applied position {} ({} ms after it connected)",
                    s.node,
                    s.acked,
                    s.connected.elapsed().as_millis()
                );
            }
        }
        self.recompute();
    }

    fn recompute(&self) {
        let s = self.state.lock();
        let mut acks: Vec<u64> = s.slaves.values().map(|v| v.acked).collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        // The master has every record; it needs quorum - 1 slaves beside it.
        let q = match self.quorum.checked_sub(2) {
            None => s.last,
            Some(i) => acks.get(i).copied().unwrap_or(0).min(s.last),
        };
        drop(s);
        self.quorum_position.send_if_modified(|v| {
            if q > *v {
                *v = q;
                true
            } else {
                false
            }
        });
    }

    /// The connected slaves.
    pub fn slaves(&self) -> Vec<SlaveState> {
        let mut v: Vec<SlaveState> = self.state.lock().slaves.values().cloned().collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    pub fn quorum_position(&self) -> u64 {
        *self.quorum_position.borrow()
    }
}

/// Shared handle.
pub type SharedLog = Arc<Log>;

/// The records after a full copy's position, kept until the slave has been sent them.
pub struct CopyPin {
    log: SharedLog,
    pub position: u64,
    /// The epoch of the record at `position`.
    pub epoch: u64,
}

impl Drop for CopyPin {
    fn drop(&mut self) {
        self.log.unpin(self.position);
    }
}

/// A record appended before its local write was done (see [`Log::append_unapplied`]); drop it
/// once the local engine shows the write, or once the write failed.
pub struct Unapplied {
    log: SharedLog,
    position: u64,
}

impl Unapplied {
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl Drop for Unapplied {
    fn drop(&mut self) {
        self.log.state.lock().unapplied.remove(&self.position);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use store_api::Destination;

    fn log(dir: &std::path::Path, backlog: usize) -> SharedLog {
        Arc::new(
            Log::new(
                1,
                SyncMode::QuorumDisk,
                2,
                Duration::from_secs(1),
                backlog,
                PositionFile::open(dir).unwrap(),
            )
            .unwrap(),
        )
    }

    fn op(n: u64) -> Op {
        Op::CreateDestination(Destination::queue(format!("q{n}")))
    }

    #[test]
    fn a_full_copy_stands_for_no_record_whose_local_write_is_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), 1 << 20);
        assert_eq!(log.append(&op(1)).unwrap(), 1);
        let ack = log.append_unapplied(&op(2)).unwrap();
        let add = log.append_unapplied(&op(3)).unwrap();
        assert_eq!(log.append(&op(4)).unwrap(), 4);
        // The local store may not show 2 and 3 yet: a copy read now stands for 1 only.
        let first = log.pin_for_copy();
        assert_eq!((first.position, first.epoch), (1, 1));
        drop(ack);
        let second = log.pin_for_copy();
        assert_eq!(second.position, 2);
        drop(add);
        let third = log.pin_for_copy();
        assert_eq!(third.position, 4);
        assert_eq!(log.state.lock().pins.len(), 3);
        drop((first, second, third));
        assert!(log.state.lock().pins.is_empty());
    }

    #[test]
    fn a_copy_knows_of_a_subscription_deleted_after_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), 1 << 20);
        log.append(&op(1)).unwrap();
        let pin = log.pin_for_copy();
        assert!(!log.unsubscribed_after(pin.position));
        log.append(&Op::DeleteSubscription {
            destination: Destination::topic("t"),
            key: store_api::SubscriptionKey::new("c", "s"),
        })
        .unwrap();
        assert!(log.unsubscribed_after(pin.position));
        assert!(!log.unsubscribed_after(2));
    }

    #[test]
    fn a_small_backlog_keeps_what_a_copy_starting_now_replays() {
        let dir = tempfile::tempdir().unwrap();
        // Room for about one record: every append trims the one before.
        let log = log(dir.path(), 1);
        log.append(&op(1)).unwrap();
        let pending = log.append_unapplied(&op(2)).unwrap();
        for n in 3..10 {
            log.append(&op(n)).unwrap();
        }
        let pin = log.pin_for_copy();
        let at = pin.position;
        assert_eq!(at, 1);
        drop(pending);
        for n in 10..20 {
            log.append(&op(n)).unwrap();
        }
        // Everything after the copy's position is still there to replay.
        let records = log.read_after(at, usize::MAX, usize::MAX).unwrap();
        assert_eq!(records.len(), 18);
        drop(pin);
        log.append(&op(20)).unwrap();
        assert!(log.read_after(at, usize::MAX, usize::MAX).is_none());
    }
}
