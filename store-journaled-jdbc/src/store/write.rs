//! Writing a change: what the database says about the messages it touches is read first
//! (without the write lock), then under the lock the change is checked against the merged view
//! (overlay over database) by `store-api`'s transaction check, journaled as one record, and
//! applied to the overlay. A checkpoint in between makes the facts stale: the write starts over.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use store_api::tx_check::{StateProbe, check_ops};
use store_api::{Destination, MessageId, OrderKey, Result, SubscriptionKey, TxOp};

use super::Inner;
use crate::overlay::Overlay;
use crate::records::Record;

/// What the database says about one message, read before the write lock is taken.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DbFact {
    /// Its place and size, when the database stores it.
    stored: Option<(OrderKey, u64)>,
    /// Topic: subscriptions it is pending for.
    refs: u64,
}

/// Database facts a change needs, keyed by destination and id (and subscription).
#[derive(Debug, Default)]
pub(super) struct Facts {
    messages: HashMap<(Destination, MessageId), DbFact>,
    pending: HashMap<(Destination, SubscriptionKey, MessageId), bool>,
}

impl Inner {
    /// Reads from the database what checking `ops` needs.
    pub(super) async fn facts(&self, ops: &[TxOp]) -> Result<Facts> {
        let mut f = Facts::default();
        for op in ops {
            match op {
                TxOp::Add(m) => {
                    // Most adds are of ids the database has never seen: the filter says so
                    // without a query (a checkpoint adding ids bumps the generation).
                    if self.known.lock().may_contain(&m.destination, &m.id) {
                        self.fact(&mut f, &m.destination, &m.id, false).await?
                    } else {
                        f.messages
                            .insert((m.destination.clone(), m.id.clone()), DbFact::default());
                    }
                }
                TxOp::QueueAck { destination, id } => {
                    // An ack of an overlay add needs nothing from the database (a checkpoint
                    // moving it there bumps the generation, and the write starts over).
                    let in_overlay = self
                        .overlay
                        .lock()
                        .queue(destination)
                        .is_some_and(|q| q.by_id.contains_key(id));
                    if !in_overlay {
                        self.fact(&mut f, destination, id, false).await?
                    }
                }
                TxOp::TopicAck {
                    destination,
                    subscription,
                    id,
                } => {
                    let in_overlay = self
                        .overlay
                        .lock()
                        .topic(destination)
                        .is_some_and(|t| t.by_id.contains_key(id));
                    if in_overlay {
                        continue;
                    }
                    self.fact(&mut f, destination, id, true).await?;
                    let k = (destination.clone(), subscription.clone(), id.clone());
                    if let std::collections::hash_map::Entry::Vacant(e) = f.pending.entry(k) {
                        e.insert(
                            self.jdbc
                                .journaled()
                                .is_pending(destination, subscription, id)
                                .await?,
                        );
                    }
                }
            }
        }
        Ok(f)
    }

    pub(super) async fn fact(
        &self,
        f: &mut Facts,
        d: &Destination,
        id: &MessageId,
        refs: bool,
    ) -> Result<()> {
        let k = (d.clone(), id.clone());
        if f.messages.contains_key(&k) {
            return Ok(());
        }
        let stored = self.jdbc.journaled().message_key_size(d, id).await?;
        let refs = if refs && stored.is_some() {
            self.jdbc.journaled().pending_refs(d, id).await?
        } else {
            0
        };
        f.messages.insert(k, DbFact { stored, refs });
        Ok(())
    }

    /// Checks `ops` against the merged view, journals them as one record (one add, one ack, or
    /// a commit), applies them to the overlay, and returns the completion to wait for and the
    /// sequences given to adds. Retries when a checkpoint ran between reading the facts and
    /// taking the lock.
    pub(super) async fn write(
        &self,
        ops: Vec<TxOp>,
        single: bool,
        unwaited: bool,
    ) -> Result<(Option<store_journal::Completion>, Vec<u64>)> {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let facts = self.facts(&ops).await?;
            let mut subs = HashMap::new();
            for op in &ops {
                if let TxOp::Add(m) = op
                    && m.destination.is_topic()
                    && !subs.contains_key(&m.destination)
                {
                    subs.insert(
                        m.destination.clone(),
                        self.subscriptions(&m.destination).await?,
                    );
                }
            }
            let _w = self.write.lock().await;
            self.check_writable()?;
            if self.generation.load(Ordering::Acquire) != generation {
                continue;
            }
            let mut ov = self.overlay.lock();
            check_ops(
                &ops,
                &mut Probe {
                    ov: &ov,
                    facts: &facts,
                    subs: &subs,
                },
            )?;
            let mut ops = ops;
            let mut seqs = Vec::new();
            for op in ops.iter_mut() {
                if let TxOp::Add(m) = op {
                    m.sequence = self.next_seq();
                    seqs.push(m.sequence);
                }
            }
            let rec = match (single, ops.as_slice()) {
                (true, [TxOp::Add(m)]) => Record::Add(m.clone()),
                (true, [TxOp::QueueAck { destination, id }]) => {
                    Record::QueueAck(destination.clone(), id.clone())
                }
                (
                    true,
                    [
                        TxOp::TopicAck {
                            destination,
                            subscription,
                            id,
                        },
                    ],
                ) => Record::TopicAck(destination.clone(), subscription.clone(), id.clone()),
                _ => Record::Commit(ops.clone()),
            };
            let keeps = ops.iter().any(|op| match op {
                TxOp::Add(m) => {
                    m.destination.is_queue()
                        || subs.get(&m.destination).is_some_and(|s| !s.is_empty())
                }
                _ => true,
            });
            if !keeps {
                // A topic add that no subscription needs: nothing to keep, nothing to journal.
                return Ok((None, seqs));
            }
            let completion = self.append(&rec, unwaited)?;
            for op in ops {
                apply(&mut ov, op, &facts, &subs);
            }
            return Ok((Some(completion), seqs));
        }
    }
}

/// The merged view for [`check_ops`].
pub(super) struct Probe<'a> {
    pub(super) ov: &'a Overlay,
    pub(super) facts: &'a Facts,
    pub(super) subs: &'a HashMap<Destination, Vec<SubscriptionKey>>,
}

impl Probe<'_> {
    fn db(&self, d: &Destination, id: &MessageId) -> DbFact {
        self.facts
            .messages
            .get(&(d.clone(), id.clone()))
            .copied()
            .unwrap_or_default()
    }
}

impl StateProbe for Probe<'_> {
    fn contains(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        let in_db = self.db(d, id).stored.is_some();
        Ok(if d.is_queue() {
            let q = self.ov.queue(d);
            q.is_some_and(|q| q.by_id.contains_key(id))
                || (in_db && !q.is_some_and(|q| q.removed.contains_key(id)))
        } else {
            self.ov.topic(d).is_some_and(|t| t.by_id.contains_key(id))
                || (in_db && !self.ov.db_acked(d, None, id))
        })
    }

    fn ackable(&mut self, d: &Destination, id: &MessageId) -> Result<bool> {
        self.contains(d, id)
    }

    fn pending_for(
        &mut self,
        d: &Destination,
        key: &SubscriptionKey,
        id: &MessageId,
    ) -> Result<bool> {
        if let Some(t) = self.ov.topic(d)
            && let Some(k) = t.by_id.get(id)
        {
            return Ok(t.adds.get(k).is_some_and(|a| a.pending.contains(key)));
        }
        let in_db = self
            .facts
            .pending
            .get(&(d.clone(), key.clone(), id.clone()))
            .copied()
            .unwrap_or(false);
        Ok(in_db && !self.ov.db_acked(d, Some(key), id))
    }

    fn subscriptions(&mut self, d: &Destination) -> Result<Vec<SubscriptionKey>> {
        Ok(self.subs.get(d).cloned().unwrap_or_default())
    }
}

/// Applies one checked operation to the overlay.
pub(super) fn apply(
    ov: &mut Overlay,
    op: TxOp,
    facts: &Facts,
    subs: &HashMap<Destination, Vec<SubscriptionKey>>,
) {
    match op {
        TxOp::Add(m) => {
            let s = subs.get(&m.destination).cloned().unwrap_or_default();
            ov.add(m, &s);
        }
        TxOp::QueueAck { destination, id } => {
            if !ov.cancel_queue_add(&destination, &id)
                && let Some(DbFact {
                    stored: Some((key, size)),
                    ..
                }) = facts.messages.get(&(destination.clone(), id.clone()))
            {
                ov.remove_db(&destination, id, *key, *size);
            }
        }
        TxOp::TopicAck {
            destination,
            subscription,
            id,
        } => {
            if !ov.ack_topic_add(&destination, &subscription, &id)
                && let Some(DbFact {
                    stored: Some((key, size)),
                    refs,
                }) = facts.messages.get(&(destination.clone(), id.clone()))
            {
                ov.ack_topic_db(&destination, &subscription, &id, *key, *size, *refs);
            }
        }
    }
}
