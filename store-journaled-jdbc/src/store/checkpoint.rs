//! Checkpoints and replay. A checkpoint moves the overlay into the database in one transaction
//! with the journal position it reflects, then deletes the journal files before it; replay at
//! open applies what the journal holds past that position to the overlay again, skipping what
//! no longer applies, and the open ends with a checkpoint. Changes the journal does not carry
//! go to the database right after a checkpoint ([`Inner::write_through`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use store_api::tx_check::check_ops;
use store_api::{Destination, MessageId, Result, StoreError, TxOp};
use store_jdbc::JdbcStore;
use store_journal::Location;
use tracing::{info, warn};

use super::write::{Probe, apply};
use super::{Inner, open_journal};
use crate::known::KnownIds;
use crate::overlay::Overlay;
use crate::records::Record;

pub(super) fn pack(l: Location) -> i64 {
    (i64::from(l.file) << 32) | i64::from(l.offset)
}

pub(super) fn unpack(v: i64) -> Location {
    Location {
        file: (v >> 32) as u32,
        offset: (v & 0xffff_ffff) as u32,
    }
}

/// Fills the filter from every id the database holds, one bounded page at a time, sized for
/// twice what it finds (at least a million).
pub(super) async fn warm_known_ids(jdbc: &JdbcStore) -> Result<KnownIds> {
    let mut capacity = 1 << 20;
    'fill: loop {
        let mut known = KnownIds::with_capacity(capacity);
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let (ids, last) = jdbc.journaled().message_ids(after, 10_000).await?;
            let Some(last) = last else {
                break 'fill Ok(known);
            };
            after = last;
            for (_, d, id) in ids {
                known.insert(&d, &id);
                n += 1;
            }
            if n * 2 > capacity {
                capacity *= 4;
                continue 'fill;
            }
        }
    }
}

pub(super) async fn checkpoint_worker(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => i.config.checkpoint_interval,
        None => return,
    };
    loop {
        // Wait holding only the `Notify`: a strong reference held across the interval kept a
        // store dropped without `close` (its journal, its writer thread, its pool) alive until
        // the interval ended.
        let wake = {
            let Some(i) = inner.upgrade() else { return };
            i.wake.clone()
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let Some(i) = inner.upgrade() else { return };
        if i.closed.load(Ordering::Acquire) {
            return;
        }
        let _w = i.write.lock().await;
        if i.closed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = i.checkpoint_locked().await {
            warn!(target: "journaled-jdbc", "checkpoint failed, will retry: {e}");
        }
    }
}

impl Inner {
    /// Applies a replayed record, skipping what no longer applies (the replay is idempotent).
    pub(super) async fn replay(&self, rec: Record) -> Result<()> {
        let ops = match rec {
            Record::Add(m) => vec![TxOp::Add(m)],
            Record::QueueAck(destination, id) => vec![TxOp::QueueAck { destination, id }],
            Record::TopicAck(destination, subscription, id) => vec![TxOp::TopicAck {
                destination,
                subscription,
                id,
            }],
            Record::Commit(ops) => ops,
        };
        for op in ops {
            let facts = self.facts(std::slice::from_ref(&op)).await?;
            let mut subs = HashMap::new();
            if let TxOp::Add(m) = &op {
                self.last_seq.fetch_max(m.sequence, Ordering::AcqRel);
                if m.destination.is_topic() {
                    subs.insert(
                        m.destination.clone(),
                        self.subscriptions(&m.destination).await?,
                    );
                }
            }
            let mut ov = self.overlay.lock();
            let ok = check_ops(
                std::slice::from_ref(&op),
                &mut Probe {
                    ov: &ov,
                    facts: &facts,
                    subs: &subs,
                },
            )
            .is_ok();
            if ok {
                apply(&mut ov, op, &facts, &subs);
            }
        }
        Ok(())
    }

    /// Moves the overlay into the database in one transaction, then trims the journal. The
    /// caller holds the write lock.
    pub(super) async fn checkpoint_locked(&self) -> Result<()> {
        if self.overlay.lock().is_empty() && self.since_mark.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let journal = self.journal();
        journal.sync().await.map_err(StoreError::from)?;
        let tail = journal.tail();
        let mut batch = self.overlay.lock().batch(pack(tail));
        batch.next_sequence = self.last_seq.load(Ordering::Acquire) as i64 + 1;
        let moved = batch.adds.len() + batch.queue_acks.len() + batch.topic_acks.len();
        let added: Vec<(Destination, MessageId)> = batch
            .adds
            .iter()
            .map(|(m, _)| (m.destination.clone(), m.id.clone()))
            .collect();
        {
            let _v = self.view.write().await;
            self.jdbc.journaled().apply_checkpoint(batch).await?;
            let mut known = self.known.lock();
            for (d, id) in &added {
                known.insert(d, id);
            }
            drop(known);
            *self.overlay.lock() = Overlay::default();
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.since_mark.store(0, Ordering::Release);
        }
        let old: Vec<u32> = journal
            .file_ids()
            .into_iter()
            .filter(|id| *id < tail.file)
            .collect();
        if let Err(e) = journal.delete_files(&old) {
            warn!(target: "journaled-jdbc", "could not delete checkpointed journal files: {e}");
        }
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "journaled-jdbc", "checkpoint moved {moved} changes; journal trimmed to file {}", tail.file);
        Ok(())
    }

    /// After a refusal for want of space: once a whole journal file fits again, reopens the
    /// journal in place (which cuts the torn tail the failed write left), rebuilds the overlay
    /// from what the journal holds past the database's mark, exactly as open does (so memory
    /// holds what the disk holds, and nothing that never became durable), checkpoints it, and
    /// takes writes again. Handles, cursors and subscriptions stay valid. False while the disk
    /// is still full, or when the refusal was not for space (a failed fsync: what reached the
    /// disk is unknown, so only a restart is safe).
    pub(super) async fn resume_writes(&self) -> Result<bool> {
        self.check_open()?;
        let refusal = self.refusal();
        if let store_journal::Resume::Answer(writable) = self
            .journal_config
            .resume(refusal.as_ref(), self.fs.as_ref())
        {
            return Ok(writable);
        }
        // Writers, checkpoints and (below) readers wait for the reopen.
        let _w = self.write.lock().await;
        let old = self.journal();
        let _ = tokio::task::spawn_blocking(move || old.close()).await;
        let mark = self
            .jdbc
            .journaled()
            .journal_mark()
            .await?
            .map(unpack)
            .unwrap_or_default();
        let dir = self.config.journal_directory.display().to_string();
        let (journal, records) = match open_journal(
            self.journal_config.clone(),
            Arc::clone(&self.fs),
            mark,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(target: "journaled-jdbc", dir, "reopening the journal after a full disk failed, will retry: {e}");
                return Ok(false);
            }
        };
        {
            let _v = self.view.write().await;
            *self.journal.write() = Arc::new(journal);
            *self.overlay.lock() = Overlay::default();
            self.generation.fetch_add(1, Ordering::AcqRel);
            for rec in records {
                self.replay(rec).await?;
            }
        }
        *self.poisoned.lock() = None;
        // The replayed changes go into the database now, as at open; a database that cannot
        // take them yet (on the same full disk) gets them at the next checkpoint.
        self.since_mark.store(1, Ordering::Release);
        if let Err(e) = self.checkpoint_locked().await {
            warn!(target: "journaled-jdbc", "checkpoint after reopening the journal failed, will retry: {e}");
        }
        info!(target: "journaled-jdbc", dir, "journaled JDBC store reopened its journal after the disk was full: writes are taken again");
        Ok(true)
    }

    /// Runs a change the journal does not carry (subscriptions, purges, removals, XA): the
    /// overlay is checkpointed first, then the database does it.
    pub(super) async fn write_through<T, F>(&self, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        self.check_writable()?;
        let _w = self.write.lock().await;
        self.checkpoint_locked().await?;
        let r = f.await;
        self.catch_up_seq();
        self.generation.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Adds the database is about to take outside a checkpoint (an XA commit): the filter
    /// learns their ids first, so it never rules one out wrongly.
    pub(super) fn remember_adds(&self, ops: &[TxOp]) {
        let mut known = self.known.lock();
        for op in ops {
            if let TxOp::Add(m) = op {
                known.insert(&m.destination, &m.id);
            }
        }
    }
}
