//! The contract's adapter: destinations and handles, transactions (local ones journaled as one
//! commit record; XA ones handed to the database at prepare), checkpoint and close.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use store_api::tx_check::{check_enlisted, check_ops};
use store_api::{
    Destination, PersistenceAdapter, PreparedTransaction, QueueStore, Result, StoreError,
    TopicStore, TransactionId, TxOp, Xid,
};

use super::JournaledJdbcStore;
use super::handle::Handle;
use super::write::Probe;

impl JournaledJdbcStore {
    /// A handle over the database's store of the destination.
    fn handle(
        &self,
        destination: &Destination,
        queue: Option<Arc<dyn QueueStore>>,
        topic: Option<Arc<dyn TopicStore>>,
    ) -> Arc<Handle> {
        Arc::new(Handle {
            inner: self.inner.clone(),
            d: destination.clone(),
            state: self.inner.dest(destination),
            queue,
            topic,
        })
    }
}

#[async_trait]
impl PersistenceAdapter for JournaledJdbcStore {
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        let journal = self.inner.journal().stats();
        vec![
            ("journal_fsyncs", journal.fsyncs),
            ("journal_fsync_micros", journal.fsync_micros),
            ("journal_bytes", journal.bytes),
            ("checkpoints", self.checkpoints()),
        ]
    }

    /// A journal that failed a write refuses writes from then on. For want of space it heals
    /// in place once space is back ([`PersistenceAdapter::resume_writes`]); any other failure
    /// needs a restart.
    fn write_refusal(&self) -> Option<store_api::WriteRefusal> {
        self.inner.refusal()
    }

    async fn resume_writes(&self) -> Result<bool> {
        self.inner.resume_writes().await
    }

    fn kind(&self) -> &'static str {
        "journaled-jdbc"
    }

    async fn destinations(&self) -> Result<Vec<Destination>> {
        self.inner.check_open()?;
        self.inner.jdbc.destinations().await
    }

    async fn queue_store(&self, destination: &Destination) -> Result<Arc<dyn QueueStore>> {
        self.inner.check_open()?;
        let db = self.inner.jdbc.queue_store(destination).await?;
        Ok(self.handle(destination, Some(db), None))
    }

    async fn topic_store(&self, destination: &Destination) -> Result<Arc<dyn TopicStore>> {
        self.inner.check_open()?;
        let db = self.inner.jdbc.topic_store(destination).await?;
        Ok(self.handle(destination, None, Some(db)))
    }

    async fn remove_destination(&self, destination: &Destination) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        i.write_through(i.jdbc.remove_destination(destination))
            .await?;
        i.subs.lock().remove(destination);
        if let Some(s) = i.dests.lock().remove(destination) {
            s.removed.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn begin(&self, tx: &TransactionId) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let prepared = i.jdbc.prepared_transactions().await?;
        let in_db = matches!(tx, TransactionId::Xa(x) if prepared.iter().any(|p| &p.xid == x));
        if in_db {
            return Err(StoreError::Duplicate(format!("transaction {tx}")));
        }
        i.txs.lock().begin(tx)
    }

    async fn enlist(&self, tx: &TransactionId, op: TxOp) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let known = i.txs.lock().contains(tx);
        if !known && tx.is_xa() {
            return i.jdbc.enlist(tx, op).await;
        }
        i.txs.lock().check_enlist(tx)?;
        match &op {
            TxOp::Add(m) => i.jdbc.journaled().validate_message(m)?,
            TxOp::QueueAck { destination, .. } => {
                i.jdbc.journaled().validate_names(destination, None)?
            }
            TxOp::TopicAck {
                destination,
                subscription,
                ..
            } => i
                .jdbc
                .journaled()
                .validate_names(destination, Some(subscription))?,
        }
        if check_enlisted(&op)? {
            let _v = i.view.read().await;
            let facts = i.facts(std::slice::from_ref(&op)).await?;
            let mut subs = HashMap::new();
            if let TxOp::TopicAck { destination, .. } = &op {
                subs.insert(destination.clone(), i.subscriptions(destination).await?);
                if let TxOp::TopicAck { subscription, .. } = &op
                    && !subs[destination].contains(subscription)
                {
                    return Err(StoreError::NotFound(format!(
                        "subscription {subscription} on {destination}"
                    )));
                }
            }
            let ov = i.overlay.lock();
            check_ops(
                std::slice::from_ref(&op),
                &mut Probe {
                    ov: &ov,
                    facts: &facts,
                    subs: &subs,
                },
            )?;
        }
        i.txs.lock().enlist(tx, op)
    }

    async fn prepare(&self, xid: &Xid) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let id = TransactionId::Xa(xid.clone());
        let known = i.txs.lock().contains(&id);
        if !known {
            return i.jdbc.prepare(xid).await;
        }
        let ops = i.txs.lock().to_prepare(xid)?.to_vec();
        // Prepared transactions are the database's: checkpoint, then hand it over whole.
        i.write_through(async {
            i.jdbc.begin(&id).await?;
            let r = async {
                for op in ops {
                    i.jdbc.enlist(&id, op).await?;
                }
                i.jdbc.prepare(xid).await
            }
            .await;
            if r.is_err() {
                let _ = i.jdbc.rollback(&id).await;
            }
            r
        })
        .await?;
        i.txs.lock().mark_prepared(&id, ());
        Ok(())
    }

    async fn commit(&self, tx: &TransactionId) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let local = i
            .txs
            .lock()
            .find(tx)
            .map(|t| (t.is_prepared(), t.ops.clone()));
        match local {
            Some((false, ops)) => {
                let (completion, _) = i.write(ops, false, false).await?;
                i.durable(completion).await?;
            }
            Some((true, ops)) => {
                i.remember_adds(&ops);
                i.write_through(i.jdbc.commit(tx)).await?;
            }
            None => {
                if let TransactionId::Xa(xid) = tx {
                    for p in i.jdbc.prepared_transactions().await? {
                        if &p.xid == xid {
                            i.remember_adds(&p.ops);
                        }
                    }
                }
                i.write_through(i.jdbc.commit(tx)).await?;
            }
        }
        let _ = i.txs.lock().end(tx);
        Ok(())
    }

    async fn rollback(&self, tx: &TransactionId) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        let local = i.txs.lock().find(tx).map(|t| t.is_prepared());
        match local {
            Some(false) => {}
            Some(true) | None => i.jdbc.rollback(tx).await?,
        }
        let _ = i.txs.lock().end(tx);
        Ok(())
    }

    async fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>> {
        self.inner.check_open()?;
        self.inner.jdbc.prepared_transactions().await
    }

    async fn checkpoint(&self, _cleanup: bool) -> Result<()> {
        let i = &self.inner;
        i.check_writable()?;
        let _w = i.write.lock().await;
        i.checkpoint_locked().await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.inner.check_open()?;
        Ok(self.inner.journal().disk_size())
    }

    async fn delete_all(&self) -> Result<()> {
        let i = &self.inner;
        i.check_open()?;
        i.write_through(i.jdbc.delete_all()).await?;
        i.subs.lock().clear();
        i.txs.lock().clear();
        for (_, s) in i.dests.lock().drain() {
            s.removed.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let i = &self.inner;
        if i.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // A clean shutdown checkpoints, so the next open replays nothing.
        let r = {
            let _w = i.write.lock().await;
            let r = if i.refusal().is_none() {
                i.checkpoint_locked().await
            } else {
                Ok(())
            };
            i.closed.store(true, Ordering::Release);
            r
        };
        i.wake.notify_one();
        let journal = {
            let j = i.journal();
            tokio::task::spawn_blocking(move || j.close())
        };
        let _ = journal.await;
        i.jdbc.close().await?;
        r
    }
}
