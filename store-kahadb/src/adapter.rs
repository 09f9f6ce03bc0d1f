//! The store-api traits over [`Inner`]: the adapter, and queue and topic handles.

use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use store_api::{
    CursorPosition, DeliveryOrder, Destination, DestinationStore, Message, MessageId, OrderKey,
    Pending, PersistenceAdapter, PreparedTransaction, QueueStore, Result, StoreError,
    SubscriptionInfo, SubscriptionKey, TopicStore, TransactionId, TxOp, WriteRefusal, Xid,
};

use crate::error::KahaError;
use crate::index_storage::EngineConfig;
use crate::records::Command;
use crate::store::{self, Inner, KahaDbStats, check_ops, visible};

/// A store of one of the engines over the shared journal and index: `C` is the engine's config
/// (`KahaDbStore` is `JournaledStore<KahaDbConfig>`). Cloning shares it.
pub struct JournaledStore<C> {
    inner: Arc<Inner>,
    engine: PhantomData<fn() -> C>,
}

impl<C> Clone for JournaledStore<C> {
    fn clone(&self) -> Self {
        JournaledStore {
            inner: self.inner.clone(),
            engine: PhantomData,
        }
    }
}

impl<C: EngineConfig> JournaledStore<C> {
    /// Opens (creating if needed) the store in the config's directory.
    pub fn open(config: C) -> std::result::Result<Self, KahaError> {
        Self::open_with_fs(config, Arc::new(store_journal::fs::RealFs))
    }

    /// Opens over a given file system (tests use the fault-injecting one).
    pub fn open_with_fs(
        config: C,
        fs: Arc<dyn store_journal::fs::FileSystem>,
    ) -> std::result::Result<Self, KahaError> {
        let storage = config.index_storage(fs.clone());
        Ok(JournaledStore {
            inner: store::open(config.settings(), storage, fs)?,
            engine: PhantomData,
        })
    }

    pub fn stats(&self) -> KahaDbStats {
        self.inner.stats()
    }

    /// Runs a checkpoint now on the calling thread (tests and tools).
    pub fn checkpoint_blocking(&self, cleanup: bool) -> std::result::Result<(), KahaError> {
        self.inner.checkpoint(cleanup)
    }

    /// The journal file ids present, oldest first.
    pub fn journal_files(&self) -> Vec<u32> {
        self.inner.journal().file_ids()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend {
            backend: "kahadb",
            source: Box::new(e),
        })
}

impl<C> JournaledStore<C> {
    async fn handle(&self, d: &Destination) -> Result<Handle> {
        self.inner.check_open()?;
        let pending = {
            let mut ix = self.inner.index.lock();
            if ix.cat.destinations.contains_key(d) {
                None
            } else {
                Some(self.inner.write(
                    &mut ix,
                    vec![Command::EnsureDestination { dest: d.clone() }],
                    false,
                )?)
            }
        };
        if let Some(w) = pending {
            self.inner.finish(w).await?;
        }
        let generation = self.inner.index.lock().generation(d);
        Ok(Handle {
            inner: self.inner.clone(),
            dest: d.clone(),
            generation,
        })
    }
}

#[async_trait]
impl<C: EngineConfig> PersistenceAdapter for JournaledStore<C> {
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let s = self.inner.stats();
        let mut m = vec![
            ("journal_fsyncs", s.journal.fsyncs),
            ("journal_fsync_micros", s.journal.fsync_micros),
            ("journal_bytes", s.journal.bytes),
            ("journal_files", s.journal_files as u64),
        ];
        m.extend(self.inner.storage.metrics(&s));
        m.extend([
            ("checkpoints", s.checkpoints),
            ("journal_files_deleted", s.files_deleted),
            ("records_compacted", s.records_compacted),
        ]);
        m
    }

    fn kind(&self) -> &'static str {
        self.inner.storage.kind()
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.inner.check_open()?;
        Ok(self
            .inner
            .index
            .lock()
            .cat
            .destinations
            .keys()
            .cloned()
            .collect())
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        destination.expect_queue()?;
        Ok(Arc::new(self.handle(destination).await?))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        destination.expect_topic()?;
        Ok(Arc::new(self.handle(destination).await?))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        self.inner
            .locked_write(|ix| {
                if !ix.cat.destinations.contains_key(destination) {
                    return Err(StoreError::NotFound(format!("destination {destination}")));
                }
                let last_sequence = ix.cat.last_sequence;
                self.inner.write(
                    ix,
                    vec![Command::RemoveDestination {
                        dest: destination.clone(),
                        last_sequence,
                    }],
                    false,
                )
            })
            .await
            .map(|_| ())
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        self.inner.check_writable()?;
        self.inner.index.lock().txs.begin(tx)
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        self.inner.check_writable()?;
        let mut ix = self.inner.index.lock();
        ix.txs.check_enlist(tx)?;
        if store_api::tx_check::check_enlisted(&op)? {
            check_ops(&mut ix, std::slice::from_ref(&op))?;
        }
        ix.txs.enlist(tx, op)
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        self.inner
            .locked_write(|ix| {
                let ops = ix.txs.to_prepare(xid)?.to_vec();
                check_ops(ix, &ops)?;
                // A prepare is forced to disk whatever the sync policy: the transaction manager
                // relies on it.
                self.inner.write(
                    ix,
                    vec![Command::Prepare {
                        xid: xid.clone(),
                        ops,
                    }],
                    true,
                )
            })
            .await
            .map(|_| ())
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        let w = {
            let mut ix = self.inner.index.lock();
            let t = ix.txs.get(tx)?;
            let (ops, prepared) = (t.ops.clone(), t.is_prepared());
            check_ops(&mut ix, &ops)?;
            let mut cmds = Vec::with_capacity(ops.len() + 1);
            for op in ops {
                cmds.push(match op {
                    TxOp::Add(mut m) => {
                        ix.cat.last_sequence += 1;
                        m.sequence = ix.cat.last_sequence;
                        let pending_for = if m.destination.is_topic() {
                            ix.subscription_keys(&m.destination)
                        } else {
                            Vec::new()
                        };
                        Command::Add {
                            message: m,
                            pending_for,
                        }
                    }
                    TxOp::QueueAck { destination, id } => Command::QueueAck {
                        dest: destination,
                        id,
                    },
                    TxOp::TopicAck {
                        destination,
                        subscription,
                        id,
                    } => Command::TopicAck {
                        dest: destination,
                        key: subscription,
                        id,
                    },
                });
            }
            if let (true, TransactionId::Xa(xid)) = (prepared, tx) {
                cmds.push(Command::XaEnd {
                    xid: xid.clone(),
                    committed: true,
                });
            }
            let w = if cmds.is_empty() {
                None
            } else {
                Some(self.inner.write(&mut ix, cmds, false)?)
            };
            // A prepared one was ended by its XaEnd record already.
            let _ = ix.txs.end(tx);
            w
        };
        match w {
            Some(w) => self.inner.finish(w).await.map(|_| ()),
            None => Ok(()),
        }
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        let w = {
            let mut ix = self.inner.index.lock();
            let prepared = ix.txs.get(tx)?.is_prepared();
            match (prepared, tx) {
                (true, TransactionId::Xa(xid)) => {
                    let cmd = Command::XaEnd {
                        xid: xid.clone(),
                        committed: false,
                    };
                    Some(self.inner.write(&mut ix, vec![cmd], false)?)
                }
                _ => {
                    let _ = ix.txs.end(tx);
                    None
                }
            }
        };
        match w {
            Some(w) => self.inner.finish(w).await.map(|_| ()),
            None => Ok(()),
        }
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.inner.check_open()?;
        Ok(self.inner.index.lock().txs.prepared())
    }

    async fn checkpoint(&self, cleanup: bool) -> Result<()> {
        self.inner.check_open()?;
        let inner = self.inner.clone();
        blocking(move || inner.checkpoint(cleanup))
            .await?
            .map_err(Into::into)
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.inner.check_open()?;
        Ok(self.inner.size_on_disk())
    }

    fn write_refusal(&self) -> Option<WriteRefusal> {
        self.inner.refusal()
    }

    async fn resume_writes(&self) -> Result<bool> {
        let inner = self.inner.clone();
        blocking(move || inner.resume_writes()).await?
    }

    async fn delete_all(&self) -> Result<()> {
        self.inner
            .locked_write(|ix| {
                let last_sequence = ix.cat.last_sequence;
                self.inner
                    .write(ix, vec![Command::DeleteAll { last_sequence }], false)
            })
            .await
            .map(|_| ())
    }

    async fn close(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.close()).await?.map_err(Into::into)
    }
}

/// A queue or topic handle.
struct Handle {
    inner: Arc<Inner>,
    dest: Destination,
    generation: u64,
}

impl Handle {
    /// A queue ack or a topic-wide delete; `unwaited`: no client waits for it (see
    /// `DestinationStore::remove_unwaited`).
    async fn remove_as(&self, id: &MessageId, unwaited: bool) -> Result<()> {
        // Checked and written under one lock: two acks of one message cannot both succeed.
        self.inner
            .locked_write(|ix| {
                self.check(ix)?;
                if !visible(ix, &self.dest, id)? {
                    return Err(self.missing(id));
                }
                let (dest, id) = (self.dest.clone(), id.clone());
                let cmd = if self.dest.is_queue() {
                    Command::QueueAck { dest, id }
                } else {
                    Command::TopicRemove { dest, id }
                };
                self.inner.write_ack(ix, cmd, unwaited)
            })
            .await
            .map(|_| ())
    }

    /// A subscription's ack; `unwaited` as in [`Handle::remove_as`].
    async fn acknowledge_as(
        &self,
        key: &SubscriptionKey,
        id: &MessageId,
        unwaited: bool,
    ) -> Result<()> {
        self.inner
            .locked_write(|ix| {
                self.check(ix)?;
                self.require_sub(ix, key)?;
                if !visible(ix, &self.dest, id)? || !ix.is_pending_for(&self.dest, key, id)? {
                    return Err(self.not_pending(key, id));
                }
                let cmd = Command::TopicAck {
                    dest: self.dest.clone(),
                    key: key.clone(),
                    id: id.clone(),
                };
                self.inner.write_ack(ix, cmd, unwaited)
            })
            .await
            .map(|_| ())
    }

    fn check(&self, ix: &mut crate::index::Index) -> Result<()> {
        self.inner.check_open()?;
        if ix.generations.get(&self.dest) != Some(&self.generation)
            || !ix.cat.destinations.contains_key(&self.dest)
        {
            return Err(StoreError::NotFound(format!(
                "destination {} was removed",
                self.dest
            )));
        }
        Ok(())
    }

    fn missing(&self, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!("message {id} in {}", self.dest))
    }

    fn no_sub(&self, key: &SubscriptionKey) -> StoreError {
        StoreError::NotFound(format!("subscription {key} on {}", self.dest))
    }

    /// `NotFound` unless this topic has the subscription `key`.
    fn require_sub(&self, ix: &crate::index::Index, key: &SubscriptionKey) -> Result<()> {
        if ix
            .cat
            .destinations
            .get(&self.dest)
            .is_some_and(|m| m.subs.contains_key(key))
        {
            Ok(())
        } else {
            Err(self.no_sub(key))
        }
    }

    fn not_pending(&self, key: &SubscriptionKey, id: &MessageId) -> StoreError {
        StoreError::NotFound(format!(
            "message {id} is not pending for subscription {key} on {}",
            self.dest
        ))
    }

    async fn add(&self, message: Message) -> Result<u64> {
        self.place(message)?.await
    }

    /// Checks the message, gives it its sequence and appends it to the journal (all under the
    /// index lock, which is what orders it among other adds); the returned write resolves when
    /// it is durable and visible.
    fn place(&self, mut message: Message) -> Result<Pending<u64>> {
        message.validate_for(&self.dest)?;
        let (w, seq) = {
            let mut ix = self.inner.index.lock();
            self.check(&mut ix)?;
            if ix.lookup(&self.dest, &message.id)?.is_some() {
                return Err(StoreError::Duplicate(format!(
                    "message {} in {}",
                    message.id, self.dest
                )));
            }
            ix.cat.last_sequence += 1;
            let seq = ix.cat.last_sequence;
            message.sequence = seq;
            let pending_for = if self.dest.is_topic() {
                let keys = ix.subscription_keys(&self.dest);
                if keys.is_empty() {
                    // Nothing would keep it: no record at all.
                    return Ok(Pending::ready(Ok(seq)));
                }
                keys
            } else {
                Vec::new()
            };
            let cmd = Command::Add {
                message,
                pending_for,
            };
            (self.inner.write(&mut ix, vec![cmd], false)?, seq)
        };
        let inner = Arc::clone(&self.inner);
        Ok(Pending::new(async move {
            inner.finish(w).await?;
            Ok(seq)
        }))
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        {
            let mut ix = self.inner.index.lock();
            self.check(&mut ix)?;
        }
        self.inner
            .get_message(&self.dest, id)?
            .ok_or_else(|| self.missing(id))
    }

    async fn browse(
        &self,
        sub: Option<&SubscriptionKey>,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        let entries = {
            let mut ix = self.inner.index.lock();
            self.check(&mut ix)?;
            if let Some(k) = sub
                && !ix
                    .cat
                    .destinations
                    .get(&self.dest)
                    .is_some_and(|m| m.subs.contains_key(k))
            {
                return Err(self.no_sub(k));
            }
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            ix.entries(&self.dest, sub, from, None, max)?
        };
        self.inner.read_messages(&self.dest, entries)
    }

    async fn recover_next(
        &self,
        sub: Option<&SubscriptionKey>,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        let entries = {
            let mut ix = self.inner.index.lock();
            self.check(&mut ix)?;
            let cursor = match sub {
                Some(k) => {
                    if !ix
                        .cat
                        .destinations
                        .get(&self.dest)
                        .is_some_and(|m| m.subs.contains_key(k))
                    {
                        return Err(self.no_sub(k));
                    }
                    ix.sub_cursors
                        .get(&(self.dest.clone(), k.clone()))
                        .copied()
                        .unwrap_or_default()
                }
                None => ix.cursors.get(&self.dest).copied().unwrap_or_default(),
            };
            let batch = ix.cursor_batch(&self.dest, sub, &cursor, order, max)?;
            let mut moved = cursor;
            for (ok, _) in &batch {
                moved.advance(*ok);
            }
            self.save_cursor(&mut ix, sub, moved);
            batch
        };
        self.inner.read_messages(&self.dest, entries)
    }

    fn save_cursor(
        &self,
        ix: &mut crate::index::Index,
        sub: Option<&SubscriptionKey>,
        c: CursorPosition,
    ) {
        match sub {
            Some(k) => {
                ix.sub_cursors.insert((self.dest.clone(), k.clone()), c);
            }
            None => {
                ix.cursors.insert(self.dest.clone(), c);
            }
        }
    }

    async fn reset_cursor(&self, sub: Option<&SubscriptionKey>) -> Result<()> {
        let mut ix = self.inner.index.lock();
        self.check(&mut ix)?;
        if let Some(k) = sub
            && !ix
                .cat
                .destinations
                .get(&self.dest)
                .is_some_and(|m| m.subs.contains_key(k))
        {
            return Err(self.no_sub(k));
        }
        self.save_cursor(&mut ix, sub, CursorPosition::default());
        Ok(())
    }

    async fn set_cursor_after(&self, sub: Option<&SubscriptionKey>, id: &MessageId) -> Result<()> {
        let mut ix = self.inner.index.lock();
        self.check(&mut ix)?;
        if let Some(k) = sub {
            if !ix
                .cat
                .destinations
                .get(&self.dest)
                .is_some_and(|m| m.subs.contains_key(k))
            {
                return Err(self.no_sub(k));
            }
            if !visible(&mut ix, &self.dest, id)? || !ix.is_pending_for(&self.dest, k, id)? {
                return Err(self.not_pending(k, id));
            }
        }
        let Some((ok, _)) = ix.lookup(&self.dest, id)? else {
            return Err(self.missing(id));
        };
        if ix
            .pending
            .get(&self.dest)
            .is_some_and(|p| p.contains(&ok.sequence))
        {
            return Err(self.missing(id));
        }
        let mut c = CursorPosition::default();
        c.set_after(ok, ix.cat.last_sequence);
        self.save_cursor(&mut ix, sub, c);
        Ok(())
    }

    fn stats(&self, sub: Option<&SubscriptionKey>) -> Result<(u64, u64)> {
        let mut ix = self.inner.index.lock();
        self.check(&mut ix)?;
        let meta = ix
            .cat
            .destinations
            .get(&self.dest)
            .ok_or_else(|| StoreError::NotFound(self.dest.to_string()))?;
        match sub {
            Some(k) => meta
                .subs
                .get(k)
                .map(|s| (s.count, s.bytes))
                .ok_or_else(|| self.no_sub(k)),
            None => Ok((meta.count, meta.bytes)),
        }
    }

    async fn purge(&self) -> Result<u64> {
        let (w, n) = {
            let mut ix = self.inner.index.lock();
            self.check(&mut ix)?;
            let n = ix.cat.destinations.get(&self.dest).map_or(0, |m| m.count);
            (
                self.inner.write(
                    &mut ix,
                    vec![Command::Purge {
                        dest: self.dest.clone(),
                    }],
                    false,
                )?,
                n,
            )
        };
        self.inner.finish(w).await?;
        Ok(n)
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        let entries = {
            let mut ix = self.inner.index.lock();
            self.check(&mut ix)?;
            ix.entries(&self.dest, None, Bound::Unbounded, None, usize::MAX)?
        };
        let expired: Vec<_> = entries
            .into_iter()
            .filter(|(_, e)| e.expiration != 0 && e.expiration <= now_ms)
            .take(max)
            .collect();
        Ok(self
            .inner
            .read_messages(&self.dest, expired)?
            .into_iter()
            .map(|m| m.id)
            .collect())
    }
}

#[async_trait]
impl DestinationStore for Handle {
    fn destination(&self) -> &Destination {
        &self.dest
    }

    async fn add(&self, message: Message) -> Result<u64> {
        Handle::add(self, message).await
    }

    async fn submit_add(&self, message: Message) -> Result<Pending<u64>> {
        self.place(message)
    }

    async fn get(&self, id: &MessageId) -> Result<Message> {
        Handle::get(self, id).await
    }

    async fn remove(&self, id: &MessageId) -> Result<()> {
        self.remove_as(id, false).await
    }

    async fn remove_unwaited(&self, id: &MessageId) -> Result<()> {
        self.remove_as(id, true).await
    }

    async fn purge(&self) -> Result<u64> {
        Handle::purge(self).await
    }

    async fn count(&self) -> Result<u64> {
        self.stats(None).map(|s| s.0)
    }

    async fn bytes(&self) -> Result<u64> {
        self.stats(None).map(|s| s.1)
    }

    async fn expired(&self, now_ms: i64, max: usize) -> Result<Vec<MessageId>> {
        Handle::expired(self, now_ms, max).await
    }
}

#[async_trait]
impl QueueStore for Handle {
    async fn browse(&self, after: Option<OrderKey>, max: usize) -> Result<Vec<Message>> {
        Handle::browse(self, None, after, max).await
    }

    async fn recover_next_ordered(&self, order: DeliveryOrder, max: usize) -> Result<Vec<Message>> {
        Handle::recover_next(self, None, order, max).await
    }

    async fn reset_cursor(&self) -> Result<()> {
        Handle::reset_cursor(self, None).await
    }

    async fn set_cursor_after(&self, id: &MessageId) -> Result<()> {
        Handle::set_cursor_after(self, None, id).await
    }
}

#[async_trait]
impl TopicStore for Handle {
    async fn add_subscription(&self, info: SubscriptionInfo, retroactive: bool) -> Result<()> {
        self.inner
            .locked_write(|ix| {
                self.check(ix)?;
                if ix
                    .cat
                    .destinations
                    .get(&self.dest)
                    .is_some_and(|m| m.subs.contains_key(&info.key))
                {
                    return Err(StoreError::Duplicate(format!(
                        "subscription {} on {}",
                        info.key, self.dest
                    )));
                }
                let retroactive = if retroactive {
                    ix.kept_order_keys(&self.dest)?
                } else {
                    Vec::new()
                };
                let cmd = Command::Subscribe {
                    dest: self.dest.clone(),
                    info,
                    retroactive,
                };
                self.inner.write(ix, vec![cmd], false)
            })
            .await
            .map(|_| ())
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        // Checked and written under one lock: two deletes of one subscription cannot both
        // succeed.
        self.inner
            .locked_write(|ix| {
                self.check(ix)?;
                self.require_sub(ix, key)?;
                let cmd = Command::Unsubscribe {
                    dest: self.dest.clone(),
                    key: key.clone(),
                };
                self.inner.write(ix, vec![cmd], false)
            })
            .await
            .map(|_| ())
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>> {
        let mut ix = self.inner.index.lock();
        self.check(&mut ix)?;
        Ok(ix
            .cat
            .destinations
            .get(&self.dest)
            .map(|m| m.subs.values().map(|s| s.info.clone()).collect())
            .unwrap_or_default())
    }

    async fn lookup_subscription(&self, key: &SubscriptionKey) -> Result<Option<SubscriptionInfo>> {
        let mut ix = self.inner.index.lock();
        self.check(&mut ix)?;
        Ok(ix
            .cat
            .destinations
            .get(&self.dest)
            .and_then(|m| m.subs.get(key))
            .map(|s| s.info.clone()))
    }

    async fn acknowledge(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.acknowledge_as(key, id, false).await
    }

    async fn acknowledge_unwaited(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        self.acknowledge_as(key, id, true).await
    }

    async fn browse_subscription(
        &self,
        key: &SubscriptionKey,
        after: Option<OrderKey>,
        max: usize,
    ) -> Result<Vec<Message>> {
        Handle::browse(self, Some(key), after, max).await
    }

    async fn recover_next_ordered(
        &self,
        key: &SubscriptionKey,
        order: DeliveryOrder,
        max: usize,
    ) -> Result<Vec<Message>> {
        Handle::recover_next(self, Some(key), order, max).await
    }

    async fn reset_cursor(&self, key: &SubscriptionKey) -> Result<()> {
        Handle::reset_cursor(self, Some(key)).await
    }

    async fn set_cursor_after(&self, key: &SubscriptionKey, id: &MessageId) -> Result<()> {
        Handle::set_cursor_after(self, Some(key), id).await
    }

    async fn pending_count(&self, key: &SubscriptionKey) -> Result<u64> {
        self.stats(Some(key)).map(|s| s.0)
    }

    async fn pending_bytes(&self, key: &SubscriptionKey) -> Result<u64> {
        self.stats(Some(key)).map(|s| s.1)
    }
}
